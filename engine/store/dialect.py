"""The few places where SQLite and PostgreSQL differ, in one file."""

from __future__ import annotations

import json
from operator import itemgetter

from sqlalchemy import event, select
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
            # checkpoint every ~40 MB of WAL instead of every ~4 MB: the dispatcher commits
            # three times a batch, and each checkpoint syncs the file (+10% dispatch and
            # ingest throughput in bench/run.py; the WAL file is reset after a checkpoint)
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def lock_customers(conn, engine: Engine, ids: list[str]) -> None:
    """The gate's per-customer lock: PostgreSQL row locks taken in id order (so two
    dispatchers never deadlock); SQLite's BEGIN IMMEDIATE already serialises writers."""
    if engine.dialect.name == "postgresql" and ids:
        from engine.store.tables import customers  # noqa: PLC0415 - tables import this module's peers

        conn.execute(select(customers.c.id).where(customers.c.id.in_(ids)).order_by(customers.c.id)
                     .with_for_update())


def lock_channel(conn, engine: Engine, channel: str) -> None:
    """A rate-limited channel's pacing lock, held until the transaction ends (PostgreSQL:
    a transaction-level advisory lock on the channel's name; SQLite's BEGIN IMMEDIATE
    already serialises writers)."""
    if engine.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"engine.pacing:{channel}",))


def lock_due_rows(select_stmt, engine: Engine):
    """PostgreSQL: several dispatchers claim disjoint rows without waiting."""
    if engine.dialect.name == "postgresql":
        return select_stmt.with_for_update(skip_locked=True)
    return select_stmt


def _is_float(kind) -> bool:
    try:
        return kind.python_type is float
    except NotImplementedError:
        return False


class BulkWrite:
    """A prepared multi-row INSERT (optionally upsert / ignore-on-conflict) run through the
    driver's executemany with values encoded once here: the ingest hot path, where
    SQLAlchemy's per-row parameter processing would cost more than the database."""

    def __init__(self, engine: Engine, table, conflict: tuple[str, ...] = (), update: bool = False):
        self.name = engine.dialect.name
        columns = [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]
        self.keys = [c.name for c in columns]
        encoders, holders = zip(*(_encoding(column, self.name) for column in columns))
        self._get = itemgetter(*self.keys)
        self._encode = [(i, enc) for i, enc in enumerate(encoders) if enc is not None]
        on_conflict = _on_conflict(self.keys, conflict, update)
        self.sql = f"INSERT INTO {table.name} ({', '.join(self.keys)}) VALUES ({', '.join(holders)}){on_conflict}"
        self._unnest = (_unnest_sql(engine, table, columns, self.keys, on_conflict)
                        if self.name == "postgresql" else None)

    def rows(self, rows: list[dict]) -> list[tuple]:
        get, encode, out = self._get, self._encode, []
        for row in rows:
            values = list(get(row))
            for i, enc in encode:
                if values[i] is not None:
                    values[i] = enc(values[i])
            out.append(tuple(values))
        return out

    def run(self, conn, rows: list[dict]) -> int:
        """Execute for all rows; returns the number of rows written (conflicts ignored don't count)."""
        if not rows:
            return 0
        if self._unnest is None or len(rows) < 8:
            return conn.exec_driver_sql(self.sql, self.rows(rows)).rowcount
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(self._unnest, self.columns(rows))
            return cursor.rowcount
        finally:
            cursor.close()

    def columns(self, rows: list[dict]) -> list[list]:
        """The rows as one encoded list per column (the arrays of the unnest insert);
        a column whose values are all the same object is encoded once."""
        out = [[row[key] for row in rows] for key in self.keys]
        for i, encode in self._encode:
            column = out[i]
            first = column[0]
            if all(v is first for v in column):
                out[i] = [None if first is None else encode(first)] * len(column)
            else:
                out[i] = [None if v is None else encode(v) for v in column]
        return out


def _encoding(column, dialect_name: str):
    """How BulkWrite sends a column's values: (encoder or None, placeholder)."""
    from engine.store.tables import MoneyType, UTCDateTime, encode_money, encode_time  # noqa: PLC0415 - a cycle

    holder = "?" if dialect_name == "sqlite" else "%s"
    if isinstance(column.type, UTCDateTime):
        return (lambda v, d=dialect_name: encode_time(v, d)), holder
    if isinstance(column.type, MoneyType):
        return (lambda v, d=dialect_name: encode_money(v, d)), holder
    if column.type.__class__.__name__ == "JSON":
        return _json_dumps, (holder if dialect_name == "sqlite" else f"CAST({holder} AS JSON)")
    if _is_float(column.type):
        # an amount arrives as 199 or 199.0: one type per column (PostgreSQL's array
        # parameters refuse a list mixing int and float)
        return float, holder
    return None, holder


