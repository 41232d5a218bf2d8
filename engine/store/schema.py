"""The schema's versions: Alembic migrations (engine/store/migrations/versions), applied
in place when a store opens (`Store(create=True)`).

- A database without any of the engine's tables: `metadata.create_all`, then stamped at
  the head revision (Alembic's recipe for a new database: fast, one statement a table). A
  throwaway database (the dry-run's) is not stamped: it is never opened again.
- A database with the engine's tables: upgraded to the head revision. One without an
  `alembic_version` table was made before the engine used Alembic; it is upgraded from
  the start, and the baseline revision (the schema of commit 0aec3f5) and the ones after
  it create only what is missing, so a database made by any earlier version arrives at
  the same schema, its rows kept.

All of it is one transaction on the store's own connection (its SQLite settings hold,
an in-memory database is the same one). On PostgreSQL it first takes an advisory lock,
so two processes starting at once upgrade one after the other (the second finds nothing
left to do); on SQLite, BEGIN IMMEDIATE already admits one writer at a time."""

from __future__ import annotations

from pathlib import Path

from loguru import logger
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from engine.store.tables import MoneyType, UTCDateTime, metadata

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
FILE_TEMPLATE = "%(rev)s_%(slug)s"  # versions/0002_send_slots.py: revisions read in order
_LOCK = "engine.store.schema"


def alembic_config(connection: Connection | None = None):
    """Alembic's configuration, made in code (no alembic.ini needed at run time); with
    `connection`, env.py migrates through it, inside its transaction."""
    from alembic.config import Config  # noqa: PLC0415 - Alembic is loaded only when a schema is checked

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", FILE_TEMPLATE.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def bring_up_to_date(engine: Engine, *, stamp_new: bool = True) -> str:
    """Create or upgrade the schema (see the module's text). Returns what was done:
    "created", "current" (already at the head: Alembic not even loaded) or "upgraded"."""
    if _at_head(engine):
        return "current"
    with engine.begin() as conn:
        lock(conn)
        if not set(inspect(conn).get_table_names()) & set(metadata.tables):
            metadata.create_all(conn)
            if stamp_new:
                _command().stamp(alembic_config(conn), "head")
            return "created"
        from alembic.util import CommandError  # noqa: PLC0415

        before = current_revision(conn)
        try:
            _command().upgrade(alembic_config(conn), "head")
        except CommandError as exc:  # e.g. stamped with a revision this version does not have
            raise SchemaError(f"the database's schema cannot be brought up to date: {exc}. Was it upgraded by a "
                              f"newer version of the engine? Run that version (or restore a backup)") from exc
        after = current_revision(conn)
        if after != before:
            logger.bind(component="store").info("database schema upgraded in place: revision {} -> {}",
                                                before or "(before Alembic)", after)
        return "upgraded"


def _at_head(engine: Engine) -> bool:
    """Whether the database is stamped with the newest revision in the versions folder (the
    common case at every start): one small read, no lock, no Alembic import (0.15 s of CPU
    that a daemon starting beside a sending one would take from it)."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables or not set(metadata.tables) <= tables:  # stamped, and every table there
            return False
        stamped = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return stamped == [HEAD]


def _newest_revision() -> str:
    """The revisions are one line, each file named by its revision, oldest first
    (FILE_TEMPLATE; tests/store/test_migrations.py checks it): the newest is the last name."""
    names = sorted(p.name for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))
    return names[-1].split("_", 1)[0]


HEAD = _newest_revision()


class SchemaError(RuntimeError):
    """The database's schema is one this version of the engine cannot upgrade."""


def _command():
    """alembic.command, imported when needed: a throwaway store never loads Alembic (0.1 s)."""
    from alembic import command  # noqa: PLC0415

    return command


def lock(conn: Connection) -> None:
    """PostgreSQL: one schema change at a time, until this transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))


def current_revision(conn: Connection) -> str | None:
    """The revision a database is stamped with (None: not stamped)."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# ---- what env.py hands Alembic: also used by the tests' schema comparison ------------------

def render_item(type_, obj, autogen_context):
    """`alembic revision --autogenerate` writes the engine's time type by its name."""
    if type_ == "type" and isinstance(obj, (UTCDateTime, MoneyType)):
        name = type(obj).__name__
        autogen_context.imports.add(f"from engine.store.tables import {name}")
        return f"{name}()"
    return False


def compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):
    """UTCDateTime is stored as BIGINT on SQLite and TIMESTAMP on PostgreSQL, MoneyType as
    BIGINT (cents) and NUMERIC(18, 2): compare what it becomes on this database, not the
    decorator (None: Alembic's own comparison)."""
    if isinstance(metadata_type, (UTCDateTime, MoneyType)):
        stored = metadata_type.load_dialect_impl(context.dialect)
        return inspected_type.compile(dialect=context.dialect) != stored.compile(dialect=context.dialect)
    return None


def context_options() -> dict:
    """Options for Alembic's migration context, the same for migrating and for comparing.
    render_as_batch: autogenerated revisions alter tables in batch mode, which SQLite
    needs for anything beyond adding a column (PostgreSQL just runs the ALTERs)."""
    return {"target_metadata": metadata, "render_as_batch": True, "render_item": render_item,
            "compare_type": compare_type}
