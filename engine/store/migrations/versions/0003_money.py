"""Amounts as exact money: orders.amount and customers.spent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Both were binary floats. PostgreSQL: NUMERIC(18, 2), each value rounded to the cent.
SQLite, which has no exact decimal type: integer cents (19.99 -> 1999), so sums and
comparisons are exact (engine.money, engine.store.tables.MoneyType). The table is
rebuilt in batch mode on SQLite (its ALTER cannot change a type); rows and indexes stay."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

AMOUNTS = (("customers", "spent"), ("orders", "amount"))


def _is_float(table: str, column: str) -> bool:
    """Still a binary float (FLOAT, REAL, DOUBLE PRECISION)? A database already converted is left alone."""
    found = {c["name"]: c["type"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    return isinstance(found.get(column), sa.Float)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column in AMOUNTS:
        if not _is_float(table, column):
            continue
        if sqlite:
            # cents first (1999.0 in the float column), then the table rebuilt with the
            # integer column (the copy casts each value: 1999)
            op.execute(f"UPDATE {table} SET {column} = ROUND({column} * 100) WHERE {column} IS NOT NULL")
            with op.batch_alter_table(table) as batch:
                batch.alter_column(column, existing_type=sa.Float(), type_=sa.BigInteger())
        else:
            op.alter_column(table, column, existing_type=sa.Float(), type_=sa.Numeric(18, 2),
                            postgresql_using=f"round({column}::numeric, 2)")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column in AMOUNTS:
        if sqlite:
            with op.batch_alter_table(table) as batch:
                batch.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Float())
            op.execute(f"UPDATE {table} SET {column} = {column} / 100.0 WHERE {column} IS NOT NULL")
        else:
            op.alter_column(table, column, existing_type=sa.Numeric(18, 2), type_=sa.Float(),
                            postgresql_using=f"{column}::double precision")
