"""Amounts of money: exact decimals, to the cent, from intake to the template.

An order's amount and a customer's spend are `Money`: a Decimal that compares and
computes with the numbers a marketer writes as written. In `order.amount > 19.99` the
19.99 is the decimal 19.99, not the binary float nearest it (Decimal alone would compare
exactly with that float, and 19.99 > 19.99 would be true); `order.amount * 0.9` is a
decimal too. Sums of amounts are exact: no float drift, no `round(x, 2)`.

Stored as NUMERIC(18, 2) on PostgreSQL and as integer cents on SQLite (engine.store.tables)."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")


def _as_written(value):
    """A float as the decimal it was written as (its shortest repr); other values as they are."""
    if value.__class__ is float and math.isfinite(value):
        return Decimal(repr(value))
    return value


def _money(value):
    return Money(value) if isinstance(value, Decimal) and not isinstance(value, Money) else value


class Money(Decimal):
    """A decimal amount that meets floats as written (see the module's doc). Comparisons
    and arithmetic take a float operand as the decimal it was written as; arithmetic
    results stay Money."""

    __slots__ = ()

    __hash__ = Decimal.__hash__

    def __repr__(self) -> str:
        return f"Money('{self}')"


def _comparing(name: str):
    compare = getattr(Decimal, name)
    return lambda self, other: compare(self, _as_written(other))


def _computing(name: str):
    compute = getattr(Decimal, name)
    return lambda self, other: _money(compute(self, _as_written(other)))


for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(Money, _name, _comparing(_name))
for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__floordiv__", "__mod__"):
    setattr(Money, _name, _computing(_name))
Money.__neg__ = lambda self: _money(Decimal.__neg__(self))
Money.__abs__ = lambda self: _money(Decimal.__abs__(self))


ZERO = Money("0.00")


def to_money(value) -> Money | None:
    """An amount as Money, rounded half up to the cent (None stays None). Numbers from
    JSON (int or float) are taken as written: 19.99 is 19.99. Money passes through as it
    is (the hot paths meet the same amounts again and again); a computed amount that may
    hold fractions of a cent (`amount * 0.9`) is rounded where it is shown or stored
    (to_cents)."""
    if value.__class__ is Money or value is None:
        return value
    return to_cents(value)


def to_cents(value) -> Money:
    """Any amount, Money included, rounded half up to the cent."""
    try:
        exact = Decimal(repr(value)) if value.__class__ is float else Decimal(value)
        return Money(exact.quantize(CENT, rounding=ROUND_HALF_UP))
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"not an amount: {value!r}") from None


def format_money(value, symbol: str) -> str:
    """¥1,299.00: the symbol, thousands separated, two decimals (half up)."""
    return f"{symbol}{to_cents(value):,.2f}"
