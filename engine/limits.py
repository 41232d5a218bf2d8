"""The anti-spam limits as configured: frequency caps ("3/7d"), daily windows
("21:00-09:00"), channel rates ("50/s"). Parsing and validation only; the gate
(engine/gate.py) applies them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta

from engine.durations import parse_duration

_CAP = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
RATE_PATTERN = r"^\s*(\d+)\s*/\s*(s|m|h)\s*$"  # also config.schema.json's
_RATE = re.compile(RATE_PATTERN)
_RATE_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Cap:
    """At most `count` messages in any `window` (rolling)."""

    count: int
    window: timedelta
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class DailyWindow:
    """A time-of-day range [start, end) in local time; end <= start spans midnight."""

    start: time
    end: time
    text: str

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Rate:
    count: int
    per: timedelta
    text: str

    @property
    def spacing(self) -> timedelta:
        return self.per / self.count


@dataclass
class KindLimits:
    per_customer: tuple[Cap, ...] = ()
    quiet_hours: DailyWindow | None = None


@dataclass
class ChannelLimits:
    per_customer: tuple[Cap, ...] = ()
    rate: Rate | None = None


@dataclass
class Limits:
    marketing: KindLimits = field(default_factory=KindLimits)
    service: KindLimits = field(default_factory=KindLimits)
    channels: dict[str, ChannelLimits] = field(default_factory=dict)
    max_deferral: timedelta = timedelta(days=1)

    def for_kind(self, kind: str) -> KindLimits:
        return self.service if kind == "service" else self.marketing

    def lookback(self, extra: timedelta = timedelta(0)) -> timedelta:
        """How far back the gate must look at sends to judge every cap."""
        caps = [*self.marketing.per_customer, *self.service.per_customer,
                *(c for ch in self.channels.values() for c in ch.per_customer)]
        return max([c.window for c in caps] + [extra, timedelta(0)])


def parse_cap(text) -> Cap:
    match = _CAP.match(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"bad cap {text!r}; write COUNT/WINDOW, such as 3/7d (at most 3 messages in any 7 days)")
    try:
        window = parse_duration(match.group(2))
    except ValueError:
        raise ValueError(f"bad cap {text!r}: {match.group(2)!r} is not a duration like 1d or 7d") from None
    return Cap(int(match.group(1)), window, text.strip())


def parse_window(text) -> DailyWindow:
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match:
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60 and (h1, m1) != (h2, m2):
            return DailyWindow(time(h1, m1), time(h2, m2), text.strip())
    raise ValueError(f"bad time window {text!r}; write HH:MM-HH:MM in local time, such as 21:00-09:00 "
                     "(it may span midnight)")


def parse_rate(text) -> Rate:
    match = _RATE.match(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"bad rate {text!r}; write COUNT/s, COUNT/m or COUNT/h, such as 50/s")
    return Rate(int(match.group(1)), timedelta(seconds=_RATE_UNITS[match.group(2)]), text.strip())


DEFAULTS = {
    "marketing": {"per_customer": ["1/1d", "3/7d"], "quiet_hours": "21:00-09:00"},
    "service": {"per_customer": ["6/1d"], "quiet_hours": "23:00-07:00"},
}
