"""config.yaml: the shop, the time zone, the database and the channels.

Relative paths (SQLite file, file-channel outboxes) are relative to the config file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.config.http import HTTP, HttpConfig
from engine.config.limits import LIMITS, Limits, read_limits
from engine.config.profile import PROFILE, ProfileConfig
from engine.config.spec import (
    ABSENT,
    BOOLEAN,
    COUNT,
    DURATION,
    ENV_NAME,
    IDENTIFIER_PATTERN,
    TEXT,
    TEXT_OR_NUMBER,
    Bad,
    Custom,
    Each,
    Key,
    Section,
    Walk,
    choice,
    kind,
    read_section,
)
from engine.config.yamlfile import Lines, did_you_mean, load_yaml_file
from engine.errors import ConfigError, Problem
from engine.rules.fields import DECLARABLE, Fields

DEFAULT_DATABASE = "sqlite:///var/engine.db"
DEFAULT_TIMEZONE = ZoneInfo("Asia/Shanghai")


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
    config = read_section(CONFIG, data, (), Walk(lines, problems))
    if problems:
        raise ConfigError(problems)
    config.path, config.base_dir = path, base
    config.database = resolve_database(config.database, base)
    if "file" in config.log_options:
        config.log_options["file"] = str((base / config.log_options["file"]).resolve())
    config.raw = data
    return config


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


# ---- the spec of config.yaml ------------------------------------------------------------

@kind("timezone", {"type": "string"})
def TIMEZONE(value) -> ZoneInfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; write an IANA name such as Asia/Shanghai") from None


@kind("shop", {"type": "object", "properties": {"name": {"type": "string"}, "signature": {"type": "string"},
                                                "url": {"type": "string"}, "currency_symbol": {"type": "string"}}})
def SHOP(value) -> dict:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping, such as {name: 小明户外}")
    return value


def _channel(walk: Walk, settings, path: tuple) -> ChannelConfig:
    """One channel: its type from the registry, its options checked by the type's class."""
    from engine.channels import channel_class, channel_types  # noqa: PLC0415 - the registry imports every channel

    known_types = channel_types()
    if not isinstance(settings, dict) or "type" not in settings:
        walk.report(path, f"needs a type; known types: {', '.join(known_types)}")
        raise Bad
    ctype = settings["type"]
    if ctype not in known_types:
        walk.report(path + ("type",), f"unknown channel type {ctype!r}; known: {', '.join(known_types)}"
                                      f"{did_you_mean(ctype, known_types)}")
        raise Bad
    options = {k: v for k, v in settings.items() if k != "type"}
    for option, message in channel_class(ctype).option_problems(options):
        walk.report(path + (option,), message)
    return ChannelConfig(str(path[-1]), ctype, options, walk.lines.line(path))


def _channel_schema(type_name: str, cls) -> dict:
    options = {name: {"description": text} for name, text in cls.options_help.items()}
    options["contact"] = {"enum": list(cls.CONTACTS), "description": cls.options_help["contact"]}
    options["sms"] = {"type": "object", "additionalProperties": False, "description": cls.options_help["sms"],
                      "properties": {"signature": {"type": "string"}, "unsubscribe": {"type": "string"},
                                     "max_segments": {"type": "integer", "minimum": 1}}}
    for name in options:
        if name.endswith("_env"):
            options[name] = {**options[name], **ENV_NAME.schema}
    return {"type": "object", "additionalProperties": False, "required": ["type", *cls.required],
            "properties": {"type": {"const": type_name, "description": "The kind of channel."}, **options}}


def _channels_schema() -> dict:
    from engine.channels import REGISTRY  # noqa: PLC0415 - the registry imports every channel

    return {"oneOf": [_channel_schema(name, cls) for name, cls in sorted(REGISTRY.items())]}


def _segments(walk: Walk, raw, path: tuple) -> dict[str, str]:
    values = walk.values
    fields = Fields(values.get("fields", {}), tuple(values.get("shop", {})))
    return read_segments(raw, values.get("timezone", DEFAULT_TIMEZONE), walk.lines, walk.problems, {}, fields)


@kind("field-names", {"anyOf": [{"type": "array", "items": {"type": "string", "pattern": IDENTIFIER_PATTERN}},
                                {"type": "object", "propertyNames": {"pattern": IDENTIFIER_PATTERN}}]})
def FIELD_NAMES(value) -> tuple[str, ...]:
    names = list(value) if isinstance(value, dict) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise ValueError("must be a list of field names (letters, digits, _), such as [vip_level, wechat_id]")
    return tuple(names)


