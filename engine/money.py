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
    """A decimal amount that meets floats as written (see the module's doc)."""

    __slots__ = ()

    def __eq__(self, other):
        return Decimal.__eq__(self, _as_written(other))

    def __ne__(self, other):
        return Decimal.__ne__(self, _as_written(other))

    def __lt__(self, other):
        return Decimal.__lt__(self, _as_written(other))

    def __le__(self, other):
        return Decimal.__le__(self, _as_written(other))

    def __gt__(self, other):
        return Decimal.__gt__(self, _as_written(other))

    def __ge__(self, other):
        return Decimal.__ge__(self, _as_written(other))

    __hash__ = Decimal.__hash__

    def __add__(self, other):
        return _money(Decimal.__add__(self, _as_written(other)))

    def __radd__(self, other):
        return _money(Decimal.__radd__(self, _as_written(other)))

    def __sub__(self, other):
        return _money(Decimal.__sub__(self, _as_written(other)))

    def __rsub__(self, other):
        return _money(Decimal.__rsub__(self, _as_written(other)))

    def __mul__(self, other):
        return _money(Decimal.__mul__(self, _as_written(other)))

    def __rmul__(self, other):
        return _money(Decimal.__rmul__(self, _as_written(other)))

    def __truediv__(self, other):
        return _money(Decimal.__truediv__(self, _as_written(other)))

    def __rtruediv__(self, other):
        return _money(Decimal.__rtruediv__(self, _as_written(other)))

    def __floordiv__(self, other):
        return _money(Decimal.__floordiv__(self, _as_written(other)))

    def __mod__(self, other):
        return _money(Decimal.__mod__(self, _as_written(other)))

    def __neg__(self):
        return _money(Decimal.__neg__(self))

    def __abs__(self):
        return _money(Decimal.__abs__(self))

    def __repr__(self) -> str:
        return f"Money('{self}')"


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
