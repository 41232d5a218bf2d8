"""Channel pacing: a channel with `rate: COUNT/PER` (limits.channels in config.yaml) sends
its messages evenly spaced, PER / COUNT apart, so no window of length PER ever holds more
than COUNT of them, however large the burst.

Pacing is the channel's schedule, not a decision. Each message the gate lets through
takes the next free slot on its channel's schedule: the later of its decision time and
one spacing after the last slot given out, by any dispatcher (the schedule's end is read
from the database under a per-channel lock). A slot within PACE_AHEAD of the decision is
kept by the send loop, which waits for it; a later one stays with the message, which
waits in the queue holding its place and is taken again just before its slot. Nothing is
re-paced, nothing loses its place: a burst of N goes out in N / rate, in the order the
dispatcher took it (due time, then priority).

The dry-run takes the same slots on its virtual clock, so it shows the same send times."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Callable

from engine.config.limits import Rate

# How far ahead of its slot a message is decided and handed to its channel's send loop
# (which waits for the slot): the longest a dispatch batch waits on a rate.
PACE_AHEAD = timedelta(seconds=1)


class Schedule:
    """One rate-limited channel's schedule inside a dispatch transaction: where it ends
    (`last`: the latest send or held slot on the channel) and the slots this transaction
    gives out after it."""

    def __init__(self, rate: Rate, last: datetime | None):
        self.rate = rate
        self.spacing = rate.per / rate.count
        self.last = last

    def next_slot(self, at: datetime) -> datetime:
        """The first free slot at or after `at` (not yet taken: see take)."""
        if self.last is None:
            return at
        return max(at, self.last + self.spacing)

    def take(self, slot: datetime) -> None:
        if self.last is None or slot > self.last:
            self.last = slot


class SendPace:
    """The send loops' side on the real clock (the daemon): whatever the slots say, a
    channel's send starts no sooner than one spacing after its previous one in this
    process, so a channel that fell behind (a slow provider, a pause) catches up at its
    rate, not in a burst. Kept by the engine across batches and reloads."""

    def __init__(self, now: Callable[[], datetime], sleep_until: Callable[[datetime], None]):
        self._now = now
        self._sleep_until = sleep_until
        self._last: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def wait(self, channel: str, slot: datetime, spacing: timedelta | None) -> datetime:
        """Wait until this send may start; returns when it started."""
        with self._lock:
            last = self._last.get(channel)
        start = slot if spacing is None or last is None else max(slot, last + spacing)
        self._sleep_until(start)
        started = self._now()
        with self._lock:
            self._last[channel] = max(started, start)
        return started
