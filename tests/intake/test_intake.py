"""Ingest: events are stored once, customers and orders follow them, and the rules they
match are scheduled (each at most once per its dedup key). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.app import Engine, load_project
from engine.cli import _read_lines
from engine.dryrun.replay import read_events
from engine.intake.events import parse_event
from tests.conftest import recording_channels
from tests.helpers import T0, created, event, jsonl

UTC = timezone.utc


def ingest(engine: Engine, *events: dict):
    tz = engine.project.config.timezone
    return engine.ingest([parse_event(e, tz) for e in events])


def messages(store) -> list[tuple]:
    return [(m["rule_id"], m["dedup_key"], m["customer_id"], m["order_id"], m["due_at"], m["state"])
            for m in store.rows("messages")]


def decisions(store) -> list[tuple]:
    return [(r["rule_id"], r["customer_id"], r["order_id"], r["outcome"], r["reason"], r["detail"])
            for r in store.rows("message_log")]


def shipped(eid: str, minutes: float, order: str = "o-1", customer: str = "c-1", **data) -> dict:
    return event(eid, "order.shipped", minutes, customer, order, data=data or None)


# ---- state --------------------------------------------------------------------------

def test_ingest_stores_each_event_and_merges_customer_and_order_state(engine, store):
    report = ingest(engine,
                    created("evt-1", customer="c-1", order="o-1", amount=199.0),
                    event("evt-2", "order.paid", 5, "c-1", "o-1"))  # later events may carry only the ids

    assert (report.accepted, report.duplicates) == (2, 0)
    assert [(e["id"], e["type"], e["time"], e["customer_id"], e["order_id"]) for e in store.rows("events")] == [
        ("evt-1", "order.created", T0, "c-1", "o-1"),
        ("evt-2", "order.paid", T0 + timedelta(minutes=5), "c-1", "o-1"),
    ]
    customer = store.customers_by_id(["c-1"])["c-1"]
    assert (customer["name"], customer["phone"], customer["first_seen_at"]) == ("王小明", "13800000000", T0)
    order = store.orders_by_id(["o-1"])["o-1"]
    assert (order["customer_id"], order["status"], order["amount"]) == ("c-1", "paid", 199.0)
    assert order["items"] == [{"sku": "SB-01", "name": "羽绒睡袋", "qty": 1, "price": 199.0}]
    assert (order["created_at"], order["paid_at"], order["shipped_at"]) == (T0, T0 + timedelta(minutes=5), None)


def test_an_event_time_without_offset_is_in_the_shop_time_zone(engine, store):
    ev = created("evt-1")
    ev["time"] = "2026-11-11T10:00:00"  # config.yaml: Asia/Shanghai

    ingest(engine, ev)

    assert store.rows("events")[0]["time"] == datetime(2026, 11, 11, 2, 0, tzinfo=UTC)
    assert messages(store)[0][4] == datetime(2026, 11, 11, 2, 30, tzinfo=UTC)


# ---- scheduling ---------------------------------------------------------------------

def test_the_payment_reminder_is_scheduled_30_minutes_after_the_order_is_created(engine, store, clock):
    report = ingest(engine, created("evt-1", customer="c-1", order="o-1"))

    due = T0 + timedelta(minutes=30)
    assert report.scheduled == [("c-1", due)]
    [m] = store.rows("messages")
    assert {k: m[k] for k in ("rule_id", "dedup_key", "customer_id", "order_id", "event_id", "channel", "kind",
                              "due_at", "expires_at", "state", "attempts", "created_at")} == {
        "rule_id": "payment-reminder", "dedup_key": "order:o-1", "customer_id": "c-1", "order_id": "o-1",
        "event_id": "evt-1", "channel": "sms", "kind": "service", "due_at": due,
        "expires_at": due + timedelta(hours=24), "state": "pending", "attempts": 0, "created_at": clock.now(),
    }
    assert store.count("message_log") == 0


@pytest.mark.parametrize("amount, scheduled", [
    (19.99, False),
    (20.0, True),
    (1299.0, True),
], ids=["below-20-not-reminded", "exactly-20-reminded", "large-order-reminded"])
def test_the_if_condition_decides_whether_anything_is_scheduled(engine, store, amount, scheduled):
    report = ingest(engine, created("evt-1", amount=amount))

    assert (store.count("messages"), len(report.scheduled)) == ((1, 1) if scheduled else (0, 0))
    assert (report.failed, report.suppressed) == (0, 0)
    assert store.count("message_log") == 0  # a rule that does not apply is not a decision


def test_replaying_the_same_file_schedules_nothing_new(engine, store, project, tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text(jsonl([
        created("evt-1", customer="c-1", order="o-1"),
        created("evt-2", 3, customer="c-2", order="o-2"),
        event("evt-3", "order.paid", 4, "c-2", "o-2"),
        shipped("evt-4", 60, order="o-2", customer="c-2", carrier="顺丰", tracking_no="SF100"),
    ]), encoding="utf-8")

    def load():
        events, rejected = read_events(enumerate(path.read_text(encoding="utf-8").split("\n"), 1), project)
        assert rejected == []
        return engine.ingest(events)

    first = load()
    before = (messages(store), decisions(store), store.count("events"))
    second = load()

    # two payment reminders, the 30-day honeymoon note of c-2's first paid order, then the
    # shipping notice and the 72 h logistics watch of o-2
    assert (first.accepted, first.duplicates, len(first.scheduled), first.suppressed) == (4, 0, 5, 0)
    assert (second.accepted, second.duplicates, second.scheduled, second.suppressed) == (0, 4, [], 0)
    assert (messages(store), decisions(store), store.count("events")) == before


def test_the_same_event_id_twice_in_one_file_is_stored_once(engine, store):
    report = ingest(engine, created("evt-1"), created("evt-1"))

    assert (report.accepted, report.duplicates, len(report.scheduled)) == (1, 1, 1)
    assert store.count("events") == 1


@pytest.mark.parametrize("together", [True, False], ids=["same-file", "later-file"])
def test_once_per_order_a_second_matching_event_is_suppressed_as_duplicate(engine, store, together):
    first = shipped("evt-1", 0, carrier="顺丰", tracking_no="SF100")
    second = shipped("evt-2", 90, carrier="中通", tracking_no="ZT200")  # re-shipped: new event id, same order
    if together:
        report = ingest(engine, first, second)
    else:
        ingest(engine, first)
        report = ingest(engine, second)

    assert report.suppressed == 2  # both order.shipped rules already fired for o-1
    assert sorted(messages(store)) == [
        ("logistics-stuck", "order:o-1", "c-1", "o-1", T0 + timedelta(hours=72), "pending"),
        ("shipping-notice", "order:o-1", "c-1", "o-1", T0, "pending"),
    ]
    assert [m["event_id"] for m in store.rows("messages")] == ["evt-1", "evt-1"]
    assert sorted(decisions(store)) == [
        ("logistics-stuck", "c-1", "o-1", "suppressed", "duplicate",
         "rule logistics-stuck already fired once for order o-1 (once_per: order)"),
        ("shipping-notice", "c-1", "o-1", "suppressed", "duplicate",
         "rule shipping-notice already fired once for order o-1 (once_per: order)"),
    ]


def test_once_per_order_still_fires_for_another_order_of_the_same_customer(engine, store):
    ingest(engine, created("evt-1", order="o-1"), created("evt-2", 1, order="o-2"))

    assert [m[1] for m in messages(store)] == ["order:o-1", "order:o-2"]
    assert store.count("message_log") == 0


# ---- expression errors --------------------------------------------------------------

EXTRA_RULE = """\
rules:
  - id: new-order-staff
    name: 新订单通知客服
    kind: service
    when: order.created
    if: "order.amount * 100 >= 2000"   # computing with a value that is not there is an error
    channel: staff
    template: new_order.staff.j2
    once_per: order
