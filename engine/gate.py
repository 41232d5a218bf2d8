"""The gate: the one step between claiming a due message and sending it.

It answers allow, or hold with an outcome (suppressed / deferred) and a reason. This
release lets everything through; frequency caps, cooldowns, quiet hours and
unsubscribe plug in here, so the daemon and the dry-run apply them identically."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Hold:
    outcome: str  # suppressed | deferred
    reason: str
    detail: str
    retry_at: datetime | None = None  # for deferred: the new due time


class Gate:
    def check(self, message: dict[str, Any], customer: dict[str, Any], now: datetime) -> Hold | None:
        """None lets the message through."""
        raise NotImplementedError


class OpenGate(Gate):
    """Lets every message through (no limits configured)."""

    def check(self, message, customer, now):
        return None
