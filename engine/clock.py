"""Clocks. Nothing in the engine's logic reads the wall clock: it is handed a Clock.

The daemon uses SystemClock; the dry-run and the tests use VirtualClock."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""

    def sleep_until(self, when: datetime) -> None:
        """Wait until `when` (a channel's send slot). A virtual clock does not wait."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            time.sleep(delay)


class VirtualClock:
    """A clock that only moves when told to; never backwards."""

    def __init__(self, start: datetime):
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        when = _aware(when)
        if when > self._now:
            self._now = when

    def sleep_until(self, when: datetime) -> None:
        """Nothing to wait for: a virtual send happens at its slot without waiting."""

    def advance(self, delta) -> None:
        self._now = self._now + delta


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("clock times must carry a time zone")
    return value.astimezone(timezone.utc)


MINUTE = timedelta(minutes=1)


def ceil_minute(t: datetime) -> datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + MINUTE
