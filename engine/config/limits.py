"""The anti-spam limits as configured: frequency caps ("3/7d"), daily windows
("21:00-09:00"), channel rates ("50/s"), and reading config.yaml's `limits:` section with
file:line problems. The gate (engine/gate.py) applies them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta

from engine.config.spec import ABSENT, DURATION, Each, Key, Kind, ListOf, Section, Walk, read_section
from engine.config.yamlfile import Lines
from engine.durations import PATTERN as DURATION_PATTERN
from engine.durations import parse_duration

_CAP = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
CAP_PATTERN = r"^\s*\d+\s*/" + DURATION_PATTERN[1:]  # the schema's: COUNT/ then a duration
WINDOW_PATTERN = r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$"
_WINDOW = re.compile(WINDOW_PATTERN)
RATE_PATTERN = r"^\s*(\d+)\s*/\s*(s|m|h)\s*$"
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

CAP = Kind("cap", parse_cap, {"type": "string", "pattern": CAP_PATTERN})
WINDOW = Kind("window", parse_window, {"type": "string", "pattern": WINDOW_PATTERN})
RATE = Kind("rate", parse_rate, {"type": "string", "pattern": RATE_PATTERN})


def _caps(doc: str) -> Key:
    return Key("per_customer", ListOf(CAP, 'must be a list of caps, such as ["1/1d", "3/7d"]'), doc, null=(),
               examples=(["1/1d", "3/7d"],))


def _kind(kind: str) -> Section:
    defaults = DEFAULTS[kind]

    def build(values: dict) -> KindLimits:
        caps = values.get("per_customer", [parse_cap(c) for c in defaults["per_customer"]])
        return KindLimits(tuple(caps), values.get("quiet_hours", parse_window(defaults["quiet_hours"])))

    return Section((
        _caps(f"At most COUNT {kind} messages to one customer in any WINDOW (rolling)."),
        Key("quiet_hours", WINDOW, "No message in these hours of the customer's local time (null: none).",
            null=None, examples=(defaults["quiet_hours"],)),
    ), "must be a mapping with per_customer and quiet_hours", f"Limits on {kind} messages, across all rules.",
        build=build)


CHANNEL_LIMITS = Section((
    _caps("Marketing caps on this channel alone."),
    Key("rate", RATE, "The provider's throughput: messages go evenly spaced, never more than this.",
        examples=("50/s",)),
), 'must be a mapping, such as {per_customer: ["2/1d"], rate: 50/s}',
    build=lambda values: ChannelLimits(tuple(values.get("per_customer", ())), values.get("rate")))


def _limits(values: dict) -> Limits:
    limits = Limits(**{k: v for k, v in values.items() if k != "marketing" and k != "service"})
    limits.marketing = values.get("marketing") or _kind("marketing").build({})
    limits.service = values.get("service") or _kind("service").build({})
    return limits


LIMITS = Section((
    Key("marketing", _kind("marketing"), null=ABSENT),
    Key("service", _kind("service"), null=ABSENT),
    Key("channels", Each(CHANNEL_LIMITS, "must map channel names to {per_customer, rate}", "Per channel name.",
                         names=lambda values: list(values.get("channels", ("log",))),  # none: the log channel
                         unknown="unknown channel {key!r}; channels: {names}{hint}"), null=ABSENT),
    Key("max_deferral", DURATION, "The latest a message without `expires` goes after its due time.",
        examples=("1d",)),
), "must be a mapping with marketing, service, channels",
    "No customer gets spammed: limits across all rules, checked at send time.", build=_limits)


def read_limits(raw, lines: Lines, problems: list, channel_names: list[str]) -> Limits:
    """Missing keys take the safe defaults (marketing 1/1d and 3/7d, quiet 21:00-09:00;
    service 6/1d, quiet 23:00-07:00); `quiet_hours: null` or `per_customer: []` turns
    one off explicitly."""
    walk = Walk(lines, problems, {"channels": dict.fromkeys(channel_names)})
    return read_section(LIMITS, raw, ("limits",), walk)
