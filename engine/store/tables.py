"""The tables. Times go in aware and come back as aware UTC datetimes on both
databases: PostgreSQL stores them as UTC timestamps; SQLite, which has no time type,
as integer microseconds since 1970-01-01 UTC (exact, ordered, and cheap to convert)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

from engine.money import Money, to_cents, to_money

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def encode_time(value: datetime, dialect_name: str):
    """An aware datetime as stored: integer microseconds (SQLite) or naive UTC."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; times must be aware")
    if dialect_name == "sqlite":
        return (value - EPOCH) // _MICROSECOND
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def decode_time(value, dialect_name: str) -> datetime:
    """The inverse of encode_time: an aware UTC datetime."""
    if isinstance(value, int):
        return EPOCH + value * _MICROSECOND
    return value.replace(tzinfo=timezone.utc)


class UTCDateTime(TypeDecorator):
    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value, dialect):
        return None if value is None else encode_time(value, dialect.name)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, int):
            return EPOCH + value * _MICROSECOND
        return value.replace(tzinfo=timezone.utc)


def encode_money(value, dialect_name: str):
    """An amount as stored: integer cents (SQLite, exact) or the decimal (PostgreSQL NUMERIC)."""
    amount = to_cents(value)
    return int(amount.scaleb(2)) if dialect_name == "sqlite" else Decimal(amount)


def decode_money(value, dialect_name: str | None = None) -> Money:
    """The inverse of encode_money."""
    if isinstance(value, int):
        return Money(Decimal(value).scaleb(-2))
    return to_money(value)


class MoneyType(TypeDecorator):
    """Amounts (engine.money): NUMERIC(18, 2) on PostgreSQL; integer cents on SQLite, which
    has no exact decimal type. Python sees Money either way."""

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(18, 2))

    def process_bind_param(self, value, dialect):
        return None if value is None else encode_money(value, dialect.name)

    def process_result_value(self, value, dialect):
        return None if value is None else decode_money(value, dialect.name)


metadata = MetaData()
ID = String(200)

events = Table(
    "events", metadata,
    Column("id", ID, primary_key=True),
    Column("type", String(100), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("customer_id", ID, nullable=False),
    Column("order_id", ID),
    Column("payload", JSON, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)
Index("ix_events_customer", events.c.customer_id, events.c.time)

rejected_events = Table(
    "rejected_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(500), nullable=False),
    Column("line", Integer),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)

customers = Table(
    "customers", metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200)),
    Column("phone", String(50)),
    Column("email", String(320)),
    Column("birthday", String(10)),
    Column("timezone", String(64)),
    Column("tags", JSON, nullable=False),
    Column("attrs", JSON, nullable=False),
    Column("opted_out", JSON, nullable=False),  # channel names unsubscribed from marketing; "*" = all
    Column("first_seen_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    # the profile kept from events (engine.profile); nullable so older files gain them in place
    Column("order_count", Integer),
    Column("spent", MoneyType),
    Column("first_order_at", UTCDateTime),
    Column("last_order_at", UTCDateTime),
    Column("birthday_md", String(5)),
    Column("stats", JSON),
)
# idle and birthday sweeps; with the id, a sweep whose rule has no `if:` reads the index alone
Index("ix_customers_idle", customers.c.last_order_at, customers.c.id)
Index("ix_customers_birthday_day", customers.c.birthday_md, customers.c.id)

_STAGES = ("created", "paid", "shipped", "out_for_delivery", "signed", "completed",
           "refund_requested", "refunded", "closed")
orders = Table(
    "orders", metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", ID, nullable=False, index=True),
    Column("status", String(32)),
    Column("amount", MoneyType),
    Column("items", JSON, nullable=False),
    Column("attrs", JSON, nullable=False),
    Column("first_event_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
    *[Column(f"{stage}_at", UTCDateTime) for stage in _STAGES],
)

messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", String(200), nullable=False),
    Column("dedup_key", String(450), nullable=False),
    Column("customer_id", ID, nullable=False),
    Column("order_id", ID),
    Column("event_id", ID),
    Column("channel", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("state", String(20), nullable=False),  # pending | claimed | sent | cancelled | ...
    Column("reason", String(50)),
    Column("detail", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_at", UTCDateTime),
    Column("slot_at", UTCDateTime),  # its send slot on a rate-limited channel (engine.pacing), once given
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("rule_id", "dedup_key", name="uq_messages_rule_dedup"),
)
# The claim's index: only pending rows (sent and cancelled ones leave it), in claim order.
PENDING_WHERE = "state = 'pending'"
Index("ix_messages_pending", messages.c.due_at, messages.c.customer_id, messages.c.id,
      sqlite_where=text(PENDING_WHERE), postgresql_where=text(PENDING_WHERE))
# Messages waiting for the send slot they hold on a rate-limited channel: where each
# channel's schedule ends is the latest of these (and of its sends).
SLOTTED_WHERE = "state = 'pending' AND slot_at IS NOT NULL"
Index("ix_messages_slots", messages.c.channel, messages.c.slot_at,
      sqlite_where=text(SLOTTED_WHERE), postgresql_where=text(SLOTTED_WHERE))
# The daemon takes the messages whose slot has come first, in slot order.
Index("ix_messages_slot_due", messages.c.slot_at,
      sqlite_where=text(SLOTTED_WHERE), postgresql_where=text(SLOTTED_WHERE))
# Claims in flight, for the lease check (release_stale_claims).
IN_FLIGHT_WHERE = "state IN ('claimed', 'sending')"
Index("ix_messages_in_flight", messages.c.claimed_at,
      sqlite_where=text(IN_FLIGHT_WHERE), postgresql_where=text(IN_FLIGHT_WHERE))
Index("ix_messages_customer", messages.c.customer_id)

# The send ledger the anti-spam gate counts: one row per message let through (written in
# the same transaction as the gate's decision, removed again if the send then fails).
sends = Table(
    "sends", metadata,
    Column("message_id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", ID, nullable=False),
    Column("rule_id", String(200), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("time", UTCDateTime, nullable=False),
)
Index("ix_sends_customer_time", sends.c.customer_id, sends.c.time)
Index("ix_sends_channel_time", sends.c.channel, sends.c.time)

# How far each calendar rule's sweeps have looked (engine.sweeps): a sweep covers the
# moments after swept_until, so running it twice enqueues nothing twice, and after
# downtime the next sweep catches up on the moments missed.
sweeps = Table(
    "sweeps", metadata,
    Column("rule_id", String(200), primary_key=True),
    Column("swept_until", UTCDateTime, nullable=False),
    Column("ran_at", UTCDateTime, nullable=False),
    Column("enqueued", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
)

# What a running daemon reports about itself for `run.py status` (last reload, start).
daemon_state = Table(
    "daemon_state", metadata,
    Column("key", String(100), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

message_log = Table(
    "message_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer),
    Column("time", UTCDateTime, nullable=False),
    Column("rule_id", String(200), nullable=False),
    Column("customer_id", ID, nullable=False),
    Column("order_id", ID),
    Column("channel", String(100)),
    Column("kind", String(20)),
    Column("outcome", String(20), nullable=False),
    Column("reason", String(50)),
    Column("detail", Text),
    Column("body", Text),
)
Index("ix_message_log_customer", message_log.c.customer_id, message_log.c.time)
