"""The dry-run is the real engine: what it reports is what the daemon would do."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.app import Engine
from engine.clock import VirtualClock
from engine.dryrun.replay import _floor, read_events, run_dry
from engine.store import Store
from engine.triggers.sweeps import AHEAD
from tests.conftest import ROOT, recording_channels
from tests.helpers import created, event

EXAMPLE = ROOT / "examples" / "double11_week.jsonl"


def lines_of(path):
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))


def step_like_the_daemon(project, lines, until, db_url):
    """Advance a clock event by event, due time by due time and hour by hour, ingesting,
    dispatching and sweeping (the calendar rules) one step at a time, as a daemon ticking
    exactly then would. Every hourly sweep runs here, none skipped."""
    events, _ = read_events(lines, project)
    events.sort(key=lambda e: e.time)
    store = Store(db_url)
    clock = VirtualClock(events[0].time)
    engine = Engine(project, store, recording_channels(project), clock)
    pending = [e for e in events if e.time <= until]
    next_sweep = _floor(events[0].time, AHEAD) if project.rules.calendar else None
    while True:
        due = store.next_due_at()
        next_event = pending[0].time if pending else None
        sweep = next_sweep if next_sweep is not None and next_sweep <= until else None
        if due is not None and due <= until and all(t is None or due <= t for t in (next_event, sweep)):
            clock.set(due)
            engine.dispatch()
        elif sweep is not None and (next_event is None or sweep <= next_event):
            clock.set(sweep)
            engine.sweep()
            next_sweep += AHEAD
        elif next_event is not None:
            clock.set(next_event)
            engine.ingest([pending.pop(0)])
        else:
            break
    rows = store.rows("message_log")
    store.close()
    return rows


def comparable(rows):
    return sorted((r["time"], r["rule_id"], r["customer_id"], r["order_id"], r["outcome"], r["reason"], r["body"])
                  for r in rows)


def test_dry_run_decides_exactly_like_a_step_by_step_daemon(project, tmp_path):
    lines = lines_of(EXAMPLE)
    result = run_dry(project, lines)
    stepped = step_like_the_daemon(project, lines, result.until, f"sqlite:///{tmp_path / 'step.db'}")
    assert len(result.decisions) > 300
    assert comparable(result.decisions) == comparable(stepped)


def test_dry_run_sent_messages_are_what_the_recording_channels_got(project):
    result = run_dry(project, lines_of(EXAMPLE))
    recorded = sorted((m.rule_id, m.customer_id, m.body) for ch in result.channels.values() for m in ch.sent)
    logged = sorted((d["rule_id"], d["customer_id"], d["body"]) for d in result.decisions if d["outcome"] == "sent")
    assert recorded == logged


def test_default_until_covers_the_longest_wait_and_expiry(project):
    # winback-180d: idle 180d + expires 2d is the longest horizon of the shipped rules
    horizon = max(r.horizon for r in project.rules.rules)
    assert horizon == timedelta(days=182)
    lines = [(1, _json(event("e1", "order.signed", 0, "c-1", "o-1", name="李丽", phone="13900000000")))]
    result = run_dry(project, lines)
    assert result.until == datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc) + horizon + timedelta(days=1)
    assert [d["rule_id"] for d in result.decisions if d["outcome"] == "sent"] == [
        "signed-care", "review-request", "winback-60d"]  # no paid order: no 90d coupon, not high_quality at 180d


def test_an_event_of_the_same_customer_is_seen_only_after_earlier_due_messages(project):
    # The reminder is due at 10:30; the payment at 10:30:01 must not cancel it,
    # the payment at 10:29 must.
    lines = [(1, _json(created("a1", 0, "c-1", "o-1"))), (2, _json(event("a2", "order.paid", 30.02, "c-1", "o-1"))),
             (3, _json(created("b1", 0, "c-2", "o-2"))), (4, _json(event("b2", "order.paid", 29, "c-2", "o-2")))]
    result = run_dry(project, lines)
    outcome = {d["order_id"]: d["outcome"] for d in result.decisions if d["rule_id"] == "payment-reminder"}
    assert outcome == {"o-1": "sent", "o-2": "cancelled"}


def _json(obj):
    import json
    return json.dumps(obj, ensure_ascii=False)
