"""A broadcast's `if:` as SQL, so the database picks the candidates and the sweep does not
read every customer into Python.

The rule's conditions are Jinja expressions, evaluated in Python on each customer; this
module translates the parts it can into a SQL predicate on the customers table that
holds for at least every customer the expression holds for (a superset). The sweep then
reads only the rows passing the predicate and still evaluates the full `if:` on each, so
the decision is the expression's, never the translation's. What is translated:

    customer.orders / customer.spent  <op> number           (order_count, spent)
    customer.days_since_last_order    <op> number           (a range of last_order_at)
    customer.rfm.frequency / .monetary <op> whole number     (the bands of config.yaml)
    segment('name')                                         (its condition, translated)
    and / or / not, true / false

Anything else (tags, tiers, bought(), a comparison of two fields, ...) is "unknown": it
keeps every row in the `and` it is part of, and makes an `or` or a `not` around it
unknown too. A condition that is entirely unknown gives no predicate: every customer is
read, a page at a time, as before."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Callable

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from engine.config.profile import ProfileConfig

_OPS = {"eq": "=", "ne": "<>", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<="}
_FLIP = {"gt": "lt", "gteq": "lteq", "lt": "gt", "lteq": "gteq", "eq": "eq", "ne": "ne"}
_COLUMNS = {"orders": "COALESCE(order_count, 0)", "spent": "COALESCE(spent, 0)"}


@dataclass(frozen=True)
class Predicate:
    """SQL with `?` for each parameter (the store swaps in its own placeholder); `exact`:
    true exactly when the expression is (so it may be negated)."""

    sql: str
    params: tuple
    exact: bool


TRUE = Predicate("1 = 1", (), True)
FALSE = Predicate("1 = 0", (), True)


def customer_filter(sources: list[str], parse: Callable[[str], nodes.Node], profile: ProfileConfig,
                    segments: dict[str, str], now: datetime,
                    encode_time: Callable[[datetime], object],
                    encode_money: Callable[[Decimal], object]) -> Predicate | None:
    """The predicate for `if:` (all of `sources` must hold), or None when nothing of it
    can be translated. `parse` turns an expression's source into its Jinja node;
    `encode_time` and `encode_money` give a time and an amount as the store keeps them."""
    translator = _Translator(parse, profile, segments, now, encode_time, encode_money)
    parts = [p for p in (translator.source(s) for s in sources) if p is not None]
    if not parts:
        return None
    return _and(parts)


class _Translator:
    def __init__(self, parse, profile: ProfileConfig, segments: dict[str, str], now: datetime, encode_time,
                 encode_money):
        self.encode_money = encode_money
        self.parse = parse
        self.profile = profile
        self.segments = segments
        self.now = now
        self.encode_time = encode_time
        self.depth = 0

    def source(self, text: str) -> Predicate | None:
        try:
            node = self.parse(text)
        except TemplateSyntaxError:
            return None
        return self.node(node)

    def node(self, node: nodes.Node) -> Predicate | None:
        """None: unknown (keeps every row)."""
        if isinstance(node, (nodes.And, nodes.Or, nodes.Not)):
            return self.logic(node)
        if isinstance(node, nodes.Const) and isinstance(node.value, bool):
            return TRUE if node.value else FALSE
        if isinstance(node, nodes.Compare) and len(node.ops) == 1:
            return self.compare(node.expr, node.ops[0].op, node.ops[0].expr)
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "segment":
            return self.segment(node)
        return None

    def logic(self, node: nodes.And | nodes.Or | nodes.Not) -> Predicate | None:
        """and: what is known of either side (exact when both are); or: both sides must be
        known; not: only of an exact predicate."""
        if isinstance(node, nodes.Not):
            inner = self.node(node.node)
            if inner is None or not inner.exact:
                return None
            return Predicate(f"NOT ({inner.sql})", inner.params, True)
        left, right = self.node(node.left), self.node(node.right)
        if isinstance(node, nodes.Or):
            if left is None or right is None:
                return None
            return Predicate(f"({left.sql} OR {right.sql})", left.params + right.params, left.exact and right.exact)
        known = [p for p in (left, right) if p is not None]
        if not known:
            return None
        combined = _and(known)
        return Predicate(combined.sql, combined.params, combined.exact and len(known) == 2)

    def segment(self, node: nodes.Call) -> Predicate | None:
        if len(node.args) != 1 or not isinstance(node.args[0], nodes.Const) or node.kwargs:
            return None
        source = self.segments.get(str(node.args[0].value))
        if source is None or self.depth > 5:  # unknown, or segments that use each other in a loop
            return None
        self.depth += 1
        try:
            return self.source(source)
        finally:
            self.depth -= 1

    def compare(self, left: nodes.Node, op: str, right: nodes.Node) -> Predicate | None:
        if op not in _OPS:
            return None
        if isinstance(left, nodes.Const) and not isinstance(right, nodes.Const):
            left, right, op = right, left, _FLIP[op]
        if not isinstance(right, nodes.Const) or isinstance(right.value, bool) \
                or not isinstance(right.value, (int, float)):
            return None
        value = right.value
        field = _customer_field(left)
        if field == "spent":
            return self.spent(op, value)
        if field in _COLUMNS:
            return Predicate(f"{_COLUMNS[field]} {_OPS[op]} ?", (value,), True)
        if field == "days_since_last_order":
            return self.days_since(op, value)
        if field in ("rfm.frequency", "rfm.monetary") and float(value).is_integer():
            return self.score(field, op, int(value))
        return None

    def spent(self, op: str, value: float) -> Predicate:
        """customer.spent <op> value. Spend is whole cents and the value is taken as written
        (19.99 is 19.99, as engine.money compares): a bound between two cents becomes the
        equivalent comparison with a whole cent, so the store compares exact integers."""
        bound = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        cents = bound * 100
        if cents != cents.to_integral_value():
            if op in ("eq", "ne"):  # never equal to a whole number of cents
                return FALSE if op == "eq" else TRUE
            # c > 9999.9 <=> c > 9999 ; c >= 9999.9 <=> c >= 10000 ; and so for < and <=
            down, up = cents.to_integral_value(ROUND_FLOOR), cents.to_integral_value(ROUND_CEILING)
            op, cents = {"gt": ("gt", down), "gteq": ("gteq", up), "lt": ("lt", up), "lteq": ("lteq", down)}[op]
        return Predicate(f"{_COLUMNS['spent']} {_OPS[op]} ?", (self.encode_money(cents.scaleb(-2)),), True)

    def days_since(self, op: str, days: float) -> Predicate | None:
        """(now - last_order_at).days <op> days, as a range of last_order_at; a customer
        who never ordered has no value (the expression fails for them, SQL drops them).
        A number of days no calendar reaches is left to Python (unknown), never an error."""
        try:
            return self._days_since(op, days)
        except (OverflowError, ValueError):
            return None

    def _days_since(self, op: str, days: float) -> Predicate | None:
        if not float(days).is_integer():
            return None
        days = int(days)

        def at_least(n: int) -> Predicate:  # whole days since >= n  <=>  last <= now - n days
            return Predicate("last_order_at <= ?", (self.encode_time(self.now - timedelta(days=n)),), True)

        def below(n: int) -> Predicate:
            return Predicate("last_order_at > ?", (self.encode_time(self.now - timedelta(days=n)),), True)

        if op == "gteq":
            return at_least(days)
        if op == "gt":
            return at_least(days + 1)
        if op == "lt":
            return below(days)
        if op == "lteq":
            return below(days + 1)
        if op == "eq":
            return _and([at_least(days), below(days + 1)])
        return None  # != : two ranges; rare enough to leave to Python

    def score(self, field: str, op: str, k: int) -> Predicate | None:
        """An RFM band score <op> k, as the count or spend it takes (scores are whole
        numbers 0..5, so every comparison is one of `score >= n`, negated or combined)."""
        def at_least(n: int) -> Predicate:
            if field == "rfm.frequency":  # 0 without orders, else 1 + the thresholds reached
                bands = self.profile.frequency
                if n <= 0:
                    return TRUE
                if n == 1:
                    return Predicate(f"{_COLUMNS['orders']} >= ?", (1,), True)
                if n - 2 >= len(bands):
                    return FALSE
                return Predicate(f"{_COLUMNS['orders']} >= ?", (max(1, bands[n - 2]),), True)
            bands = self.profile.monetary  # 1 + the thresholds reached
            if n <= 1:
                return TRUE
            if n - 2 >= len(bands):
                return FALSE
            return self.spent("gteq", bands[n - 2])

        def negate(p: Predicate) -> Predicate:
            return Predicate(f"NOT ({p.sql})", p.params, True)

        if op == "gteq":
            return at_least(k)
        if op == "gt":
            return at_least(k + 1)
        if op == "lt":
            return negate(at_least(k))
        if op == "lteq":
            return negate(at_least(k + 1))
        if op == "eq":
            return _and([at_least(k), negate(at_least(k + 1))])
        if op == "ne":
            return negate(_and([at_least(k), negate(at_least(k + 1))]))
        return None


def _customer_field(node: nodes.Node) -> str | None:
    """'orders' for customer.orders, 'rfm.frequency' for customer.rfm.frequency."""
    path = []
    while isinstance(node, nodes.Getattr):
        path.append(node.attr)
        node = node.node
    if isinstance(node, nodes.Name) and node.name == "customer" and path:
        return ".".join(reversed(path))
    return None


def _and(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return Predicate("(" + " AND ".join(p.sql for p in parts) + ")",
                     tuple(v for p in parts for v in p.params), all(p.exact for p in parts))
