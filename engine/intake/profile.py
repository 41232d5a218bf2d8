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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.intake.events import Event
from engine.money import ZERO, Money, to_money

_BIRTHDAY = re.compile(r"^(?:\d{4}-)?(\d{1,2})-(\d{1,2})$")


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
    amount: Money

    @classmethod
    def of(cls, order: dict | None) -> "OrderBefore":
        if order is None:
            return cls(False, False, ZERO)
        return cls(order["paid_at"] is not None, order["refunded_at"] is not None, to_money(order["amount"] or ZERO))


def apply_profile(customer: dict[str, Any], order: dict | None, before: OrderBefore, event: Event) -> None:
    """Update the customer's order totals, order times, purchases, reviews and coupons."""
    if order is not None and order["first_event_at"] is not None:
        _order_times(customer, order)
        _totals(customer, order, before)
    if event.type == "order.reviewed":
        _review(customer["stats"], event)
    elif event.type in ("coupon.issued", "coupon.used") and event.data.get("coupon_id") is not None:
        _coupon(customer["stats"], event)


def _order_times(customer: dict[str, Any], order: dict) -> None:
    """Every order's time (its earliest event so far) is kept, so an order whose earlier
    events arrive late moves the customer's first/last order time correctly."""
    times = customer["stats"].setdefault("order_times", {})
    times[order["id"]] = order["first_event_at"].isoformat()
    known = [datetime.fromisoformat(t) for t in times.values()]
    customer["first_order_at"], customer["last_order_at"] = min(known), max(known)


def _totals(customer: dict[str, Any], order: dict, before: OrderBefore) -> None:
    """Paid orders and money spent (exact decimals: 477.39 + 321.94 + 200.67 is 1000.00),
    and what a paid order bought."""
    amount = to_money(order["amount"] or ZERO)
    spent = to_money(customer["spent"] or ZERO)
    paid = order["paid_at"] is not None
    if paid and not before.paid:
        customer["order_count"] += 1
        spent += amount
    elif paid and amount != before.amount and not before.refunded:  # the amount came later
        spent += amount - before.amount
    if order["refunded_at"] is not None and not before.refunded and paid:
        spent = max(ZERO, spent - amount)
    customer["spent"] = spent
    if paid:
        for item in order["items"] or []:
            if isinstance(item, dict):
                _add(customer["stats"]["skus"], item.get("sku"))
                _add(customer["stats"]["categories"], item.get("category"))


def _review(stats: dict[str, Any], event: Event) -> None:
    rating = event.data.get("rating")
    if rating is not None:
        stats["last_rating"] = str(rating)
        if str(rating) in ("bad", "neutral"):
            stats["had_bad_review"] = True


def _coupon(stats: dict[str, Any], event: Event) -> None:
    coupon = stats["coupons"].setdefault(str(event.data["coupon_id"]), {})
    if event.type == "coupon.used":
        coupon["used_at"] = event.time.isoformat()
        return
    coupon["issued_at"] = event.time.isoformat()
    if event.data.get("expires_at") is not None:
        coupon["expires_at"] = str(event.data["expires_at"])


def _add(values: list, value: Any) -> None:
    if value is not None and value != "" and str(value) not in values:
        values.append(str(value))
