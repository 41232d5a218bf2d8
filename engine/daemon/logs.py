"""Operator logging with loguru: one format, a bound component, a level from config;
optionally JSON lines (one object per line, for a log shipper) and a rotated file."""

from __future__ import annotations

import sys
from datetime import datetime, tzinfo

from loguru import logger

FORMAT = "{extra[when]} {level:<7} [{extra[component]}] {message}"


def setup(level: str = "INFO", *, json: bool = False, file: str | None = None, rotation: str | None = None,
          retention: str | None = None, tz: tzinfo | None = None) -> None:
    """stderr always; `file` too when given, rotated at `rotation` (such as "100 MB" or
    "00:00") and pruned after `retention` (such as "14 days"). `json`: each line is a
    JSON object (loguru's serialisation: time, level, message, component). Each line's
    time is in `tz` (the shop's time zone; else the machine's) with its offset, like
    `2026-11-11 10:00:05 +08:00`, as every time the engine shows people."""
    logger.remove()

    def stamp(record) -> None:
        when = record["time"].astimezone(tz) if tz is not None else record["time"]
        record["extra"]["when"] = f"{when:%Y-%m-%d %H:%M:%S} {_offset(when)}"

    logger.configure(extra={"component": "engine", "when": ""}, patcher=stamp)
    common = {"level": level.upper(), "format": FORMAT, "backtrace": False, "diagnose": False, "serialize": json}
    logger.add(sys.stderr, **common)
    if file:
        logger.add(file, rotation=rotation, retention=retention, encoding="utf-8", enqueue=True, **common)


def _offset(t: datetime) -> str:
    """+08:00 (the ISO 8601 form of the offset)."""
    text = t.strftime("%z")
    return f"{text[:3]}:{text[3:]}" if len(text) == 5 else text
