"""Schema migrations (Alembic, engine/store/migrations): a database made by the release
before them (commit 0aec3f5), or by any later version, is upgraded in place when a store
opens, keeping every row; its pending messages are still sent. On real SQLite files and
on the real PostgreSQL server, each test with a database of its own.

The 0aec3f5 database is made from that release's DDL (tests/store/fixtures, written from
its code; see the README there), then filled with rows the engine writes today, minus
the columns added since: the rows of that release had the same form."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Float, MetaData, Table, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from engine.app import Engine
from engine.intake.events import parse_event
from engine.money import Money, to_money
from engine.store import Store, schema
from engine.store.tables import metadata
from tests.conftest import ROOT, recording_channels
from tests.helpers import T0, created, event

FIXTURES = Path(__file__).with_name("fixtures")
ADDED_SINCE_0AEC3F5 = {"messages": {"slot_at"}}  # columns the release before Alembic did not have
FLOAT_IN_0AEC3F5 = {"customers": {"spent"}, "orders": {"amount"}}  # binary floats then, exact money now (0003)
REMINDER = "【山野户外】王小明，您拍下的羽绒睡袋还未付款，库存有限，付款后我们会尽快为您发货哦~"
DUE = T0 + timedelta(minutes=30)  # the payment reminder of an order created at T0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    """An empty database of its own: a new SQLite file, or a new database on the server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'engine.db'}"
        return
    server = make_url(request.getfixturevalue("pg_database"))  # reachable (else skipped or failed, as conftest says)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"engine_migrations_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_0aec3f5_ddl(conn) -> None:
    path = FIXTURES / f"schema_0aec3f5.{conn.dialect.name}.sql"
    for statement in path.read_text(encoding="utf-8").split(";\n"):
        lines = [line for line in statement.splitlines() if line.strip() and not line.startswith("--")]
        if lines:
            conn.exec_driver_sql("\n".join(lines))


def make_0aec3f5_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        run_0aec3f5_ddl(conn)
    engine.dispose()


def engine_rows(project, clock, tmp_path) -> dict[str, list[dict]]:
    """Rows as the engine writes them: customers, orders, events, pending messages (a
    payment reminder due at DUE; c-2's paid order: a cancelled-to-be reminder and a
    honeymoon note weeks ahead), their log, a sweep, the daemon's state, a rejected line."""
    store = Store(f"sqlite:///{tmp_path / 'source.db'}")
    eng = Engine(project, store, recording_channels(project), clock)
    tz = project.config.timezone
    eng.ingest([parse_event(e, tz) for e in (
        created("evt-1"),
        created("evt-2", customer="c-2", order="o-2", amount=20.15),  # 2014.9999999999998 cents as a float
        event("evt-3", "order.paid", 5, customer="c-2", order="o-2"))])
    store.set_daemon_state("reload", {"ok": True, "rules": 3}, T0)
    store.write_sweep("winback-60d", T0, T0, [], [], 0.25)
    store.reject([{"source": "http", "line": 3, "raw": "{nope", "reason": "not valid JSON", "received_at": T0}])
    rows = {table.name: store.rows(table.name, order_by=table.primary_key.columns.keys()[0])
            for table in metadata.sorted_tables}
    store.close()
    assert {m["state"] for m in rows["messages"]} == {"pending"} and len(rows["messages"]) >= 3
    return rows


def as_in_0aec3f5(table: Table) -> Table:
    """The table with the types 0aec3f5 stored its columns as (amounts as binary floats)."""
    floats = FLOAT_IN_0AEC3F5.get(table.name, set())
    return Table(table.name, MetaData(), *[Column(c.name, Float() if c.name in floats else c.type,
                                                  primary_key=c.primary_key) for c in table.columns])


