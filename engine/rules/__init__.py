"""Rules: the YAML format marketers write (schema), loading with line marks, the model."""

from engine.rules.loader import load_rules
from engine.rules.model import Condition, Rule, RuleSet

__all__ = ["Condition", "Rule", "RuleSet", "load_rules"]
