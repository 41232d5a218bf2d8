"""Baseline: the schema of commit 0aec3f5, the last release before Alembic.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

A database that release made is at this revision; it is not stamped with it, though
(it has no alembic_version table), so it runs this revision first, which creates only
what is missing: nothing for such a database; the tables, columns and indexes added
since for one made by an even earlier version (its columns nullable, as the engine's
earlier in-place upgrade added them: the code reads None as empty); everything for an
empty database (`alembic upgrade` from nothing; a store opening one creates the head
schema directly). Indexes that version had replaced are dropped.

The tables are written out here as they were, not imported: later revisions change the
engine's tables, never this one. A time is BIGINT microseconds on SQLite and TIMESTAMP
(UTC) on PostgreSQL, what engine.store.tables.UTCDateTime stored then (and still does)."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import JSON, Column, Float, Index, Integer, String, Table, Text, UniqueConstraint

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.BigInteger().with_variant(sa.DateTime(), "postgresql")
ID = String(200)
STAGES = ("created", "paid", "shipped", "out_for_delivery", "signed", "completed", "refund_requested", "refunded",
          "closed")
PENDING_WHERE = sa.text("state = 'pending'")
PACED_WHERE = sa.text("state = 'pending' AND reason = 'rate'")
IN_FLIGHT_WHERE = sa.text("state IN ('claimed', 'sending')")
REPLACED_INDEXES = ("ix_customers_last_order", "ix_customers_birthday")  # by ix_customers_idle, _birthday_day

baseline = sa.MetaData()
Table("events", baseline,
      Column("id", ID, primary_key=True),
      Column("type", String(100), nullable=False),
      Column("time", TIME, nullable=False),
      Column("customer_id", ID, nullable=False),
      Column("order_id", ID),
      Column("payload", JSON, nullable=False),
      Column("received_at", TIME, nullable=False),
      Index("ix_events_customer", "customer_id", "time"))
Table("rejected_events", baseline,
      Column("id", Integer, primary_key=True, autoincrement=True),
      Column("source", String(500), nullable=False),
      Column("line", Integer),
      Column("raw", Text, nullable=False),
      Column("reason", Text, nullable=False),
      Column("received_at", TIME, nullable=False))
Table("customers", baseline,
      Column("id", ID, primary_key=True),
      Column("name", String(200)),
      Column("phone", String(50)),
      Column("email", String(320)),
      Column("birthday", String(10)),
      Column("timezone", String(64)),
      Column("tags", JSON, nullable=False),
      Column("attrs", JSON, nullable=False),
      Column("opted_out", JSON, nullable=False),
      Column("first_seen_at", TIME),
      Column("updated_at", TIME),
      Column("order_count", Integer),
      Column("spent", Float),
      Column("first_order_at", TIME),
      Column("last_order_at", TIME),
      Column("birthday_md", String(5)),
      Column("stats", JSON),
      Index("ix_customers_idle", "last_order_at", "id"),
      Index("ix_customers_birthday_day", "birthday_md", "id"))
Table("orders", baseline,
      Column("id", ID, primary_key=True),
      Column("customer_id", ID, nullable=False),
      Column("status", String(32)),
      Column("amount", Float),
      Column("items", JSON, nullable=False),
      Column("attrs", JSON, nullable=False),
      Column("first_event_at", TIME),
      Column("updated_at", TIME),
      *[Column(f"{stage}_at", TIME) for stage in STAGES],
      Index("ix_orders_customer_id", "customer_id"))
Table("messages", baseline,
      Column("id", Integer, primary_key=True, autoincrement=True),
      Column("rule_id", String(200), nullable=False),
      Column("dedup_key", String(450), nullable=False),
      Column("customer_id", ID, nullable=False),
      Column("order_id", ID),
      Column("event_id", ID),
      Column("channel", String(100), nullable=False),
      Column("kind", String(20), nullable=False),
      Column("due_at", TIME, nullable=False),
      Column("expires_at", TIME),
      Column("state", String(20), nullable=False),
      Column("reason", String(50)),
      Column("detail", Text),
      Column("attempts", Integer, nullable=False),
      Column("claimed_at", TIME),
      Column("created_at", TIME, nullable=False),
      Column("updated_at", TIME, nullable=False),
      UniqueConstraint("rule_id", "dedup_key", name="uq_messages_rule_dedup"),
      Index("ix_messages_pending", "due_at", "customer_id", "id",
            sqlite_where=PENDING_WHERE, postgresql_where=PENDING_WHERE),
      Index("ix_messages_paced", "channel", "due_at", sqlite_where=PACED_WHERE, postgresql_where=PACED_WHERE),
      Index("ix_messages_in_flight", "claimed_at", sqlite_where=IN_FLIGHT_WHERE, postgresql_where=IN_FLIGHT_WHERE),
      Index("ix_messages_customer", "customer_id"))
Table("sends", baseline,
      Column("message_id", Integer, primary_key=True, autoincrement=False),
      Column("customer_id", ID, nullable=False),
      Column("rule_id", String(200), nullable=False),
      Column("channel", String(100), nullable=False),
      Column("kind", String(20), nullable=False),
      Column("time", TIME, nullable=False),
      Index("ix_sends_customer_time", "customer_id", "time"),
      Index("ix_sends_channel_time", "channel", "time"))
Table("sweeps", baseline,
      Column("rule_id", String(200), primary_key=True),
      Column("swept_until", TIME, nullable=False),
      Column("ran_at", TIME, nullable=False),
      Column("enqueued", Integer, nullable=False),
      Column("seconds", Float, nullable=False))
Table("daemon_state", baseline,
      Column("key", String(100), primary_key=True),
      Column("value", JSON, nullable=False),
      Column("updated_at", TIME, nullable=False))
Table("message_log", baseline,
      Column("id", Integer, primary_key=True, autoincrement=True),
      Column("message_id", Integer),
      Column("time", TIME, nullable=False),
      Column("rule_id", String(200), nullable=False),
      Column("customer_id", ID, nullable=False),
      Column("order_id", ID),
      Column("channel", String(100)),
      Column("kind", String(20)),
      Column("outcome", String(20), nullable=False),
      Column("reason", String(50)),
      Column("detail", Text),
      Column("body", Text),
      Index("ix_message_log_customer", "customer_id", "time"))


def upgrade() -> None:
    bind = op.get_bind()
    found = sa.inspect(bind)
    have_tables = set(found.get_table_names())
    for table in baseline.sorted_tables:
        if table.name not in have_tables:
            table.create(bind)  # with its indexes
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                op.add_column(table.name, Column(column.name, column.type))
        have = {i["name"] for i in found.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have:
                index.create(bind)
    for name in REPLACED_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    baseline.drop_all(op.get_bind())