def _on_conflict(keys: list[str], conflict: tuple[str, ...], update: bool) -> str:
    if not conflict:
        return ""
    target = ", ".join(conflict)
    if update:
        sets = ", ".join(f"{k} = excluded.{k}" for k in keys if k not in conflict)
        return f" ON CONFLICT ({target}) DO UPDATE SET {sets}"
    return f" ON CONFLICT ({target}) DO NOTHING"


def _unnest_sql(engine: Engine, table, columns, keys: list[str], on_conflict: str) -> str:
    """PostgreSQL: every column as one array parameter: one short statement for any number
    of rows (psycopg's executemany sends a statement per row, and a multi-row VALUES of
    thousands of placeholders costs psycopg more to parse than to run)."""
    names = [f"c{i}" for i in range(len(columns))]
    arrays, picks = [], []
    for name, column in zip(names, columns):
        json = column.type.__class__.__name__ == "JSON"
        kind = "TEXT" if json else column.type.compile(dialect=engine.dialect)
        arrays.append(f"%b::{kind}[]")  # binary: no text quoting of every element
        picks.append(f"{name}::JSON" if json else name)
    return (f"INSERT INTO {table.name} ({', '.join(keys)}) SELECT {', '.join(picks)} "
            f"FROM unnest({', '.join(arrays)}) AS u({', '.join(names)}){on_conflict}")


class BulkRead:
    """`SELECT columns FROM table WHERE key IN (...)` through the driver's own cursor, with
    times and JSON decoded here: the read side of BulkWrite. SQLAlchemy's Row objects,
    `_asdict()` and per-value result processing cost more than SQLite's own work on
    the ingest and dispatch hot paths (three such lookups per batch)."""

    def __init__(self, engine: Engine, table, key: str = "id", columns: tuple[str, ...] | None = None):
        from engine.store.tables import MoneyType, UTCDateTime, decode_money, decode_time  # noqa: PLC0415 - a cycle

        name = engine.dialect.name
        chosen = [c for c in table.columns if columns is None or c.name in columns]
        self.keys = [c.name for c in chosen]
        decoders = []
        for i, column in enumerate(chosen):
            if isinstance(column.type, UTCDateTime):
                decoders.append((i, lambda v, d=name: decode_time(v, d)))
            elif isinstance(column.type, MoneyType):
                decoders.append((i, decode_money))
            elif column.type.__class__.__name__ == "JSON":
                decoders.append((i, _json_loads))
        self._decoders = decoders
        self._holder = "?" if name == "sqlite" else "%s"
        self._sql = f"SELECT {', '.join(self.keys)} FROM {table.name} WHERE {key} IN "

    def fetch(self, conn, ids: list, chunk: int) -> list[dict]:
        out = []
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            sql = self._sql + "(" + ", ".join([self._holder] * len(part)) + ")"
            out.extend(self.decode(raw_rows(conn, sql, tuple(part))))
        return out

    def decode(self, rows) -> list[dict]:
        """Driver rows (the chosen columns, in table order) as dicts of Python values."""
        keys, decoders, out = self.keys, self._decoders, []
        for row in rows:
            values = list(row)
            for i, decode in decoders:
                if values[i] is not None:
                    values[i] = decode(values[i])
            out.append(dict(zip(keys, values)))
        return out


def raw_rows(conn, sql: str, params=()) -> list[tuple]:
    """All rows of one statement, fetched by the driver's cursor in one call (no
    SQLAlchemy result objects: on the hot paths their per-row cost is larger than the
    database's). Runs inside `conn`'s transaction."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def json_value(value):
    """A JSON column's value as Python (None stays None)."""
    return None if value is None else _json_loads(value)


def _json_loads(value):
    """SQLite hands back JSON text; psycopg has already decoded it. Empty lists and
    objects (most tags, attrs and opt-outs) skip the decoder."""
    if value.__class__ is str:
        if value == "[]":
            return []
        if value == "{}":
            return {}
        return json.loads(value)
    return json.loads(value) if isinstance(value, bytes) else value


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_dumps(value) -> str:
    return _JSON.encode(value)


def placeholder(engine: Engine) -> str:
    return "?" if engine.dialect.name == "sqlite" else "%s"
