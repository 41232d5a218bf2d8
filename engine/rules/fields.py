"""What rules and templates may read, checked before anything runs.

A marketer's typo (`customer.nmae`) or a field no event carries would otherwise fail
every message (`template_error`), or silently match nobody. `check` (and every load of the
rules) reads each template and expression and names every attribute it reads on
`customer`, `order`, `event`, `data` and `shop` that is neither a field the engine knows
(the customer profile, the order, the standard events' data, below) nor a custom field the
shop declares in config.yaml:

    fields:
      customer: [vip_level, wechat_id]   # fields your events carry on the customer
      order: [platform, gift_wrap]
      item: [color]                      # on each of order.items
      data: [warehouse]                  # in an event's data

A known field may still have no value (`order.rating` before a review): in `if:` and
`unless:` it is absent (false, and equal to nothing), in a template it must have a
`| default(...)`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from jinja2 import nodes

# The canonical event types (any other type is allowed: a shop's own).
STANDARD_TYPES = (
    "order.created",
    "order.paid",
    "order.shipped",
    "order.out_for_delivery",
    "order.signed",
    "order.logistics_exception",
    "order.completed",
    "order.closed",
    "order.reviewed",
    "order.refund_requested",
    "order.refunded",
    "customer.updated",
    "customer.unsubscribed",
    "coupon.issued",
    "coupon.used",
)

# the type of each field: "value" (text, number, time...), "method" (customer.bought('SB-01')),
# "any" (a mapping with keys of its own: customer.coupons), an object name, or "list:<object>"
STAGES = ("created", "paid", "shipped", "out_for_delivery", "signed", "completed", "refund_requested", "refunded",
          "closed")
KNOWN: dict[str, dict[str, str]] = {
    "customer": {
        **{name: "value" for name in ("id", "name", "phone", "email", "birthday", "timezone", "nick", "first_seen_at",
                                       "updated_at", "first_order_at", "last_order_at", "orders", "spent", "aov",
                                       "days_since_last_order", "ordered_today", "had_bad_review", "last_rating",
                                       "tier")},
        "tags": "list:value", "opted_out": "list:value", "rfm": "rfm", "coupons": "any",
        **{name: "method" for name in ("bought", "bought_category", "coupon_used", "has_coupon", "tier_before")},
    },
    "order": {
        **{name: "value" for name in ("id", "customer_id", "status", "amount", "first_event_at", "updated_at", "rating",
                                       "reviewed_at")},
        **{f"{stage}_at": "value" for stage in STAGES},
        "items": "list:item",
    },
    "item": {name: "value" for name in ("sku", "name", "category", "qty", "price")},
    "rfm": {name: "value" for name in ("recency", "frequency", "monetary")},
    "event": {name: "value" for name in ("id", "type", "time")},
    # the standard events' data: shipped (carrier, tracking_no), reviewed (rating, text),
    # logistics_exception (description), coupon.issued (coupon_id, expires_at, name),
    # coupon.used (coupon_id), customer.unsubscribed (channel), refunds (reason, amount)
    "data": {name: "value" for name in ("carrier", "tracking_no", "rating", "text", "description", "coupon_id",
                                         "expires_at", "name", "channel", "reason", "amount")},
}
DECLARABLE = ("customer", "order", "item", "data")  # the objects config.yaml's `fields:` may add to
ROOTS = {"customer": "customer", "order": "order", "event": "event", "data": "data", "shop": "shop"}


@dataclass
class Fields:
    """The fields of one project: the known ones, the declared ones, and shop's keys."""

    declared: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shop: tuple[str, ...] = ()

    def of(self, kind: str) -> dict[str, str] | None:
        if kind == "shop":
            return {name: "value" for name in self.shop}
        known = KNOWN.get(kind)
        if known is None:
            return None
        return {**known, **{name: "value" for name in self.declared.get(kind, ())}}

    def unknown(self, ast: nodes.Template) -> list[tuple[int, str]]:
        """(line, message) for each attribute read that no object has, in line order."""
        return _Reader(self).read(ast)


class _Reader:
    def __init__(self, fields: Fields):
        self.fields = fields
        self.bound: dict[str, str] = {}  # loop and set variables -> their type
        self.found: dict[tuple[int, str], str] = {}

    def read(self, ast: nodes.Template) -> list[tuple[int, str]]:
        for loop in ast.find_all(nodes.For):
            self._bind(loop.target, self._type(loop.iter), element=True)
        for assign in ast.find_all(nodes.Assign):
            self._bind(assign.target, self._type(assign.node), element=False)
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            self._type(node)
        return sorted((line, message) for (line, _), message in self.found.items())

    def _bind(self, target: nodes.Node, kind: str | None, element: bool) -> None:
        if not isinstance(target, nodes.Name) or kind is None:
            return
        if element:
            if not kind.startswith("list:"):
                return
            kind = kind[len("list:"):]
        self.bound[target.name] = kind

    def _type(self, node: nodes.Node) -> str | None:
        """The type of what `node` reads (None: not a field, or not known statically)."""
        if isinstance(node, nodes.Name):
            return self.bound.get(node.name) or ROOTS.get(node.name)
        if isinstance(node, nodes.Getattr):
            return self._field(node, self._type(node.node), node.attr)
        if isinstance(node, nodes.Getitem):
            outer = self._type(node.node)
            if not isinstance(node.arg, nodes.Const):
                return None
            if isinstance(node.arg.value, str):
                return self._field(node, outer, node.arg.value)
            if outer is not None and outer.startswith("list:") and isinstance(node.arg.value, int):
                return outer[len("list:"):]
        return None

    def _field(self, node: nodes.Node, kind: str | None, name: str) -> str | None:
        known = self.fields.of(kind) if kind is not None else None
        if known is None:
            return None
        if name in known:
            return known[name]
        path = f"{_path(node.node)}.{name}"
        close = _closest(name, list(known))
        hint = f"; did you mean {_path(node.node)}.{close}?" if close else ""
        where = f"fields: {kind}" if kind in DECLARABLE else None
        declare = f" (a custom field: declare it in config.yaml under `{where}`)" if where and not close else ""
        self.found.setdefault((node.lineno, path), f"{path}: unknown field{hint}{declare}")
        return None


def _closest(name: str, known: list[str]) -> str | None:
    """The field meant: a close spelling (nmae -> name), or the one a short form begins
    (freq -> frequency); never a mere two letters in common (kind is not id)."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if close:
        return close[0]
    starting = [k for k in known if len(name) >= 3 and k.startswith(name)]
    return starting[0] if len(starting) == 1 else None


def _path(node: nodes.Node) -> str:
    """How the marketer wrote the object read: customer, order.items[0], item..."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_path(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return f"{_path(node.node)}[{node.arg.value!r}]"
    return "..."