def fill(url: str, rows: dict[str, list[dict]]) -> None:
    """Insert the rows as 0aec3f5 stored them: without the columns added since, amounts as floats."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            dropped = ADDED_SINCE_0AEC3F5.get(table.name, set())
            floats = FLOAT_IN_0AEC3F5.get(table.name, set())
            if rows[table.name]:
                conn.execute(as_in_0aec3f5(table).insert(),
                             [{k: float(v) if k in floats and v is not None else v for k, v in r.items()
                               if k not in dropped} for r in rows[table.name]])
    engine.dispose()


def every_row(engine, *, old: bool = False) -> dict[str, list[tuple]]:
    """Every row of every table, in the columns the 0aec3f5 schema had (`old`: read as
    0aec3f5 stored them; a float amount equals the money it became, 299.0 == Money('299.00'))."""
    with engine.connect() as conn:
        out = {}
        for table in metadata.sorted_tables:
            source = as_in_0aec3f5(table) if old else table
            columns = [c for c in source.columns if c.name not in ADDED_SINCE_0AEC3F5.get(table.name, set())]
            out[table.name] = [tuple(r) for r in conn.execute(select(*columns).order_by(*source.primary_key.columns))]
        return out


def describe(conn) -> dict:
    """A schema, in a form two databases can be compared by: each table's columns (name,
    type as this database spells it, nullable; not their order: a column added later
    comes last), primary key and unique constraints; each index as the database has it
    written down (SQLite: its CREATE INDEX, PostgreSQL: pg_indexes), partial WHEREs included."""
    pg_schema = conn.exec_driver_sql("SELECT current_schema()").scalar() if conn.dialect.name == "postgresql" else None
    found = inspect(conn)
    out: dict = {}
    for name in sorted(set(found.get_table_names(schema=pg_schema)) - {"alembic_version"}):
        columns = sorted((c["name"], c["type"].compile(dialect=conn.dialect), c["nullable"])
                         for c in found.get_columns(name, schema=pg_schema))
        uniques = sorted((u["name"], tuple(u["column_names"]))
                         for u in found.get_unique_constraints(name, schema=pg_schema))
        out[name] = (columns, found.get_pk_constraint(name, schema=pg_schema)["constrained_columns"], uniques)
    if pg_schema is None:
        indexes = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    else:
        indexes = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    out["indexes"] = sorted((name, " ".join(sql.replace(f" {pg_schema}.", " ").split())) for name, sql in indexes
                            if name != "alembic_version_pkc")
    return out


def describe_url(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        out = describe(conn)
    engine.dispose()
    return out


def differences(store: Store) -> list:
    """What Alembic's autogenerate finds between the database and engine.store.tables
    (with the engine's options: a UTCDateTime column is compared as BIGINT on SQLite,
    TIMESTAMP on PostgreSQL, what it is stored as)."""
    with store.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=schema.context_options()), metadata)


def revision_of(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return schema.current_revision(conn)


def schema_made_by(build, tmp_path, url: str) -> dict:
    """The schema `build(conn)` makes on a database of the same kind as `url`, beside it:
    a SQLite file of its own; on PostgreSQL, a schema of its own, rolled back after."""
    if make_url(url).get_backend_name() == "sqlite":
        url = f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("CREATE SCHEMA beside")
            conn.exec_driver_sql("SET LOCAL search_path TO beside")
        build(conn)
        out = describe(conn)
        conn.rollback()
    engine.dispose()
    return out


def new_schema(tmp_path, url: str) -> dict:
    """The schema a new database gets."""
    return schema_made_by(metadata.create_all, tmp_path, url)


def schema_0aec3f5(tmp_path, url: str) -> dict:
    return schema_made_by(run_0aec3f5_ddl, tmp_path, url)


# ---- the release before Alembic ----------------------------------------------------------

def test_a_database_made_by_0aec3f5_is_upgraded_in_place_keeping_every_row_and_its_pending_messages_are_sent(
        empty_url, project, clock, tmp_path):
    make_0aec3f5_schema(empty_url)
    fill(empty_url, engine_rows(project, clock, tmp_path))
    old = create_engine(empty_url)
    before = every_row(old, old=True)
    old.dispose()

    store = Store(empty_url)
    try:
        assert revision_of(store) == schema.head_revision()
        assert every_row(store.engine) == before  # every row of every table, every value
        # the amounts, floats then, are exact money now: cents on SQLite, NUMERIC on PostgreSQL
        amounts = [o["amount"] for o in store.rows("orders")]
        assert amounts and all(isinstance(a, Money) and a == to_money(a) for a in amounts)
        with store.engine.connect() as conn:
            raw = [r[0] for r in conn.exec_driver_sql("SELECT amount FROM orders ORDER BY id")]
        assert raw == ([int(a * 100) for a in amounts] if store.dialect == "sqlite" else amounts)
        assert {m["slot_at"] for m in store.rows("messages")} == {None}
        assert store.next_due_at() == DUE  # the payment reminder still waits, and dispatch sees it
        eng = Engine(project, store, recording_channels(project), clock)
        clock.set(DUE)

        report = eng.dispatch()

        assert report.by_outcome == {"sent": 1, "cancelled": 1}  # c-2 paid meanwhile
        assert [(m.rule_id, m.customer_id, m.to, m.body) for m in eng.channels["sms"].sent] == [
            ("payment-reminder", "c-1", "13800000000", REMINDER)]
        assert [m["rule_id"] for m in store.rows("messages", state="pending")] == ["honeymoon-30d"]
    finally:
        store.close()


def test_the_upgraded_schema_is_the_one_a_new_database_gets(empty_url, tmp_path):
    make_0aec3f5_schema(empty_url)

    store = Store(empty_url)
    try:
        assert differences(store) == []
        with store.engine.connect() as conn:
            assert describe(conn) == new_schema(tmp_path, empty_url)
    finally:
        store.close()


def test_opening_an_upgraded_database_again_changes_nothing(empty_url, project, clock, tmp_path):
    make_0aec3f5_schema(empty_url)
    fill(empty_url, engine_rows(project, clock, tmp_path))
    Store(empty_url).close()
    upgraded, rows = describe_url(empty_url), every_row(create_engine(empty_url))

    store = Store(empty_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), "head")  # and Alembic's own upgrade: nothing to do
        assert revision_of(store) == schema.head_revision()
        assert every_row(store.engine) == rows
    finally:
        store.close()
    assert describe_url(empty_url) == upgraded


def test_two_processes_opening_an_old_database_at_once_upgrade_it_once(empty_url, project, clock, tmp_path):
    make_0aec3f5_schema(empty_url)
    fill(empty_url, engine_rows(project, clock, tmp_path))
    start, failures, stores = threading.Barrier(2), [], []

    def open_store():
        start.wait()
        try:
            stores.append(Store(empty_url))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    try:
        assert failures == []
        assert [revision_of(s) for s in stores] == [schema.head_revision()] * 2
        assert differences(stores[0]) == []
        assert stores[0].next_due_at() == DUE
    finally:
        for s in stores:
            s.close()


# ---- later pre-Alembic versions, new databases, the revisions themselves --------------

def test_a_database_a_later_pre_alembic_version_made_is_adopted_without_changes(empty_url, project, clock, tmp_path):
    """Versions after 0aec3f5 had already added slot_at and the slot indexes in place:
    the revisions after the baseline find them there and add nothing twice."""
    engine = create_engine(empty_url)
    metadata.create_all(engine)  # what the version before Alembic made: today's tables, no alembic_version
    engine.dispose()
    rows = engine_rows(project, clock, tmp_path)
    fill(empty_url, rows)
    made = describe_url(empty_url)

    store = Store(empty_url)
    try:
        assert revision_of(store) == schema.head_revision()
        assert differences(store) == []
        assert len(store.rows("messages", state="pending")) == len(rows["messages"])
    finally:
        store.close()
    assert describe_url(empty_url) == made


def test_a_new_database_is_created_and_stamped_at_the_head_revision(empty_url):
    store = Store(empty_url)
    try:
        assert revision_of(store) == schema.head_revision()
        assert differences(store) == []
    finally:
        store.close()


def test_the_revisions_walk_from_nothing_to_0aec3f5s_schema_then_to_a_new_databases_and_back(empty_url, tmp_path):
    """Upgrading an empty database revision by revision: the baseline is exactly the
    0aec3f5 schema (the fixture's), the head exactly what a new store creates; the
    downgrade back to the baseline gives the 0aec3f5 schema again."""
    store = Store(empty_url, create=False)
    try:
        with store.engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), "0001")
        baseline = describe_url(empty_url)
        with store.engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), "head")
        head = describe_url(empty_url)
        with store.engine.begin() as conn:
            command.downgrade(schema.alembic_config(conn), "0001")
        downgraded = describe_url(empty_url)
        assert revision_of(store) == "0001"
    finally:
        store.close()
    assert baseline == schema_0aec3f5(tmp_path, empty_url)
    assert head == new_schema(tmp_path, empty_url)
    assert downgraded == baseline


def test_a_database_a_newer_version_upgraded_is_refused_in_words(tmp_path):
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    Store(url).close()
    with create_engine(url).begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")

    with pytest.raises(schema.SchemaError, match=r"^the database's schema cannot be brought up to date: Can't locate "
                                                 r"revision identified by '9999'\. Was it upgraded by a newer version "
                                                 r"of the engine\? Run that version \(or restore a backup\)$"):
        Store(url)


def test_the_revisions_are_one_line_oldest_first_each_file_named_by_its_revision():
    """Two branches each adding a revision after the same one give two heads: Alembic
    would refuse to upgrade. Renumber the later one (its down_revision too)."""
    script = ScriptDirectory.from_config(schema.alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert script.get_heads() == [revisions[-1].revision]
    assert [r.revision for r in revisions] == [f"{n:04d}" for n in range(1, len(revisions) + 1)]
    assert [Path(r.path).name.split("_")[0] for r in revisions] == [r.revision for r in revisions]


def test_a_throwaway_store_is_not_stamped_and_never_loads_alembic(tmp_path):
    """The dry-run's store: created from the tables alone (Alembic costs 0.1 s to load)."""
    url = f"sqlite:///{tmp_path / 'dry-run.db'}"
    code = (f"import sys; from engine.store import Store; Store({url!r}, throwaway=True).close(); "
            "assert not [m for m in sys.modules if m.startswith('alembic')], 'alembic was loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    with create_engine(url).connect() as conn:
        assert set(inspect(conn).get_table_names()) == set(metadata.tables)


def test_alembic_on_the_command_line_finds_the_schema_up_to_date(tmp_path):
    """A developer's `alembic` (alembic.ini at the root) against an upgraded database:
    `check` runs autogenerate with the engine's options and finds nothing to add."""
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    make_0aec3f5_schema(url)
    alembic = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "-x", f"url={url}"]

    upgraded = subprocess.run([*alembic, "upgrade", "head"], capture_output=True, text=True, cwd=tmp_path)
    checked = subprocess.run([*alembic, "check"], capture_output=True, text=True, cwd=tmp_path)

    assert upgraded.returncode == 0, upgraded.stderr
    assert (checked.returncode, checked.stdout.strip()) == (0, "No new upgrade operations detected."), checked.stderr
    with create_engine(url).connect() as conn:
        assert schema.current_revision(conn) == schema.head_revision()


def test_the_start_up_shortcut_knows_the_same_head_as_alembic(empty_url):
    """A store opening a database already at the head reads its stamp and does not load
    Alembic (engine.store.schema._at_head): its idea of the head must be Alembic's."""
    assert schema.HEAD == schema.head_revision()
    Store(empty_url).close()  # created and stamped
    engine = create_engine(empty_url)
    try:
        assert schema.bring_up_to_date(engine) == "current"
    finally:
        engine.dispose()
