"""The names rule expressions and templates see: customer, order, event, data, shop, now.

Stored rows become Records (attribute access, times in the shop's time zone)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.templates import Record


def _local(value: Any, tz: ZoneInfo) -> Any:
    return value.astimezone(tz) if isinstance(value, datetime) else value


def customer_view(row: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    view = dict(row.get("attrs") or {})
    for key, value in row.items():
        if key != "attrs":
            view[key] = _local(value, tz)
    return view


def order_view(row: dict[str, Any] | None, tz: ZoneInfo) -> dict[str, Any] | None:
    if row is None:
        return None
    view = dict(row.get("attrs") or {})
    for key, value in row.items():
        if key != "attrs":
            view[key] = _local(value, tz)
    return view


def build_context(customer: dict, order: dict | None, event: dict, data: dict, shop: dict,
                  now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """`event` holds id, type, time (aware); rows are the store's dicts."""
    order_v = order_view(order, tz)
    return {
        "customer": Record(customer_view(customer, tz), "customer"),
        "order": Record(order_v, "order") if order_v is not None else None,
        "event": Record({"id": event["id"], "type": event["type"], "time": _local(event["time"], tz)}, "event"),
        "data": Record(data or {}, "data"),
        "shop": Record(shop, "shop"),
        "now": now.astimezone(tz),
    }
