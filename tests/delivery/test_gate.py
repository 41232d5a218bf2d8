"""The anti-spam gate, end to end: events go in through Engine.ingest, messages come out
of Engine.dispatch, and every held-back message has a record in the message log with
an outcome, a stable reason and a detail sentence naming the limit and what hit it.

Each scenario runs on SQLite and PostgreSQL (the `store` fixture) and, where it says
`mode`, twice more: as the daemon does it (`real`: the clock walks to each event and
each due time and dispatches there) and as the dry-run does it (`virtual`: each message
is decided at its own due time). Both must write the same log.

The shop is in Asia/Shanghai; times below are shop time unless a test says otherwise."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from engine.app import Engine, load_project
from engine.channels import Channel, Outbound, SendError
from engine.clock import VirtualClock
from engine.dryrun.replay import run_dry
from engine.intake.events import Event, parse_event
from tests.conftest import recording_channels

SHANGHAI = ZoneInfo("Asia/Shanghai")
EPOCH = datetime(2026, 10, 1, tzinfo=timezone.utc)  # the virtual clock starts well before every scenario
PHONE = "13800000000"

LIMITS = {
    "marketing": {"per_customer": ["1/1d", "3/7d"], "quiet_hours": "21:00-09:00"},
    "service": {"per_customer": ["6/1d"], "quiet_hours": "23:00-07:00"},
    "channels": {"sms": {"per_customer": ["2/1d"]}},
    "max_deferral": "1d",
}

CONFIG = {
    "timezone": "Asia/Shanghai",
    "shop": {"name": "山野户外旗舰店", "signature": "【山野户外】"},
    "channels": {
        "sms": {"type": "recording", "contact": "phone", "sms": {"signature": "【山野户外】", "unsubscribe": "回T退订"}},
        "email": {"type": "recording", "contact": "email"},
        "flaky": {"type": "recording", "contact": "phone"},  # bound to a failing provider where a test says so
        "staff": {"type": "log"},
    },
    "dispatch": {"retry": {"attempts": 1}},  # a failed send fails at once here (retries: tests/test_retries.py)
}

TEMPLATES = {
    "promo.j2": "{{ customer.name | default('亲') }}，双11全场5折，点击 s.example.com/11 领券",
    "promo_signed.j2": "【山野户外】{{ customer.name | default('亲') }}，双11全场5折，回T退订",
    "notice.j2": "{{ customer.name | default('亲') }}，您的订单{{ order.id }}已发货",
    "alert.j2": "客户 {{ customer.id }} 需要跟进",
    "broken.j2": "{{ customer.name }}，您的券 {{ data.coupon_id }} 即将到期",  # coupon events here have no data
}

PROMO = "【山野户外】王小明，双11全场5折，点击 s.example.com/11 领券回T退订"
NOTICE = "【山野户外】王小明，您的订单{order}已发货"


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A shop-time moment in 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


def shown(t: datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%m-%d %H:%M")


# ---- building an engine for a scenario ------------------------------------------------

def rule(rule_id: str, when: str = "coupon.issued", *, kind: str = "marketing", channel: str = "sms",
         template: str = "promo.j2", **keys) -> dict:
    return {"id": rule_id, "kind": kind, "when": when, "channel": channel, "template": template, **keys}


COUPON = rule("coupon-reminder")
SHIPPING = rule("shipping-notice", "order.shipped", kind="service", template="notice.j2", once_per="order")


class FailingChannel(Channel):
    """A provider that is down: every send raises SendError (a real channel, not a mock)."""

    type_name = "failing"

    def send(self, message: Outbound) -> None:
        raise SendError("provider timeout")


@pytest.fixture
def build(tmp_path, store):
    """build(rules, limits=...) -> an Engine on the test's database with recording channels
    (a channel named in `failing` raises SendError on every send)."""
    engines: list[Engine] = []

    def build(rules: list[dict], limits: dict | None = None, *, failing: tuple[str, ...] = ()) -> Engine:
        folder = tmp_path / f"project-{len(engines)}"
        (folder / "rules").mkdir(parents=True)
        (folder / "templates").mkdir()
        config = {**CONFIG, "limits": LIMITS if limits is None else limits}
        _dump(folder / "config.yaml", config)
        _dump(folder / "rules" / "gate.yaml", {"rules": rules})
        for name, text in TEMPLATES.items():
            (folder / "templates" / name).write_text(text, encoding="utf-8")
        project = load_project(folder / "config.yaml", folder / "rules", folder / "templates")
        assert [str(p) for p in project.problems] == []
        channels = recording_channels(project)
        for name in failing:
            channels[name] = FailingChannel(name, dict(CONFIG["channels"][name]), folder)
        engine = Engine(project, store, channels, VirtualClock(EPOCH))
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        for channel in engine.channels.values():
            channel.close()


def _dump(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def ev(eid: str, etype: str, when: datetime, customer: str = "c-1", order: str | None = None,
       data: dict | None = None, **profile) -> Event:
    cust = {"id": customer, "name": "王小明", "phone": PHONE, **profile}
    raw = {"id": eid, "type": etype, "time": when.isoformat(), "customer": cust, "data": data or {}}
    if order is not None or etype.startswith("order."):
        raw["order"] = {"id": order or f"o-{eid}"}
    return parse_event(raw, SHANGHAI)


def coupon(eid: str, when: datetime, customer: str = "c-1", **profile) -> Event:
    return ev(eid, "coupon.issued", when, customer, **profile)


def shipped(eid: str, when: datetime, order: str, customer: str = "c-1") -> Event:
    return ev(eid, "order.shipped", when, customer, order)


# ---- running a scenario -------------------------------------------------------------

@pytest.fixture(params=["real", "virtual"])
def mode(request):
    return request.param


def play(engine: Engine, mode: str, events: list[Event], until: datetime) -> None:
    """Feed the events in time order and dispatch everything due up to `until`. As in
    the dry-run, what is due at a moment is decided before that moment's events arrive.

    real: the daemon. The clock walks to each event time and each due time and the
    engine dispatches there (and once more after ingesting, for messages due at once).
    virtual: the dry-run. Before each event, everything due by then is dispatched with
    the virtual clock, each message at its own due time."""
    events = sorted(events, key=lambda e: e.time)
    if mode == "virtual":
        for event in events:
            engine.dispatch(event.time, virtual=True)
            engine.ingest([event], virtual=True)
        engine.dispatch(until, virtual=True)
        return
    for _ in range(10_000):
        moments = [e.time for e in events[:1]]
        due = engine.store.next_due_at()
        if due is not None and due <= until:
            moments.append(due)
        if not moments:
            return
        now = min(moments)
        engine.clock.set(now)
        engine.dispatch()
        arrived = [e for e in events if e.time <= now]
        events = events[len(arrived):]
        if arrived:
            engine.ingest(arrived)
            engine.dispatch()
    raise AssertionError("the scenario did not settle")


def log(engine: Engine) -> list[tuple]:
    """The message log: (shop time, rule, customer, outcome, reason, detail), in time order
    (decisions of one moment by customer, then rule)."""
    rows = sorted(engine.store.rows("message_log"),
                  key=lambda r: (r["time"], r["customer_id"], r["rule_id"], r["id"]))
    return [(shown(r["time"]), r["rule_id"], r["customer_id"], r["outcome"], r["reason"], r["detail"])
            for r in rows]


def sent(engine: Engine) -> list[tuple]:
    """What the channels got: (shop time, channel, rule, customer)."""
    out = [(m.time, m.channel, m.rule_id, m.customer_id)
           for ch in engine.channels.values() if hasattr(ch, "sent") for m in ch.sent]
    return [(shown(t), *rest) for t, *rest in sorted(out)]


def states(engine: Engine) -> list[tuple]:
    return [(m["rule_id"], m["customer_id"], m["state"], m["reason"]) for m in engine.store.rows("messages")]


# ---- frequency caps: marketing -------------------------------------------------------

def test_marketing_caps_count_only_marketing_messages_actually_sent(build, mode):
    engine = build([
        rule("review-thanks", "order.reviewed", unless="order.rating == 'bad'"),
        rule("newsletter", "customer.updated", channel="email"),
        COUPON,
    ])

    play(engine, mode, [
        ev("e1", "order.reviewed", at(11, 10, 0), order="o-1", data={"rating": "bad"}),  # cancelled
        ev("e2", "customer.updated", at(11, 10, 30)),                                     # no e-mail address
        coupon("e3", at(11, 11, 0)),                                                      # the first sent
        coupon("e4", at(11, 12, 0)),
    ], until=at(11, 13))

    assert log(engine) == [
        ("11-11 10:00", "review-thanks", "c-1", "cancelled", "unless",
         "true at send time: order.rating == 'bad'"),
        ("11-11 10:30", "newsletter", "c-1", "failed", "no_contact", "customer c-1 has no email for channel email"),
        ("11-11 11:00", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 12:00", "coupon-reminder", "c-1", "suppressed", "cap",
         "marketing cap 1/1d reached: sent 2026-11-11 11:00 (coupon-reminder)"),
    ]
    assert sent(engine) == [("11-11 11:00", "sms", "coupon-reminder", "c-1")]


@pytest.mark.parametrize(("sends", "last", "outcome", "reason", "detail"), [
    pytest.param([at(11, 10)], at(12, 9, 59), "suppressed", "cap",
                 "marketing cap 1/1d reached: sent 2026-11-11 10:00 (coupon-reminder)",
                 id="1/1d-a-minute-short-of-a-day-still-counts"),
    pytest.param([at(11, 10)], at(12, 10), "sent", None, None,
                 id="1/1d-sent-exactly-one-day-ago-no-longer-counts"),
    pytest.param([at(11, 10), at(12, 10), at(13, 10)], at(17, 10), "suppressed", "cap",
                 "marketing cap 3/7d reached: sent 2026-11-11 10:00 (coupon-reminder), "
                 "2026-11-12 10:00 (coupon-reminder), 2026-11-13 10:00 (coupon-reminder)",
                 id="3/7d-fourth-in-a-week"),
    pytest.param([at(11, 10), at(12, 10), at(13, 10)], at(18, 9, 59), "suppressed", "cap",
                 "marketing cap 3/7d reached: sent 2026-11-11 10:00 (coupon-reminder), "
                 "2026-11-12 10:00 (coupon-reminder), 2026-11-13 10:00 (coupon-reminder)",
                 id="3/7d-a-minute-short-of-seven-days-still-counts"),
    pytest.param([at(11, 10), at(12, 10), at(13, 10)], at(18, 10), "sent", None, None,
                 id="3/7d-first-sent-exactly-seven-days-ago-no-longer-counts"),
])
def test_caps_are_rolling_windows_and_a_send_exactly_one_window_ago_no_longer_counts(
        build, mode, sends, last, outcome, reason, detail):
    engine = build([COUPON])
    events = [coupon(f"e{i}", t) for i, t in enumerate(sends)] + [coupon("last", last)]

    play(engine, mode, events, until=last)

    assert log(engine)[:len(sends)] == [(shown(t), "coupon-reminder", "c-1", "sent", None, None) for t in sends]
    assert log(engine)[len(sends):] == [(shown(last), "coupon-reminder", "c-1", outcome, reason, detail)]


def test_caps_are_per_customer(build, mode):
    engine = build([COUPON])

    play(engine, mode, [coupon("e1", at(11, 10), "c-1"), coupon("e2", at(11, 10), "c-2"),
                        coupon("e3", at(11, 11), "c-1")], until=at(11, 12))

    assert [(r[0], r[2], r[3], r[4]) for r in log(engine)] == [
        ("11-11 10:00", "c-1", "sent", None),
        ("11-11 10:00", "c-2", "sent", None),
        ("11-11 11:00", "c-1", "suppressed", "cap"),
    ]


def test_the_per_channel_marketing_cap_holds_that_channel_only(build, mode):
    limits = {**LIMITS, "marketing": {"per_customer": ["5/1d"], "quiet_hours": "21:00-09:00"},
              "channels": {"sms": {"per_customer": ["2/1d"]}}}
    engine = build([COUPON, rule("newsletter", "customer.updated", channel="email"), SHIPPING], limits)

    play(engine, mode, [
        coupon("e1", at(11, 10, 0)),
        coupon("e2", at(11, 10, 10)),
        coupon("e3", at(11, 10, 20)),
        ev("e4", "customer.updated", at(11, 10, 30), email="x@example.com"),
        shipped("e5", at(11, 10, 40), "o-1"),
    ], until=at(11, 12))

    assert log(engine) == [
        ("11-11 10:00", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 10:10", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 10:20", "coupon-reminder", "c-1", "suppressed", "cap",
         "sms marketing cap 2/1d reached: sent 2026-11-11 10:00 (coupon-reminder), "
         "2026-11-11 10:10 (coupon-reminder)"),
        ("11-11 10:30", "newsletter", "c-1", "sent", None, None),
        ("11-11 10:40", "shipping-notice", "c-1", "sent", None, None),
    ]


# ---- service messages and staff alerts -----------------------------------------------

def test_a_marketing_flood_never_blocks_a_shipping_notice_and_service_never_counts_as_marketing(build, mode):
    engine = build([COUPON, rule("flash-sale", "customer.updated"), SHIPPING])
    flood = [coupon(f"m{i}", at(11, 10, 5 + i)) for i in range(5)] + \
            [ev(f"u{i}", "customer.updated", at(11, 10, 5 + i) + timedelta(seconds=30)) for i in range(5)]

    play(engine, mode, [shipped("s1", at(11, 10, 0), "o-1"), *flood, shipped("s2", at(11, 10, 30), "o-2")],
         until=at(11, 12))

    held = [r for r in log(engine) if r[3] != "sent"]
    assert [r for r in log(engine) if r[3] == "sent"] == [
        ("11-11 10:00", "shipping-notice", "c-1", "sent", None, None),
        ("11-11 10:05", "coupon-reminder", "c-1", "sent", None, None),  # the notice did not use the cap
        ("11-11 10:30", "shipping-notice", "c-1", "sent", None, None),
    ]
    assert len(held) == 9
    assert {(r[3], r[4], r[5]) for r in held} == {
        ("suppressed", "cap", "marketing cap 1/1d reached: sent 2026-11-11 10:05 (coupon-reminder)")}


def test_service_messages_have_their_own_cap(build, mode):
    engine = build([SHIPPING])

    play(engine, mode, [shipped(f"s{i}", at(11, 10, i), f"o-{i}") for i in range(7)], until=at(11, 12))

    assert log(engine)[:6] == [(f"11-11 10:0{i}", "shipping-notice", "c-1", "sent", None, None) for i in range(6)]
    assert log(engine)[6:] == [
        ("11-11 10:06", "shipping-notice", "c-1", "suppressed", "cap",
         "service cap 6/1d reached: sent 2026-11-11 10:03 (shipping-notice), 2026-11-11 10:04 (shipping-notice), "
         "2026-11-11 10:05 (shipping-notice) and 3 more"),
    ]


def test_staff_alerts_are_never_counted_and_never_held_by_quiet_hours(build, mode):
    engine = build([
        rule("bad-review-alert", "order.reviewed", channel="staff", template="alert.j2", to="staff"),  # kind: marketing
        rule("stuck-alert", "order.shipped", kind="service", channel="staff", template="alert.j2", to="staff"),
        COUPON,
    ])
    alerts = [ev(f"r{i}", "order.reviewed", at(11, 9, 10 + i), order=f"o-{i}") for i in range(8)]

    play(engine, mode, [
        *alerts,
        coupon("e1", at(11, 10)),                                   # 8 alerts before it: still sent
        ev("late1", "order.reviewed", at(11, 23, 30), order="o-8"),  # inside both quiet hours
        ev("late2", "order.shipped", at(11, 23, 40), order="o-9"),
        ev("unsub", "customer.unsubscribed", at(11, 23, 45)),
        ev("late3", "order.reviewed", at(11, 23, 50), order="o-10"),  # the customer unsubscribed: staff still told
    ], until=at(12, 12))

    assert log(engine) == [
        *[(f"11-11 09:1{i}", "bad-review-alert", "c-1", "sent", None, None) for i in range(8)],
        ("11-11 10:00", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 23:30", "bad-review-alert", "c-1", "sent", None, None),
        ("11-11 23:40", "stuck-alert", "c-1", "sent", None, None),
        ("11-11 23:50", "bad-review-alert", "c-1", "sent", None, None),
    ]
    assert engine.store.count("sends", kind="marketing") == 1
    assert engine.store.count("sends", channel="staff") == 0


# ---- cooldown -----------------------------------------------------------------------

def test_a_cooldown_keeps_one_rule_from_the_same_customer_and_names_the_last_send(build, mode):
    limits = {**LIMITS, "marketing": {"per_customer": [], "quiet_hours": "21:00-09:00"}, "channels": {}}
    engine = build([rule("coupon-reminder", cooldown="30d"), rule("flash-sale", "customer.updated")], limits)

    play(engine, mode, [
        coupon("e1", at(11, 10)),
        coupon("e2", at(12, 10)),
        ev("e3", "customer.updated", at(12, 11)),         # another rule: not held by this cooldown
        coupon("e4", at(12, 12), customer="c-2"),          # another customer: neither
        coupon("e5", at(11, 9, 59, month=12)),              # a minute short of 30 days
        coupon("e6", at(11, 10, month=12)),                 # exactly 30 days after the send
    ], until=at(11, 12, month=12))

    cooldown = "cooldown 30d: coupon-reminder was sent to this customer 2026-11-11 10:00"
    assert log(engine) == [
        ("11-11 10:00", "coupon-reminder", "c-1", "sent", None, None),
        ("11-12 10:00", "coupon-reminder", "c-1", "suppressed", "cooldown", cooldown),
        ("11-12 11:00", "flash-sale", "c-1", "sent", None, None),
        ("11-12 12:00", "coupon-reminder", "c-2", "sent", None, None),
        ("12-11 09:59", "coupon-reminder", "c-1", "suppressed", "cooldown", cooldown),
        ("12-11 10:00", "coupon-reminder", "c-1", "sent", None, None),
    ]


# ---- quiet hours and send windows ----------------------------------------------------

def test_quiet_hours_defer_a_marketing_message_to_09_00_and_it_is_sent_then(build, mode):
    engine = build([COUPON])

    play(engine, mode, [coupon("e1", at(11, 22, 30))], until=at(12, 12))

    assert log(engine) == [
        ("11-11 22:30", "coupon-reminder", "c-1", "deferred", "quiet_hours",
         "quiet hours 21:00-09:00 (Asia/Shanghai); deferred to 2026-11-12 09:00"),
        ("11-12 09:00", "coupon-reminder", "c-1", "sent", None, None),
    ]
    assert sent(engine) == [("11-12 09:00", "sms", "coupon-reminder", "c-1")]
    assert states(engine) == [("coupon-reminder", "c-1", "sent", None)]


def test_a_deferred_message_waits_in_the_queue_with_its_new_due_time(build):
    engine = build([COUPON])
    engine.clock.set(at(11, 22, 30))
    engine.ingest([coupon("e1", at(11, 22, 30))])

    report = engine.dispatch()

    assert report.by_outcome == {"deferred": 1}
    assert report.rescheduled == [("c-1", at(12, 9))]
    [message] = engine.store.rows("messages")
    assert (message["state"], message["reason"], message["due_at"]) == ("pending", "quiet_hours", at(12, 9))
    assert message["detail"] == "quiet hours 21:00-09:00 (Asia/Shanghai); deferred to 2026-11-12 09:00"
    assert sent(engine) == []

    engine.clock.set(at(12, 8, 59))
    assert engine.dispatch().handled == 0
    engine.clock.set(at(12, 9))
    assert engine.dispatch().by_outcome == {"sent": 1}


def test_service_messages_have_their_own_quiet_hours(build, mode):
    engine = build([SHIPPING])

    play(engine, mode, [shipped("s1", at(11, 22, 30), "o-1"), shipped("s2", at(11, 23, 30), "o-2")],
         until=at(12, 12))

    assert log(engine) == [
        ("11-11 22:30", "shipping-notice", "c-1", "sent", None, None),
        ("11-11 23:30", "shipping-notice", "c-1", "deferred", "quiet_hours",
         "quiet hours 23:00-07:00 (Asia/Shanghai); deferred to 2026-11-12 07:00"),
        ("11-12 07:00", "shipping-notice", "c-1", "sent", None, None),
    ]


def test_quiet_hours_are_the_customers_own_when_the_profile_has_a_time_zone(build, mode):
    engine = build([COUPON])

    play(engine, mode, [
        coupon("e1", at(11, 14), customer="c-la", timezone="America/Los_Angeles"),  # 22:00 in Los Angeles
        coupon("e2", at(11, 23), customer="c-la2", timezone="America/Los_Angeles"),  # 07:00 there
        coupon("e3", at(11, 14), customer="c-sh"),                                   # 14:00 in Shanghai
    ], until=at(13, 12))

    assert log(engine) == [
        ("11-11 14:00", "coupon-reminder", "c-la", "deferred", "quiet_hours",
         "quiet hours 21:00-09:00 (America/Los_Angeles); deferred to 2026-11-12 01:00 (09:00 in America/Los_Angeles)"),
        ("11-11 14:00", "coupon-reminder", "c-sh", "sent", None, None),
        ("11-11 23:00", "coupon-reminder", "c-la2", "deferred", "quiet_hours",
         "quiet hours 21:00-09:00 (America/Los_Angeles); deferred to 2026-11-12 01:00 (09:00 in America/Los_Angeles)"),
        ("11-12 01:00", "coupon-reminder", "c-la", "sent", None, None),   # 09:00 in Los Angeles
        ("11-12 01:00", "coupon-reminder", "c-la2", "sent", None, None),
    ]


def test_a_deferral_past_the_expiry_drops_the_message_as_expired(build, mode):
    engine = build([rule("coupon-reminder", expires="2h")])

    play(engine, mode, [coupon("e1", at(11, 22))], until=at(12, 12))

    assert log(engine) == [
        ("11-11 22:00", "coupon-reminder", "c-1", "expired", "expired",
         "quiet hours 21:00-09:00 (Asia/Shanghai); it could go only at 2026-11-12 09:00, past its expiry"),
    ]
    assert states(engine) == [("coupon-reminder", "c-1", "expired", "expired")]
    assert sent(engine) == []


def test_without_expires_a_deferral_past_the_longest_deferral_expires(build, mode):
    engine = build([COUPON], {**LIMITS, "max_deferral": "6h"})

    play(engine, mode, [coupon("e1", at(11, 22))], until=at(12, 12))

    assert log(engine) == [
        ("11-11 22:00", "coupon-reminder", "c-1", "expired", "expired",
         "quiet hours 21:00-09:00 (Asia/Shanghai); it could go only at 2026-11-12 09:00, "
         "past the longest deferral (6h)"),
    ]


@pytest.mark.parametrize(("event_at", "decisions"), [
    pytest.param(at(11, 9, 30), [
        ("11-11 09:30", "deferred", "window", "send window 10:00-20:00 (Asia/Shanghai); deferred to 2026-11-11 10:00"),
        ("11-11 10:00", "sent", None, None)], id="morning-waits-for-the-window"),
    pytest.param(at(11, 15), [("11-11 15:00", "sent", None, None)], id="inside-the-window-sent"),
    pytest.param(at(11, 20, 30), [
        ("11-11 20:30", "deferred", "window", "send window 10:00-20:00 (Asia/Shanghai); deferred to 2026-11-12 10:00"),
        ("11-12 10:00", "sent", None, None)], id="evening-waits-for-tomorrows-window"),
    pytest.param(at(11, 22), [
        ("11-11 22:00", "deferred", "quiet_hours",
         "quiet hours 21:00-09:00 (Asia/Shanghai); deferred to 2026-11-12 10:00"),
        ("11-12 10:00", "sent", None, None)], id="quiet-hours-and-window-the-later-end"),
])
def test_a_rule_window_defers_to_its_next_opening(build, mode, event_at, decisions):
    engine = build([rule("coupon-reminder", window="10:00-20:00")])

    play(engine, mode, [coupon("e1", event_at)], until=at(13, 12))

    assert [(r[0], r[3], r[4], r[5]) for r in log(engine)] == decisions


def test_a_window_wholly_inside_quiet_hours_suppresses_the_message(build, mode):
    engine = build([rule("coupon-reminder", window="22:00-23:00")])

    play(engine, mode, [coupon("e1", at(11, 15))], until=at(13, 12))

    assert log(engine) == [
        ("11-11 15:00", "coupon-reminder", "c-1", "suppressed", "window",
         "send window 22:00-23:00 lies wholly inside quiet hours 21:00-09:00"),
    ]


def test_the_deferred_flood_at_09_00_is_released_no_faster_than_the_channel_rate(build, mode):
    engine = build([COUPON], {**LIMITS, "channels": {"sms": {"rate": "2/s"}}})

    play(engine, mode, [coupon(f"e{i}", at(11, 22), customer=f"c-{i}") for i in range(5)], until=at(12, 12))

    assert [r[3:5] for r in log(engine)] == [("deferred", "quiet_hours")] * 5 + [("sent", None)] * 5
    assert sorted((m.time.astimezone(SHANGHAI).strftime("%H:%M:%S"), m.customer_id)
                  for m in engine.channels["sms"].sent) == [
        ("09:00:00", "c-0"), ("09:00:00", "c-1"), ("09:00:01", "c-2"), ("09:00:01", "c-3"), ("09:00:02", "c-4")]


def test_a_flood_released_over_many_batches_is_paced_once_per_message_and_never_above_the_rate(build, mode):
    engine = build([COUPON], {**LIMITS, "channels": {"sms": {"rate": "2/s"}}})
    engine.dispatcher.batch_size = 3  # the flood spans many claims, each judged in its own transaction
    judged: dict[int, int] = {}
    first_check = engine.dispatcher.gate.time_windows  # the gate's first question, each time a message is judged

    def counting(candidate):
        judged[candidate.message["id"]] = judged.get(candidate.message["id"], 0) + 1
        return first_check(candidate)

    engine.dispatcher.gate.time_windows = counting

    play(engine, mode, [coupon(f"e{i:02}", at(11, 22), customer=f"c-{i:02}") for i in range(12)], until=at(12, 12))

    times = sorted(m.time for m in engine.channels["sms"].sent)
    assert [t.astimezone(SHANGHAI).strftime("%H:%M:%S") for t in times] == [
        f"09:00:0{s}" for s in range(6) for _ in range(2)]
    assert all(later - earlier >= timedelta(seconds=1) for earlier, later in zip(times, times[2:]))
    # judged at 22:00 (quiet hours), at 09:00 (paced, unless among the first two), at its slot: no re-pacing
    assert len(judged) == 12
    assert max(judged.values()) == 3
    assert {m["attempts"] for m in engine.store.rows("messages")} == {1}  # one send attempt each


def test_a_burst_behind_a_rate_goes_out_evenly_spaced_in_due_order_and_the_same_in_the_dry_run(build, mode):
    """300 shipping notices due together at 50/s, over batches of 100: one every 20 ms, in
    the order they were taken (due time, then customer), the last 5.98 s after the first;
    each decided once (pacing is no decision)."""
    engine = build([SHIPPING], {**LIMITS, "service": {"per_customer": [], "quiet_hours": None},
                                "channels": {"sms": {"rate": "50/s"}}})
    engine.dispatcher.batch_size = 100
    start = at(11, 10)
    events = [shipped(f"e{i:03}", start, f"o-{i:03}", customer=f"c-{i:03}") for i in range(300)]

    play(engine, mode, events, until=at(11, 12))

    sent = engine.channels["sms"].sent
    assert [m.customer_id for m in sent] == [f"c-{i:03}" for i in range(300)]
    first = sent[0].time
    assert first == start
    assert [m.time - first for m in sent] == [timedelta(milliseconds=20 * i) for i in range(300)]
    assert [(r["outcome"], r["time"]) for r in engine.store.rows("message_log")] == [("sent", m.time) for m in sent]
    assert {m["state"] for m in engine.store.rows("messages")} == {"sent"}


def test_a_paced_message_whose_turn_falls_in_the_quiet_hours_waits_for_their_end(build, mode):
    engine = build([COUPON], {**LIMITS, "channels": {"sms": {"rate": "1/m"}}})
    late = at(11, 20, 59)  # three coupons a minute before the quiet hours: one a minute

    play(engine, mode, [coupon(f"e{i}", late, customer=f"c-{i}") for i in range(3)], until=at(12, 12))

    assert sorted((shown(m.time), m.customer_id) for m in engine.channels["sms"].sent) == [
        ("11-11 20:59", "c-0"), ("11-12 09:00", "c-1"), ("11-12 09:01", "c-2")]
    assert [r[3:5] for r in log(engine) if r[3] != "sent"] == [("deferred", "quiet_hours")] * 2


def test_a_paced_message_whose_turn_would_pass_its_deadline_expires_saying_so(build, mode):
    engine = build([COUPON], {**LIMITS, "channels": {"sms": {"rate": "1/h"}}, "max_deferral": "90m"})

    play(engine, mode, [coupon(f"e{i}", at(11, 10), customer=f"c-{i}") for i in range(3)], until=at(12, 12))

    assert log(engine) == [
        ("11-11 10:00", "coupon-reminder", "c-0", "sent", None, None),
        ("11-11 10:00", "coupon-reminder", "c-2", "expired", "expired",
         "channel sms is booked at its rate 1/h: its turn would be at 2026-11-11 12:00:00, "
         "past the longest deferral (90m)"),
        ("11-11 11:00", "coupon-reminder", "c-1", "sent", None, None),
    ]


def test_a_backlog_after_downtime_expires_what_is_older_than_the_longest_deferral(build, store):
    """The daemon was down for three weeks: a thank-you due on 11-11 must not go out on
    12-02, and the record says how late it was; a message due within max_deferral goes."""
    engine = build([COUPON], {**LIMITS, "marketing": {"per_customer": [], "quiet_hours": None}})
    engine.ingest([coupon("old", at(11, 10)), coupon("fresh", at(2, 8, month=12), customer="c-2")])
    engine.clock.set(at(2, 10, month=12))

    engine.dispatch()

    assert log(engine) == [
        ("12-02 10:00", "coupon-reminder", "c-1", "expired", "expired",
         "not sent within limits.max_deferral (1d) of its due time 2026-11-11 10:00: 21 d 0 h late"),
        ("12-02 10:00", "coupon-reminder", "c-2", "sent", None, None),
    ]


def test_a_message_that_cannot_be_rendered_fails_and_does_not_use_up_the_cap(build, mode):
    engine = build([COUPON, rule("coupon-expiry", template="broken.j2", priority=10)])

    play(engine, mode, [coupon("e1", at(11, 10))], until=at(11, 12))

    assert log(engine) == [
        ("11-11 10:00", "coupon-expiry", "c-1", "failed", "template_error",
         "template broken.j2: data.coupon_id is missing: this message has no data"),
        ("11-11 10:00", "coupon-reminder", "c-1", "sent", None, None),
    ]


def test_a_staff_alert_keeps_its_own_send_window(build, mode):
    engine = build([rule("bad-review-alert", "order.reviewed", kind="service", channel="staff", template="alert.j2",
                         to="staff", window="09:00-18:00")])

    play(engine, mode, [ev("e1", "order.reviewed", at(11, 23, 30), order="o-1")], until=at(12, 12))

    assert [(r[0], r[3], r[4]) for r in log(engine)] == [
        ("11-11 23:30", "deferred", "window"),
        ("11-12 09:00", "sent", None),
    ]


# ---- on_limit: skip or defer ----------------------------------------------------------

def test_on_limit_defer_waits_until_the_cap_frees_and_skip_suppresses(build, mode):
    engine = build([COUPON, rule("flash-sale", "customer.updated", on_limit="defer")])

    play(engine, mode, [
        coupon("e1", at(11, 10)),
        ev("e2", "customer.updated", at(11, 15)),
        coupon("e3", at(11, 16)),
    ], until=at(13, 12))

    assert log(engine) == [
        ("11-11 10:00", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 15:00", "flash-sale", "c-1", "deferred", "cap",
         "marketing cap 1/1d reached: sent 2026-11-11 10:00 (coupon-reminder); deferred to 2026-11-12 10:00"),
        ("11-11 16:00", "coupon-reminder", "c-1", "suppressed", "cap",
         "marketing cap 1/1d reached: sent 2026-11-11 10:00 (coupon-reminder)"),
        ("11-12 10:00", "flash-sale", "c-1", "sent", None, None),
    ]


def test_on_limit_defer_past_the_expiry_expires(build, mode):
    engine = build([COUPON, rule("flash-sale", "customer.updated", on_limit="defer", expires="12h")])

    play(engine, mode, [coupon("e1", at(11, 10)), ev("e2", "customer.updated", at(11, 15))], until=at(13, 12))

    assert log(engine)[1:] == [
        ("11-11 15:00", "flash-sale", "c-1", "expired", "expired",
         "marketing cap 1/1d reached: sent 2026-11-11 10:00 (coupon-reminder); it could go only at "
         "2026-11-12 10:00, past its expiry"),
    ]


def test_the_longest_deferral_counts_from_the_original_due_time_not_from_the_last_deferral(build, mode):
    engine = build([COUPON, rule("vip-offer", "order.completed", priority=10),
                    rule("flash-sale", "customer.updated", on_limit="defer")])

    play(engine, mode, [
        coupon("e1", at(11, 9, 30)),
        ev("e2", "customer.updated", at(11, 10)),             # deferred to 11-12 09:30, within 1d
        ev("e3", "order.completed", at(12, 9, 29) + timedelta(seconds=30), order="o-1"),  # outranks it at 09:30
    ], until=at(14, 12))

    assert log(engine) == [
        ("11-11 09:30", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 10:00", "flash-sale", "c-1", "deferred", "cap",
         "marketing cap 1/1d reached: sent 2026-11-11 09:30 (coupon-reminder); deferred to 2026-11-12 09:30"),
        ("11-12 09:30", "flash-sale", "c-1", "expired", "expired",
         "marketing cap 1/1d reached: sent 2026-11-12 09:30 (vip-offer); it could go only at 2026-11-13 09:30, "
         "past the longest deferral (1d)"),
        ("11-12 09:30", "vip-offer", "c-1", "sent", None, None),
    ]


# ---- priority -----------------------------------------------------------------------

@pytest.mark.parametrize(("rules", "winner", "loser"), [
    pytest.param([rule("coupon-reminder", priority=0), rule("vip-offer", priority=10)],
                 "vip-offer", "coupon-reminder", id="same-minute-higher-priority-wins"),
    pytest.param([rule("coupon-reminder", priority=10), rule("vip-offer", priority=0)],
                 "coupon-reminder", "vip-offer", id="same-minute-higher-priority-wins-whatever-the-file-order"),
    pytest.param([rule("coupon-reminder", priority=-5), rule("vip-offer")],
                 "vip-offer", "coupon-reminder", id="negative-priority-loses-to-the-default"),
])
def test_a_customers_messages_due_in_the_same_minute_go_by_priority(build, mode, rules, winner, loser):
    engine = build(rules)

    play(engine, mode, [coupon("e1", at(11, 10, 0))], until=at(11, 12))

    assert sorted(log(engine), key=lambda r: r[3]) == [
        ("11-11 10:00", winner, "c-1", "sent", None, None),
        ("11-11 10:00", loser, "c-1", "suppressed", "cap",
         f"marketing cap 1/1d reached: sent 2026-11-11 10:00 ({winner})"),
    ]


def test_events_seconds_apart_in_one_minute_compete_by_priority(build, mode):
    engine = build([COUPON, rule("vip-offer", "customer.updated", priority=10)])

    play(engine, mode, [coupon("e1", at(11, 9, 59) + timedelta(seconds=5)),
                        ev("e2", "customer.updated", at(11, 9, 59) + timedelta(seconds=50))], until=at(11, 12))

    assert [(r[0], r[1], r[3], r[4]) for r in log(engine)] == [
        ("11-11 10:00", "coupon-reminder", "suppressed", "cap"),
        ("11-11 10:00", "vip-offer", "sent", None),
    ]


@pytest.mark.parametrize("later_priority", [0, 10], ids=["equal-priority", "later-one-has-higher-priority"])
def test_in_a_backlog_the_earlier_due_message_wins_as_it_would_have_live(build, later_priority):
    """Due at 10:00 and 10:01, both handled at 10:05 after an outage: the 10:00 one goes,
    as the daemon running on time and the dry-run would have decided."""
    engine = build([rule("flash-sale", wait="1m", priority=later_priority), COUPON])  # flash-sale scheduled first
    engine.clock.set(at(11, 10))
    engine.ingest([coupon("e1", at(11, 10))])
    engine.clock.set(at(11, 10, 5))

    engine.dispatch()

    assert log(engine) == [
        ("11-11 10:05", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 10:05", "flash-sale", "c-1", "suppressed", "cap",
         "marketing cap 1/1d reached: sent 2026-11-11 10:05 (coupon-reminder)"),
    ]


@pytest.mark.parametrize("later_priority", [0, 10], ids=["equal-priority", "later-one-has-higher-priority"])
def test_the_dry_run_lets_the_earlier_due_message_win_too(build, later_priority):
    engine = build([rule("flash-sale", wait="1m", priority=later_priority), COUPON])

    play(engine, "virtual", [coupon("e1", at(11, 10))], until=at(11, 12))

    assert [(r[0], r[1], r[3], r[4]) for r in log(engine)] == [
        ("11-11 10:00", "coupon-reminder", "sent", None),
        ("11-11 10:01", "flash-sale", "suppressed", "cap"),
    ]


# ---- unsubscribe --------------------------------------------------------------------

UNSUBSCRIBE_RULES = [
    rule("coupon-reminder", wait="1h"),
    rule("coupon-mail", wait="1h", channel="email"),
    rule("shipping-notice", "order.shipped", kind="service", template="notice.j2", once_per="order", wait="1h"),
]


@pytest.mark.parametrize(("stop", "sms", "email"), [
    pytest.param(ev("stop", "customer.unsubscribed", at(11, 9, 30), data={"channel": "sms"}),
                 "customer c-1 unsubscribed from marketing on sms", None, id="event-for-sms"),
    pytest.param(ev("stop", "customer.unsubscribed", at(11, 9, 30)),
                 "customer c-1 unsubscribed from all marketing", "customer c-1 unsubscribed from all marketing",
                 id="event-for-every-channel"),
    pytest.param(ev("stop", "customer.updated", at(11, 9, 30), opted_out=["sms"]),
                 "customer c-1 unsubscribed from marketing on sms", None, id="profile-opted-out-sms"),
    pytest.param(ev("stop", "customer.updated", at(11, 9, 30), opted_out=["*"]),
                 "customer c-1 unsubscribed from all marketing", "customer c-1 unsubscribed from all marketing",
                 id="profile-opted-out-everything"),
])
def test_unsubscribing_suppresses_marketing_already_scheduled_on_that_channel_but_not_service(
        build, mode, stop, sms, email):
    engine = build(UNSUBSCRIBE_RULES)

    play(engine, mode, [
        coupon("e1", at(11, 9, 0), email="x@example.com"),   # both marketing messages due at 10:00
        shipped("e2", at(11, 9, 0), "o-1"),                  # the shipping notice too
        coupon("e3", at(11, 9, 0), customer="c-2"),          # someone else
        stop,
    ], until=at(11, 12))

    def outcome(detail):
        return ("suppressed", "unsubscribed", detail) if detail else ("sent", None, None)

    assert sorted((r[1], r[2], *r[3:]) for r in log(engine)) == sorted([
        ("coupon-reminder", "c-1", *outcome(sms)),
        ("coupon-mail", "c-1", *outcome(email)),
        ("shipping-notice", "c-1", "sent", None, None),
        ("coupon-reminder", "c-2", "sent", None, None),
        ("coupon-mail", "c-2", "failed", "no_contact", "customer c-2 has no email for channel email"),
    ])


def test_an_unsubscribe_during_quiet_hours_stops_the_deferred_message(build, mode):
    engine = build([COUPON])

    play(engine, mode, [coupon("e1", at(11, 22)), ev("stop", "customer.unsubscribed", at(11, 23))],
         until=at(12, 12))

    assert log(engine) == [
        ("11-11 22:00", "coupon-reminder", "c-1", "deferred", "quiet_hours",
         "quiet hours 21:00-09:00 (Asia/Shanghai); deferred to 2026-11-12 09:00"),
        ("11-12 09:00", "coupon-reminder", "c-1", "suppressed", "unsubscribed",
         "customer c-1 unsubscribed from all marketing"),
    ]
    assert sent(engine) == []


def test_an_unsubscribe_holds_from_that_moment_messages_sent_before_stay_sent(build, mode):
    engine = build([COUPON], {**LIMITS, "marketing": {"per_customer": [], "quiet_hours": None}, "channels": {}})

    play(engine, mode, [coupon("e1", at(11, 10)), ev("stop", "customer.unsubscribed", at(11, 11),
                                                     data={"channel": "sms"}), coupon("e2", at(11, 12))],
         until=at(11, 13))

    assert [(r[0], r[3], r[4]) for r in log(engine)] == [
        ("11-11 10:00", "sent", None),
        ("11-11 12:00", "suppressed", "unsubscribed"),
    ]


# ---- SMS conventions ----------------------------------------------------------------

@pytest.mark.parametrize(("rules", "expected"), [
    pytest.param([COUPON], ("coupon-reminder", PROMO), id="marketing-gets-signature-and-unsubscribe-suffix"),
    pytest.param([rule("shipping-notice", "coupon.issued", kind="service", template="notice.j2")],
                 ("shipping-notice", NOTICE.format(order="o-1")), id="service-gets-the-signature-only"),
    pytest.param([rule("coupon-reminder", template="promo_signed.j2")],
                 ("coupon-reminder", "【山野户外】王小明，双11全场5折，回T退订"), id="already-there-not-added-twice"),
])
def test_sms_carry_the_shop_signature_and_marketing_the_unsubscribe_suffix(build, mode, rules, expected):
    engine = build(rules)

    play(engine, mode, [ev("e1", "coupon.issued", at(11, 10), order="o-1")], until=at(11, 12))

    [message] = engine.channels["sms"].sent
    assert (message.rule_id, message.body) == expected
    [record] = engine.store.rows("message_log")
    assert record["body"] == expected[1]


def test_email_gets_no_sms_signature_or_suffix(build, mode):
    engine = build([rule("coupon-mail", channel="email")])

    play(engine, mode, [coupon("e1", at(11, 10), email="x@example.com")], until=at(11, 12))

    [message] = engine.channels["email"].sent
    assert message.body == "王小明，双11全场5折，点击 s.example.com/11 领券"


# ---- failed sends -------------------------------------------------------------------

def test_a_failed_send_leaves_the_ledger_and_does_not_count_against_caps(build, mode):
    engine = build([rule("flash-sale", "customer.updated", channel="flaky"), COUPON], failing=("flaky",))

    play(engine, mode, [ev("e1", "customer.updated", at(11, 10)), coupon("e2", at(11, 10, 30))], until=at(11, 12))

    assert log(engine) == [
        ("11-11 10:00", "flash-sale", "c-1", "failed", "channel_error",
         "flaky: provider timeout (attempt 1 of 1: giving up)"),
        ("11-11 10:30", "coupon-reminder", "c-1", "sent", None, None),
    ]
    assert [(s["rule_id"], s["channel"]) for s in engine.store.rows("sends", order_by="time")] == [
        ("coupon-reminder", "sms")]


def test_a_send_that_fails_in_the_same_batch_does_not_hold_back_the_customers_other_message(build, mode):
    engine = build([COUPON, rule("vip-offer", channel="flaky", priority=10)], failing=("flaky",))

    play(engine, mode, [coupon("e1", at(11, 10))], until=at(11, 12))

    assert log(engine) == [
        ("11-11 10:00", "coupon-reminder", "c-1", "sent", None, None),
        ("11-11 10:00", "vip-offer", "c-1", "failed", "channel_error",
         "flaky: provider timeout (attempt 1 of 1: giving up)"),
    ]


# ---- the dry-run decides as the daemon does -------------------------------------------

def test_the_dry_run_holds_back_exactly_what_the_daemon_holds_back_and_says_why(build):
    engine = build([COUPON, rule("vip-offer", "customer.updated", priority=10),
                    rule("flash-sale", "order.completed", on_limit="defer"), SHIPPING])
    events = [
        coupon("a1", at(11, 10)),                                                  # sent
        ev("a2", "customer.updated", at(11, 10, 0) + timedelta(seconds=30)),       # cap
        ev("a3", "order.shipped", at(11, 23, 30), order="o-1"),                    # service quiet hours
        coupon("b1", at(11, 22), customer="c-2"),                                  # quiet hours
        ev("c1", "customer.unsubscribed", at(11, 11), customer="c-3"),
        coupon("c2", at(11, 12), customer="c-3"),                                  # unsubscribed
        coupon("d1", at(11, 14), customer="c-4"),
        ev("d2", "order.completed", at(11, 15), customer="c-4", order="o-4"),      # deferred by the cap
        ev("e1", "customer.updated", at(11, 9, 59) + timedelta(seconds=5), customer="c-5"),
        coupon("e2", at(11, 9, 59) + timedelta(seconds=50), customer="c-5"),      # same minute: priority
    ]
    until = at(13, 12)

    dry = run_dry(engine.project, _lines(events), until=until)
    play(engine, "real", events, until)

    assert _comparable(dry.decisions) == _comparable(engine.store.rows("message_log"))
    assert [(shown(r["time"]), r["customer_id"], r["rule_id"], r["outcome"], r["reason"])
            for r in sorted(dry.decisions, key=lambda r: (r["time"], r["customer_id"], r["rule_id"]))] == [
        ("11-11 10:00", "c-1", "coupon-reminder", "sent", None),
        ("11-11 10:00", "c-5", "coupon-reminder", "suppressed", "cap"),
        ("11-11 10:00", "c-5", "vip-offer", "sent", None),
        ("11-11 10:01", "c-1", "vip-offer", "suppressed", "cap"),
        ("11-11 12:00", "c-3", "coupon-reminder", "suppressed", "unsubscribed"),
        ("11-11 14:00", "c-4", "coupon-reminder", "sent", None),
        ("11-11 15:00", "c-4", "flash-sale", "deferred", "cap"),
        ("11-11 22:00", "c-2", "coupon-reminder", "deferred", "quiet_hours"),
        ("11-11 23:30", "c-1", "shipping-notice", "deferred", "quiet_hours"),
        ("11-12 07:00", "c-1", "shipping-notice", "sent", None),
        ("11-12 09:00", "c-2", "coupon-reminder", "sent", None),
        ("11-12 14:00", "c-4", "flash-sale", "sent", None),
    ]


@pytest.mark.parametrize("how", ["daemon", "virtual", "dry-run"])
def test_a_message_deferred_into_a_minute_competes_there_by_priority(build, how):
    engine = build([COUPON, rule("vip-offer", "customer.updated", priority=10)])
    events = [coupon("b1", at(11, 22)),                       # quiet hours: deferred to 09:00
              ev("b2", "customer.updated", at(12, 8, 59))]    # due 08:59, deferred to 09:00 as well
    until = at(12, 12)

    if how == "dry-run":
        decisions = run_dry(engine.project, _lines(events), until=until).decisions
    else:
        play(engine, "real" if how == "daemon" else "virtual", events, until)
        decisions = engine.store.rows("message_log")

    assert [row[:5] for row in _comparable(decisions)] == [
        (at(11, 22), "c-1", "coupon-reminder", "deferred", "quiet_hours"),
        (at(12, 8, 59), "c-1", "vip-offer", "deferred", "quiet_hours"),
        (at(12, 9), "c-1", "coupon-reminder", "suppressed", "cap"),
        (at(12, 9), "c-1", "vip-offer", "sent", None),
    ]


def _lines(events: list[Event]) -> list[tuple[int, str]]:
    return [(n, json.dumps(e.to_json(), ensure_ascii=False)) for n, e in enumerate(events, start=1)]


def _comparable(rows: list[dict]) -> list[tuple]:
    return sorted((r["time"], r["customer_id"], r["rule_id"], r["outcome"], r["reason"], r["detail"], r["body"])
                  for r in rows)


# ---- what is asked first ----------------------------------------------------------------

def test_a_message_due_in_quiet_hours_is_deferred_first_and_its_unless_judged_when_it_can_go(build, mode):
    nudge = rule("pay-nudge", "order.created", wait="30m", unless="order.status != 'created'")
    engine = build([nudge])

    play(engine, mode, [
        ev("o1", "order.created", at(11, 22), order="o-1"),
        ev("p1", "order.paid", at(11, 23), order="o-1"),                       # paid during the night
        ev("o2", "order.created", at(11, 22), customer="c-2", order="o-2"),    # never paid
    ], until=at(12, 12))

    deferral = "quiet hours 21:00-09:00 (Asia/Shanghai); deferred to 2026-11-12 09:00"
    assert log(engine) == [
        ("11-11 22:30", "pay-nudge", "c-1", "deferred", "quiet_hours", deferral),
        ("11-11 22:30", "pay-nudge", "c-2", "deferred", "quiet_hours", deferral),
        ("11-12 09:00", "pay-nudge", "c-1", "cancelled", "unless", "order o-1 is paid now (order.status != 'created')"),
        ("11-12 09:00", "pay-nudge", "c-2", "sent", None, None),
    ]


def test_an_unsubscribe_during_the_night_suppresses_the_deferred_message_at_09_00(build, mode):
    engine = build([COUPON])

    play(engine, mode, [
        coupon("e1", at(11, 22, 30)),
        ev("stop", "customer.unsubscribed", at(11, 23, 15)),
    ], until=at(12, 12))

    assert log(engine) == [
        ("11-11 22:30", "coupon-reminder", "c-1", "deferred", "quiet_hours",
         "quiet hours 21:00-09:00 (Asia/Shanghai); deferred to 2026-11-12 09:00"),
        ("11-12 09:00", "coupon-reminder", "c-1", "suppressed", "unsubscribed",
         "customer c-1 unsubscribed from all marketing"),
    ]
    assert sent(engine) == []


def test_a_message_deferred_by_a_cap_a_send_of_its_own_batch_used_goes_later(build, mode):
    # vip-offer (priority 10) takes the 1/1d slot; flash-sale, due the same minute, waits for it
    engine = build([rule("vip-offer", "order.completed", priority=10),
                    rule("flash-sale", "order.completed", on_limit="defer")])

    play(engine, mode, [ev("e1", "order.completed", at(11, 10), order="o-1")], until=at(13, 12))

    assert [(when, rule_id, outcome, reason) for when, rule_id, _, outcome, reason, _ in log(engine)] == [
        ("11-11 10:00", "flash-sale", "deferred", "cap"),
        ("11-11 10:00", "vip-offer", "sent", None),
        ("11-12 10:00", "flash-sale", "sent", None),
    ]
    assert {m["rule_id"]: m["state"] for m in engine.store.rows("messages")} == {"vip-offer": "sent",
                                                                                 "flash-sale": "sent"}
