"""A validated, compiled rule: what the matcher and the dispatcher run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

from engine.config.limits import DailyWindow

Evaluator = Callable[[dict], Any]


@dataclass(frozen=True)
class Condition:
    source: str
    evaluate: Evaluator


@dataclass
class Rule:
    id: str
    name: str
    kind: str  # service | marketing
    when: tuple[str, ...]
    channel: str
    template: str
    once_per: str = "event"
    conditions: tuple[Condition, ...] = ()
    unless: tuple[Condition, ...] = ()
    wait: timedelta | None = None
    send_at: Condition | None = None
    expires: timedelta | None = None
    cooldown: timedelta | None = None
    window: DailyWindow | None = None
    priority: int = 0
    on_limit: str = "skip"  # skip | defer
    to: str = "customer"  # customer | staff
    enabled: bool = True
    file: str = ""
    line: int | None = None
    key_path: str = ""  # where it stands in its file, such as rules[2]
    raw: dict = field(default_factory=dict, repr=False)
    trigger: Any = None  # engine.triggers.calendar.Trigger for calendar rules (then `when` is empty)

    @property
    def horizon(self) -> timedelta:
        """How far past its event this rule can still act (for the dry-run's default end);
        an idle rule acts its idle time after the last order."""
        idle = self.trigger.idle if self.trigger is not None and self.trigger.idle else timedelta(0)
        return (self.wait or timedelta(0)) + idle + (self.expires or timedelta(0))

    @property
    def event_label(self) -> str:
        """The event type a message of this rule shows: its first event, or sweep.KIND."""
        return self.trigger.label if self.trigger is not None else self.when[0]


@dataclass
class RuleSet:
    """The rules that loaded cleanly, indexed by event type, plus every problem found."""

    rules: list[Rule]
    problems: list = field(default_factory=list)
    by_type: dict[str, list[Rule]] = field(default_factory=dict)
    by_id: dict[str, Rule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {rule.id: rule for rule in self.rules}
        self.by_type = {}
        for rule in self.rules:
            if rule.enabled:
                for etype in rule.when:
                    self.by_type.setdefault(etype, []).append(rule)

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def calendar(self) -> list[Rule]:
        """The enabled rules started by sweeps (idle, birthday, holiday, date, cron)."""
        return [r for r in self.rules if r.enabled and r.trigger is not None]

    def get(self, rule_id: str) -> Rule | None:
        return self.by_id.get(rule_id)

    def for_event(self, etype: str) -> list[Rule]:
        return self.by_type.get(etype, ())
