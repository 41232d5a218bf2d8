"""Load rules/*.yaml: parse with line marks, validate each rule in stages, compile.

One function serves `check` (report everything) and the daemon (run the rules that
are fine, disable the broken ones). Every problem names file, line, key path and fix."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Iterable

from engine.config.yamlfile import (
    FULL_WIDTH,
    YAML11_BOOL_WORDS,
    Lines,
    did_you_mean,
    did_you_mean_name,
    format_path,
    load_yaml_file,
)
from engine.durations import format_duration
from engine.errors import ExpressionError, Problem, TemplateError
from engine.rules.calendar import TriggerError, parse_trigger
from engine.rules.fields import STANDARD_TYPES
from engine.rules.model import Condition, Rule, RuleSet
from engine.rules.sample import sample_context
from engine.rules.schema import FIELD_BY_NAME, FIELDS, FILE_KEYS, ID_PATTERN
from engine.rules.templates import Templates

_TYPE_WORDS = {"string": "text", "boolean": "true or false", "list-of-strings": "a list of texts",
               "integer": "a whole number", "mapping": "a calendar trigger such as {idle: 60d}"}


def load_rules(folder: Path, templates: Templates, channels: Iterable[str],
               display_root: Path | None = None) -> RuleSet:
    """Load every *.yaml / *.yml file under `folder`, in name order.

    A problem inside a rule disables that rule only (each problem carries the rule's
    place, file + key path, as `rule_id`); the other rules load."""
    problems: list[Problem] = []
    loaded: list[tuple[str, Rule]] = []
    first_use: dict[str, str] = {}  # rule id -> "file:line" where it was first written
    folder = Path(folder)
    if not folder.is_dir():
        return RuleSet([], [Problem(str(folder), None, "", "rules folder not found; pass --rules DIR")])
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    validator = _Validator(templates, sorted(channels))
    parsed = []
    for path in files:
        display = _display(path, display_root)
        data, lines, file_problems = load_yaml_file(path, display, {"on": "use 'when:' for the event"})
        problems.extend(file_problems)
        if any(p.severity == "error" and p.path == "" for p in file_problems):
            continue  # syntax error: nothing in this file can be trusted
        parsed.append((display, data, lines, file_problems))
    _define_file_segments(parsed, templates, problems)
    for display, data, lines, file_problems in parsed:
        for key_path, rule_id, rule in validator.file(data, lines, problems):
            place = _place(display, key_path)
            for problem in file_problems:  # a key written twice, an `on:` key...
                if _within(problem.path, key_path):
                    problem.rule_id = place
            if rule_id is not None:
                if rule_id in first_use:
                    problems.append(lines.problem(_parse_path(key_path) + ("id",),
                                                  f"duplicate id {rule_id!r}, already used at {first_use[rule_id]}; "
                                                  "ids must be unique across all files", rule_id=place))
                else:
                    first_use[rule_id] = f"{display}:{lines.line(_parse_path(key_path))}"
            if rule is not None:
                loaded.append((place, rule))
    broken = {p.rule_id for p in problems if p.severity == "error" and p.rule_id}
    return RuleSet([rule for place, rule in loaded if place not in broken], problems)


def _define_file_segments(parsed: list, templates: Templates, problems: list[Problem]) -> None:
    """Add the `segments:` of rules files (e.g. rules/segments.yaml) to config.yaml's, before
    any rule is compiled, so every rule may use every segment."""
    from engine.config.loader import cycle_message, read_segments, segment_cycle  # noqa: PLC0415 - config imports the rules' peers

    sources = dict(templates.config_segments)
    places = {name: "config.yaml" for name in sources}
    added = bool(set(templates.segment_sources) - set(sources))  # a reload after a file's segments went
    for display, data, lines, _ in parsed:
        if not isinstance(data, dict) or data.get("segments") is None:
            continue
        found = read_segments(data["segments"], templates.tz, lines, problems, places, templates.fields, loops=False)
        for name, source in found.items():
            sources[name] = source
            places[name] = f"{display}:{lines.line(('segments', name))}"
        added = True
    cycle = segment_cycle(sources)
    templates.cyclic_segments = {}
    if cycle:
        place = places.get(cycle[0], "config.yaml")
        file, _, line = place.rpartition(":") if place.rpartition(":")[2].isdigit() else (place, "", "")
        problems.append(Problem(file, int(line) if line else None, f"segments.{cycle[0]}", cycle_message(cycle)))
        templates.cyclic_segments = {name: cycle for name in cycle}
        for name in set(cycle):
            sources.pop(name, None)
        added = True
    if added:
        templates.define_segments(sources, places)


def _place(display: str, key_path: str) -> str:
    return f"{display}:{key_path}"


def _within(path: str, key_path: str) -> bool:
    return path == key_path or path.startswith(key_path + ".") or path.startswith(key_path + "[")


def _parse_path(key_path: str) -> tuple:
    index = int(key_path[len("rules["):-1])
    return ("rules", index)


def _display(path: Path, root: Path | None) -> str:
    try:
        return str(path.resolve().relative_to((root or Path.cwd()).resolve()))
    except ValueError:
        return str(path)


class _Validator:
    def __init__(self, templates: Templates, channels: list[str]):
        self.templates = templates
        self.channels = channels
        self._template_checked: dict[str, str | None] = {}

    def file(self, data, lines: Lines, problems: list[Problem]) -> list[tuple[str, str | None, Rule | None]]:
        """(key path, id, compiled rule or None when broken) for each rule in the file."""
        if data is None:
            return []
        if not isinstance(data, dict):
            problems.append(lines.problem((), "a rules file is a mapping with a list under 'rules:'"))
            return []
        for key in data:
            if key not in FILE_KEYS:
                problems.append(lines.problem((key,), f"unknown key {key!r}{did_you_mean(str(key), FILE_KEYS)}: "
                                              "a rules file holds a list under 'rules:' and/or named "
                                              "conditions under 'segments:'"))
        items = data.get("rules")
        if items is None:
            return []
        if not isinstance(items, list):
            problems.append(lines.problem(("rules",), "must be a list of rules, each starting with '- id: ...'"))
            return []
        out = []
        for index, item in enumerate(items):
            path = ("rules", index)
            rule = self.rule(item, path, lines, problems)
            rule_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
            out.append((format_path(path), rule_id, rule))
        return out

    # stage 1: shape ------------------------------------------------------------------
    def rule(self, item, path: tuple, lines: Lines, problems: list[Problem]) -> Rule | None:
        if not isinstance(item, dict):
            problems.append(lines.problem(path, "each rule is a mapping of keys such as id, when, channel, template"))
            return None
        start = len(problems)
        place = _place(lines.file, format_path(path))

        def report(key_path: tuple, message: str, severity: str = "error") -> None:
            problems.append(lines.problem(path + key_path, message, severity, place))

        for key, value in item.items():
            spec = FIELD_BY_NAME.get(key)
            if spec is None:
                if str(key).lower() not in YAML11_BOOL_WORDS:  # already reported while parsing
                    report((key,), f"unknown key {key!r}{did_you_mean(key, FIELD_BY_NAME)}")
            else:
                self._shape(spec, value, (key,), report)
        for spec in FIELDS:
            if spec.name == "when" and "on" in item:
                continue  # `on:` was reported with its fix while parsing
            if spec.required and spec.name not in item:
                report((), f"missing required key {spec.name!r} (for example: {spec.name}: {spec.example})")
        if "wait" in item and "send_at" in item:
            report(("send_at",), "use either wait or send_at, not both")
        if len(problems) > start or "when" not in item:
            return None  # stage 2 needs a well-shaped rule (a missing `when` came as `on:`)
        return self._compile(item, path, lines, report)

    def _shape(self, spec, value, key_path: tuple, report) -> None:
        if spec.name in _NAME_KEYS and _full_width(value, key_path, report):
            return  # names, event types: a full-width character is a typing slip
        if isinstance(value, list) and "list-of-strings" in spec.types:
            if not value:
                report(key_path, f"is an empty list; write at least one (for example: {spec.name}: {spec.example})")
            for i, item in enumerate(value):
                if not _is_type(item, "string"):
                    report(key_path + (i,), f"must be text, not {_describe(item)} (for example: {spec.example})")
            return
        if not any(_is_type(value, t) for t in spec.types):
            words = [_TYPE_WORDS.get(t, t) for t in spec.types]
            wanted = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
            report(key_path, f"must be {wanted}, not {_describe(value)} (for example: {spec.name}: {spec.example})")
            return
        if spec.choices and value not in spec.choices:
            report(key_path, f"{value!r} is not allowed; choose one of: "
                             f"{', '.join(spec.choices)}{did_you_mean(value, spec.choices)}")
        if spec.name == "id" and not _valid_id(value):
            report(key_path, f"{value!r}: use letters, digits, '-', '_', '.', ':' (for example: payment-reminder)")

    # stage 2: meaning ----------------------------------------------------------------
    def _compile(self, item: dict, path: tuple, lines: Lines, report) -> Rule | None:
        report = errors = _ErrorCounter(report)
        trigger, when = self._when(item, report)
        values = _values(item, report)
        durations = _durations(item, values, report)
        window = values.get("window")
        self._channel(item["channel"], report)
        template_ok = self._check_template(item["template"], report)
        _scope(item, when, report)
        conditions = self._conditions(item, "if", report)
        unless = self._conditions(item, "unless", report)
        send_at = (self._conditions(item, "send_at", report) or [None])[0] if "send_at" in item else None
        if trigger is not None and trigger.kind == "idle":  # a new order meanwhile ends the idle spell
            source = f"customer.days_since_last_order < {trigger.idle.days}"
            unless.insert(0, Condition(source, self.templates.compile_expression(source)))
        if errors.count:
            return None
        label = trigger.label if trigger is not None else when[0]
        self._check_budget(item, {"if": conditions, "unless": unless, "send_at": [send_at] if send_at else []},
                           when, label, report)
        if template_ok:
            self._check_sample(item["template"], when, label, report)
        if errors.count:
            return None
        return Rule(trigger=trigger, id=item["id"], name=item.get("name") or item["id"],
                    kind=item.get("kind", "marketing"),
                    when=when, channel=item["channel"], template=item["template"],
                    once_per=item.get("once_per", "event"),
                    conditions=tuple(conditions), unless=tuple(unless), wait=durations.get("wait"),
                    send_at=send_at, expires=durations.get("expires"), cooldown=durations.get("cooldown"),
                    window=window, priority=item.get("priority", 0), on_limit=item.get("on_limit", "skip"),
                    to=item.get("to", "customer"), enabled=item.get("enabled", True),
                    file=lines.file, line=lines.line(path), key_path=format_path(path), raw=dict(item))

    def _when(self, item: dict, report):
        """(calendar trigger or None, event types): a calendar trigger has no event types."""
        if isinstance(item["when"], dict):
            try:
                return parse_trigger(item["when"], self.templates.tz), ()
            except TriggerError as exc:
                report(("when", exc.key) if exc.key else ("when",), exc.message)
                return None, ()
        when = _as_tuple(item["when"])
        for i, etype in enumerate(when):
            if etype not in STANDARD_TYPES:
                key = ("when",) if isinstance(item["when"], str) else ("when", i)
                report(key, f"unknown event type {etype!r}{did_you_mean(etype, STANDARD_TYPES)} "
                            "(custom types are allowed; ignore this if it is one)", "warning")
        return None, when

    def _channel(self, channel: str, report) -> None:
        if channel not in self.channels:
            report(("channel",), f"unknown channel {channel!r}; channels in config.yaml: "
                                 f"{', '.join(self.channels) or '(none)'}{did_you_mean(channel, self.channels)}")

    def _conditions(self, item: dict, key: str, report) -> list[Condition]:
        if key not in item:
            return []
        value = item[key]
        sources = [value] if isinstance(value, str) else list(value)
        out = []
        for i, source in enumerate(sources):
            key_path = (key,) if isinstance(value, str) else (key, i)
            try:
                out.append(Condition(source, self.templates.compile_expression(source)))
            except ExpressionError as exc:
                report(key_path, f"expression does not compile: {exc.reason}")
                continue
            for message in self.templates.unknown_fields(source):
                report(key_path, message)
            for name in _SEGMENT_CALL.findall(source):
                cycle = getattr(self.templates, "cyclic_segments", {}).get(name)
                if cycle:
                    report(key_path, f"segment {name!r} is part of a loop of segments ({' → '.join(cycle)}); "
                                     "break the loop")
                elif name not in self.templates.segments:
                    known = list(self.templates.segments)
                    report(key_path, f"unknown segment {name!r}{did_you_mean(name, known)}; segments "
                                     f"(config.yaml or a rules file's segments:): {', '.join(known) or '(none)'}")
        return out

    def _check_template(self, name: str, report) -> bool:
        """Report what is wrong with a rule's template; True when it is fine."""
        if name not in self._template_checked:
            self._template_checked[name] = self._template_problems(name)
        for message in self._template_checked[name]:
            report(("template",), message)
        return not self._template_checked[name]

    def _template_problems(self, name: str) -> list[str]:
        if not self.templates.exists(name):
            known = self.templates.names()
            return [f"template {name!r} not found in {self.templates.folder}{did_you_mean_name(name, known)} "
                    f"(templates there: {', '.join(known) or 'none'})"]
        shown = _display(self.templates.folder / name, None)
        try:
            self.templates.source(name)
        except TemplateError as exc:  # not UTF-8, unreadable: the file itself is named
            return [f"{shown}: {exc.reason}"]
        try:
            self.templates.get(name)
            unknown = self.templates.undeclared(name)
        except TemplateError as exc:
            return [f"template {name} does not compile: {exc.reason}"]
        if unknown:
            return [f"template {name} uses {', '.join(sorted(unknown))}, which messages do not have; "
                    "available: customer, order, event, data, shop, now"]
        return [f"{shown}:{line}: {message}" for line, message in self.templates.unknown_template_fields(name)]

    def _check_sample(self, name: str, when: tuple[str, ...], label: str, report) -> None:
        """Render the template as a message of this rule would be, for full sample data
        (engine.rules.sample): a failure here would fail every message."""
        context = sample_context(when, label, self.templates.fields, self.templates.shop, self.templates.tz)
        try:
            self.templates.render(name, context)
        except TemplateError as exc:
            shown = _display(self.templates.folder / name, None)
            where = f"{shown}:{exc.line}" if exc.line else shown
            report(("template",), f"{where}: fails for sample data, so it would fail every message: {exc.reason}")


    def _check_budget(self, item: dict, compiled: dict[str, list[Condition]], when: tuple[str, ...], label: str,
                      report) -> None:
        """Evaluate each condition once for sample data: one that runs past its time budget
        or builds something too large would do so for every message. (Other failures are
        left to the real data: a declared custom field has only a placeholder here.)"""
        context = sample_context(when, label, self.templates.fields, self.templates.shop, self.templates.tz)
        for key, conditions in compiled.items():
            for i, condition in enumerate(conditions):
                if condition is None:
                    continue
                try:
                    condition.evaluate(context)
                except ExpressionError as exc:
                    if "took too long" in exc.reason or exc.reason.startswith("SecurityError"):
                        where = (key,) if isinstance(item.get(key), str) else (key, i)
                        report(where, exc.reason)


