"""The store: events, customers, orders, scheduled messages and the decision log.

Every write that belongs together happens in one transaction. Dedup is enforced by the
database: `messages` has a unique key on (rule_id, dedup_key) and events on their id."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import bindparam, create_engine, func, select, update
from sqlalchemy.engine import Engine, make_url

from engine.store import dialect
from engine.store.tables import (customers, events, message_log, messages, metadata, orders,
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
    def write_ingest(self, batch: IngestWrite, lost_log=None) -> tuple[set[str], dict[tuple[str, str], int]]:
        """Write one batch. Returns the event ids actually inserted (others were already
        there) and the (rule_id, dedup_key) -> message id of messages actually scheduled
        (a missing key lost to an earlier message with the same key). `lost_log`, given
        that mapping, returns log rows to write in the same transaction."""
        with self.engine.begin() as conn:
            inserted: set[str] = set()
            if batch.events:
                stmt = dialect.insert_for(self.engine, events).on_conflict_do_nothing(index_elements=["id"])
                inserted = {r.id for r in conn.execute(stmt.returning(events.c.id), batch.events)}
                if len(inserted) != len(batch.events):
                    raise ConcurrentIngest(len(batch.events) - len(inserted))
            if batch.customers:
                conn.execute(dialect.upsert(self.engine, customers), batch.customers)
            if batch.orders:
                conn.execute(dialect.upsert(self.engine, orders), batch.orders)
            scheduled: dict[tuple[str, str], int] = {}
            if batch.messages:
                stmt = dialect.insert_for(self.engine, messages).on_conflict_do_nothing(
                    index_elements=["rule_id", "dedup_key"])
                rows = conn.execute(stmt.returning(messages.c.id, messages.c.rule_id, messages.c.dedup_key),
                                    batch.messages)
                scheduled = {(r.rule_id, r.dedup_key): r.id for r in rows}
            log_rows = batch.log + (lost_log(scheduled) if lost_log else [])
            if log_rows:
                conn.execute(message_log.insert(), log_rows)
        return inserted, scheduled

    def add_log(self, rows: list[dict]) -> None:
        if rows:
            with self.engine.begin() as conn:
                conn.execute(message_log.insert(), rows)

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
        with self.engine.begin() as conn:
            if updates:
                stmt = (update(messages).where(messages.c.id == bindparam("_id"))
                        .values(state=bindparam("state"), reason=bindparam("reason"), detail=bindparam("detail"),
                                due_at=bindparam("due_at"), updated_at=bindparam("updated_at"),
                                claimed_at=None))
                conn.execute(stmt, updates)
            if log:
                conn.execute(message_log.insert(), log)

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
    """Another writer stored some of this batch's events first; the batch is redone."""

    def __init__(self, lost: int):
        self.lost = lost
        super().__init__(f"{lost} events of the batch were stored meanwhile by another writer")
