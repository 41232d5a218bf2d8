"""Send slots: pacing is each rate-limited channel's send schedule.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

messages.slot_at (a message's send slot, once given) and two partial indexes on it:
ix_messages_slots (where each channel's schedule ends) and ix_messages_slot_due (the
daemon takes slotted messages in slot order). ix_messages_paced, the slots held before
pacing was a schedule, goes. A database a pre-Alembic version after 0aec3f5 made or
upgraded may have all of this already: each step looks first."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.BigInteger().with_variant(sa.DateTime(), "postgresql")
SLOTTED_WHERE = sa.text("state = 'pending' AND slot_at IS NOT NULL")
PACED_WHERE = sa.text("state = 'pending' AND reason = 'rate'")


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    if "slot_at" not in {c["name"] for c in found.get_columns("messages")}:
        op.add_column("messages", sa.Column("slot_at", TIME))
    indexes = {i["name"] for i in found.get_indexes("messages")}
    if "ix_messages_slots" not in indexes:
        op.create_index("ix_messages_slots", "messages", ["channel", "slot_at"],
                        sqlite_where=SLOTTED_WHERE, postgresql_where=SLOTTED_WHERE)
    if "ix_messages_slot_due" not in indexes:
        op.create_index("ix_messages_slot_due", "messages", ["slot_at"],
                        sqlite_where=SLOTTED_WHERE, postgresql_where=SLOTTED_WHERE)
    if "ix_messages_paced" in indexes:
        op.drop_index("ix_messages_paced", table_name="messages")


def downgrade() -> None:
    op.drop_index("ix_messages_slot_due", table_name="messages")
    op.drop_index("ix_messages_slots", table_name="messages")
    op.create_index("ix_messages_paced", "messages", ["channel", "due_at"],
                    sqlite_where=PACED_WHERE, postgresql_where=PACED_WHERE)
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("slot_at")