def _full_width(value, key_path: tuple, report) -> bool:
    """Report a full-width character in a name or an event type (a Chinese keyboard's
    '，' or '：'); True when there was one."""
    for i, text in enumerate(value if isinstance(value, list) else [value]):
        slip = next((c for c in text if c in FULL_WIDTH), None) if isinstance(text, str) else None
        if slip:
            report(key_path + (i,) if isinstance(value, list) else key_path,
                   f"full-width '{slip}' — write '{FULL_WIDTH[slip]}'")
            return True
    return False


def _values(item: dict, report) -> dict:
    """Every key whose field has a value kind (wait, expires, cooldown: durations; window),
    read by the kind's parser; a bad one is reported with the parser's message."""
    values = {}
    for key, value in item.items():
        spec = FIELD_BY_NAME.get(key)
        if spec is not None and spec.kind is not None:
            try:
                values[key] = spec.kind.parse(value)
            except ValueError as exc:
                report((key,), str(exc))
    return values


def _durations(item: dict, values: dict, report) -> dict[str, timedelta]:
    """wait, expires and cooldown; an expiry shorter than the wait is a warning."""
    durations = {key: values[key] for key in ("wait", "expires", "cooldown") if key in values}
    if durations.get("wait") and durations.get("expires") and durations["wait"] > durations["expires"]:
        report(("expires",), f"expires {item['expires']} is shorter than wait {item['wait']}: expires counts from "
                             "when the message is due (its event + wait), so it may still go "
                             f"{format_duration(durations['wait'] + durations['expires'])} after the event (if you "
                             f"meant {item['expires']} after the event, no message of this rule could ever go)",
               "warning")
    return durations


