"""rules.schema.json: the published rule format a marketer's editor checks while typing.

It is generated from the same field specs the validator reads; these tests keep the
committed file, the validator and the shipped rules in agreement."""

from __future__ import annotations

import json
from datetime import timedelta
from textwrap import dedent
from zoneinfo import ZoneInfo

import pytest
import yaml
from jsonschema import Draft202012Validator

from engine.durations import parse_duration
from engine.rules.loader import load_rules
from engine.rules.schema import FIELDS, SCHEMA_FILE, json_schema, render_json_schema
from engine.rules.templates import Templates
from tests.conftest import ROOT
from tests.rules.test_loader import BROKEN

SHIPPED_RULE_FILES = sorted((ROOT / "rules").glob("*.yaml"))

A_RULE = """\
rules:
  - id: review-request
    when: order.signed
    channel: sms
    template: thanks.sms.j2
"""


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def schema_errors(validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(yaml.safe_load(dedent(text)))]


def test_committed_schema_is_what_the_validator_generates():
    committed = SCHEMA_FILE.read_text(encoding="utf-8")

    assert committed == render_json_schema(), (
        "rules.schema.json is out of date with engine/rules/schema.py; regenerate it with:\n"
        "    python run.py schema > rules.schema.json")


def test_committed_schema_sits_at_the_project_root():
    assert SCHEMA_FILE == ROOT / "rules.schema.json"


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", SHIPPED_RULE_FILES, ids=[p.name for p in SHIPPED_RULE_FILES])
def test_every_shipped_rule_file_validates_against_the_schema(validator, path):
    assert schema_errors(validator, path.read_text(encoding="utf-8")) == []


def test_the_schema_knows_exactly_the_keys_the_validator_accepts():
    rule = json_schema()["$defs"]["rule"]

    assert set(rule["properties"]) == {f.name for f in FIELDS}
    assert rule["additionalProperties"] is False
    assert sorted(rule["required"]) == sorted(f.name for f in FIELDS if f.required)


@pytest.mark.parametrize("field", [f for f in FIELDS if f.choices], ids=lambda f: f.name)
def test_the_schema_offers_the_same_choices_as_the_validator(field):
    prop = json_schema()["$defs"]["rule"]["properties"][field.name]

    assert prop["enum"] == list(field.choices)


def test_every_key_has_help_and_an_example_for_the_editor():
    for name, prop in json_schema()["$defs"]["rule"]["properties"].items():
        assert prop["description"], name
        assert prop["examples"], name


def test_a_key_the_schema_lacks_is_rejected_by_schema_and_validator(validator, tmp_path):
    text = A_RULE + "    urgency: high\n"
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "thanks.sms.j2").write_text("谢谢\n", encoding="utf-8")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text(text, encoding="utf-8")

    ruleset = load_rules(tmp_path / "rules", Templates(tmp_path / "templates", ZoneInfo("Asia/Shanghai")),
                         ["sms"], display_root=tmp_path)

    assert schema_errors(validator, text) == [
        "Additional properties are not allowed ('urgency' was unexpected)"]
    assert [str(p) for p in ruleset.problems] == ["rules/a.yaml:6: rules[0].urgency: unknown key 'urgency'"]


# The loader-table cases the schema can express (channels, templates, expressions and
# ids across files need the project, so only the validator can check them).
EXPRESSIBLE = {
    "unknown-key-did-you-mean", "when-is-a-number", "enabled-is-text", "if-is-a-mapping", "wait-in-words",
    "expires-without-unit", "negative-wait", "wait-and-send_at", "missing-channel-and-template", "missing-id",
    "id-with-a-space", "kind-typo", "list-instead-of-rules-mapping", "rules-is-not-a-list", "rules-key-misspelt",
    "rule-is-plain-text",
}


@pytest.mark.parametrize(("text", "problems"), [p for p in BROKEN if p.id in EXPRESSIBLE])
def test_broken_rule_files_are_rejected_by_the_schema_too(validator, text, problems):
    assert schema_errors(validator, text) != []


def test_every_expressible_case_is_in_the_loader_table():
    assert EXPRESSIBLE <= {p.id for p in BROKEN}


def test_on_instead_of_when_is_rejected_by_the_schema(validator):
    assert sorted(schema_errors(validator, A_RULE.replace("when:", "on:"))) == sorted([
        "'when' is a required property",
        "Additional properties are not allowed (True was unexpected)",
    ])


@pytest.mark.parametrize(("text", "accepted"), [
    ("30m", True), ("2h", True), ("3d", True), ("1w", True), ("45s", True), ("1d12h", True), ("1.5h", True),
    ("30 minutes", False), ("-5m", False), ("10", False), ("1y", False), ("m", False), ("", False),
], ids=lambda v: repr(v) if isinstance(v, str) else None)
def test_schema_and_validator_agree_on_durations(validator, text, accepted):
    def parses() -> bool:
        try:
            return isinstance(parse_duration(text), timedelta)
        except ValueError:
            return False

    by_schema = schema_errors(validator, A_RULE + f"    wait: {json.dumps(text)}\n") == []
    assert (by_schema, parses()) == (accepted, accepted)


@pytest.mark.parametrize("text", [
    A_RULE + "    name: ''\n",
    A_RULE.replace("channel: sms", "channel: ''"),
    A_RULE.replace("template: thanks.sms.j2", "template: ' '"),
    A_RULE.replace("when: order.signed", "when: ['']"),
], ids=["name", "channel", "template-blank", "when-item"])
def test_schema_rejects_empty_text_like_the_validator(validator, text):
    assert schema_errors(validator, text) != []
