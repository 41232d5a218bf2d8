"""Event triggers: for one arriving event, the rules it starts.

Rules are indexed by event type when loaded (RuleSet.by_type); each rule's `if`
conditions are compiled closures evaluated on the state just after the event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import ExpressionError
from engine.intake.events import Event
from engine.rules.model import Rule, RuleSet
from engine.triggers.schedule import Plan, plan


@dataclass(frozen=True)
class Broken:
    """A rule whose condition or send time could not be evaluated for this event."""

    rule: Rule
    detail: str


def match(rules: RuleSet, event: Event, context: dict[str, Any], tz: ZoneInfo) -> list[Plan | Broken]:
    out: list[Plan | Broken] = []
    for rule in rules.for_event(event.type):
        try:
            if all(c.evaluate(context) for c in rule.conditions):
                out.append(plan(rule, event, context, tz))
        except ExpressionError as exc:
            out.append(Broken(rule, f"rule {rule.id}: {exc}"))
    return out
