"""The store: events, customers, orders, scheduled messages and the decision log.

Every write that belongs together happens in one transaction. Dedup is enforced by the
database: `messages` has a unique key on (rule_id, dedup_key) and events on their id."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from sqlalchemy import create_engine, delete, func, select, text, update
from sqlalchemy.engine import Engine, make_url

from engine.errors import DriverMissing
from engine.outcomes import Outcome, Reason, State
from engine.store import dialect, schema
from engine.store.tables import (
    IN_FLIGHT_WHERE,
    PENDING_WHERE,
    SLOTTED_WHERE,
    customers,
    daemon_state,
    decode_time,
    encode_time,
    events,
    message_log,
    messages,
    metadata,
    orders,
    rejected_events,
    sends,
    sweeps,
)

_CHUNK = 900  # ids per IN (...) query, below every driver's parameter limit
PENDING, CLAIMED, SENDING = State.PENDING, State.CLAIMED, State.SENDING
DUE_COLUMNS = ("id", "rule_id", "dedup_key", "customer_id", "order_id", "event_id", "channel", "kind", "due_at",
               "expires_at", "state", "attempts", "slot_at")
_PENDING_SQL = PENDING_WHERE  # written out, not bound: a partial index is used only for its own literal WHERE


@dataclass
class IngestWrite:
    """Everything one ingest batch writes, in one transaction."""

    events: list[dict] = field(default_factory=list)
    customers: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)


# database backend -> (the module its driver needs, how to install it)
DRIVERS = {"postgresql": ("psycopg", "pip install -e '.[postgresql]' (a clone) or "
                                     "pip install 'returning-customer-engine[postgresql]'")}


def driver_problem(url: str) -> str | None:
    """Why the database at `url` cannot be opened from this install (its driver is not
    installed), or None when it can."""
    backend = make_url(url).get_backend_name()
    if backend not in DRIVERS:
        return None
    module, install = DRIVERS[backend]
    try:
        __import__(module)
    except ImportError:
        return f"the {backend} database needs its driver ({module}), which is not installed: {install}"
    return None


class Store:
    def __init__(self, url: str, *, throwaway: bool = False, create: bool = True):
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: a database error never shows the values of a statement (phone
        # numbers, emails) in an exception or a log line
        try:
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=not throwaway, hide_parameters=True)
        except ImportError:
            problem = driver_problem(url)
            if problem is None:
                raise
            raise DriverMissing(problem) from None
        self.dialect = self.engine.dialect.name
        self._bulk_writes: dict[str, dialect.BulkWrite] | None = None
        self._readers: dict[str, dialect.BulkRead] = {}
        if self.dialect == "sqlite":
            dialect.configure_sqlite(self.engine, throwaway)
        if create:  # the schema created, or upgraded in place (engine.store.schema)
            schema.bring_up_to_date(self.engine, stamp_new=not throwaway)

    def _reader(self, table) -> dialect.BulkRead:
        reader = self._readers.get(table.name)
        if reader is None:
            reader = self._readers[table.name] = dialect.BulkRead(self.engine, table)
        return reader

    def close(self) -> None:
        self.engine.dispose()

    # ---- reads ------------------------------------------------------------------------
    def _by_ids(self, table, column, ids: Iterable[str], conn=None) -> list[dict]:
        """Rows by key; inside `conn`'s transaction when given."""
        ids = list(dict.fromkeys(i for i in ids if i is not None))
        if not ids:
            return []
        reader = self._readers.get(table.name)
        if reader is None:
            reader = self._readers[table.name] = dialect.BulkRead(self.engine, table, column.name)
        if conn is not None:
            return reader.fetch(conn, ids, _CHUNK)
        with self.engine.connect() as own:
            return reader.fetch(own, ids, _CHUNK)

    def existing_event_ids(self, ids: Iterable[str]) -> set[str]:
        """Only the ids: the payloads of known events are not needed (nor decoded)."""
        return set(self.existing_events(ids))

    def existing_events(self, ids: Iterable[str]) -> dict[str, str]:
        """The stored events among these ids: id -> its customer's id."""
        ids = list(dict.fromkeys(i for i in ids if i is not None))
        found: dict[str, str] = {}
        p = dialect.placeholder(self.engine)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                found.update(dialect.raw_rows(conn, f"SELECT id, customer_id FROM events WHERE id IN "
                                                    f"({', '.join([p] * len(chunk))})", tuple(chunk)))
        return found

    def answers(self) -> bool:
        """Whether the database answers a trivial query now."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure means: it does not
            return False

    def customers_by_id(self, ids: Iterable[str]) -> dict[str, dict]:
        return {r["id"]: r for r in self._by_ids(customers, customers.c.id, ids)}

    def orders_by_id(self, ids: Iterable[str]) -> dict[str, dict]:
        return {r["id"]: r for r in self._by_ids(orders, orders.c.id, ids)}

    def events_by_id(self, ids: Iterable[str]) -> dict[str, dict]:
        return {r["id"]: r for r in self._by_ids(events, events.c.id, ids)}

    def event_data_by_id(self, ids: Iterable[str]) -> dict[str, dict]:
        """What dispatch needs of each event: id, type, time and `data` (the payload's
        `data` object, extracted by the database; the rest of the payload, often the
        larger part, is not read)."""
        with self.engine.connect() as conn:
            return self._event_data(conn, ids)

    def _event_data(self, conn, ids: Iterable[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(i for i in ids if i is not None))
        p = dialect.placeholder(self.engine)
        data = "json_extract(payload, '$.data')" if self.dialect == "sqlite" else "payload -> 'data'"
        out: dict[str, dict] = {}
        for start in range(0, len(ids), _CHUNK):
            part = ids[start:start + _CHUNK]
            sql = f"SELECT id, type, time, {data} FROM events WHERE id IN ({', '.join([p] * len(part))})"
            for event_id, kind, time, payload_data in dialect.raw_rows(conn, sql, tuple(part)):
                out[event_id] = {"id": event_id, "type": kind, "time": decode_time(time, self.dialect),
                                 "data": dialect.json_value(payload_data) or {}}
        return out

    def next_due_at(self) -> datetime | None:
        with self.engine.connect() as conn:
            value = dialect.raw_rows(conn, f"SELECT min(due_at) FROM messages WHERE {_PENDING_SQL}")[0][0]
        return None if value is None else decode_time(value, self.dialect)

    def cancel_rule_messages(self, reasons: dict[str, str], now: datetime) -> int:
        """Cancel the pending messages of rules that are gone (rule id -> the detail to
        record), with reason `rule_removed` and a log row each, in one transaction.
        Messages in flight, or being decided by a dispatcher right now, finish."""
        if not reasons:
            return 0
        p, name, cancelled = dialect.placeholder(self.engine), self.dialect, 0
        at = encode_time(now, name)
        with self.engine.begin() as conn:
            for rule_id, detail in reasons.items():
                ids = [r[0] for r in dialect.raw_rows(
                    conn, f"UPDATE messages SET state = {p}, reason = {p}, detail = {p}, "
                          f"updated_at = {p} WHERE {_PENDING_SQL} AND rule_id = {p} RETURNING id",
                    (State.CANCELLED, Reason.RULE_REMOVED, detail, at, rule_id))]
                for start in range(0, len(ids), _CHUNK):
                    part = ids[start:start + _CHUNK]
                    conn.exec_driver_sql(
                        "INSERT INTO message_log (message_id, time, rule_id, customer_id, order_id, channel, kind, "
                        f"outcome, reason, detail, body) SELECT id, {p}, rule_id, customer_id, order_id, channel, "
                        f"kind, {p}, {p}, {p}, NULL FROM messages WHERE id IN "
                        f"({', '.join([p] * len(part))}) ORDER BY id",
                        (at, Outcome.CANCELLED, Reason.RULE_REMOVED, detail, *part))
                cancelled += len(ids)
        return cancelled

    def set_daemon_state(self, key: str, value: dict, now: datetime) -> None:
        stmt = dialect.insert_for(self.engine, daemon_state).values(key=key, value=value, updated_at=now)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now}))

    def daemon_state(self) -> dict[str, dict]:
        with self.engine.connect() as conn:
            return {r.key: {**r.value, "updated_at": r.updated_at}
                    for r in conn.execute(select(daemon_state.c.key, daemon_state.c.value, daemon_state.c.updated_at))}

    def next_due(self, limit: int = 10) -> list[dict]:
        """The earliest pending messages."""
        stmt = (select(messages.c.due_at, messages.c.rule_id, messages.c.customer_id, messages.c.channel,
                       messages.c.reason).where(text(PENDING_WHERE)).order_by(messages.c.due_at).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def recent_log(self, outcome: str, since: datetime, limit: int = 10) -> list[dict]:
        """The latest log rows with this outcome since `since`, newest first."""
        stmt = (select(message_log).where(message_log.c.outcome == outcome, message_log.c.time >= since)
                .order_by(message_log.c.time.desc(), message_log.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def customers_by_phone(self, phone: str) -> list[str]:
        """Ids of the customers whose phone is this mainland number, written bare or with
        +86 / 86 / 0086."""
        digits = "".join(ch for ch in phone if ch.isdigit())
        for prefix in ("0086", "86"):
            if len(digits) == 11 + len(prefix) and digits.startswith(prefix):
                digits = digits[len(prefix):]
        forms = [digits, f"+86{digits}", f"86{digits}", f"0086{digits}", f"+86 {digits}"]
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(customers.c.id).where(customers.c.phone.in_(forms))
                                               .order_by(customers.c.id))]

    def queue_depth(self) -> dict[tuple[str, str], int]:
        """(rule, state) -> messages pending or in flight."""
        # each part's WHERE is a partial index's own, so neither reads the sent history; on
        # SQLite the unary + keeps the planner from walking the (rule_id, dedup_key) index
        # instead (5 s -> 1 ms on 1.3M messages)
        group = "+rule_id, +state" if self.dialect == "sqlite" else "rule_id, state"
        sql = (f"SELECT rule_id, state, count(*) FROM messages WHERE {_PENDING_SQL} GROUP BY {group} "
               f"UNION ALL SELECT rule_id, state, count(*) FROM messages WHERE {IN_FLIGHT_WHERE} GROUP BY {group}")
        with self.engine.connect() as conn:
            return {(rule_id, state): n for rule_id, state, n in dialect.raw_rows(conn, sql)}

    def count(self, table_name: str, **where) -> int:
        table = metadata.tables[table_name]
        stmt = select(func.count()).select_from(table)
        for key, value in where.items():
            stmt = stmt.where(table.c[key] == value)
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar_one()

    def rows(self, table_name: str, order_by: str = "id", **where) -> list[dict]:
        table = metadata.tables[table_name]
        stmt = select(table).order_by(table.c[order_by])
        for key, value in where.items():
            stmt = stmt.where(table.c[key] == value)
        with self.engine.connect() as conn:
            return [r._asdict() for r in conn.execute(stmt)]

    # ---- ingest -----------------------------------------------------------------------
    def write_ingest(self, batch: IngestWrite, lost_log=None) -> tuple[set[str], set[tuple[str, str]]]:
        """Write one batch in one transaction. Returns the event ids inserted and the
        (rule_id, dedup_key) of the messages scheduled; a message whose key is already
        taken is not scheduled. `lost_log`, given the scheduled keys, returns log rows
        (the duplicates' decisions) written in the same transaction.

        Raises ConcurrentIngest (and writes nothing) when another writer stored some of
        the batch's events or message keys meanwhile; the caller redoes the batch."""
        bulk = self._bulk()
        with self.engine.begin() as conn:
            written = bulk["events"].run(conn, batch.events)
            if written != len(batch.events):
                raise ConcurrentIngest(len(batch.events) - written)
            bulk["customers"].run(conn, batch.customers)
            bulk["orders"].run(conn, batch.orders)
            scheduled: set[tuple[str, str]] = set()
            if batch.messages:
                taken = self._taken_keys(conn, [(m["rule_id"], m["dedup_key"]) for m in batch.messages])
                fresh = [m for m in batch.messages if (m["rule_id"], m["dedup_key"]) not in taken]
                written = bulk["messages"].run(conn, fresh)
                if written != len(fresh):
                    raise ConcurrentIngest(len(fresh) - written, "message keys")
                scheduled = {(m["rule_id"], m["dedup_key"]) for m in fresh}
            log_rows = batch.log + (lost_log(scheduled) if lost_log else [])
            bulk["message_log"].run(conn, log_rows)
        return {e["id"] for e in batch.events}, scheduled

    def _bulk(self) -> dict[str, dialect.BulkWrite]:
        if self._bulk_writes is None:
            self._bulk_writes = {
                "events": dialect.BulkWrite(self.engine, events, ("id",)),
                "customers": dialect.BulkWrite(self.engine, customers, ("id",), update=True),
                "orders": dialect.BulkWrite(self.engine, orders, ("id",), update=True),
                "messages": dialect.BulkWrite(self.engine, messages, ("rule_id", "dedup_key")),
                "message_log": dialect.BulkWrite(self.engine, message_log),
                "sends": dialect.BulkWrite(self.engine, sends),
            }
        return self._bulk_writes

    @staticmethod
    def _taken_keys(conn, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The keys already in `messages`. One query per rule with `rule_id = ? AND
        dedup_key IN (...)`, which both databases answer from the unique index; a
        row-value `(rule_id, dedup_key) IN (VALUES ...)` makes SQLite scan the whole
        index for every chunk, so ingest slowed down as the table grew."""
        by_rule: dict[str, list[str]] = {}
        for rule_id, key in dict.fromkeys(keys):
            by_rule.setdefault(rule_id, []).append(key)
        taken: set[tuple[str, str]] = set()
        for rule_id, dedup_keys in by_rule.items():
            for start in range(0, len(dedup_keys), _CHUNK):
                chunk = dedup_keys[start:start + _CHUNK]
                stmt = select(messages.c.dedup_key).where(messages.c.rule_id == rule_id,
                                                          messages.c.dedup_key.in_(chunk))
                taken.update((rule_id, r[0]) for r in conn.execute(stmt))
        return taken

    # ---- sweeps -------------------------------------------------------------------------
    def swept_until(self) -> dict[str, datetime]:
        with self.engine.connect() as conn:
            return {r.rule_id: r.swept_until for r in conn.execute(select(sweeps.c.rule_id, sweeps.c.swept_until))}

    def sweep_status(self) -> list[dict]:
        return self.rows("sweeps", order_by="rule_id")

    def _customers_where(self, where: str, params: tuple, limit: int | None = None) -> list[dict]:
        reader = self._reader(customers)
        sql = f"SELECT {', '.join(reader.keys)} FROM customers WHERE {where} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.engine.connect() as conn:
            return reader.decode(dialect.raw_rows(conn, sql, params))

    def idle_customers(self, after: datetime, upto: datetime, *, full: bool = True) -> list[dict]:
        """Customers whose latest order was in (after, upto]: one range of the index on
        last_order_at (an idle sweep reads only the customers it enqueues). Not `full`:
        only id and last_order_at, read from the index alone (a rule without `if:`)."""
        p = dialect.placeholder(self.engine)
        where = f"last_order_at > {p} AND last_order_at <= {p}"
        params = (encode_time(after, self.dialect), encode_time(upto, self.dialect))
        if full:
            return self._customers_where(where, params)
        with self.engine.connect() as conn:
            return [{"id": cid, "last_order_at": decode_time(last, self.dialect)} for cid, last in
                    dialect.raw_rows(conn, f"SELECT id, last_order_at FROM customers WHERE {where}", params)]

    def next_last_order_after(self, after: datetime) -> datetime | None:
        """The earliest latest-order time after `after` (one step of the last_order_at
        index): when the next customer turns idle, for the dry-run to skip empty sweeps."""
        p = dialect.placeholder(self.engine)
        with self.engine.connect() as conn:
            rows = dialect.raw_rows(conn, f"SELECT MIN(last_order_at) FROM customers WHERE last_order_at > {p}",
                                    (encode_time(after, self.dialect),))
        value = rows[0][0] if rows else None
        return decode_time(value, self.dialect) if value is not None else None

    def birthday_customers(self, month_days: list[str], *, full: bool = True) -> list[dict]:
        """Customers whose birthday (month-day) is one of these, from the index on
        birthday_md (not `full`: only their ids, from the index alone)."""
        p = dialect.placeholder(self.engine)
        where = f"birthday_md IN ({', '.join([p] * len(month_days))})"
        if full:
            return self._customers_where(where, tuple(month_days))
        with self.engine.connect() as conn:
            return [{"id": cid} for (cid,) in
                    dialect.raw_rows(conn, f"SELECT id FROM customers WHERE {where}", tuple(month_days))]

    def customer_pages(self, size: int = 2000, where: str | None = None, params: tuple = ()):
        """Every customer (or those passing `where`, SQL with `?` for each of `params`), a
        page at a time in id order (keyset pagination: memory stays at one page)."""
        p = dialect.placeholder(self.engine)
        extra = f" AND ({where.replace('?', p)})" if where else ""
        last = None
        while True:
            page = (self._customers_where("1 = 1" + extra, tuple(params), size) if last is None
                    else self._customers_where(f"id > {p}" + extra, (last, *params), size))
            if not page:
                return
            yield page
            last = page[-1]["id"]

    def enqueue_swept(self, rows: list[dict]) -> int:
        """Enqueue part of a long sweep's messages (a broadcast, a page of customers at a
        time) before the sweep ends; a key already taken is skipped, so a sweep that
        crashes half-way and runs again enqueues nothing twice. Returns the number written."""
        with self.engine.begin() as conn:
            return self._bulk()["messages"].run(conn, rows)

    def write_sweep(self, rule_id: str, swept_until: datetime, ran_at: datetime, rows: list[dict],
                    log: list[dict], seconds: float) -> int:
        """Enqueue a sweep's messages (a key already taken is skipped: the sweep is
        idempotent) and move the rule's swept_until, in one transaction. Returns the
        number of messages enqueued."""
        bulk = self._bulk()
        with self.engine.begin() as conn:
            written = bulk["messages"].run(conn, rows)
            bulk["message_log"].run(conn, log)
            state = {"rule_id": rule_id, "swept_until": swept_until, "ran_at": ran_at, "enqueued": written,
                     "seconds": round(seconds, 4)}
            stmt = dialect.insert_for(self.engine, sweeps).values(**state)
            conn.execute(stmt.on_conflict_do_update(index_elements=["rule_id"],
                                                    set_={k: v for k, v in state.items() if k != "rule_id"}))
        return written

    def reject(self, rows: list[dict]) -> None:
        """Keep rejected input (source, line, raw text, reason) for inspection."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(rejected_events.insert(), rows)

    # ---- dispatch ---------------------------------------------------------------------
    @contextmanager
    def dispatch_transaction(self, now: datetime, limit: int, slots_until: datetime | None = None):
        """One transaction for a batch of dispatch: take up to `limit` due pending
        messages, earliest first, let the caller read what it needs and judge them (the
        gate's locks and ledger: `GateTransaction.read_ledger`), then write every decision.

        A customer's messages due at the same time are taken together (the batch may
        exceed `limit` for that), so the gate can rank them by priority. The rows are
        found through the partial index ix_messages_pending (due_at, customer_id, id), in
        the order wanted: no sort, however large the backlog. They stay `pending` until
        the decisions are written in this same transaction; meanwhile PostgreSQL's row
        locks (FOR UPDATE SKIP LOCKED) make other dispatchers pass them by, and SQLite's
        BEGIN IMMEDIATE admits one writer at a time.

        `slots_until` (the daemon): first take the messages holding a send slot up to
        then, in slot order, so that a burst paced over many batches goes in its order."""
        with self.engine.begin() as conn:
            txn = GateTransaction(conn, self, now)
            txn.messages = self._due(conn, now, limit, slots_until)
            txn.taken = {m["id"] for m in txn.messages}
            yield txn
            txn.write()

    def _due(self, conn, now: datetime, limit: int, slots_until: datetime | None = None) -> list[dict]:
        p, reader = dialect.placeholder(self.engine), self._readers.get("due")
        if reader is None:  # what dispatch reads of a message (not its bookkeeping times)
            reader = self._readers["due"] = dialect.BulkRead(self.engine, messages, columns=DUE_COLUMNS)
        lock = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        columns = ", ".join(reader.keys)
        slotted: list[dict] = []
        if slots_until is not None:
            slotted = reader.decode(dialect.raw_rows(
                conn, f"SELECT {columns} FROM messages WHERE {SLOTTED_WHERE} AND slot_at <= {p} "
                      f"ORDER BY slot_at, id LIMIT {int(limit)}{lock}", (encode_time(slots_until, self.dialect),)))
            if len(slotted) >= limit:
                return slotted
            limit -= len(slotted)
        unslotted = " AND slot_at IS NULL" if slots_until is not None else ""
        select_due = f"SELECT {columns} FROM messages WHERE {_PENDING_SQL}{unslotted} AND "
        rows = reader.decode(dialect.raw_rows(
            conn, select_due + f"due_at <= {p} ORDER BY due_at, customer_id, id LIMIT {int(limit)}{lock}",
            (encode_time(now, self.dialect),)))
        if len(rows) >= limit:
            last = max(rows, key=lambda r: (r["due_at"], r["customer_id"]))
            taken = {r["id"] for r in rows}
            rows.extend(r for r in reader.decode(dialect.raw_rows(
                conn, select_due + f"due_at = {p} AND customer_id = {p}{lock}",
                (encode_time(last["due_at"], self.dialect), last["customer_id"]))) if r["id"] not in taken)
        rows.sort(key=lambda r: (r["due_at"], r["id"]))
        return slotted + rows

    def finish(self, updates: list[dict], log: list[dict], unreserve: list[int] = ()) -> None:
        """Record the outcome of claimed messages and their decisions, together.

        Each update: _id, state, reason, detail, due_at, updated_at. `unreserve`: messages
        the gate let through whose send failed; they leave the send ledger."""
        with self.engine.begin() as conn:
            self._update_messages(conn, updates, in_flight_only=True)
            self._bulk()["message_log"].run(conn, log)
            unreserve = list(unreserve)
            for start in range(0, len(unreserve), _CHUNK):
                conn.execute(delete(sends).where(sends.c.message_id.in_(unreserve[start:start + _CHUNK])))

    def _update_messages(self, conn, updates: list[dict], now: datetime | None = None, *,
                         in_flight_only: bool = False) -> None:
        """Write decisions. A message going out (`sending`) or waiting on this batch's
        sends (`claimed`) is in flight from `now`: claimed_at is set for the lease check,
        and `sending` counts an attempt (an update with `uncount` gives one back: a send
        that never reached the provider). `in_flight_only`: leave alone a row that is no
        longer in flight (its lease ran out and another dispatcher took it)."""
        if not updates:
            return
        p = dialect.placeholder(self.engine)
        fence = f" AND {IN_FLIGHT_WHERE}" if in_flight_only else ""
        sql = (f"UPDATE messages SET state = {p}, reason = {p}, detail = {p}, due_at = {p}, "
               f"expires_at = COALESCE({p}, expires_at), updated_at = {p}, claimed_at = {p}, "
               f"attempts = attempts + {p}, slot_at = {p} WHERE id = {p}{fence}")
        name = self.dialect
        in_flight = None if now is None else encode_time(now, name)

        def time_or_none(value):
            return None if value is None else encode_time(value, name)

        conn.exec_driver_sql(sql, [(u["state"], u["reason"], u["detail"], encode_time(u["due_at"], name),
                                    time_or_none(u.get("expires_at")), encode_time(u["updated_at"], name),
                                    in_flight if u["state"] in (SENDING, CLAIMED) else None,
                                    int(u["state"] == SENDING) - int(bool(u.get("uncount"))),
                                    time_or_none(u.get("slot_at")), u["_id"])
                                   for u in updates])

    def release_stale_claims(self, now: datetime, lease: timedelta) -> int:
        """Claims older than the lease belong to a dispatcher that died: make them pending
        again (a message it had let through also leaves the send ledger, and gives up its
        send slot: it takes a new one when it is decided again)."""
        stale = select(messages.c.id).where(text(IN_FLIGHT_WHERE), messages.c.claimed_at < now - lease)
        with self.engine.begin() as conn:
            ids = [r[0] for r in conn.execute(stale)]
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                conn.execute(delete(sends).where(sends.c.message_id.in_(chunk)))
                conn.execute(update(messages).where(messages.c.id.in_(chunk))
                             .values(state=PENDING, claimed_at=None, slot_at=None, updated_at=now))
        return len(ids)


