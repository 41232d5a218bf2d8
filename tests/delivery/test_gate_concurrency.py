"""The gate is atomic under concurrency: its decision and the record of the send happen
in one transaction holding a per-customer lock, so two dispatchers racing on the same
customers can never both pass a cap of one.

Two Engines, each with its own Store (its own connection pool) on the same database,
each dispatching in its own thread; a Barrier starts them together. Each dispatcher
decides at its own instant (one microsecond apart), so the log tells who decided what,
and the test checks that the race really happened: some customers' messages were
decided by both dispatchers."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from engine.app import Engine, Project, load_project
from engine.clock import VirtualClock
from engine.delivery.dispatch import DispatchReport
from engine.intake.events import parse_event
from engine.store import Store
from engine.store.tables import metadata
from tests.conftest import recording_channels

SHANGHAI = ZoneInfo("Asia/Shanghai")
EVENTS_AT = datetime(2026, 11, 11, 9, 0, tzinfo=SHANGHAI)  # messages due from 09:01 to 09:53
RACE_AT = datetime(2026, 11, 11, 10, 5, tzinfo=SHANGHAI)
CUSTOMERS, PER_CUSTOMER, VIP_EVERY = 50, 4, 5
SCHEDULED = CUSTOMERS * PER_CUSTOMER + CUSTOMERS // VIP_EVERY
DISPATCHERS = 2
ROUNDS = 5

CONFIG = {
    "timezone": "Asia/Shanghai",
    "shop": {"name": "山野户外旗舰店", "signature": "【山野户外】"},
    "channels": {"sms": {"type": "recording", "contact": "phone", "sms": {"signature": "【山野户外】"}}},
    "limits": {"marketing": {"per_customer": ["1/1d"], "quiet_hours": None}, "channels": {}},
    # small batches, so a customer's messages are spread over batches and dispatchers
    "dispatch": {"batch_size": 2},
}
RULES = {"rules": [
    {"id": "flash-sale", "kind": "marketing", "when": "customer.updated", "channel": "sms", "template": "promo.j2"},
    {"id": "vip-offer", "kind": "marketing", "when": "customer.updated", "channel": "sms", "template": "promo.j2",
     "if": "'vip' in customer.tags", "priority": 5},
]}
CAP_DETAIL = "marketing cap 1/1d reached: sent 2026-11-11 10:05 ({rule})"


@pytest.fixture
def project(tmp_path) -> Project:
    (tmp_path / "rules").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG, allow_unicode=True), encoding="utf-8")
    (tmp_path / "rules" / "race.yaml").write_text(yaml.safe_dump(RULES, allow_unicode=True), encoding="utf-8")
    (tmp_path / "templates" / "promo.j2").write_text("{{ customer.name }}，双11全场5折", encoding="utf-8")
    loaded = load_project(tmp_path / "config.yaml", tmp_path / "rules", tmp_path / "templates")
    assert [str(p) for p in loaded.problems] == []
    return loaded


def schedule(project: Project, db_url: str, customers: int = CUSTOMERS, *, spread: bool = True) -> int:
    """Four marketing messages per customer (every fifth customer is a vip and gets a
    fifth, from a higher-priority rule, due with the first). Spread: customer i's
    messages are due at 09:01 + i, i+1, i+2, i+3 minutes, so each minute's queue holds
    four customers' messages and each customer's messages are in four neighbouring
    groups, which the two dispatchers claim at the same time. Not spread: all due at
    09:01. Returns how many were scheduled."""
    store = Store(db_url)
    engine = Engine(project, store, recording_channels(project), VirtualClock(EVENTS_AT))
    events = []
    for i in range(customers):
        for k in range(PER_CUSTOMER):
            tags = ["vip"] if i % VIP_EVERY == 0 and k == 0 else []
            minute = i + k if spread else 0
            events.append(parse_event({
                "id": f"u-{i:02}-{k}", "type": "customer.updated",
                "time": (EVENTS_AT + timedelta(minutes=minute, seconds=1 + 10 * k)).isoformat(),
                "customer": {"id": f"c-{i:02}", "name": "王小明", "phone": f"138{i:08}", "tags": tags},
            }, SHANGHAI))
    report = engine.ingest(events)
    store.close()
    return len(report.scheduled)


def dispatchers(project: Project, db_url: str) -> list[Engine]:
    return [Engine(project, Store(db_url), recording_channels(project), VirtualClock(RACE_AT))
            for _ in range(DISPATCHERS)]


def start_together(work, engines: list[Engine]) -> list:
    """Run work(n, engine) in one thread per engine, released together by a Barrier;
    returns their results (an exception raised in a thread fails the test here)."""
    barrier = threading.Barrier(len(engines))
    results: list = [None] * len(engines)
    errors: list[str] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = work(n, engines[n])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(f"dispatcher {n}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(n,), name=f"dispatcher-{n}") for n in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a dispatcher hung"
    assert errors == []
    return results


def tick_until_idle(n: int, engine: Engine) -> tuple[DispatchReport, list[str]]:
    """Dispatch batch by batch until nothing is due, as the daemon's ticks do; a pass
    that fails is retried at the next tick, as Daemon.tick does. The failures are
    returned: that PostgreSQL ever fails one is the bug shown by
    test_two_dispatchers_claiming_one_customers_messages_at_once_do_not_deadlock."""
    total, failures = DispatchReport(), []
    now = RACE_AT + timedelta(microseconds=n)  # who decided shows in the log's time
    while len(failures) < 50:
        try:
            batch = engine.dispatch(now, stop=lambda: True)  # one batch per call
        except OperationalError as exc:
            failures.append(str(exc.orig).splitlines()[0])
            continue
        total.add(batch)
        if batch.handled == 0:
            break
    return total, failures


def check_one_race(project: Project, db_url: str) -> tuple[int, list[str]]:
    """One race, checked against the promise. Returns how many customers both dispatchers
    decided for (where the race really happened) and the failed passes."""
    assert schedule(project, db_url) == SCHEDULED
    engines = dispatchers(project, db_url)
    try:
        results = start_together(tick_until_idle, engines)
        reports = [report for report, _ in results]
        store = engines[0].store
        log = store.rows("message_log")

        # never more than one marketing message per customer: by the log ...
        sent = Counter(r["customer_id"] for r in log if r["outcome"] == "sent")
        assert sent == {f"c-{i:02}": 1 for i in range(CUSTOMERS)}
        # ... by what the two dispatchers' channels actually got ...
        assert Counter(m.customer_id for e in engines for m in e.channels["sms"].sent) == sent
        # ... and by the send ledger
        assert Counter(s["customer_id"] for s in store.rows("sends", order_by="message_id")) == sent

        # every message ended with exactly one decision; the held ones name the send that held them
        messages = store.rows("messages")
        assert Counter(m["state"] for m in messages) == {"sent": CUSTOMERS, "suppressed": SCHEDULED - CUSTOMERS}
        assert sorted(r["message_id"] for r in log) == sorted(m["id"] for m in messages)
        winner = {r["customer_id"]: r["rule_id"] for r in log if r["outcome"] == "sent"}
        for r in log:
            if r["outcome"] != "sent":
                assert (r["outcome"], r["reason"], r["detail"]) == (
                    "suppressed", "cap", CAP_DETAIL.format(rule=winner[r["customer_id"]]))

        # the two dispatchers together handled exactly what was scheduled
        assert sum(r.handled for r in reports) == SCHEDULED
        assert sum((Counter(r.by_outcome) for r in reports), Counter()) == {
            "sent": CUSTOMERS, "suppressed": SCHEDULED - CUSTOMERS}

        deciders: dict[str, set] = {}
        for r in log:
            deciders.setdefault(r["customer_id"], set()).add(r["time"])
        contested = sum(1 for times in deciders.values() if len(times) == DISPATCHERS)
        return contested, [f for _, failures in results for f in failures]
    finally:
        for engine in engines:
            engine.close()


def wipe(db_url: str) -> None:
    """A fresh database for the next round."""
    store = Store(db_url, create=False)
    metadata.drop_all(store.engine)
    store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_dispatchers_on_postgresql_never_both_pass_a_cap_of_one(project, db_url):
    contested = 0
    for _ in range(ROUNDS):
        won, failed_passes = check_one_race(project, db_url)
        contested += won
        assert failed_passes == []
        wipe(db_url)

    assert contested > 0, "no customer was decided by both dispatchers in any round: the race never happened"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_dispatcher_threads_on_sqlite_never_both_pass_a_cap_of_one(project, db_url):
    contested = 0
    for _ in range(ROUNDS):
        won, failed_passes = check_one_race(project, db_url)
        contested += won
        assert failed_passes == []
        wipe(db_url)

    assert contested > 0, "no customer was decided by both dispatchers in any round: the race never happened"


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_dispatchers_claiming_one_customers_messages_at_once_do_not_deadlock(project, db_url):
    assert schedule(project, db_url, customers=1, spread=False) == PER_CUSTOMER + 1
    engines = dispatchers(project, db_url)
    both_claimed = threading.Barrier(DISPATCHERS, timeout=10)
    for engine in engines:
        # Hold each dispatcher just after its first claim statement until the other has
        # made its own: both then hold part of the customer's five messages.
        _pause_after_first_claim(engine.store, both_claimed)
    try:
        reports = start_together(lambda n, e: e.dispatch(RACE_AT + timedelta(microseconds=n)), engines)
        assert sum(r.handled for r in reports) == PER_CUSTOMER + 1
        assert Counter(m["state"] for m in engines[0].store.rows("messages")) == {
            "sent": 1, "suppressed": PER_CUSTOMER}
    finally:
        for engine in engines:
            engine.close()


def _pause_after_first_claim(store: Store, barrier: threading.Barrier) -> None:
    paused = []

    @event.listens_for(store.engine, "after_cursor_execute")
    def pause(conn, cursor, statement, parameters, context, executemany):
        if not paused and "SKIP LOCKED" in statement:
            paused.append(statement)
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass  # the other dispatcher never got that far: carry on
