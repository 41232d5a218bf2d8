"""The anti-spam limits as configured: frequency caps ("3/7d"), daily windows
("21:00-09:00"), channel rates ("50/s"), and reading config.yaml's `limits:` section with
file:line problems. The gate (engine/gate.py) applies them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, timedelta

from engine.config.yamlfile import Lines, did_you_mean
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


KIND_KEYS = ("per_customer", "quiet_hours")
CHANNEL_KEYS = ("per_customer", "rate")
TOP_KEYS = ("marketing", "service", "channels", "max_deferral")


def read_limits(raw, lines: Lines, problems: list, channel_names: list[str]) -> Limits:
    """Missing keys take the safe defaults (marketing 1/1d and 3/7d, quiet 21:00-09:00;
    service 6/1d, quiet 23:00-07:00); `quiet_hours: null` or `per_customer: []` turns
    one off explicitly."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        problems.append(lines.problem(("limits",), "must be a mapping with marketing, service, channels"))
        raw = {}
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(lines.problem(("limits", key), f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}"))
    limits = Limits(
        marketing=_kind(raw.get("marketing"), "marketing", lines, problems),
        service=_kind(raw.get("service"), "service", lines, problems),
        channels=_channels(raw.get("channels"), lines, problems, channel_names),
    )
    if "max_deferral" in raw:
        try:
            limits.max_deferral = parse_duration(raw["max_deferral"])
        except ValueError as exc:
            problems.append(lines.problem(("limits", "max_deferral"), str(exc)))
    return limits


def _kind(raw, kind: str, lines: Lines, problems: list) -> KindLimits:
    path = ("limits", kind)
    settings = dict(DEFAULTS[kind])
    if raw is not None and not isinstance(raw, dict):
        problems.append(lines.problem(path, "must be a mapping with per_customer and quiet_hours"))
        raw = None
    for key, value in (raw or {}).items():
        if key not in KIND_KEYS:
            problems.append(lines.problem(path + (key,), f"unknown key {key!r}{did_you_mean(key, KIND_KEYS)}"))
        else:
            settings[key] = value
    out = KindLimits(per_customer=_caps(settings["per_customer"], path + ("per_customer",), lines, problems))
    if settings["quiet_hours"] is not None:
        try:
            out.quiet_hours = parse_window(settings["quiet_hours"])
        except ValueError as exc:
            problems.append(lines.problem(path + ("quiet_hours",), str(exc)))
    return out


def _caps(raw, path: tuple, lines: Lines, problems: list) -> tuple:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(lines.problem(path, 'must be a list of caps, such as ["1/1d", "3/7d"]'))
        return ()
    caps = []
    for i, text in enumerate(raw):
        try:
            caps.append(parse_cap(text))
        except ValueError as exc:
            problems.append(lines.problem(path + (i,), str(exc)))
    return tuple(caps)


def _channels(raw, lines: Lines, problems: list, channel_names: list[str]) -> dict[str, ChannelLimits]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(lines.problem(("limits", "channels"), "must map channel names to {per_customer, rate}"))
        return {}
    out = {}
    for name, settings in raw.items():
        path = ("limits", "channels", name)
        if name not in channel_names:
            problems.append(lines.problem(path, f"unknown channel {name!r}; channels: {', '.join(channel_names)}"
                                                f"{did_you_mean(name, channel_names)}"))
            continue
        if not isinstance(settings, dict):
            problems.append(lines.problem(path, 'must be a mapping, such as {per_customer: ["2/1d"], rate: 50/s}'))
            continue
        limits = ChannelLimits()
        for key, value in settings.items():
            if key == "per_customer":
                limits.per_customer = _caps(value, path + (key,), lines, problems)
            elif key == "rate":
                try:
                    limits.rate = parse_rate(value)
                except ValueError as exc:
                    problems.append(lines.problem(path + (key,), str(exc)))
            else:
                problems.append(lines.problem(path + (key,), f"unknown key {key!r}{did_you_mean(key, CHANNEL_KEYS)}"))
        out[str(name)] = limits
    return out
