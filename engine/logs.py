"""Operator logging with loguru: one format, a bound component, a level from config;
optionally JSON lines (one object per line, for a log shipper) and a rotated file."""

from __future__ import annotations

import sys

from loguru import logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss} {level:<7} [{extra[component]}] {message}"


def setup(level: str = "INFO", *, json: bool = False, file: str | None = None, rotation: str | None = None,
          retention: str | None = None) -> None:
    """stderr always; `file` too when given, rotated at `rotation` (such as "100 MB" or
    "00:00") and pruned after `retention` (such as "14 days"). `json`: each line is a
    JSON object (loguru's serialisation: time, level, message, component)."""
    logger.remove()
    logger.configure(extra={"component": "engine"})
    common = {"level": level.upper(), "format": FORMAT, "backtrace": False, "diagnose": False, "serialize": json}
    logger.add(sys.stderr, **common)
    if file:
        logger.add(file, rotation=rotation, retention=retention, encoding="utf-8", enqueue=True, **common)