"""


def test_an_expression_error_fails_that_rule_for_that_event_and_the_rest_still_schedule(workdir, store, clock):
    (workdir / "rules" / "staff.yaml").write_text(EXTRA_RULE, encoding="utf-8")
    (workdir / "templates" / "new_order.staff.j2").write_text("新订单 {{ order.id }}", encoding="utf-8")
    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")
    assert project.errors == []
    engine = Engine(project, store, recording_channels(project), clock)
    no_amount = event("evt-1", "order.created", 0, "c-1", "o-1", name="王小明", phone="13800000000")

    report = ingest(engine, no_amount, created("evt-2", 2, customer="c-2", order="o-2"))

    assert report.failed == 1
    assert sorted((m[0], m[1]) for m in messages(store)) == [
        ("new-order-staff", "order:o-2"),
        ("payment-reminder", "order:o-2"),  # order.amount >= 20 is false for o-1: it has no amount
    ]
    assert decisions(store) == [
        ("new-order-staff", "c-1", "o-1", "failed", "expression_error",
         "rule new-order-staff: expression 'order.amount * 100 >= 2000': order.amount is missing "
         "(add | default('...') or check 'is defined')"),
    ]
    assert store.count("events") == 2


# ---- out-of-order events ------------------------------------------------------------

def test_a_shipped_event_arriving_after_the_signed_one_keeps_the_order_signed_and_still_schedules(engine, store):
    ingest(engine, created("evt-1"), event("evt-2", "order.paid", 5))
    ingest(engine, event("evt-4", "order.signed", 2 * 24 * 60))
    report = ingest(engine, shipped("evt-3", 24 * 60, carrier="顺丰", tracking_no="SF100"))  # late by a day

    order = store.orders_by_id(["o-1"])["o-1"]
    assert order["status"] == "signed"
    assert (order["shipped_at"], order["signed_at"]) == (T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert sorted(report.scheduled) == [("c-1", T0 + timedelta(days=1)), ("c-1", T0 + timedelta(days=4))]
    shipping = [m for m in messages(store) if m[0] == "shipping-notice"]
    assert shipping == [("shipping-notice", "order:o-1", "c-1", "o-1", T0 + timedelta(days=1), "pending")]


# ---- malformed input ----------------------------------------------------------------

def test_a_line_that_is_not_utf8_is_rejected_with_an_encoding_reason(project, tmp_path):
    source = tmp_path / "orders.jsonl"
    source.write_bytes(jsonl([created("evt-1")]).encode("utf-8")
                       + '{"id": "evt-2", "type": "order.paid", "customer": {"id": "c-1", "name": "王'.encode("gbk")
                       + b'"}}\n')

    events, rejected = read_events(_read_lines(str(source)), project)

    assert [e.id for e in events] == ["evt-1"]
    assert [r.line for r in rejected] == [2]
    assert "UTF-8" in rejected[0].reason
