"""Durations as marketers write them: 30s, 30m, 2h, 3d, 1w, or combined ("1d12h")."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
PATTERN = r"^\s*(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+$"  # also the JSON Schemas' (engine.config.spec.DURATION)
_WHOLE = re.compile(PATTERN)

HINT = "write a number and a unit: 30s, 30m, 2h, 3d, 1w (or combined, like 1d12h)"
MAX_SECONDS = 3650 * 86400  # ten years: any wait, expiry, cooldown, window or offset (README "Limits")


def parse_duration(text) -> timedelta:
    """Parse '30m' into a timedelta; raise ValueError with a hint otherwise."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"bad duration {text!r}; {HINT}")
    if isinstance(text, int):
        raise ValueError(f"bad duration {text!r}: a unit is missing; {HINT}")
    if not _WHOLE.match(text):
        raise ValueError(f"bad duration {text!r}; {HINT}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise ValueError(f"bad duration {text!r}: longer than 10 years (3650d), the longest the engine takes")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
