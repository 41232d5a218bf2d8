"""The storage contract: what the engine relies on from its database.

Every test runs twice, on a real SQLite file and on the real PostgreSQL server
(the `store` / `db_url` fixtures), so the two behave the same."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from engine.intake.state import new_customer
from engine.store import ConcurrentIngest, IngestWrite, Store
from engine.store.tables import customers, events, messages

NOW = datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)


def event_row(eid: str, minutes: float = 0) -> dict:
    when = NOW + timedelta(minutes=minutes)
    return {"id": eid, "type": "order.created", "time": when, "customer_id": "c-1", "order_id": "o-1",
            "payload": {"id": eid, "type": "order.created"}, "received_at": NOW}


def customer_row(cid: str, name: str) -> dict:
    return {**new_customer(cid), "name": name, "phone": "13800000000", "first_seen_at": NOW, "updated_at": NOW}


def message_row(dedup_key: str, due_minutes: float, rule_id: str = "payment-reminder", state: str = "pending",
                customer_id: str = "c-1") -> dict:
    return {"rule_id": rule_id, "dedup_key": dedup_key, "customer_id": customer_id, "order_id": None,
            "event_id": None, "channel": "sms", "kind": "service", "due_at": NOW + timedelta(minutes=due_minutes),
            "expires_at": None, "state": state, "reason": None, "detail": None, "attempts": 0,
            "claimed_at": None, "slot_at": None, "created_at": NOW, "updated_at": NOW}


def add_messages(store: Store, *rows: dict) -> dict[str, int]:
    """Schedule messages; returns dedup_key -> message id."""
    store.write_ingest(IngestWrite(messages=list(rows)))
    return {m["dedup_key"]: m["id"] for m in store.rows("messages")}


def log_row(message_id: int | None, outcome: str, reason: str | None, at: datetime = NOW) -> dict:
    return {"message_id": message_id, "time": at, "rule_id": "payment-reminder", "customer_id": "c-1",
            "order_id": None, "channel": "sms", "kind": "service", "outcome": outcome, "reason": reason,
            "detail": None, "body": None}


# ---- events -------------------------------------------------------------------------

def test_an_event_id_is_stored_once_and_a_batch_repeating_one_is_rolled_back_whole(store):
    inserted, _ = store.write_ingest(IngestWrite(events=[event_row("evt-1")]))
    assert inserted == {"evt-1"}

    again = IngestWrite(events=[event_row("evt-1"), event_row("evt-2")], customers=[customer_row("c-1", "王小明")])
    with pytest.raises(ConcurrentIngest, match="^1 events of the batch were stored meanwhile by another writer$"):
        store.write_ingest(again)

    assert store.count("events") == 1
    assert store.count("customers") == 0  # the whole batch was rolled back, to be redone
    assert store.existing_event_ids(["evt-1", "evt-2"]) == {"evt-1"}


def test_events_keep_their_payload_and_times(store):
    store.write_ingest(IngestWrite(events=[event_row("evt-1", minutes=5)]))

    stored = store.events_by_id(["evt-1"])["evt-1"]

    assert stored["type"] == "order.created"
    assert stored["time"] == NOW + timedelta(minutes=5)
    assert stored["payload"] == {"id": "evt-1", "type": "order.created"}


def test_customers_are_upserted_on_their_id(store):
    store.write_ingest(IngestWrite(customers=[customer_row("c-1", "王小明")]))
    store.write_ingest(IngestWrite(customers=[customer_row("c-1", "王晓明")]))

    assert store.count("customers") == 1
    assert store.customers_by_id(["c-1"])["c-1"]["name"] == "王晓明"


def test_rejected_events_are_kept_with_line_and_reason(store):
    store.reject([{"source": "orders.jsonl", "line": 7, "raw": '{"id": "evt-9"', "received_at": NOW,
                   "reason": "not valid JSON: Expecting ',' delimiter at column 15"}])

    [row] = store.rows("rejected_events")

    assert (row["source"], row["line"], row["raw"], row["reason"], row["received_at"]) == (
        "orders.jsonl", 7, '{"id": "evt-9"', "not valid JSON: Expecting ',' delimiter at column 15", NOW)


# ---- dedup --------------------------------------------------------------------------

def test_the_database_itself_rejects_a_second_message_with_the_same_rule_and_dedup_key(store):
    with store.engine.begin() as conn:
        conn.execute(messages.insert(), message_row("order:o-1", 30))
        conn.execute(messages.insert(), message_row("order:o-1", 30, rule_id="shipping-notice"))  # other rule: fine

    with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: messages\.rule_id, messages\.dedup_key"
                                             r"|uq_messages_rule_dedup"):
        with store.engine.begin() as conn:
            conn.execute(messages.insert(), message_row("order:o-1", 90))

    assert store.count("messages") == 2


def test_a_message_losing_to_its_dedup_key_is_not_scheduled_and_its_log_is_written_with_the_batch(store):
    add_messages(store, message_row("order:o-1", 30))
    seen = []

    def lost_log(scheduled):
        seen.append(scheduled)
        return [log_row(None, "suppressed", "duplicate")]

    _, scheduled = store.write_ingest(IngestWrite(messages=[message_row("order:o-1", 60)]), lost_log)

    assert len(scheduled) == 0
    assert [len(keys) for keys in seen] == [0]  # lost_log is told that nothing was scheduled
    assert [(m["due_at"], m["state"]) for m in store.rows("messages")] == [(NOW + timedelta(minutes=30), "pending")]
    assert [(r["outcome"], r["reason"]) for r in store.rows("message_log")] == [("suppressed", "duplicate")]


# ---- taking due messages ------------------------------------------------------------

def take(store: Store, now: datetime, limit: int, state: str | None = "sending") -> list[dict]:
    """One dispatch transaction: the due messages it takes, each then written as `state`
    (None: decide nothing, so they stay pending)."""
    with store.dispatch_transaction(now, limit) as txn:
        if state is not None:
            txn.updates = [{"_id": m["id"], "state": state, "reason": None, "detail": None, "due_at": m["due_at"],
                            "updated_at": now} for m in txn.messages]
        return txn.messages


def test_a_dispatch_transaction_takes_due_pending_messages_earliest_first_within_the_limit(store):
    ids = add_messages(store,
                       message_row("order:late", -1),
                       message_row("order:early", -30),
                       message_row("order:tie-a", -10, customer_id="c-2"),
                       message_row("order:tie-b", -10, customer_id="c-3"),
                       message_row("order:future", 1),
                       message_row("order:done", -60, state="sent"))

    first = take(store, NOW, limit=3)

    assert [m["dedup_key"] for m in first] == ["order:early", "order:tie-a", "order:tie-b"]
    rows = {m["dedup_key"]: m for m in store.rows("messages")}
    assert {(rows[k]["state"], rows[k]["claimed_at"], rows[k]["attempts"]) for k in ("order:early", "order:tie-a")} \
        == {("sending", NOW, 1)}  # in flight from now, one attempt
    assert [m["dedup_key"] for m in take(store, NOW, limit=3)] == ["order:late"]
    assert take(store, NOW, limit=3) == []
    states = {m["dedup_key"]: m["state"] for m in store.rows("messages")}
    assert states["order:future"] == "pending"
    assert states["order:done"] == "sent"
    assert store.next_due_at() == NOW + timedelta(minutes=1)
    assert [m["id"] for m in take(store, NOW + timedelta(minutes=1), limit=3)] == [ids["order:future"]]


def test_messages_a_transaction_does_not_decide_stay_pending(store):
    add_messages(store, message_row("order:o-1", -5), message_row("order:o-2", -5, customer_id="c-2"))

    assert [m["dedup_key"] for m in take(store, NOW, limit=10, state=None)] == ["order:o-1", "order:o-2"]

    assert {(m["state"], m["attempts"]) for m in store.rows("messages")} == {("pending", 0)}
    assert [m["dedup_key"] for m in take(store, NOW, limit=10)] == ["order:o-1", "order:o-2"]


def test_a_customers_messages_due_at_the_same_time_are_taken_together_beyond_the_limit(store):
    add_messages(store, message_row("order:a", -5, customer_id="c-1"),
                 message_row("order:b", -5, rule_id="review-request", customer_id="c-2"),
                 message_row("order:c", -5, rule_id="care", customer_id="c-2"),
                 message_row("order:d", -5, customer_id="c-3"))

    assert [m["dedup_key"] for m in take(store, NOW, limit=2)] == ["order:a", "order:b", "order:c"]
    assert [m["dedup_key"] for m in take(store, NOW, limit=2)] == ["order:d"]


def test_a_message_due_exactly_now_is_due(store):
    add_messages(store, message_row("order:o-1", 0))

    assert [m["dedup_key"] for m in take(store, NOW, limit=10)] == ["order:o-1"]


def test_concurrent_dispatchers_never_take_the_same_message(db_url):
    setup = Store(db_url)
    add_messages(setup, *[message_row(f"order:o-{i:03}", -i, customer_id=f"c-{i % 9}") for i in range(120)])
    stores = [Store(db_url) for _ in range(4)]
    taken: list[list[int]] = [[] for _ in stores]
    errors: list[BaseException] = []

    def dispatcher(index: int) -> None:
        try:
            while batch := take(stores[index], NOW, limit=7):
                taken[index].extend(m["id"] for m in batch)
        except BaseException as exc:  # reported below, so a failing thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in [setup, *stores]:
        s.close()

    assert errors == []
    all_taken = [mid for part in taken for mid in part]
    assert len(all_taken) == 120
    assert len(set(all_taken)) == 120


# ---- recording outcomes -------------------------------------------------------------

def test_finish_records_each_outcome_and_its_log_rows_together(store):
    ids = add_messages(store, message_row("order:o-1", -5), message_row("order:o-2", -5))
    take(store, NOW, limit=10)
    later = NOW + timedelta(seconds=3)

    store.finish(
        [{"_id": ids["order:o-1"], "state": "sent", "reason": None, "detail": None,
          "due_at": NOW - timedelta(minutes=5), "updated_at": later},
         {"_id": ids["order:o-2"], "state": "cancelled", "reason": "unless",
          "detail": "order o-2 is paid now", "due_at": NOW - timedelta(minutes=5), "updated_at": later}],
        [log_row(ids["order:o-1"], "sent", None, later), log_row(ids["order:o-2"], "cancelled", "unless", later)])

    rows = {m["dedup_key"]: m for m in store.rows("messages")}
    assert {k: (m["state"], m["reason"], m["detail"], m["claimed_at"], m["updated_at"]) for k, m in rows.items()} == {
        "order:o-1": ("sent", None, None, None, later),
        "order:o-2": ("cancelled", "unless", "order o-2 is paid now", None, later),
    }
    assert [(r["message_id"], r["outcome"], r["reason"], r["time"]) for r in store.rows("message_log")] == [
        (ids["order:o-1"], "sent", None, later),
        (ids["order:o-2"], "cancelled", "unless", later),
    ]
    assert take(store, NOW + timedelta(days=1), limit=10) == []


def test_back_to_pending_with_a_new_due_time_defers_the_message(store):
    ids = add_messages(store, message_row("order:o-1", -5))
    retry = NOW + timedelta(hours=8)

    with store.dispatch_transaction(NOW, 10) as txn:
        txn.updates = [{"_id": ids["order:o-1"], "state": "pending", "reason": "quiet_hours", "detail": None,
                        "due_at": retry, "updated_at": NOW}]

    assert take(store, retry - timedelta(seconds=1), limit=10) == []
    assert [m["id"] for m in take(store, retry, limit=10)] == [ids["order:o-1"]]


def test_messages_in_flight_longer_than_the_lease_go_back_to_the_queue(store):
    ids = add_messages(store, message_row("order:o-1", -5), message_row("order:o-2", -5, customer_id="c-2"))
    take(store, NOW, limit=1)  # o-1 let through by a dispatcher that then died before sending
    lease = timedelta(minutes=5)

    assert store.release_stale_claims(NOW + lease, lease) == 0  # not older than the lease yet
    assert store.release_stale_claims(NOW + lease + timedelta(seconds=1), lease) == 1

    row = {m["id"]: m for m in store.rows("messages")}[ids["order:o-1"]]
    assert (row["state"], row["claimed_at"]) == ("pending", None)
    again = take(store, NOW + lease + timedelta(seconds=2), limit=10)
    assert [m["id"] for m in again] == [ids["order:o-1"], ids["order:o-2"]]
    assert {m["id"]: m["attempts"] for m in store.rows("messages")} == {ids["order:o-1"]: 2, ids["order:o-2"]: 1}


# ---- times --------------------------------------------------------------------------

UTC = timezone.utc


@pytest.mark.parametrize("written, expected_utc", [
    (datetime(2026, 11, 11, 10, 0, 5, 123456, tzinfo=ZoneInfo("Asia/Shanghai")),
     datetime(2026, 11, 11, 2, 0, 5, 123456, tzinfo=UTC)),
    (datetime(2026, 3, 8, 3, 30, tzinfo=ZoneInfo("America/New_York")), datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    (datetime(2026, 11, 1, 1, 30, fold=0, tzinfo=ZoneInfo("America/New_York")),
     datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    (datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
     datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
    (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
    (datetime(2026, 6, 30, 23, 59, 59, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
     datetime(2026, 7, 1, 3, 29, 59, tzinfo=UTC)),
], ids=["shanghai-microseconds", "new-york-after-spring-forward", "new-york-first-1:30-on-fall-back",
        "new-york-second-1:30-on-fall-back", "utc", "odd-offset"])
def test_times_come_back_as_the_same_instant_in_aware_utc(store, written, expected_utc):
    store.write_ingest(IngestWrite(events=[{**event_row("evt-1"), "time": written}]))

    read = store.events_by_id(["evt-1"])["evt-1"]["time"]

    assert read == expected_utc
    assert read.tzinfo is UTC


def test_a_naive_time_is_refused_rather_than_guessed(store):
    with pytest.raises((ValueError, StatementError), match="naive datetime given to the store; times must be aware"):
        store.write_ingest(IngestWrite(events=[{**event_row("evt-1"), "time": datetime(2026, 11, 11, 10, 0)}]))

    assert store.count("events") == 0


def test_raw_sql_reads_give_aware_utc_too(store):
    store.write_ingest(IngestWrite(events=[event_row("evt-1")]))

    with store.engine.connect() as conn:
        value = conn.execute(select(events.c.time)).scalar_one()

    assert value == NOW
    assert value.tzinfo is timezone.utc


def test_a_store_opened_twice_on_the_same_database_keeps_the_data(db_url):
    first = Store(db_url)
    first.write_ingest(IngestWrite(customers=[customer_row("c-1", "王小明")]))
    first.close()

    second = Store(db_url)
    try:
        with second.engine.connect() as conn:
            names = conn.execute(select(customers.c.name)).scalars().all()
    finally:
        second.close()

    assert names == ["王小明"]


def test_bulk_writes_of_many_rows_keep_every_value_nulls_and_json_included(store):
    """Many rows at once go through one statement of arrays on PostgreSQL: a column
    that is NULL in every row, JSON values, unicode and the conflict rules must survive."""
    rows = [message_row(f"k{i}", i) for i in range(40)]
    rows[3]["detail"] = "延期到 10:00 'quoted' \"and\" \\ backslash"
    assert store.enqueue_swept(rows) == 40
    assert store.enqueue_swept(rows[:20] + [message_row("k-new", 5)]) == 1  # taken keys skipped

    stored = {m["dedup_key"]: m for m in store.rows("messages")}
    assert len(stored) == 41
    assert stored["k3"]["detail"] == "延期到 10:00 'quoted' \"and\" \\ backslash"
    assert stored["k39"]["due_at"] == NOW + timedelta(minutes=39)
    assert all(m["order_id"] is None and m["expires_at"] is None for m in stored.values())

    people = [{**customer_row(f"c-{i}", f"顾客{i}"), "tags": ["vip", "回头客"], "stats": {"skus": ["SB-01"]}}
              for i in range(12)]
    store.write_ingest(IngestWrite(customers=people))
    people[5]["name"] = "改名了"
    store.write_ingest(IngestWrite(customers=people))
    found = store.customers_by_id([f"c-{i}" for i in range(12)])
    assert found["c-5"]["name"] == "改名了"  # upserted on the id
    assert found["c-7"]["tags"] == ["vip", "回头客"] and found["c-7"]["stats"] == {"skus": ["SB-01"]}

    from engine.intake.state import new_order  # noqa: PLC0415
    orders = [{**new_order(f"o-{i}", "c-1"), "amount": 199 if i % 2 else 59.5, "updated_at": NOW} for i in range(10)]
    store.write_ingest(IngestWrite(orders=orders))  # amounts as JSON gives them: int and float mixed
    assert [store.orders_by_id([f"o-{i}"])[f"o-{i}"]["amount"] for i in (0, 1)] == [59.5, 199.0]
