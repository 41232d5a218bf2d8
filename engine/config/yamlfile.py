"""YAML loading that keeps line numbers, so every error can name file and line.

`load_yaml` returns the plain Python value plus a `Lines` map from key paths such as
("rules", 2, "channel") to the 1-based line where that key (or item) is written."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.config.textfile import NotUtf8, read_text
from engine.errors import Problem

YAML11_BOOL_WORDS = {"on", "off", "yes", "no", "y", "n", "true", "false"}


@dataclass
class Lines:
    file: str
    by_path: dict[tuple, int] = field(default_factory=dict)

    def line(self, path: tuple) -> int | None:
        """The line of `path`, or of its nearest written ancestor."""
        while path:
            if path in self.by_path:
                return self.by_path[path]
            path = path[:-1]
        return self.by_path.get((), None)

    def problem(self, path: tuple, message: str, severity: str = "error", rule_id=None) -> Problem:
        return Problem(self.file, self.line(path), format_path(path), message, severity, rule_id)


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


_NAME_WORDS = re.compile(r"[a-z0-9]+")
_NOT_WORDS = {"sms", "j2", "staff", "email", "txt", "html", "for", "the", "of", "to", "and", "a"}


def did_you_mean_name(name: str, choices) -> str:
    """A file name meant by a missing one: the choice sharing most of its words
    (thanks_for_review.sms.j2 -> good_review_thanks.sms.j2), else a close spelling; never
    one that merely shares letters or a word like 'for'."""
    def words(text: str) -> set[str]:
        return set(_NAME_WORDS.findall(text.lower())) - _NOT_WORDS

    mine, best, score = words(name), None, 0.0
    for choice in choices:
        theirs = words(choice)
        overlap = len(mine & theirs) / len(mine | theirs) if mine | theirs else 0.0
        if overlap > score:
            best, score = choice, overlap
    if best is not None and score >= 0.5:
        return f"; did you mean {best!r}?"
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.85)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Builder:
    def __init__(self, file: str, bool_key_hints: dict[str, str]):
        self.hints = bool_key_hints
        self.lines = Lines(file)
        self.problems: list[Problem] = []
        self._loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: tuple) -> Any:
        self.lines.by_path.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for index, item in enumerate(node.value):
                self.lines.by_path[path + (index,)] = item.start_mark.line + 1
                out.append(self.build(item, path + (index,)))
            return out
        value = self._loader.construct_object(node, deep=True)
        if isinstance(node, yaml.ScalarNode) and node.style is None and ":" in node.value \
                and isinstance(value, (int, float)) and not isinstance(value, bool):
            # YAML 1.1 reads 10:00 as sexagesimal, the number 600
            self.problems.append(Problem(self.lines.file, node.start_mark.line + 1, format_path(path),
                                         f'write "{node.value}" in quotes (YAML read {node.value} as the number '
                                         f'{value})'))
            return node.value
        return value

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        out: dict = {}
        self._loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self._loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, bool) and str(key_node.value).lower() in YAML11_BOOL_WORDS:
                hint = self.hints.get(key_node.value.lower(), "quote it or use another key")
                self.problems.append(Problem(self.lines.file, line, format_path(path + (key_node.value,)),
                                             f"YAML reads the key {key_node.value!r} as a boolean; {hint}"))
                key = key_node.value
            if not isinstance(key, (str, int)):
                key = str(key)
            if key in out:
                self.problems.append(Problem(self.lines.file, line, format_path(path + (key,)),
                                             f"key {key!r} is written twice in this block; keep one"))
            self.lines.by_path[path + (key,)] = line
            out[key] = self.build(value_node, path + (key,))
        return out


def load_yaml(text: str, file: str, bool_key_hints: dict[str, str] | None = None
              ) -> tuple[Any, Lines, list[Problem]]:
    """Parse YAML text. Syntax errors come back as problems, never as exceptions.

    `bool_key_hints` gives the fix for keys YAML 1.1 reads as booleans (on, yes, ...)."""
    builder = _Builder(file, bool_key_hints or {})
    if len(text) > MAX_CHARS:
        return None, builder.lines, [Problem(file, None, "", f"the file is {len(text):,} characters long; a rules or "
                                             f"config file may be at most {MAX_CHARS:,} (split it)")]
    typed = _typing_problems(text, file)
    try:
        anchors = _anchors(text, file)
    except yaml.YAMLError:
        anchors = []  # a syntax error: compose below says where
    if anchors:
        return None, builder.lines, anchors
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        if typed and (line is None or typed[0].line <= line):
            return None, builder.lines, typed  # what the marketer typed, on its own line
        reason = exc.problem or str(exc)
        return None, builder.lines, [Problem(file, line, "", f"YAML syntax error: {reason}; "
                                             "check indentation and quote values containing ': ' or '#'")]
    except yaml.YAMLError as exc:
        return None, builder.lines, [Problem(file, None, "", f"YAML error: {exc}")]
    if node is None:
        return None, builder.lines, typed
    value = builder.build(node, ())
    return (None if typed else value), builder.lines, typed + builder.problems


MAX_CHARS = 1_000_000  # a rules or config file (README "Limits")


def _anchors(text: str, file: str) -> list[Problem]:
    """YAML anchors and aliases (&name, *name) are refused: a few hundred bytes of nested
    aliases expand to gigabytes ("billion laughs"), and an alias to itself never ends.
    The parser's events are read without building anything."""
    out = []
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            out.append(Problem(file, event.start_mark.line + 1, "", f"YAML {kind}{event.anchor} is not allowed in "
                                                                    "these files; write the value out in full"))
            break
    return out


FULL_WIDTH = {"：": ":", "，": ",", "；": ";", "【": "[", "】": "]", "｛": "{", "｝": "}"}
FULL_WIDTH_KEY = re.compile(r"^\s*(?:-\s+)?[A-Za-z_][\w.-]*\s*(：)")


def _typing_problems(text: str, file: str) -> list[Problem]:
    """What keyboards put in YAML by mistake, each on its own line: a tab in the
    indentation, a full-width colon after a key (wait：2d), a full-width comma or colon
    inside [...] or {...} (Chinese input methods type these)."""
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            out.append(Problem(file, number, "", "a tab character; indent with spaces"))
            continue
        key = FULL_WIDTH_KEY.match(line)
        if key:
            out.append(Problem(file, number, "", f"full-width '{key.group(1)}' — write ':'"))
            continue
        for char in _in_brackets(line):
            if char in FULL_WIDTH:
                out.append(Problem(file, number, "", f"full-width '{char}' — write '{FULL_WIDTH[char]}'"))
                break
    return out


def _in_brackets(line: str) -> str:
    """The characters of a line inside [...] or {...}, outside quotes and comments."""
    out, depth, quote = [], 0, None
    for char in line:
        if quote:
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        elif char == "#" and not depth:
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif depth:
            out.append(char)
    return "".join(out)


def load_yaml_file(path: Path, display: str | None = None, bool_key_hints: dict[str, str] | None = None
                   ) -> tuple[Any, Lines, list[Problem]]:
    display = display or str(path)
    try:
        text = read_text(path)
    except NotUtf8 as exc:
        return None, Lines(display), [Problem(display, None, "", str(exc))]
    except OSError as exc:
        return None, Lines(display), [Problem(display, None, "", f"cannot read: {exc.strerror}")]
    return load_yaml(text, display, bool_key_hints)
