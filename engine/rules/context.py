"""The names rule expressions and templates see: customer, order, event, data, shop, now.

Stored rows become Records: attribute access, custom fields from events, times shown in
the shop's time zone (converted when read, so building a context costs almost nothing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from engine.config.profile import DEFAULT_PROFILE, ProfileConfig
from engine.money import ZERO, Money, to_cents, to_money
from engine.rules.templates import Record, Scope


def build_context(customer: dict, order: dict | None, event: dict, data: dict, shop: dict,
                  now: datetime, tz: ZoneInfo, profile: ProfileConfig | None = None) -> Scope:
    """`event` holds id, type, time (aware); rows are the store's dicts; `profile` the
    tiers and RFM bands of config.yaml."""
    return Scope({
        "customer": CustomerRecord(customer, customer.get("attrs") or {}, tz, now, profile),
        "order": Record(order, "order", order.get("attrs") or {}, tz) if order is not None else Record({}, "order"),
        "event": Record(event, "event", None, tz),
        "data": Record(data or {}, "data", None, tz),
        "shop": Record(shop, "shop"),
        "now": now.astimezone(tz),
    })


class CustomerRecord(Record):
    """`customer` in rules and templates: the stored profile plus what is computed from
    it at the moment of the decision."""

    __slots__ = ("_now", "_profile")

    def __init__(self, data: dict, extra: dict | None, tz: ZoneInfo | None, now: datetime,
                 profile: ProfileConfig | None):
        super().__init__(data, "customer", extra, tz)
        self._now = now
        self._profile = profile or DEFAULT_PROFILE

    def _lookup(self, name: str) -> Any:
        computed = _COMPUTED.get(name)
        if computed is not None:
            return computed(self)
        if name in _HIDDEN:  # stored forms, read through the computed names
            return None
        return super()._lookup(name)

    # computed fields ---------------------------------------------------------------------
    def _orders(self) -> int:
        return int(self._d.get("order_count") or 0)

    def _spent(self) -> Money:
        return to_money(self._d.get("spent") or ZERO)

    def _days_since_last_order(self) -> int | None:
        last = self._d.get("last_order_at")
        if last is None:
            return None
        return (self._now - last).days

    def _ordered_today(self) -> bool:
        """An order on today's date in the shop's (or the customer's record's) time zone."""
        last = self._d.get("last_order_at")
        if last is None:
            return False
        tz = self._tz
        return (last.astimezone(tz) if tz else last).date() == (self._now.astimezone(tz) if tz else self._now).date()

    def _stats(self) -> dict:
        return self._d.get("stats") or {}

    def _bought(self, sku) -> bool:
        return str(sku) in self._stats().get("skus", ())

    def _bought_category(self, category) -> bool:
        return str(category) in self._stats().get("categories", ())

    def _coupon_used(self, coupon_id) -> bool:
        return bool(self._stats().get("coupons", {}).get(str(coupon_id), {}).get("used_at"))

    def _tier_before(self, order) -> str | None:
        """The tier without `order`'s payment: differs from `tier` when this order moved
        the customer up (or, refunded, down)."""
        d = order._d if isinstance(order, Record) else (order or {})
        orders, spent = self._orders(), self._spent()
        amount = to_money(d.get("amount") or ZERO)
        if d.get("paid_at") is not None and d.get("refunded_at") is None:
            orders, spent = max(0, orders - 1), max(ZERO, spent - amount)
        elif d.get("paid_at") is not None:  # refunded: its amount left the spend (the order still counts)
            spent = spent + amount
        return self._profile.tier(orders, spent)

    def _has_coupon(self, coupon_id) -> bool:
        coupon = self._stats().get("coupons", {}).get(str(coupon_id))
        return bool(coupon) and not coupon.get("used_at")


def _rfm(r: CustomerRecord) -> dict[str, int]:
    return r._profile.rfm(r._days_since_last_order(), r._orders(), r._spent())


_COMPUTED: dict[str, Callable[[CustomerRecord], Any]] = {
    "orders": CustomerRecord._orders,
    "spent": CustomerRecord._spent,
    "aov": lambda r: to_cents(r._spent() / r._orders()) if r._orders() else ZERO,
    "days_since_last_order": CustomerRecord._days_since_last_order,
    "ordered_today": CustomerRecord._ordered_today,
    "had_bad_review": lambda r: bool(r._stats().get("had_bad_review")),
    "last_rating": lambda r: r._stats().get("last_rating"),
    "tier": lambda r: r._profile.tier(r._orders(), r._spent()),
    "tier_before": lambda r: r._tier_before,
    "rfm": _rfm,
    "bought": lambda r: r._bought,
    "bought_category": lambda r: r._bought_category,
    "coupon_used": lambda r: r._coupon_used,
    "has_coupon": lambda r: r._has_coupon,
    "coupons": lambda r: r._stats().get("coupons") or {},
}
_HIDDEN = frozenset(("order_count", "stats", "birthday_md"))
