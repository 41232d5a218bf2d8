"""The few places where SQLite and PostgreSQL differ, in one file."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine


def insert_for(engine: Engine, table):
    """INSERT that supports on_conflict_do_nothing / on_conflict_do_update."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"database {engine.dialect.name!r} is not supported; use SQLite or PostgreSQL")


def upsert(engine: Engine, table, key: str = "id"):
    stmt = insert_for(engine, table)
    columns = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
    return stmt.on_conflict_do_update(index_elements=[key], set_=columns)


def configure_sqlite(engine: Engine, throwaway: bool) -> None:
    """WAL and a busy timeout so the daemon and `ingest` can share the file; every
    transaction takes the write lock up front (BEGIN IMMEDIATE) so a read-then-write
    never fails half-way with 'database is locked'."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        if throwaway:
            cursor.execute("PRAGMA journal_mode=OFF")
            cursor.execute("PRAGMA synchronous=OFF")
        else:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def lock_due_rows(select_stmt, engine: Engine):
    """PostgreSQL: several dispatchers claim disjoint rows without waiting."""
    if engine.dialect.name == "postgresql":
        return select_stmt.with_for_update(skip_locked=True)
    return select_stmt
