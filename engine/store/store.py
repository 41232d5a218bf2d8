"""The store: events, customers, orders, scheduled messages and the decision log.

Every write that belongs together happens in one transaction. Dedup is enforced by the
database: `messages` has a unique key on (rule_id, dedup_key) and events on their id."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import create_engine, func, select, update
from sqlalchemy.engine import Engine, make_url

from engine.store import dialect
from engine.store.tables import (customers, encode_time, events, message_log, messages, metadata, orders,
                                 rejected_events)

_CHUNK = 900  # ids per IN (...) query, below every driver's parameter limit
PENDING, CLAIMED = "pending", "claimed"


@dataclass
class IngestWrite:
    """Everything one ingest batch writes, in one transaction."""

    events: list[dict] = field(default_factory=list)
    customers: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)


class Store:
    def __init__(self, url: str, *, throwaway: bool = False, create: bool = True):
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=not throwaway)
        self.dialect = self.engine.dialect.name
        self._bulk_writes: dict[str, dialect.BulkWrite] | None = None
        if self.dialect == "sqlite":
            dialect.configure_sqlite(self.engine, throwaway)
        if create:
            metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- reads ------------------------------------------------------------------------
    def _by_ids(self, table, column, ids: Iterable[str]) -> list[dict]:
        ids = list(dict.fromkeys(i for i in ids if i is not None))
        out: list[dict] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                out.extend(r._asdict() for r in conn.execute(select(table).where(column.in_(chunk))))
        return out

    def existing_event_ids(self, ids: Iterable[str]) -> set[str]:
        return {r["id"] for r in self._by_ids(events, events.c.id, ids)}

    def customers_by_id(self, ids: Iterable[str]) -> dict[str, dict]:
        return {r["id"]: r for r in self._by_ids(customers, customers.c.id, ids)}

    def orders_by_id(self, ids: Iterable[str]) -> dict[str, dict]:
        return {r["id"]: r for r in self._by_ids(orders, orders.c.id, ids)}

    def events_by_id(self, ids: Iterable[str]) -> dict[str, dict]:
        return {r["id"]: r for r in self._by_ids(events, events.c.id, ids)}

    def next_due_at(self) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(select(func.min(messages.c.due_at)).where(messages.c.state == PENDING)).scalar()

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

    def reject(self, rows: list[dict]) -> None:
        """Keep rejected input (source, line, raw text, reason) for inspection."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(rejected_events.insert(), rows)

    # ---- dispatch ---------------------------------------------------------------------
    def claim_due(self, now: datetime, limit: int) -> list[dict]:
        """Atomically move up to `limit` due pending messages to `claimed`, earliest first."""
        due = (select(messages.c.id).where(messages.c.state == PENDING, messages.c.due_at <= now)
               .order_by(messages.c.due_at, messages.c.id).limit(limit))
        due = dialect.lock_due_rows(due, self.engine)
        stmt = (update(messages).where(messages.c.id.in_(due.scalar_subquery()))
                .values(state=CLAIMED, claimed_at=now, updated_at=now, attempts=messages.c.attempts + 1)
                .returning(*messages.c))
        with self.engine.begin() as conn:
            rows = [r._asdict() for r in conn.execute(stmt)]
        rows.sort(key=lambda r: (r["due_at"], r["id"]))
        return rows

    def finish(self, updates: list[dict], log: list[dict]) -> None:
        """Record the outcome of claimed messages and their decisions, together.

        Each update: _id, state, reason, detail, due_at, updated_at."""
        p = dialect.placeholder(self.engine)
        sql = (f"UPDATE messages SET state = {p}, reason = {p}, detail = {p}, due_at = {p}, updated_at = {p}, "
               f"claimed_at = NULL WHERE id = {p}")
        name = self.dialect
        params = [(u["state"], u["reason"], u["detail"], encode_time(u["due_at"], name),
                   encode_time(u["updated_at"], name), u["_id"]) for u in updates]
        with self.engine.begin() as conn:
            if params:
                conn.exec_driver_sql(sql, params)
            self._bulk()["message_log"].run(conn, log)

    def release_stale_claims(self, now: datetime, lease: timedelta) -> int:
        """Claims older than the lease belong to a dispatcher that died: make them pending."""
        stmt = (update(messages).where(messages.c.state == CLAIMED, messages.c.claimed_at < now - lease)
                .values(state=PENDING, claimed_at=None, updated_at=now))
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def pending_by_rule(self) -> dict[tuple[str, str], int]:
        stmt = select(messages.c.rule_id, messages.c.state, func.count()).group_by(messages.c.rule_id, messages.c.state)
        with self.engine.connect() as conn:
            return {(r[0], r[1]): r[2] for r in conn.execute(stmt)}


class ConcurrentIngest(RuntimeError):
    """Another writer stored some of this batch's rows first; the batch is redone."""

    def __init__(self, lost: int, what: str = "events"):
        self.lost = lost
        super().__init__(f"{lost} {what} of the batch were stored meanwhile by another writer")