FIELDS = Each(FIELD_NAMES, "must map objects to their custom fields, such as {customer: [vip_level], order: "
                           "[platform]}",
              "Custom fields your events carry that rules and templates read, per object; any other field a rule "
              "reads is an error in `check`.", names=DECLARABLE,
              unknown="unknown object {key!r}{hint}; custom fields can be declared for " + ", ".join(DECLARABLE))


def _count(name: str, doc: str, message: str) -> Key:
    return Key(name, COUNT, doc, message)


RETRY = Section((
    _count("attempts", "Attempts in all for a transient channel failure.",
           "must be a whole number of attempts, 1 or more (1: never retry)"),
    Key("backoff", DURATION, "The wait after the first failure (doubling).", examples=("30s",)),
    Key("max_backoff", DURATION, "The longest wait between attempts.", examples=("30m",)),
), "must be a mapping such as {attempts: 5, backoff: 30s, max_backoff: 30m}",
    "Transient channel failures (timeouts, 5xx, rate limits).", build=lambda values: RetryConfig(**values))

DISPATCH = Section((
    _count("batch_size", "Messages taken per transaction.", "must be a whole number of messages, such as 500"),
    Key("tick", DURATION, "How often the daemon looks for due messages.", examples=("1s",)),
    Key("lease", DURATION, "A message in flight longer than this (its dispatcher died) is retried.",
        examples=("5m",)),
    Key("retry", RETRY),
), "must be a mapping with batch_size, tick, lease", "How the daemon takes due messages and retries failures.",
    build=lambda values: DispatchConfig(**values))

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG = Section((
    Key("level", choice("log-level", LOG_LEVELS, "unknown log level {value!r}; choose one of: {choices}", upper=True),
        "DEBUG, INFO (default), WARNING or ERROR."),
    Key("json", BOOLEAN, "One JSON object per line.", "must be true or false"),
    Key("file", TEXT_OR_NUMBER, "Also write to this file.", "must be a file path, such as var/engine.log"),
    Key("rotation", TEXT_OR_NUMBER, "Start a new file at this size or time.",
        'must be a size or a time, such as "100 MB" or "00:00"', examples=("100 MB", "00:00")),
    Key("retention", TEXT_OR_NUMBER, "Delete rotated files older than this.",
        'must be a duration, such as "14 days"', examples=("14 days",)),
), "must be a mapping, such as {level: INFO}", "The log: level, format, file and its rotation.",
    build=lambda values: (values.pop("level", "INFO"), values))


def _config(values: dict) -> Config:
    """What config.yaml means; `load_config` adds the paths."""
    level, log_options = values.get("log", ("INFO", {}))
    return Config(None, Path(), values.get("timezone", DEFAULT_TIMEZONE), values.get("database", DEFAULT_DATABASE),
                  values.get("shop", {}), values.get("channels", {"log": ChannelConfig("log", "log", {})}),
                  values.get("dispatch", DispatchConfig()), level, values.get("limits", LIMITS.build({})), {},
                  values.get("profile", ProfileConfig()), values.get("segments", {}), values.get("http", HttpConfig()),
                  log_options, values.get("fields", {}))


# read in this order: limits know the channels, segments the time zone, the fields and the shop
CONFIG = Section((
    Key("timezone", TIMEZONE, "The shop's IANA time zone; event times without an offset are in it.",
        examples=("Asia/Shanghai",)),
    Key("database", TEXT, "sqlite:///var/engine.db (default) or postgresql+psycopg://user@host:5432/db",
        "must be a database URL such as sqlite:///var/engine.db or postgresql+psycopg://user@host/db"),
    Key("shop", SHOP, "Available to templates as `shop`."),
    Key("channels", Each(Custom(_channel, _channels_schema), "must map channel names to settings, such as sms: "
                                                            "{type: file, path: outbox/sms.jsonl}",
                         "Channels by name; rules refer to these names."), null=ABSENT),
    Key("dispatch", DISPATCH, null=ABSENT),
    Key("log", LOG, null=ABSENT),
    Key("limits", LIMITS, null=ABSENT),
    Key("profile", PROFILE, null=ABSENT),
    Key("fields", FIELDS, null=ABSENT),
    Key("segments", Custom(_segments, {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}}),
        "Named conditions, usable as segment('name').", null=ABSENT),
    Key("http", HTTP, null=ABSENT),
), "config.yaml must be a mapping of keys such as timezone, database, channels",
    "The shop, the time zone, the database, the channels and the limits.", build=_config, ordered=True)
TOP_KEYS = tuple(key.name for key in CONFIG.keys)
