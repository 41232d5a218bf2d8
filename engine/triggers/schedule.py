"""Turning a matched rule into a scheduled message: due time, expiry and dedup key.

The dedup key is what the database's unique index (rule_id, dedup_key) holds: a rule
fires at most once per event, order or customer, as the rule's `once_per` says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.clock import ceil_minute
from engine.errors import ExpressionError
from engine.intake.events import Event
from engine.rules.model import Rule
from engine.store.rows import MessageRow, new_message


@dataclass(frozen=True)
class Plan:
    rule: Rule
    due_at: datetime
    expires_at: datetime | None
    dedup_key: str


def dedup_key(rule: Rule, event: Event) -> str:
    if rule.once_per == "order" and event.order_id is not None:
        return f"order:{event.order_id}"
    if rule.once_per == "customer":
        return f"customer:{event.customer_id}"
    return f"event:{event.id}"


def due_time(rule: Rule, event: Event, context: dict[str, Any], tz: ZoneInfo) -> datetime:
    """When the message should go. A send time already past means: due at the event."""
    if rule.send_at is not None:
        value = rule.send_at.evaluate(context)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ExpressionError(rule.send_at.source, f"gave {value!r}, not a time") from None
        if not isinstance(value, datetime):
            raise ExpressionError(rule.send_at.source, f"gave {value!r}, not a time; "
                                                       "use datetime('2026-11-11T10:00') or now + duration('1d')")
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return max(value, event.time)
    return event.time + rule.wait if rule.wait else event.time


def plan(rule: Rule, event: Event, context: dict[str, Any], tz: ZoneInfo) -> Plan:
    """Due times are rounded up to the whole minute: never early, and a customer's
    messages due in the same minute meet in one gate decision, ranked by priority."""
    due = ceil_minute(due_time(rule, event, context, tz))
    expires = due + rule.expires if rule.expires is not None else None
    return Plan(rule, due, expires, dedup_key(rule, event))


def message_row(p: Plan, event: Event, now: datetime) -> MessageRow:
    return new_message(rule_id=p.rule.id, dedup_key=p.dedup_key, customer_id=event.customer_id,
                       order_id=event.order_id, event_id=event.id, channel=p.rule.channel, kind=p.rule.kind,
                       due_at=p.due_at, expires_at=p.expires_at, now=now)
