"""The rule format, declared once. The validator reads these specs, and the published
JSON Schema (rules.schema.json, for marketers' editors) is generated from them; a test
keeps the committed file equal to what `json_schema()` produces. Durations and windows are
the value kinds config.yaml uses too (engine.config.spec, engine.config.limits): one
parser and one pattern each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.config.limits import WINDOW
from engine.config.spec import DURATION, DURATION_PATTERN, Kind

NOT_BLANK = r"\S"  # text must not be empty or only spaces
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "rules.schema.json"


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[str, ...]  # "string", "boolean", "integer", "list-of-strings"
    help: str
    example: str
    required: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    default: object = None
    kind: Kind | None = None  # a value kind (a duration, a window): its parser reads the value, its pattern checks it


FIELDS: tuple[Field, ...] = (
    Field("id", ("string",), "Unique, stable id of the rule across all files; dedup and reports key on it.",
          "payment-reminder", required=True, pattern=ID_PATTERN),
    Field("name", ("string",), "Free text shown in reports and the dry-run.", "催付 · 下单30分钟未付款"),
    Field("description", ("string",), "Notes for colleagues; not used by the engine.", "why this rule exists"),
    Field("kind", ("string",), "service (order updates) or marketing (subject to marketing limits).",
          "service", choices=("service", "marketing"), default="marketing"),
    Field("when", ("string", "list-of-strings", "mapping"),
          "Event type that starts the rule, a list of them, or a calendar trigger: {idle: 60d}, "
          "{birthday: -3d, at: '10:00'}, {holiday: spring_festival, offset: -7d, at: '10:00'}, "
          "{date: '11-11', at: '14:00'}, {cron: '0 10 * * 1'}.",
          "order.created", required=True),
    Field("if", ("string", "list-of-strings"),
          "Condition(s) checked when the event arrives; all must hold. Jinja expressions over "
          "event, customer, order, data, now.", "order.amount >= 50"),
    Field("wait", ("string",), "Delay after the event time before sending: 30s, 30m, 2h, 3d, 1w.", "30m",
          kind=DURATION),
    Field("send_at", ("string",), "Expression giving the send time (instead of wait).",
          "datetime(data.expires_at) - duration('24h')"),
    Field("unless", ("string", "list-of-strings"),
          "Condition(s) re-checked at send time on the current state; any true cancels the message.",
          "order.status != 'created'"),
    Field("expires", ("string",), "Drop the message as expired when it cannot be sent within this after its due time.",
          "24h", kind=DURATION),
    Field("channel", ("string",), "A channel defined in config.yaml.", "sms", required=True),
    Field("template", ("string",), "A template file under templates/.", "payment_reminder.sms.j2", required=True),
    Field("once_per", ("string",), "Dedup scope: the rule fires at most once per event, order or customer.",
          "order", choices=("event", "order", "customer"), default="event"),
    Field("cooldown", ("string",), "The same rule sends to the same customer at most once in this period.",
          "30d", kind=DURATION),
    Field("window", ("string",), "This rule's own send window, in the customer's local time (HH:MM-HH:MM); "
          "combined with the quiet hours. Outside it the message waits.", "10:00-20:00", kind=WINDOW),
    Field("priority", ("integer",), "Higher wins when a customer's messages due in the same minute compete "
          "for a frequency cap.", "10", default=0),
    Field("on_limit", ("string",), "What a frequency cap does to this rule's message: skip it (suppressed) or "
          "defer it until the cap frees, within expires (or limits.max_deferral).", "defer",
          choices=("skip", "defer"), default="skip"),
    Field("to", ("string",), "customer, or staff: an alert for the shop's team, never counted in customer limits "
          "and never held by quiet hours.", "staff", choices=("customer", "staff"), default="customer"),
    Field("enabled", ("boolean",), "false switches the rule off without deleting it.", "true", default=True),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}
CALENDAR_TRIGGER = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "properties": {
        "idle": {"type": "string", "pattern": DURATION_PATTERN, "description": "No order for this long: 60d."},
        "birthday": {"type": "string", "description": "Days from the birthday: -3d, 0d."},
        "holiday": {"type": "string", "description": "spring_festival, mid_autumn_festival, national_day, ..."},
        "date": {"type": "string", "description": "MM-DD every year, or YYYY-MM-DD once."},
        "cron": {"type": "string", "description": "minute hour day month weekday, shop time."},
        "at": {"type": "string", "pattern": r"^\d{1,2}:\d{2}$", "description": "Local time of day, HH:MM."},
        "offset": {"type": "string", "description": "Days from the holiday or date: -7d."},
        "day": {"enum": ["festival", "first_day_off"], "description": "For holidays: the festival day "
                                                                      "or the first statutory day off."},
    },
}
FILE_KEYS = ("rules", "segments")


def _property(field: Field) -> dict:
    variants = []
    for t in field.types:
        if t == "list-of-strings":
            variants.append({"type": "array", "items": {"type": "string", "pattern": NOT_BLANK}, "minItems": 1})
        elif t == "mapping":
            variants.append(CALENDAR_TRIGGER)
        else:
            variant: dict = {"type": t}
            if field.choices:
                variant["enum"] = list(field.choices)
            if t == "string":
                variant["pattern"] = field.kind.schema["pattern"] if field.kind else field.pattern or NOT_BLANK
            variants.append(variant)
    prop = variants[0] if len(variants) == 1 else {"anyOf": variants}
    prop = {"description": field.help, **prop, "examples": [field.example]}
    if field.default is not None:
        prop["default"] = field.default
    return prop


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of a rules file, generated from FIELDS."""
    rule = {
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in FIELDS if f.required],
        "properties": {f.name: _property(f) for f in FIELDS},
        "not": {"required": ["wait", "send_at"]},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "rules.schema.json",
        "title": "Returning-customer engine rules file",
        "description": "A file under rules/: a list of rules mapping order events to timed messages, "
                       "and/or named segments (conditions usable as segment('name')).",
        "type": "object",
        "additionalProperties": False,
        "anyOf": [{"required": ["rules"]}, {"required": ["segments"]}],
        "properties": {
            "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}},
            "segments": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                         "description": "Named conditions, e.g. high_quality: \"customer.orders >= 1 and not "
                                        "customer.had_bad_review\"; use them in if/unless as segment('name')."},
        },
        "$defs": {"rule": rule},
    }


def render_json_schema() -> str:
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"
