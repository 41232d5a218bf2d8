"""config.schema.json: config.yaml's format for a marketer's or operator's editor. It is
made from the keys the validator reads (engine/config_schema.py); a test keeps the
committed file equal to it, and the shipped configs and the validator agree with it."""

from __future__ import annotations

import pytest
import yaml
from jsonschema import Draft202012Validator

from engine.channels import REGISTRY
from engine.config.loader import TOP_KEYS, load_config
from engine.config.schema import SCHEMA_FILE, json_schema, render_json_schema
from engine.errors import ConfigError
from engine.rules.fields import DECLARABLE
from tests.conftest import ROOT

SHIPPED = [ROOT / "config.yaml", ROOT / "examples" / "uci" / "config.yaml"]


@pytest.fixture(scope="module")
def validator():
    return Draft202012Validator(json_schema())


def errors(validator, data) -> list[str]:
    return sorted(e.message for e in validator.iter_errors(data))


def test_committed_schema_is_what_the_code_generates():
    assert SCHEMA_FILE == ROOT / "config.schema.json"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_json_schema(), (
        "config.schema.json is out of date; regenerate it with:\n    python run.py schema config > config.schema.json")


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(validator, path):
    assert errors(validator, yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def test_the_schema_knows_exactly_the_top_level_keys_the_validator_reads():
    assert sorted(json_schema()["properties"]) == sorted(TOP_KEYS)


def test_the_schema_knows_every_channel_type_and_its_options():
    variants = json_schema()["properties"]["channels"]["additionalProperties"]["oneOf"]
    by_type = {v["properties"]["type"]["const"]: v for v in variants}
    assert sorted(by_type) == sorted(REGISTRY)
    for name, cls in REGISTRY.items():
        assert sorted(set(by_type[name]["properties"]) - {"type"}) == sorted(cls.options_help), name
        assert by_type[name]["required"] == ["type", *cls.required]


def test_the_fields_section_offers_the_objects_the_validator_accepts():
    assert sorted(json_schema()["properties"]["fields"]["properties"]) == sorted(DECLARABLE)


@pytest.mark.parametrize("extra", [
    {"fields": {"custmer": ["vip_level"]}},
    {"fields": {"customer": ["vip level"]}},
    {"limits": {"channels": {"sms": {"rate": "50/d"}}}},
    {"limits": {"marketing": {"per_customer": ["3 per week"]}}},
    {"sweeps": {"idle": "1h"}},
    {"http": {"max_body": "5 gigabytes"}},
], ids=["fields-object", "fields-name", "rate", "cap", "unknown-key", "size"])
def test_what_the_schema_refuses_the_validator_refuses_too(validator, tmp_path, extra):
    base = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data = {**base, **extra}
    if "limits" in extra:
        data["limits"] = {**base["limits"], **{k: {**base["limits"].get(k, {}), **v} for k, v in extra["limits"].items()}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    assert errors(validator, data) != []
    with pytest.raises(ConfigError):
        load_config(path)
