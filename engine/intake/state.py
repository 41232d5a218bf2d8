"""How events change customers and orders: pure functions over plain dicts.

An order's status is its latest lifecycle stage. Events that arrive out of order never
move it backwards (a shipped event after the signed one leaves it signed), but every
stage keeps the time it happened."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.intake.events import Event
from engine.intake.profile import birthday_md, new_stats
from engine.money import ZERO, to_money

# Lifecycle stages in the order they happen. Terminal after-sale stages rank last;
# `closed` ends an order for good (unpaid timeout or after a full refund).
STAGES = ("created", "paid", "shipped", "out_for_delivery", "signed", "completed",
          "refund_requested", "refunded", "closed")
STAGE_RANK = {name: rank for rank, name in enumerate(STAGES)}
STAGE_OF_TYPE = {f"order.{name}": name for name in STAGES}

CUSTOMER_FIELDS = ("name", "phone", "email", "birthday", "timezone")
ORDER_FIELDS = ("amount", "items")


def new_customer(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "name": None, "phone": None, "email": None, "birthday": None,
            "timezone": None, "tags": [], "attrs": {}, "opted_out": [], "first_seen_at": None, "updated_at": None,
            "order_count": 0, "spent": ZERO, "first_order_at": None, "last_order_at": None, "birthday_md": None,
            "stats": new_stats()}


def with_profile(customer: dict[str, Any]) -> dict[str, Any]:
    """A stored customer row with the profile fields filled in where an older row lacks them."""
    if customer.get("stats") is None:
        customer["stats"] = new_stats()
    else:
        for key, value in new_stats().items():
            customer["stats"].setdefault(key, value)
    if customer.get("order_count") is None:
        customer["order_count"] = 0
    if customer.get("spent") is None:
        customer["spent"] = ZERO
    return customer


def new_order(order_id: str, customer_id: str) -> dict[str, Any]:
    order = {"id": order_id, "customer_id": customer_id, "status": None, "amount": None,
             "items": [], "attrs": {}, "first_event_at": None, "updated_at": None}
    for stage in STAGES:
        order[f"{stage}_at"] = None
    return order


def apply_customer(customer: dict[str, Any], event: Event) -> dict[str, Any]:
    """Merge the profile fields an event carries; later events may carry only the id.

    Fields are merged when the event is not older than the last update, so a replayed
    old event does not overwrite a newer phone number."""
    incoming = event.customer
    if event.type == "customer.unsubscribed":  # from that moment on, whatever the event order
        channel = event.data.get("channel") or "*"
        if channel not in customer["opted_out"]:
            customer["opted_out"] = [*customer["opted_out"], str(channel)]
    fresher = customer["updated_at"] is None or event.time >= customer["updated_at"]
    if customer["first_seen_at"] is None or event.time < customer["first_seen_at"]:
        customer["first_seen_at"] = event.time
    if not fresher:
        for key in CUSTOMER_FIELDS:  # only fill gaps
            if customer[key] is None and incoming.get(key) not in (None, ""):
                customer[key] = incoming[key]
        customer["birthday_md"] = birthday_md(customer["birthday"])
        return customer
    for key, value in incoming.items():
        if key == "id" or value is None or value == "":  # an empty value never erases a known one
            continue
        if key in CUSTOMER_FIELDS:
            customer[key] = value
            if key == "birthday":
                customer["birthday_md"] = birthday_md(value)
        elif key == "tags":
            customer["tags"] = list(value)
        elif key == "opted_out":  # the shop's own record of opt-outs, e.g. ["sms"] or ["*"]
            customer["opted_out"] = [str(v) for v in value]
        else:
            customer["attrs"][key] = value
    customer["updated_at"] = event.time
    return customer


def apply_order(order: dict[str, Any], event: Event) -> dict[str, Any]:
    """Record the event's stage time and move the status forward (never back)."""
    incoming = event.order or {}
    if order["first_event_at"] is None or event.time < order["first_event_at"]:
        order["first_event_at"] = event.time
    fresher = order["updated_at"] is None or event.time >= order["updated_at"]
    for key, value in incoming.items():
        if key == "id" or value is None or value == "":
            continue
        if key in ORDER_FIELDS:
            if fresher or order[key] in (None, []):
                order[key] = to_money(value) if key == "amount" else value
        elif fresher or key not in order["attrs"]:
            order["attrs"][key] = value
    if fresher:
        order["updated_at"] = event.time
    stage = STAGE_OF_TYPE.get(event.type)
    if stage is not None:
        _record_stage(order, stage, event.time)
    elif event.type == "order.reviewed":
        order["attrs"]["rating"] = event.data.get("rating")
        order["attrs"]["reviewed_at"] = event.time.isoformat()
    return order


def _record_stage(order: dict[str, Any], stage: str, when: datetime) -> None:
    key = f"{stage}_at"
    if order[key] is None or when < order[key]:
        order[key] = when
    current = order["status"]
    if current is None or STAGE_RANK[stage] > STAGE_RANK[current]:
        order["status"] = stage
