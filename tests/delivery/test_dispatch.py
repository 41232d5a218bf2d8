"""Dispatch: due messages are claimed, re-checked on current state, rendered and sent,
and every decision is recorded with its reason. Runs on SQLite and PostgreSQL, with the
shipped rules and templates, recording channels and a virtual clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.app import Engine, load_project
from engine.intake.events import parse_event
from engine.store import Store
from tests.conftest import recording_channels
from tests.helpers import T0, created, event

REMINDER = "【山野户外】王小明，您拍下的羽绒睡袋还未付款，库存有限，付款后我们会尽快为您发货哦~"
DUE = T0 + timedelta(minutes=30)  # the payment reminder of an order created at T0


def ingest(engine: Engine, *events: dict):
    tz = engine.project.config.timezone
    return engine.ingest([parse_event(e, tz) for e in events])


def sms(engine: Engine) -> list[tuple]:
    return [(m.rule_id, m.customer_id, m.order_id, m.to, m.body) for m in engine.channels["sms"].sent]


def decisions(store) -> list[tuple]:
    return [(r["rule_id"], r["customer_id"], r["outcome"], r["reason"]) for r in store.rows("message_log")]


def states(store, rule_id: str = "payment-reminder") -> dict[str, tuple]:
    """The state of each order's message of one rule (a paid order also gets its 30-day
    honeymoon note scheduled, pending far in the future)."""
    return {m["order_id"]: (m["state"], m["reason"]) for m in store.rows("messages") if m["rule_id"] == rule_id}


def project_in(workdir, *, batch_size: int | None = None, templates: dict[str, str] | None = None):
    if batch_size is not None:
        config = workdir / "config.yaml"
        text = config.read_text(encoding="utf-8")
        assert "batch_size: 500" in text
        config.write_text(text.replace("batch_size: 500", f"batch_size: {batch_size}"), encoding="utf-8")
    for name, body in (templates or {}).items():
        (workdir / "templates" / name).write_text(body, encoding="utf-8")
    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")
    assert project.errors == []
    return project


# ---- the payment reminder -----------------------------------------------------------

@pytest.mark.parametrize("later_events, outcome, reason, body", [
    ([], "sent", None, REMINDER),
    ([event("evt-2", "order.paid", 10)], "cancelled", "unless", None),
    ([event("evt-2", "order.paid", 29.9)], "cancelled", "unless", None),
    ([event("evt-2", "order.closed", 20)], "cancelled", "unless", None),
], ids=["not-paid-sent", "paid-before-due-cancelled", "paid-just-before-due-cancelled", "closed-cancelled"])
def test_the_payment_reminder_is_cancelled_when_the_order_moved_on_before_it_was_due(
        engine, store, clock, later_events, outcome, reason, body):
    ingest(engine, created("evt-1"))
    ingest(engine, *later_events)  # arrive after the reminder was scheduled
    clock.set(DUE)

    report = engine.dispatch()

    assert report.by_outcome == {outcome: 1}
    assert states(store) == {"o-1": (outcome, reason)}
    [log] = store.rows("message_log")
    assert (log["rule_id"], log["outcome"], log["reason"], log["body"], log["time"]) == (
        "payment-reminder", outcome, reason, body, DUE)
    assert sms(engine) == ([("payment-reminder", "c-1", "o-1", "13800000000", REMINDER)] if body else [])


def test_a_cancelled_reminder_says_why_in_words(engine, store, clock):
    ingest(engine, created("evt-1"), event("evt-2", "order.paid", 10))
    clock.set(DUE)

    engine.dispatch()

    detail = store.rows("message_log")[0]["detail"]
    assert "o-1" in detail and "paid" in detail


def test_the_sent_reminder_carries_a_stable_idempotency_key_and_the_send_time(engine, store, clock):
    ingest(engine, created("evt-1"))
    clock.set(DUE + timedelta(seconds=7))

    engine.dispatch()

    [out] = engine.channels["sms"].sent
    [message] = store.rows("messages")
    assert (out.message_id, out.idempotency_key, out.channel, out.kind, out.time) == (
        message["id"], f"msg-{message['id']}", "sms", "service", DUE + timedelta(seconds=7))


def test_nothing_is_sent_before_it_is_due(engine, store, clock):
    ingest(engine, created("evt-1"))
    clock.set(DUE - timedelta(seconds=1))

    report = engine.dispatch()

    assert report.handled == 0
    assert states(store) == {"o-1": ("pending", None)}
    assert store.count("message_log") == 0


# ---- expiry -------------------------------------------------------------------------

@pytest.mark.parametrize("late, outcome, reason, detail", [
    (timedelta(hours=1), "sent", None, None),
    (timedelta(hours=24), "sent", None, None),
    (timedelta(hours=24, seconds=1), "expired", "expired",
     "could not be sent within 24h of its due time (24 h 0 min late)"),
    (timedelta(hours=25, minutes=5), "expired", "expired",
     "could not be sent within 24h of its due time (25 h 5 min late)"),
], ids=["1h-late-sent", "24h-late-still-sent", "just-past-expiry-expired", "25h-late-expired"])
def test_a_dispatcher_coming_back_after_the_expiry_drops_the_message_as_expired(
        engine, store, clock, late, outcome, reason, detail):
    ingest(engine, created("evt-1"))
    clock.set(DUE + late)

    report = engine.dispatch()

    assert report.by_outcome == {outcome: 1}
    assert states(store) == {"o-1": (outcome, reason)}
    [log] = store.rows("message_log")
    assert (log["outcome"], log["reason"], log["detail"]) == (outcome, reason, detail)
    assert len(sms(engine)) == (1 if outcome == "sent" else 0)


# ---- the backlog --------------------------------------------------------------------

def test_a_backlog_from_an_hour_of_downtime_is_worked_off_in_one_dispatch_call(workdir, store, clock):
    project = project_in(workdir, batch_size=4)
    assert project.config.dispatch.batch_size == 4
    engine = Engine(project, store, recording_channels(project), clock)
    orders = [created(f"evt-{i}", 2 * i, customer=f"c-{i:02}", order=f"o-{i:02}") for i in range(30)]
    paid = [event(f"evt-paid-{i}", "order.paid", 2 * i + 5, f"c-{i:02}", f"o-{i:02}") for i in range(0, 30, 6)]
    ingest(engine, *orders, *paid)
    # due from T0+30m to T0+88m; the daemon was down and comes back at T0+100m
    clock.set(T0 + timedelta(minutes=100))

    report = engine.dispatch()

    assert report.by_outcome == {"sent": 25, "cancelled": 5}
    assert report.handled == 30 > project.config.dispatch.batch_size
    # nothing left pending but the honeymoon notes of the 5 paid orders, due in 30 days
    assert store.count("messages", state="pending") == store.count("messages", rule_id="honeymoon-30d") == 5
    assert store.count("messages", state="claimed") == 0
    cancelled = {f"o-{i:02}" for i in range(0, 30, 6)}
    assert states(store) == {f"o-{i:02}": ("cancelled", "unless") if f"o-{i:02}" in cancelled else ("sent", None)
                             for i in range(30)}
    assert [c for _, c, _, _, _ in sms(engine)] == [f"c-{i:02}" for i in range(30) if i % 6]  # earliest first
    assert store.count("message_log") == 30
    assert engine.dispatch().handled == 0


# ---- failures of one message --------------------------------------------------------

def test_a_customer_without_a_phone_gets_no_contact(engine, store, clock):
    no_phone = event("evt-1", "order.created", 0, "c-9", "o-9", name="李雷")
    no_phone["order"].update({"amount": 88.0})
    ingest(engine, no_phone)
    clock.set(DUE)

    report = engine.dispatch()

    assert report.by_outcome == {"failed": 1}
    assert states(store) == {"o-9": ("failed", "no_contact")}
    [log] = store.rows("message_log")
    assert (log["outcome"], log["reason"], log["detail"], log["body"]) == (
        "failed", "no_contact", "customer c-9 has no phone for channel sms", None)
    assert sms(engine) == []


def test_a_template_error_fails_that_one_message_and_the_rest_of_the_batch_is_sent(workdir, store, clock):
    strict = "{{ shop.signature }}{{ customer.name }}，您拍下的{{ order.items[0].name }}还未付款~"
    project = project_in(workdir, templates={"payment_reminder.sms.j2": strict})
    engine = Engine(project, store, recording_channels(project), clock)
    nameless = created("evt-2", customer="c-2", order="o-2")
    del nameless["customer"]["name"]
    ingest(engine, created("evt-1", customer="c-1", order="o-1"), nameless,
           created("evt-3", customer="c-3", order="o-3"))
    clock.set(DUE)

    report = engine.dispatch()

    assert report.by_outcome == {"sent": 2, "failed": 1}
    assert states(store) == {"o-1": ("sent", None), "o-2": ("failed", "template_error"), "o-3": ("sent", None)}
    failed = [r for r in store.rows("message_log") if r["outcome"] == "failed"]
    assert [(r["customer_id"], r["reason"], r["detail"], r["body"]) for r in failed] == [
        ("c-2", "template_error",
         "template payment_reminder.sms.j2: customer.name is missing (add | default('...') or check 'is defined')",
         None)]
    assert [(c, body) for _, c, _, _, body in sms(engine)] == [
        ("c-1", "【山野户外】王小明，您拍下的羽绒睡袋还未付款~"),
        ("c-3", "【山野户外】王小明，您拍下的羽绒睡袋还未付款~"),
    ]


# ---- the record ---------------------------------------------------------------------

def test_every_decision_lands_in_the_message_log_with_outcome_and_reason(engine, store, clock):
    no_phone = event("evt-3", "order.created", 0, "c-3", "o-3", name="李雷")
    no_phone["order"].update({"amount": 88.0})
    ingest(engine,
           created("evt-0", -25 * 60, customer="c-0", order="o-0"),   # due a day ago: expired
           created("evt-1", 0, customer="c-1", order="o-1"),          # sent
           created("evt-2", 0, customer="c-2", order="o-2"),          # paid meanwhile: cancelled
           event("evt-2p", "order.paid", 15, "c-2", "o-2"),
           no_phone,                                                  # failed: no_contact
           created("evt-4", 10, customer="c-4", order="o-4"))         # not due yet
    clock.set(DUE)

    report = engine.dispatch()

    assert report.by_outcome == {"expired": 1, "sent": 1, "cancelled": 1, "failed": 1}
    logs = store.rows("message_log")
    assert sorted(decisions(store)) == [
        ("payment-reminder", "c-0", "expired", "expired"),
        ("payment-reminder", "c-1", "sent", None),
        ("payment-reminder", "c-2", "cancelled", "unless"),
        ("payment-reminder", "c-3", "failed", "no_contact"),
    ]
    messages = {m["id"]: m for m in store.rows("messages")}
    for log in logs:
        message = messages[log["message_id"]]
        assert (log["customer_id"], log["order_id"], log["channel"], log["kind"], log["time"]) == (
            message["customer_id"], message["order_id"], "sms", "service", DUE)
        assert (message["state"], message["reason"]) == (log["outcome"], log["reason"])
    assert states(store)["o-4"] == ("pending", None)


def test_a_message_is_never_dispatched_twice(engine, store, clock):
    ingest(engine, created("evt-1", customer="c-1", order="o-1"), created("evt-2", customer="c-2", order="o-2"),
           event("evt-3", "order.paid", 5, "c-2", "o-2"))
    clock.set(DUE)
    assert engine.dispatch().handled == 2

    again_now = engine.dispatch()
    clock.advance(timedelta(hours=1))
    assert engine.housekeeping() == 0  # nothing was left claimed
    an_hour_later = engine.dispatch()

    assert (again_now.handled, an_hour_later.handled) == (0, 0)
    assert sms(engine) == [("payment-reminder", "c-1", "o-1", "13800000000", REMINDER)]
    assert store.count("message_log") == 2


def test_replaying_the_events_after_sending_sends_nothing_again(engine, store, clock):
    events = [created("evt-1")]
    ingest(engine, *events)
    clock.set(DUE)
    engine.dispatch()

    ingest(engine, *events)
    clock.advance(timedelta(minutes=30))
    report = engine.dispatch()

    assert report.handled == 0
    assert len(sms(engine)) == 1


# ---- out-of-order events ------------------------------------------------------------

def test_a_late_shipped_event_still_sends_the_shipping_notice_with_carrier_and_tracking_number(engine, store, clock):
    ingest(engine, created("evt-1"), event("evt-2", "order.paid", 5), event("evt-4", "order.signed", 60 * 24))
    late_shipped = event("evt-3", "order.shipped", 60 * 20, data={"carrier": "顺丰", "tracking_no": "SF1234567890"})
    clock.set(T0 + timedelta(hours=24, minutes=5))
    ingest(engine, late_shipped)

    engine.dispatch()

    assert store.orders_by_id(["o-1"])["o-1"]["status"] == "signed"
    shipping = [row for row in sms(engine) if row[0] == "shipping-notice"]
    assert shipping == [("shipping-notice", "c-1", "o-1", "13800000000",
                         "【山野户外】王小明，您的羽绒睡袋已发货，顺丰单号SF1234567890，请留意查收。")]


# ---- catch-up after downtime ----------------------------------------------------------

def test_november_events_posted_in_december_send_nothing_stale(engine, store, clock):
    """The daemon was stopped for three weeks; the shop posts the backlog. The thank-you for
    a good review, the staff alert for a bad one ("call back within 24 hours") and the
    shipping notice are all long past their moment: each is expired, with how late it was,
    and nothing is sent."""
    signed = T0 - timedelta(days=3)
    ingest(engine,
           created("evt-1", 0, customer="c-1", order="o-1", start=signed),
           event("evt-2", "order.shipped", 1, "c-1", "o-1", start=signed, data={"carrier": "顺丰", "tracking_no": "SF1"}),
           event("evt-3", "order.reviewed", 3 * 1440, "c-1", "o-1", start=signed, data={"rating": "good"}),
           created("evt-4", 0, customer="c-2", order="o-2", start=signed),
           event("evt-5", "order.reviewed", 3 * 1440, "c-2", "o-2", start=signed, data={"rating": "bad"}))
    clock.set(T0 + timedelta(days=21))

    engine.dispatch()

    outcomes = {(r["rule_id"], r["customer_id"]): (r["outcome"], r["detail"]) for r in store.rows("message_log")}
    assert [m for ch in engine.channels.values() if hasattr(ch, "sent") for m in ch.sent] == []
    assert outcomes[("good-review-thanks", "c-1")][0] == "expired"
    assert outcomes[("bad-review-alert", "c-2")] == (
        "expired", "could not be sent within 12h of its due time (21 d 0 h late)")
    assert outcomes[("shipping-notice", "c-1")][0] == "expired"
    assert {o for o, _ in outcomes.values()} == {"expired"}  # the unpaid orders' payment reminders too (24h)


# ---- the send threads belong to the engine -------------------------------------------

def test_each_engine_owns_its_send_threads_and_closing_it_ends_them(project, db_url, clock):
    """No pool shared between engines (a test's engine, a reload, the dry-run): each has
    its own, and close() waits for the sends in hand, then ends its threads."""
    import threading  # noqa: PLC0415

    first = Engine(project, Store(db_url), recording_channels(project), clock)
    second = Engine(project, Store(db_url), recording_channels(project), clock)
    assert first.senders is not second.senders
    assert first.dispatcher.senders is first.senders
    started = threading.Event()

    def slow_send():
        started.set()
        threading.Event().wait(0.2)
        return "sent"

    pending = first.senders.submit(slow_send)
    started.wait(5)
    threads = {t for t in threading.enumerate() if t.name.startswith("send")}
    assert threads
    first.close()
    assert pending.done() and pending.result() == "sent"  # the send in hand finished first
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(RuntimeError):
        first.senders.submit(slow_send)
    assert second.senders.submit(lambda: 42).result() == 42  # the other engine is untouched
    second.close()