def _scope(item: dict, when: tuple[str, ...], report) -> None:
    """once_per, wait and send_at where they mean something."""
    once_per = item.get("once_per", "event")
    if once_per == "order" and when and all(not t.startswith("order.") for t in when):
        report(("once_per",), "once_per: order needs order events in 'when'; use customer or event")
    if isinstance(item["when"], dict):
        for key in ("once_per", "wait", "send_at"):
            if key in item:
                report((key,), f"{key} does not apply to a calendar trigger: it fires once per moment "
                               "(per idle spell, birthday, holiday or date) at the trigger's own time")


class _ErrorCounter:
    """Wraps a report function and counts the errors (not warnings) it reported."""

    def __init__(self, report):
        self._report = report
        self.count = 0

    def __call__(self, key_path, message, severity="error"):
        if severity == "error":
            self.count += 1
        self._report(key_path, message, severity)


_NAME_KEYS = ("id", "when", "channel", "template", "kind", "once_per", "on_limit", "to")
_SEGMENT_CALL = re.compile(r"""\bsegment\(\s*['"]([^'"]+)['"]\s*\)""")


def _as_tuple(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _is_type(value, name: str) -> bool:
    if name == "string":
        return isinstance(value, str) and value.strip() != ""
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "list-of-strings":
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)
    if name == "mapping":
        return isinstance(value, dict)
    raise AssertionError(name)


def _describe(value) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str) and not value.strip():
        return "empty text"
    return repr(value)


def _valid_id(value: str) -> bool:
    return re.match(ID_PATTERN, value) is not None
