"""config.yaml: the shop, the time zone, the database and the channels.

Relative paths (SQLite file, file-channel outboxes) are relative to the config file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.config.http import HttpConfig, read_http
from engine.config.limits import Limits, read_limits
from engine.config.profile import ProfileConfig, read_profile
from engine.config.yamlfile import Lines, did_you_mean, load_yaml_file
from engine.durations import parse_duration
from engine.errors import ConfigError, Problem
from engine.rules.fields import Fields, read_fields

DEFAULT_DATABASE = "sqlite:///var/engine.db"
TOP_KEYS = ("timezone", "database", "shop", "channels", "dispatch", "log", "limits", "segments", "profile", "http",
            "fields")


@dataclass
class ChannelConfig:
    name: str
    type: str
    options: dict[str, Any]
    line: int | None = None


@dataclass
class RetryConfig:
    """Transient channel failures: `attempts` in all (the first send included), waiting
    `backoff` after the first failure, doubling up to `max_backoff`."""

    attempts: int = 5
    backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(minutes=30)


@dataclass
class DispatchConfig:
    batch_size: int = 500
    tick: timedelta = timedelta(seconds=1)
    lease: timedelta = timedelta(minutes=5)
    retry: RetryConfig = field(default_factory=RetryConfig)


@dataclass
class Config:
    path: Path | None
    base_dir: Path
    timezone: ZoneInfo
    database: str
    shop: dict[str, Any]
    channels: dict[str, ChannelConfig]
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    log_level: str = "INFO"
    limits: Limits = field(default_factory=lambda: read_limits(None, Lines(""), [], []))
    raw: dict[str, Any] = field(default_factory=dict)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    segments: dict[str, str] = field(default_factory=dict)
    http: HttpConfig = field(default_factory=HttpConfig)
    log_options: dict[str, Any] = field(default_factory=dict)  # json, file, rotation, retention
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)  # custom fields rules may read, per object

    @property
    def tz_name(self) -> str:
        return self.timezone.key


def default_config(base_dir: Path | None = None) -> Config:
    """What a missing config.yaml means: Shanghai time, SQLite, a log channel."""
    base = base_dir or Path.cwd()
    return Config(None, base, ZoneInfo("Asia/Shanghai"), resolve_database(DEFAULT_DATABASE, base),
                  {"name": "Shop"}, {"log": ChannelConfig("log", "log", {})})


def resolve_database(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path relative to the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        rest = url[len(prefix):]
        return prefix + str((base_dir / rest).resolve())
    return url


def load_config(path: Path) -> Config:
    """Load and validate config.yaml; raise ConfigError listing every problem."""
    from engine.channels import channel_class, channel_types  # registry; imported late to avoid a cycle

    display = str(path)
    data, lines, problems = load_yaml_file(path, display)
    if data is None and not problems:
        data = {}
    if problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError([Problem(display, 1, "", "config.yaml must be a mapping of keys such as timezone, "
                                                   "database, channels")])
    base = path.resolve().parent
    for key in data:
        if key not in TOP_KEYS:
            problems.append(lines.problem((key,), f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}"))

    tz = _timezone(data.get("timezone", "Asia/Shanghai"), lines, problems)
    database = data.get("database", DEFAULT_DATABASE)
    if not isinstance(database, str):
        problems.append(lines.problem(("database",), "must be a database URL such as sqlite:///var/engine.db "
                                      "or postgresql+psycopg://user@host/db"))
        database = DEFAULT_DATABASE
    shop = data.get("shop", {}) or {}
    if not isinstance(shop, dict):
        problems.append(lines.problem(("shop",), "must be a mapping, such as {name: 小明户外}"))
        shop = {}
    channels = _channels(data.get("channels"), lines, problems, channel_types())
    for channel in channels.values():
        for option, message in channel_class(channel.type).option_problems(channel.options):
            problems.append(lines.problem(("channels", channel.name, option), message))
    dispatch = _dispatch(data.get("dispatch") or {}, lines, problems)
    log_level, log_options = _log_level(data.get("log"), lines, problems)
    if "file" in log_options:
        log_options["file"] = str((base / log_options["file"]).resolve())
    limits = read_limits(data.get("limits"), lines, problems, list(channels))
    profile = read_profile(data.get("profile"), lines, problems)
    fields = read_fields(data.get("fields"), lines, problems)
    segments = read_segments(data.get("segments"), tz, lines, problems, {}, Fields(fields, tuple(shop)))
    http = read_http(data.get("http"), lines, problems)
    if problems:
        raise ConfigError(problems)
    return Config(path, base, tz, resolve_database(database, base), shop, channels, dispatch, log_level, limits, data,
                  profile, segments, http, log_options, fields)


def read_segments(raw, tz: ZoneInfo, lines: Lines, problems: list, known: dict[str, str],
                  fields: Fields | None = None, *, loops: bool = True) -> dict[str, str]:
    """Named conditions from config.yaml or a rules file's `segments:` (such as high_quality:
    "customer.orders >= 1 and not customer.had_bad_review"), checked for syntax and for
    the fields they read; a name already in `known` (name -> where it is defined) is an
    error; so are segments that use each other in a loop (`loops`)."""
    from engine.errors import ExpressionError  # noqa: PLC0415
    from engine.rules.templates import Templates  # noqa: PLC0415 - templates import config's peers

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(lines.problem(("segments",), "must map names to conditions, such as "
                                                     "high_quality: \"customer.orders >= 1 and not "
                                                     "customer.had_bad_review\""))
        return {}
    checker = Templates(None, tz)
    checker.fields = fields or checker.fields
    out = {}
    for name, source in raw.items():
        path = ("segments", name)
        if str(name) in known:
            problems.append(lines.problem(path, f"segment {name!r} is already defined in {known[str(name)]}; "
                                                "rename one of them"))
            continue
        if not isinstance(source, str) or not source.strip():
            problems.append(lines.problem(path, "must be a condition, such as customer.orders >= 3"))
            continue
        try:
            checker.compile_expression(source)
        except ExpressionError as exc:
            problems.append(lines.problem(path, f"expression does not compile: {exc.reason}"))
            continue
        unknown = checker.unknown_fields(source)
        for message in unknown:
            problems.append(lines.problem(path, message))
        if not unknown:
            out[str(name)] = source
    cycle = segment_cycle(out) if loops else None  # (the rules files' are looked for all together)
    if cycle:
        problems.append(lines.problem(("segments", cycle[0]), cycle_message(cycle)))
    return out


_SEGMENT_USE = re.compile(r"""\bsegment\(\s*['"]([^'"]+)['"]\s*\)""")


def segment_cycle(sources: dict[str, str]) -> list[str] | None:
    """The first loop of segments using each other (a -> b -> a), or None."""
    uses = {name: [u for u in _SEGMENT_USE.findall(source) if u in sources] for name, source in sources.items()}
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for used in uses[name]:
            if state.get(used) == 1:
                return path[path.index(used):] + [used]
            if used not in state:
                found = walk(used, path + [used])
                if found:
                    return found
        state[name] = 2
        return None

    for name in sources:
        if name not in state:
            found = walk(name, [name])
            if found:
                return found
    return None


def cycle_message(cycle: list[str]) -> str:
    return (f"segments use each other in a loop: {' → '.join(cycle)}; a segment cannot use itself, directly or "
            "through others")


def _timezone(value, lines: Lines, problems: list) -> ZoneInfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(lines.problem(("timezone",), f"unknown time zone {value!r}; write an IANA name such as "
                                                     "Asia/Shanghai"))
        return ZoneInfo("Asia/Shanghai")


def _channels(raw, lines: Lines, problems: list, known_types: list[str]) -> dict[str, ChannelConfig]:
    if raw is None:
        return {"log": ChannelConfig("log", "log", {})}
    if not isinstance(raw, dict):
        problems.append(lines.problem(("channels",), "must map channel names to settings, such as sms: {type: "
                                                     "file, path: outbox/sms.jsonl}"))
        return {}
    out = {}
    for name, settings in raw.items():
        path = ("channels", name)
        if not isinstance(settings, dict) or "type" not in settings:
            problems.append(lines.problem(path, f"needs a type; known types: {', '.join(known_types)}"))
            continue
        ctype = settings["type"]
        if ctype not in known_types:
            problems.append(lines.problem(path + ("type",), f"unknown channel type {ctype!r}; known: "
                                          f"{', '.join(known_types)}{did_you_mean(ctype, known_types)}"))
            continue
        options = {k: v for k, v in settings.items() if k != "type"}
        out[str(name)] = ChannelConfig(str(name), ctype, options, lines.line(path))
    return out


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


LOG_KEYS = ("level", "json", "file", "rotation", "retention")


def _log_level(raw, lines: Lines, problems: list) -> tuple[str, dict]:
    """The level, and the other `log:` settings (json, file, rotation, retention)."""
    if raw is None:
        return "INFO", {}
    if not isinstance(raw, dict):
        problems.append(lines.problem(("log",), "must be a mapping, such as {level: INFO}"))
        return "INFO", {}
    options = {}
    for key, value in raw.items():
        if key not in LOG_KEYS:
            problems.append(lines.problem(("log", key), f"unknown key {key!r}{did_you_mean(key, LOG_KEYS)}"))
        elif key == "json":
            if not isinstance(value, bool):
                problems.append(lines.problem(("log", key), "must be true or false"))
            else:
                options[key] = value
        elif key in ("file", "rotation", "retention"):
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                problems.append(lines.problem(("log", key), {"file": "must be a file path, such as var/engine.log",
                                                             "rotation": "must be a size or a time, such as "
                                                                         "\"100 MB\" or \"00:00\"",
                                                             "retention": "must be a duration, such as "
                                                                          "\"14 days\""}[key]))
            else:
                options[key] = str(value)
    level = str(raw.get("level", "INFO")).upper()
    if level not in LOG_LEVELS:
        problems.append(lines.problem(("log", "level"), f"unknown log level {raw.get('level')!r}; "
                                      f"choose one of: {', '.join(LOG_LEVELS)}"))
        return "INFO", options
    return level, options


def _dispatch(raw, lines: Lines, problems: list) -> DispatchConfig:
    cfg = DispatchConfig()
    if not isinstance(raw, dict):
        problems.append(lines.problem(("dispatch",), "must be a mapping with batch_size, tick, lease"))
        return cfg
    retry = raw.get("retry")
    _settings(cfg, {k: v for k, v in raw.items() if k != "retry"}, ("dispatch",), lines, problems,
              counts={"batch_size": "must be a whole number of messages, such as 500"},
              durations=("tick", "lease"), also=("retry",))
    if "retry" in raw:
        cfg.retry = _retry(retry, lines, problems)
    return cfg


def _retry(raw, lines: Lines, problems: list) -> RetryConfig:
    cfg = RetryConfig()
    if not isinstance(raw, dict):
        problems.append(lines.problem(("dispatch", "retry"), "must be a mapping such as "
                                                             "{attempts: 5, backoff: 30s, max_backoff: 30m}"))
        return cfg
    _settings(cfg, raw, ("dispatch", "retry"), lines, problems,
              counts={"attempts": "must be a whole number of attempts, 1 or more (1: never retry)"},
              durations=("backoff", "max_backoff"))
    return cfg


def _settings(cfg, raw: dict, at: tuple, lines: Lines, problems: list, *, counts: dict[str, str],
              durations: tuple[str, ...], also: tuple[str, ...] = ()) -> None:
    """Set a section's whole-number (1 or more) and duration settings on `cfg`; every bad
    or unknown key is a problem at its line. `also`: keys read elsewhere."""
    known = [*counts, *durations, *also]
    for key, value in raw.items():
        path = (*at, key)
        if key in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(lines.problem(path, counts[key]))
            else:
                setattr(cfg, key, value)
        elif key in durations:
            try:
                setattr(cfg, key, parse_duration(value))
            except ValueError as exc:
                problems.append(lines.problem(path, str(exc)))
        else:
            problems.append(lines.problem(path, f"unknown key {key!r}{did_you_mean(key, known)}"))
