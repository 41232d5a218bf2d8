"""One declarative way to validate a YAML file: spec tables from which both the validator
(every problem with file:line, key path and the fix, an unknown key with did-you-mean) and
the JSON Schema for editors are made, so that a pattern, a choice or a message is written
once.

- `Kind`: a named value kind (a duration such as 30m, a window such as 09:00-21:00, a
  cap, a size...): one parser, which raises ValueError with the message, and one JSON
  Schema fragment.
- `Key`: one key of a section: its kind, help text, what a written `null` means and,
  where the section words it its own way, the message for a bad value.
- `Section`: a mapping with fixed keys; `Each`: a mapping of names to values of one spec
  (channels, segments, fields); `ListOf`: a list of values of one spec; `Custom`: a step
  that needs more than the value (channel types from the registry, segment conditions).

`read_section(section, raw, path, Walk(lines, problems))` walks a value by its spec and
returns what it means (every problem reported on the way); `schema(spec)` gives its JSON
Schema."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.config.yamlfile import Lines, did_you_mean
from engine.durations import PATTERN as DURATION_PATTERN
from engine.durations import parse_duration

ERROR = "error"  # Key.null: a written null is a bad value like any other
ABSENT = "absent"  # Key.null: a written null means the key's default, as if it were not written


@dataclass(frozen=True)
class Kind:
    """A named value kind: `parse(value)` returns what the value means or raises
    ValueError with the message; `schema` is its JSON Schema."""

    name: str
    parse: Callable[[Any], Any]
    schema: dict


@dataclass(frozen=True)
class Key:
    name: str
    spec: Any  # Kind, Section, Each, ListOf or Custom
    doc: str = ""
    message: str | None = None  # the message for a bad value, instead of the kind's own
    null: Any = ERROR  # ERROR, ABSENT, or the value a written null means (quiet_hours: null -> None)
    examples: tuple = ()
    required: bool = False  # a missing (or empty) value is the section's `missing` message


@dataclass(frozen=True)
class Section:
    """A mapping with fixed keys, read in the order they are written."""

    keys: tuple[Key, ...]
    bad: str  # the message when the value is not a mapping
    doc: str = ""
    build: Callable[[dict], Any] = dict  # the values of the keys given (and fine) -> what the section means
    unknown: str = "unknown key {key!r}{hint}"
    missing: str = ""  # the message for a required key that is missing, at the section's own line
    off: Callable[[], Any] | None = None  # `false` (or off) switches the section off: what that means
    ordered: bool = False  # read in the order of `keys`, not as written: later keys use earlier ones' values

    def key(self, name) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)


@dataclass(frozen=True)
class Each:
    """A mapping of names to values of one spec. `names`: the names allowed (a tuple, or a
    function of the values read so far), with `unknown` as the message for another."""

    value: Any
    bad: str
    doc: str = ""
    names: tuple | Callable[[dict], list] | None = None
    unknown: str = ""


@dataclass(frozen=True)
class ListOf:
    item: Any
    bad: str
    non_empty: bool = False


@dataclass(frozen=True)
class Custom:
    """A step that needs more than the value: `read(walk, value, path)` reports through
    `walk.report` and returns the meaning, or raises Bad when the value is broken."""

    read: Callable
    schema: dict | Callable[[], dict]


@dataclass
class Walk:
    """One walk over a file: where its lines are, the problems found, and the values read
    so far at the top (later sections may depend on earlier ones: limits on channels)."""

    lines: Lines
    problems: list
    values: dict = field(default_factory=dict)

    def report(self, path: tuple, message: str) -> None:
        self.problems.append(self.lines.problem(path, message))


class Bad(Exception):
    """A value that is broken (already reported)."""


def read(spec, raw, path: tuple, walk: Walk):
    """What `raw` at `path` means by `spec`; raise Bad when it is broken (every problem
    reported)."""
    if isinstance(spec, Kind):
        try:
            return spec.parse(raw)
        except ValueError as exc:
            walk.report(path, str(exc))
            raise Bad from None
    if isinstance(spec, Section):
        return _section(spec, raw, path, walk)
    if isinstance(spec, Each):
        return _each(spec, raw, path, walk)
    if isinstance(spec, ListOf):
        return _list(spec, raw, path, walk)
    return spec.read(walk, raw, path)


def read_section(spec: Section, raw, path: tuple, walk: Walk):
    """A section's meaning; its defaults when it is not written (or broken)."""
    if raw is None:
        return spec.build({})
    try:
        return read(spec, raw, path, walk)
    except Bad:
        return spec.build({})


def _section(spec: Section, raw, path: tuple, walk: Walk):
    if spec.off is not None and (raw is False or (isinstance(raw, str) and raw.strip().lower() == "off")):
        return spec.off()
    if not isinstance(raw, dict):
        walk.report(path, spec.bad)
        raise Bad
    values: dict = {}
    if spec.ordered:
        walk.values = values
    for name, value in raw.items():
        key = spec.key(name)
        if key is None:
            walk.report(path + (name,), spec.unknown.format(
                key=name, hint=did_you_mean(str(name), [k.name for k in spec.keys])))
            continue
        if key.required and value in (None, ""):
            continue  # reported below
        if not spec.ordered:
            _value(key, value, path, walk, values)
    if spec.ordered:
        for key in spec.keys:
            if key.name in raw:
                _value(key, raw[key.name], path, walk, values)
    for key in spec.keys:
        if key.required and raw.get(key.name) in (None, ""):
            walk.report(path, spec.missing)
    return spec.build(values)


