"""Triggers: what starts a rule. This release: order and customer events."""
