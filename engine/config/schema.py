"""config.yaml's JSON Schema (config.schema.json, for editors), made from the keys and
patterns the validator itself reads: the top-level keys, each section's keys, the channel
types of the registry with their options, the limits' patterns and the objects `fields:`
may declare custom fields for. A test keeps the committed file equal to what this module
generates and checks the shipped configs against it."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config.http import SIZE_PATTERN
from engine.config.limits import RATE_PATTERN
from engine.rules.fields import DECLARABLE
from engine.rules.schema import DURATION_PATTERN, WINDOW_PATTERN

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "config.schema.json"
CAP_PATTERN = r"^\s*\d+\s*/\s*(\d+(\.\d+)?\s*[smhdw]\s*)+$"


def _duration(help_text: str, example: str) -> dict:
    return {"type": "string", "pattern": DURATION_PATTERN, "description": help_text, "examples": [example]}


def _caps(help_text: str) -> dict:
    return {"anyOf": [{"type": "array", "items": {"type": "string", "pattern": CAP_PATTERN}}, {"type": "null"}],
            "description": help_text, "examples": [["1/1d", "3/7d"]]}


def _kind_limits(kind: str, quiet: str) -> dict:
    return {"type": "object", "additionalProperties": False,
            "description": f"Limits on {kind} messages, across all rules.",
            "properties": {
                "per_customer": _caps(f"At most COUNT {kind} messages to one customer in any WINDOW (rolling)."),
                "quiet_hours": {"anyOf": [{"type": "string", "pattern": WINDOW_PATTERN}, {"type": "null"}],
                                "description": "No message in these hours of the customer's local time "
                                               "(null: none).", "examples": [quiet]}}}


def _channel(type_name: str, cls) -> dict:
    options = {name: {"description": text} for name, text in cls.options_help.items()}
    options["contact"] = {"enum": list(cls.CONTACTS), "description": cls.options_help["contact"]}
    options["sms"] = {"type": "object", "additionalProperties": False, "description": cls.options_help["sms"],
                      "properties": {"signature": {"type": "string"}, "unsubscribe": {"type": "string"},
                                     "max_segments": {"type": "integer", "minimum": 1}}}
    for name in options:
        if name.endswith("_env"):
            options[name] = {**options[name], "type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}
    return {"type": "object", "additionalProperties": False, "required": ["type", *cls.required],
            "properties": {"type": {"const": type_name, "description": "The kind of channel."}, **options}}


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of config.yaml."""
    from engine.channels import REGISTRY  # noqa: PLC0415 - the registry imports every channel
    from engine.config.loader import LOG_LEVELS  # noqa: PLC0415 - config imports this module's peers

    count = {"type": "integer", "minimum": 1}
    properties = {
        "timezone": {"type": "string", "description": "The shop's IANA time zone; event times without an offset "
                                                      "are in it.", "examples": ["Asia/Shanghai"]},
        "database": {"type": "string", "description": "sqlite:///var/engine.db (default) or "
                                                      "postgresql+psycopg://user@host:5432/db"},
        "shop": {"type": "object", "description": "Available to templates as `shop`.",
                 "properties": {"name": {"type": "string"}, "signature": {"type": "string"},
                                "url": {"type": "string"}, "currency_symbol": {"type": "string"}}},
        "channels": {"type": "object", "description": "Channels by name; rules refer to these names.",
                     "additionalProperties": {"oneOf": [_channel(name, cls)
                                                        for name, cls in sorted(REGISTRY.items())]}},
        "dispatch": {"type": "object", "additionalProperties": False, "properties": {
            "batch_size": {**count, "description": "Messages taken per transaction."},
            "tick": _duration("How often the daemon looks for due messages.", "1s"),
            "lease": _duration("A message in flight longer than this (its dispatcher died) is retried.", "5m"),
            "retry": {"type": "object", "additionalProperties": False, "properties": {
                "attempts": {**count, "description": "Attempts in all for a transient channel failure."},
                "backoff": _duration("The wait after the first failure (doubling).", "30s"),
                "max_backoff": _duration("The longest wait between attempts.", "30m")}}}},
        "log": {"type": "object", "additionalProperties": False, "properties": {
            "level": {"enum": [*LOG_LEVELS, *(level.lower() for level in LOG_LEVELS)]},
            "json": {"type": "boolean", "description": "One JSON object per line."},
            "file": {"type": "string", "description": "Also write to this file."},
            "rotation": {"type": ["string", "integer"], "examples": ["100 MB", "00:00"]},
            "retention": {"type": ["string", "integer"], "examples": ["14 days"]}}},
        "limits": {"type": "object", "additionalProperties": False, "properties": {
            "marketing": _kind_limits("marketing", "21:00-09:00"),
            "service": _kind_limits("service", "23:00-07:00"),
            "channels": {"type": "object", "description": "Per channel name.", "additionalProperties": {
                "type": "object", "additionalProperties": False, "properties": {
                    "per_customer": _caps("Marketing caps on this channel alone."),
                    "rate": {"type": "string", "pattern": RATE_PATTERN, "examples": ["50/s"],
                             "description": "The provider's throughput: messages go evenly spaced, never more "
                                            "than this."}}}},
            "max_deferral": _duration("The latest a message without `expires` goes after its due time.", "1d")}},
        "segments": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                     "description": "Named conditions, usable as segment('name')."},
        "profile": {"type": "object", "additionalProperties": False, "properties": {
            "tiers": {"type": "array", "description": "Member tiers, highest first.", "items": {
                "type": "object", "additionalProperties": False, "required": ["name"], "properties": {
                    "name": {"type": "string"}, "min_spent": {"type": "number", "minimum": 0},
                    "min_orders": {"type": "integer", "minimum": 0}}}},
            "rfm": {"type": "object", "additionalProperties": False, "properties": {
                key: {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
                for key in ("recency_days", "frequency", "monetary")}}}},
        "http": {"anyOf": [{"const": False}, {"type": "object", "additionalProperties": False, "properties": {
            "listen": {"type": "string", "examples": ["127.0.0.1:8787"]},
            "token_env": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "hmac_env": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "max_body": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}]}}}],
            "description": "The daemon's HTTP API, or false for none."},
        "fields": {"type": "object", "additionalProperties": False,
                   "description": "Custom fields your events carry that rules and templates read, per object; "
                                  "any other field a rule reads is an error in `check`.",
                   "properties": {kind: {"anyOf": [
                       {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}},
                       {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}}]}
                       for kind in DECLARABLE}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "config.schema.json",
        "title": "Returning-customer engine config.yaml",
        "description": "The shop, the time zone, the database, the channels and the limits.",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def render_json_schema() -> str:
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"
