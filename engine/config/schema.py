"""config.yaml's JSON Schema (config.schema.json, for editors), made from the same spec
tables the validator walks (engine.config.spec): every section's keys, kinds, patterns and
help, the channel types of the registry with their options. A test keeps the committed
file equal to what this module generates and checks the shipped configs against it."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config.spec import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "config.schema.json"


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of config.yaml, made from its spec (engine.config.loader.CONFIG)."""
    from engine.config.loader import CONFIG  # noqa: PLC0415 - the loader imports the channels' registry

    body = schema(CONFIG)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "config.schema.json",
        "title": "Returning-customer engine config.yaml",
        **body,
    }


def render_json_schema() -> str:
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"
