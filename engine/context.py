"""The names rule expressions and templates see: customer, order, event, data, shop, now.

Stored rows become Records: attribute access, custom fields from events, times shown in
the shop's time zone (converted when read, so building a context costs almost nothing)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from engine.profile import CustomerRecord, ProfileConfig
from engine.templates import Record, Scope


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
