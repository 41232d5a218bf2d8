"""Operator logging with loguru: one format, a bound component, a level from config;
optionally JSON lines (one object per line, for a log shipper) and a rotated file."""

from __future__ import annotations

import inspect
import logging
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
    bridge_std_logging(level)


# Libraries whose INFO lines are per-request noise or carry what must not be logged: httpx
# logs every request's URL at INFO, and an SMS provider's URL holds the phone number.
# Alembic's INFO lines are its plugins and context at every start; the store says itself
# when it upgrades a schema (engine.store.schema).
QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "watchfiles": logging.WARNING,
         "apscheduler": logging.ERROR, "alembic": logging.WARNING}


class InterceptHandler(logging.Handler):
    """The standard `logging` into loguru (loguru's documented recipe): uvicorn, APScheduler,
    httpx and any other library log to the same sinks, in the same format, as the engine.
    The library's logger name is the line's component ("uvicorn.error", "httpx", ...)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        # find the caller outside the logging module, so loguru reports where the line came from
        frame, depth = inspect.currentframe(), 0
        while frame and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.bind(component=record.name).opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def bridge_std_logging(level: str = "INFO") -> None:
    """Route every standard-library logger through loguru: the root logger gets the one
    InterceptHandler, and the loggers that libraries configure themselves (uvicorn's) drop
    their own handlers and propagate to it."""
    logging.basicConfig(handlers=[InterceptHandler()], level=logging.getLevelName(level.upper()), force=True)
    for name, floor in QUIET.items():
        logging.getLogger(name).setLevel(max(floor, logging.getLevelName(level.upper())))
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("uvicorn", "apscheduler", "httpx", "httpcore", "watchfiles")):
            std = logging.getLogger(name)
            std.handlers = []
            std.propagate = True


def _offset(t: datetime) -> str:
    """+08:00 (the ISO 8601 form of the offset)."""
    text = t.strftime("%z")
    return f"{text[:3]}:{text[3:]}" if len(text) == 5 else text
