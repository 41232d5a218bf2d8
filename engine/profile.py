"""The customer profile: what the shop knows about a buyer, kept up to date from events,
and how rules see it (`customer.orders`, `customer.bought('SB-01')`, `customer.rfm`).

Stored on the customer row: `order_count` and `spent` (paid orders, refunds taken off),
`first_order_at` and `last_order_at` (an order's time is its earliest event, whatever its
type; indexed for the idle sweeps), `birthday_md` (month-day, indexed for the birthday
sweeps) and `stats` (JSON: SKUs and categories bought, last review rating, whether the
customer ever gave a bad review, coupons issued and used). Member tier and RFM scores
are computed when a rule reads them, from thresholds in config.yaml (`profile:`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from engine.events import Event
from engine.templates import FAST_RECORDS, Record

_BIRTHDAY = re.compile(r"^(?:\d{4}-)?(\d{1,2})-(\d{1,2})$")


@dataclass(frozen=True)
class Tier:
    name: str
    min_spent: float = 0.0
    min_orders: int = 0


@dataclass
class ProfileConfig:
    """Member tiers (highest first; the first a customer reaches is theirs) and RFM bands:
    recency in days since the last order (score 5 within the first band .. 1 beyond the
    last), frequency in paid orders and monetary in money spent (score 1 below the first
    threshold .. 5 at or above the last)."""

    tiers: list[Tier] = field(default_factory=lambda: [Tier("gold", 2000), Tier("silver", 500), Tier("member")])
    recency_days: tuple[int, ...] = (30, 90, 180, 365)
    frequency: tuple[int, ...] = (2, 3, 5, 10)
    monetary: tuple[float, ...] = (100.0, 500.0, 1000.0, 3000.0)

    def tier(self, orders: int, spent: float) -> str | None:
        for tier in self.tiers:
            if spent >= tier.min_spent and orders >= tier.min_orders:
                return tier.name
        return None

    def rfm(self, days_since_last_order: int | None, orders: int, spent: float) -> dict[str, int]:
        """Scores 1..5 (0 for recency and frequency when the customer never ordered)."""
        if days_since_last_order is None:
            recency = 0
        else:
            recency = 1
            for score, limit in zip((5, 4, 3, 2), self.recency_days):
                if days_since_last_order <= limit:
                    recency = score
                    break
        frequency = 0 if orders == 0 else 1 + sum(1 for t in self.frequency if orders >= t)
        monetary = 1 + sum(1 for t in self.monetary if spent >= t)
        return {"recency": recency, "frequency": frequency, "monetary": monetary}


def new_stats() -> dict[str, Any]:
    return {"skus": [], "categories": [], "last_rating": None, "had_bad_review": False, "coupons": {},
            "order_times": {}}


def birthday_md(value: Any) -> str | None:
    """'1990-05-01' or '05-01' -> '05-01'; anything else -> None."""
    match = _BIRTHDAY.match(str(value).strip()) if value else None
    if not match:
        return None
    month, day = int(match.group(1)), int(match.group(2))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{month:02d}-{day:02d}"


@dataclass(frozen=True)
class OrderBefore:
    """What an order was before an event changed it (for the customer's totals)."""

    paid: bool
    refunded: bool
    amount: float

    @classmethod
    def of(cls, order: dict | None) -> "OrderBefore":
        if order is None:
            return cls(False, False, 0.0)
        return cls(order["paid_at"] is not None, order["refunded_at"] is not None, float(order["amount"] or 0))


def apply_profile(customer: dict[str, Any], order: dict | None, before: OrderBefore, event: Event) -> None:
    """Update the customer's order totals, order times, purchases, reviews and coupons."""
    stats = customer["stats"]
    if order is not None and order["first_event_at"] is not None:
        # every order's time (its earliest event so far) is kept, so an order whose
        # earlier events arrive late moves the customer's first/last order time correctly
        times = stats.setdefault("order_times", {})
        times[order["id"]] = order["first_event_at"].isoformat()
        known = [datetime.fromisoformat(t) for t in times.values()]
        customer["first_order_at"], customer["last_order_at"] = min(known), max(known)
        amount = float(order["amount"] or 0)
        paid = order["paid_at"] is not None
        # money is kept to the cent: a float sum of 477.39 + 321.94 + 200.67 is not 1000
        if paid and not before.paid:
            customer["order_count"] += 1
            customer["spent"] = round(customer["spent"] + amount, 2)
        elif paid and amount != before.amount and not before.refunded:  # the amount came later
            customer["spent"] = round(customer["spent"] + amount - before.amount, 2)
        if order["refunded_at"] is not None and not before.refunded and paid:
            customer["spent"] = max(0.0, round(customer["spent"] - amount, 2))
        if paid:
            for item in order["items"] or []:
                if not isinstance(item, dict):
                    continue
                _add(stats["skus"], item.get("sku"))
                _add(stats["categories"], item.get("category"))
    if event.type == "order.reviewed":
        rating = event.data.get("rating")
        if rating is not None:
            stats["last_rating"] = str(rating)
            if str(rating) in ("bad", "neutral"):
                stats["had_bad_review"] = True
    elif event.type == "coupon.issued" and event.data.get("coupon_id") is not None:
        coupon = stats["coupons"].setdefault(str(event.data["coupon_id"]), {})
        coupon["issued_at"] = event.time.isoformat()
        if event.data.get("expires_at") is not None:
            coupon["expires_at"] = str(event.data["expires_at"])
    elif event.type == "coupon.used" and event.data.get("coupon_id") is not None:
        coupon = stats["coupons"].setdefault(str(event.data["coupon_id"]), {})
        coupon["used_at"] = event.time.isoformat()


def _add(values: list, value: Any) -> None:
    if value is not None and value != "" and str(value) not in values:
        values.append(str(value))


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

    def _spent(self) -> float:
        return float(self._d.get("spent") or 0)

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
        amount = float(d.get("amount") or 0)
        if d.get("paid_at") is not None and d.get("refunded_at") is None:
            orders, spent = max(0, orders - 1), max(0.0, round(spent - amount, 2))
        elif d.get("paid_at") is not None:  # refunded: its amount left the spend (the order still counts)
            spent = round(spent + amount, 2)
        return self._profile.tier(orders, spent)

    def _has_coupon(self, coupon_id) -> bool:
        coupon = self._stats().get("coupons", {}).get(str(coupon_id))
        return bool(coupon) and not coupon.get("used_at")


def _rfm(r: CustomerRecord) -> dict[str, int]:
    return r._profile.rfm(r._days_since_last_order(), r._orders(), r._spent())


_COMPUTED: dict[str, Callable[[CustomerRecord], Any]] = {
    "orders": CustomerRecord._orders,
    "spent": CustomerRecord._spent,
    "aov": lambda r: round(r._spent() / r._orders(), 2) if r._orders() else 0.0,
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
FAST_RECORDS.add(CustomerRecord)

DEFAULT_PROFILE = ProfileConfig()


PROFILE_KEYS = ("tiers", "rfm")
RFM_KEYS = ("recency_days", "frequency", "monetary")


def read_profile(raw, lines, problems: list) -> ProfileConfig:
    """The `profile:` section of config.yaml: member tiers and RFM bands, e.g.

        profile:
          tiers:                       # highest first: the first one reached is the tier
            - {name: 金卡, min_spent: 2000}
            - {name: 银卡, min_spent: 500, min_orders: 2}
            - {name: 会员}
          rfm:
            recency_days: [30, 90, 180, 365]
            frequency: [2, 3, 5, 10]
            monetary: [100, 500, 1000, 3000]
    """
    from engine.yamlfile import did_you_mean  # noqa: PLC0415 - keep this module light

    config = ProfileConfig()
    if raw is None:
        return config
    if not isinstance(raw, dict):
        problems.append(lines.problem(("profile",), "must be a mapping with tiers and rfm"))
        return config
    for key in raw:
        if key not in PROFILE_KEYS:
            problems.append(lines.problem(("profile", key), f"unknown key {key!r}{did_you_mean(key, PROFILE_KEYS)}"))
    if "tiers" in raw:
        tiers = _tiers(raw["tiers"], lines, problems)
        if tiers is not None:
            config.tiers = tiers
    rfm = raw.get("rfm")
    if rfm is not None and not isinstance(rfm, dict):
        problems.append(lines.problem(("profile", "rfm"), "must be a mapping with recency_days, frequency, monetary"))
    elif rfm:
        for key, value in rfm.items():
            path = ("profile", "rfm", key)
            if key not in RFM_KEYS:
                problems.append(lines.problem(path, f"unknown key {key!r}{did_you_mean(key, RFM_KEYS)}"))
                continue
            if (not isinstance(value, list) or len(value) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                                       or v < 0 for v in value)
                    or value != sorted(value)):
                problems.append(lines.problem(path, "must be four ascending numbers (the limits of the five scores), "
                                                    "such as [30, 90, 180, 365]"))
                continue
            setattr(config, key, tuple(value))
    return config


def _tiers(raw, lines, problems: list) -> list[Tier] | None:
    path = ("profile", "tiers")
    if not isinstance(raw, list) or not raw:
        problems.append(lines.problem(path, "must be a list of tiers, highest first, such as "
                                            "[{name: 金卡, min_spent: 2000}, {name: 会员}]"))
        return None
    tiers = []
    for i, item in enumerate(raw):
        where = path + (i,)
        if not isinstance(item, dict) or not item.get("name"):
            problems.append(lines.problem(where, "each tier needs a name, and min_spent and/or min_orders"))
            continue
        unknown = [k for k in item if k not in ("name", "min_spent", "min_orders")]
        for key in unknown:
            problems.append(lines.problem(where + (key,), f"unknown key {key!r}; a tier has name, min_spent, min_orders"))
        spent, orders = item.get("min_spent", 0), item.get("min_orders", 0)
        if isinstance(spent, bool) or not isinstance(spent, (int, float)) or spent < 0:
            problems.append(lines.problem(where + ("min_spent",), "must be an amount, such as 2000"))
            continue
        if isinstance(orders, bool) or not isinstance(orders, int) or orders < 0:
            problems.append(lines.problem(where + ("min_orders",), "must be a whole number of paid orders, such as 3"))
            continue
        tiers.append(Tier(str(item["name"]), float(spent), orders))
    return tiers
