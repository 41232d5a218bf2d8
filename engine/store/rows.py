"""The two rows every layer writes: a scheduled message and a decision-log record.

Each has one constructor, so a new column is added in one place and no caller can
forget one. They stay plain dicts (TypedDicts) because the store's bulk writers take
dicts by the thousand on the hot path; the types are for readers and checkers."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from engine.outcomes import Outcome, Reason, State


class MessageRow(TypedDict):
    """A row of `messages`: one message a rule scheduled for one customer."""

    rule_id: str
    dedup_key: str
    customer_id: str
    order_id: str | None
    event_id: str | None
    channel: str
    kind: str
    due_at: datetime
    expires_at: datetime | None
    state: str
    reason: str | None
    detail: str | None
    attempts: int
    claimed_at: datetime | None
    slot_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LogRow(TypedDict):
    """A row of `message_log`: one decision about a message (or about a message that was
    never scheduled: a duplicate, a failed `if:`), with its reason in words."""

    message_id: int | None
    time: datetime
    rule_id: str
    customer_id: str
    order_id: str | None
    channel: str
    kind: str
    outcome: Outcome
    reason: Reason | str | None
    detail: str | None
    body: str | None


def new_message(*, rule_id: str, dedup_key: str, customer_id: str, order_id: str | None, event_id: str | None,
                channel: str, kind: str, due_at: datetime, expires_at: datetime | None, now: datetime) -> MessageRow:
    """A message scheduled now, pending until `due_at`."""
    return {
        "rule_id": rule_id, "dedup_key": dedup_key, "customer_id": customer_id, "order_id": order_id,
        "event_id": event_id, "channel": channel, "kind": kind, "due_at": due_at, "expires_at": expires_at,
        "state": State.PENDING, "reason": None, "detail": None, "attempts": 0, "claimed_at": None, "slot_at": None,
        "created_at": now, "updated_at": now,
    }


def log_row(*, message_id: int | None, time: datetime, rule_id: str, customer_id: str, order_id: str | None,
            channel: str, kind: str, outcome: Outcome, reason: Reason | str | None, detail: str | None,
            body: str | None = None) -> LogRow:
    """A decision as the log keeps it (`body`: the text sent, for `sent` only)."""
    return {"message_id": message_id, "time": time, "rule_id": rule_id, "customer_id": customer_id,
            "order_id": order_id, "channel": channel, "kind": kind, "outcome": outcome, "reason": reason,
            "detail": detail, "body": body}
