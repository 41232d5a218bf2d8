"""Domain exceptions. Each composes its own message from its fields; only the CLI
turns them into exit codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    """One finding about a rule, template or config file: where, what, how to fix."""

    file: str
    line: int | None
    path: str  # key path such as rules[2].channel ("" for the whole file)
    message: str
    severity: str = "error"  # error | warning
    rule_id: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.path}:" if self.path else ""
        prefix = "" if self.severity == "error" else "warning: "
        return f"{where}:{key} {prefix}{self.message}"


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class DriverMissing(EngineError):
    """The configured database cannot be opened from this install: its driver is not installed."""


class ConfigError(EngineError, ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class RuleError(EngineError, ValueError):
    """Raised when rules cannot be used at all; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EventError(EngineError, ValueError):
    """A canonical event failed validation; `reason` is shown to the sender."""

    def __init__(self, reason: str, field: str | None = None):
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class TemplateError(EngineError, ValueError):
    """One message failed to render; the message fails, nothing else does."""

    def __init__(self, template: str, reason: str, line: int | None = None):
        self.template = template
        self.reason = reason
        self.line = line  # the template's line where rendering failed, when known
        super().__init__(f"template {template}: {reason}")


class ExpressionError(EngineError, ValueError):
    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"expression {source!r}: {reason}")


class UnknownKindError(EngineError, KeyError):
    """A kind (channel type, trigger...) looked up by a name nobody registered."""

    def __init__(self, what: str, name: str, known: list[str]):
        self.what, self.name, self.known = what, name, sorted(known)
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown {self.what} {self.name!r}; known: {', '.join(self.known)}"
