"""Alembic's entry point. Run by engine.store.schema when a store opens, with the store's
own connection inside its transaction (config.attributes["connection"]); or by a
developer's `alembic` command, given the database: `alembic -x url=sqlite:///engine.db ...`
(alembic.ini at the repository's root points here)."""

from alembic import context

from engine.store import schema

config = context.config


def run(connection) -> None:
    context.configure(connection=connection, **schema.context_options())
    with context.begin_transaction():  # a no-op inside the store's transaction: it commits
        context.run_migrations()


def run_from_command_line() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: the revisions look at the database first")
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("which database? alembic -x url=sqlite:///path/to/engine.db ... "
                         "(or postgresql+psycopg://user@host/name)")
    from engine.store.store import Store  # noqa: PLC0415 - its SQLite settings (WAL, BEGIN IMMEDIATE)

    store = Store(url, create=False)
    try:
        with store.engine.begin() as connection:
            schema.lock(connection)
            run(connection)
    finally:
        store.close()


if config.attributes.get("connection") is not None:
    run(config.attributes["connection"])
else:
    run_from_command_line()