class GateTransaction:
    """What dispatch reads, the gate sees, and both write, inside one transaction."""

    def __init__(self, conn, store: "Store", now: datetime):
        self.conn = conn
        self.store = store
        self.now = now
        self.messages: list[dict] = []  # the due messages taken by this transaction
        self.taken: set[int] = set()  # and their ids
        self.ledger: dict[str, list[dict]] = {}  # customer -> their sends, oldest first
        self.reservations: list[dict] = []  # sends rows for the messages let through
        self.updates: list[dict] = []
        self.log: list[dict] = []

    def customers_by_id(self, ids: Iterable[str]) -> tuple[dict[str, dict], dict[str, str]]:
        """The rows by id, and why each row that cannot be read could not (see _each)."""
        return self._each(lambda part: {r["id"]: r for r in self.store._by_ids(customers, customers.c.id, part,
                                                                              self.conn)}, ids)

    def orders_by_id(self, ids: Iterable[str]) -> tuple[dict[str, dict], dict[str, str]]:
        return self._each(lambda part: {r["id"]: r for r in self.store._by_ids(orders, orders.c.id, part,
                                                                              self.conn)}, ids)

    def event_data_by_id(self, ids: Iterable[str]) -> tuple[dict[str, dict], dict[str, str]]:
        return self._each(lambda part: self.store._event_data(self.conn, part), ids)

    def _each(self, read, ids: Iterable[str]) -> tuple[dict[str, dict], dict[str, str]]:
        """Read rows together; when that fails (a stored value one database cannot read
        back: a message must fail alone, not the whole queue), read them one by one,
        each in its own savepoint, and say why each failing one failed."""
        ids = list(dict.fromkeys(i for i in ids if i is not None))
        if not ids:
            return {}, {}
        try:
            with self.conn.begin_nested():
                return read(ids), {}
        except Exception:  # noqa: BLE001 - which row is at fault is found below
            pass
        rows, errors = {}, {}
        for one in ids:
            try:
                with self.conn.begin_nested():
                    rows.update(read([one]))
            except Exception as exc:  # noqa: BLE001 - reported on the message that needs the row
                errors[one] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return rows, errors

    def read_ledger(self, customer_ids: list[str], since: datetime, rule_since: dict[str, datetime]) -> None:
        """Lock the customers (PostgreSQL, in id order so two dispatchers never deadlock;
        SQLite's write lock covers it), then read their sends since `since` (and a rule's
        own sends since its `rule_since`, for cooldowns longer than that)."""
        conn, store = self.conn, self.store
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), _CHUNK):
            dialect.lock_customers(conn, store.engine, ids[start:start + _CHUNK])
        p, name = dialect.placeholder(store.engine), store.dialect
        columns = ("message_id", "customer_id", "rule_id", "channel", "kind", "time")
        ledger = self.ledger
        longer = "".join(f" OR (rule_id = {p} AND time > {p})" for _ in rule_since)
        longer_params = [v for rule_id, at in rule_since.items() for v in (rule_id, encode_time(at, name))]
        for start in range(0, len(ids), _CHUNK):
            part = ids[start:start + _CHUNK]
            sql = (f"SELECT {', '.join(columns)} FROM sends WHERE customer_id IN ({', '.join([p] * len(part))}) "
                   f"AND (time > {p}{longer}) ORDER BY time")
            for row in dialect.raw_rows(conn, sql, (*part, encode_time(since, name), *longer_params)):
                sent = dict(zip(columns, row))
                sent["time"] = decode_time(sent["time"], name)
                ledger.setdefault(sent["customer_id"], []).append(sent)

    def schedule_end(self, channel: str) -> datetime | None:
        """Where a rate-limited channel's schedule ends: its latest send or held slot (from
        any dispatcher). Takes the channel's pacing lock for the rest of the transaction
        (PostgreSQL; SQLite's write lock covers it), after the customers' locks: every
        dispatcher locks in that order, so none waits for another in a circle."""
        conn, store = self.conn, self.store
        dialect.lock_channel(conn, store.engine, channel)
        p = dialect.placeholder(store.engine)
        sql = (f"SELECT max(t) FROM (SELECT max(time) AS t FROM sends WHERE channel = {p} UNION ALL "
               f"SELECT max(slot_at) AS t FROM messages WHERE {SLOTTED_WHERE} AND channel = {p}) AS ends")
        value = dialect.raw_rows(conn, sql, (channel, channel))[0][0]
        return None if value is None else decode_time(value, store.dialect)

    def write(self) -> None:
        self.store._bulk()["sends"].run(self.conn, self.reservations)
        self.store._update_messages(self.conn, self.updates, self.now)
        self.store._bulk()["message_log"].run(self.conn, self.log)


class ConcurrentIngest(RuntimeError):
    """Another writer stored some of this batch's rows first; the batch is redone."""

    def __init__(self, lost: int, what: str = "events"):
        self.lost = lost
        super().__init__(f"{lost} {what} of the batch were stored meanwhile by another writer")