def _value(key: Key, value, path: tuple, walk: Walk, values: dict) -> None:
    if value is None and key.null is not ERROR:
        if key.null is not ABSENT:
            values[key.name] = key.null
        return
    if key.message is not None and not isinstance(key.spec, (Section, Each, ListOf, Custom)):
        try:
            values[key.name] = key.spec.parse(value)
        except ValueError:
            walk.report(path + (key.name,), key.message)
        return
    try:
        values[key.name] = read(key.spec, value, path + (key.name,), walk)
    except Bad:
        pass


def _each(spec: Each, raw, path: tuple, walk: Walk) -> dict:
    if not isinstance(raw, dict):
        walk.report(path, spec.bad)
        raise Bad
    names = spec.names(walk.values) if callable(spec.names) else spec.names
    out = {}
    for name, value in raw.items():
        if names is not None and name not in names:
            walk.report(path + (name,), spec.unknown.format(key=name, names=", ".join(names),
                                                            hint=did_you_mean(str(name), names)))
            continue
        try:
            out[str(name)] = read(spec.value, value, path + (name,), walk)
        except Bad:
            pass
    return out


def _list(spec: ListOf, raw, path: tuple, walk: Walk) -> list:
    if not isinstance(raw, list) or (spec.non_empty and not raw):
        walk.report(path, spec.bad)
        raise Bad
    out = []
    for index, item in enumerate(raw):
        try:
            out.append(read(spec.item, item, path + (index,), walk))
        except Bad:
            pass
    return out


# ---- JSON Schema ------------------------------------------------------------------------

def schema(spec) -> dict:
    """The JSON Schema (draft 2020-12) fragment of a spec."""
    if isinstance(spec, Kind):
        return dict(spec.schema)
    if isinstance(spec, Section):
        out: dict = {"type": "object", "additionalProperties": False}
        if spec.doc:
            out["description"] = spec.doc
        required = [k.name for k in spec.keys if k.required]
        if required:
            out["required"] = required
        out["properties"] = {k.name: key_schema(k) for k in spec.keys}
        if spec.off is not None:
            out = {"anyOf": [{"enum": [False, "off"]}, {k: v for k, v in out.items() if k != "description"}]}
            if spec.doc:
                out["description"] = spec.doc
        return out
    if isinstance(spec, Each):
        out = {"type": "object"}
        if spec.doc:
            out["description"] = spec.doc
        if isinstance(spec.names, tuple):
            out["additionalProperties"] = False
            out["properties"] = {name: schema(spec.value) for name in spec.names}
        else:
            out["additionalProperties"] = schema(spec.value)
        return out
    if isinstance(spec, ListOf):
        out = {"type": "array", "items": schema(spec.item)}
        if spec.non_empty:
            out["minItems"] = 1
        return out
    return dict(spec.schema() if callable(spec.schema) else spec.schema)


def key_schema(key: Key) -> dict:
    out = schema(key.spec)
    if key.null is not ERROR:
        out = _nullable(out)
    if key.doc:
        out["description"] = key.doc
    if key.examples:
        out["examples"] = list(key.examples)
    return out


def _nullable(out: dict) -> dict:
    """`out`, or null."""
    if isinstance(out.get("type"), str):
        return {**out, "type": [out["type"], "null"]}
    if isinstance(out.get("type"), list):
        return {**out, "type": [*out["type"], "null"]}
    if "anyOf" in out:
        return {**out, "anyOf": [*out["anyOf"], {"type": "null"}]}
    return {"anyOf": [out, {"type": "null"}]}


# ---- value kinds used across the files ---------------------------------------------------

def kind(name: str, schema_: dict):
    """Declare a value kind by its parser: @kind("duration", {...}) def parse(value): ..."""
    def make(parse: Callable[[Any], Any]) -> Kind:
        return Kind(name, parse, schema_)
    return make


DURATION = Kind("duration", parse_duration, {"type": "string", "pattern": DURATION_PATTERN})
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # settings ending in _env name an environment variable
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _fail(value):
    raise ValueError(repr(value))


@kind("count", {"type": "integer", "minimum": 1})
def COUNT(value) -> int:
    """A whole number, 1 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(value)
    return value


@kind("boolean", {"type": "boolean"})
def BOOLEAN(value) -> bool:
    if not isinstance(value, bool):
        _fail(value)
    return value


@kind("text", {"type": "string"})
def TEXT(value) -> str:
    if not isinstance(value, str):
        _fail(value)
    return value


@kind("text-or-number", {"type": ["string", "integer"]})
def TEXT_OR_NUMBER(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        _fail(value)
    return str(value)


@kind("env-name", {"type": "string", "pattern": ENV_PATTERN})
def ENV_NAME(value) -> str:
    if not (isinstance(value, str) and re.fullmatch(ENV_PATTERN, value)):
        _fail(value)
    return value


def amount(minimum: float = 0) -> Kind:
    """A number (an amount of money), at least `minimum`."""
    def parse(value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            _fail(value)
        return float(value)
    return Kind("amount", parse, {"type": "number", "minimum": minimum})


def whole(minimum: int = 0) -> Kind:
    """A whole number, at least `minimum`."""
    def parse(value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(value)
        return value
    return Kind("whole", parse, {"type": "integer", "minimum": minimum})


def choice(name: str, choices: tuple[str, ...], message: str, *, upper: bool = False) -> Kind:
    """One of `choices`; `upper`: written in any case (log levels). The message may use
    {value!r}, {choices} and {hint}."""
    def parse(value) -> str:
        text = str(value).upper() if upper else value
        if text not in choices:
            raise ValueError(message.format(value=value, choices=", ".join(choices), hint=did_you_mean(value, choices)))
        return text
    enum = [*choices, *(c.lower() for c in choices)] if upper else list(choices)
    return Kind(name, parse, {"enum": enum})
