"""Operator logging with loguru: one format, a bound component, a level from config."""

from __future__ import annotations

import sys

from loguru import logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss} {level:<7} [{extra[component]}] {message}"


def setup(level: str = "INFO") -> None:
    logger.remove()
    logger.configure(extra={"component": "engine"})
    logger.add(sys.stderr, level=level.upper(), format=FORMAT, backtrace=False, diagnose=False)
