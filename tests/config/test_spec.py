"""One declarative way to validate (engine/config/spec.py): every section of config.yaml is
a spec table from which both the validator and config.schema.json are made. So every
section's unknown key gets did-you-mean with file:line, a bad value names its key and line,
and what the validator refuses the schema refuses too."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from jsonschema import Draft202012Validator

from engine.config.loader import CONFIG, load_config
from engine.config.schema import json_schema
from engine.config.spec import Each, ListOf, Section, key_schema, schema
from engine.errors import ConfigError

DURATION_HINT = "write a number and a unit: 30s, 30m, 2h, 3d, 1w (or combined, like 1d12h)"


@pytest.fixture(scope="module")
def validator():
    return Draft202012Validator(json_schema())


@pytest.fixture
def write(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(dedent(text), encoding="utf-8")
        return path

    return write


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p).replace(str(path), "config.yaml") for p in caught.value.problems]


UNKNOWN_KEYS = [
    pytest.param("timezon: UTC\n",
                 "config.yaml:1: timezon: unknown key 'timezon'; did you mean 'timezone'?", id="top-level"),
    pytest.param("dispatch:\n  batch_sise: 5\n",
                 "config.yaml:2: dispatch.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'?",
                 id="dispatch"),
    pytest.param("dispatch:\n  retry:\n    atempts: 3\n",
                 "config.yaml:3: dispatch.retry.atempts: unknown key 'atempts'; did you mean 'attempts'?",
                 id="dispatch.retry"),
    pytest.param("log:\n  levl: INFO\n", "config.yaml:2: log.levl: unknown key 'levl'; did you mean 'level'?", id="log"),
    pytest.param("http:\n  token_evn: X\n",
                 "config.yaml:2: http.token_evn: unknown key 'token_evn'; did you mean 'token_env'?", id="http"),
    pytest.param("limits:\n  max_deferal: 1d\n",
                 "config.yaml:2: limits.max_deferal: unknown key 'max_deferal'; did you mean 'max_deferral'?",
                 id="limits"),
    pytest.param("limits:\n  marketing:\n    quiet_hour: null\n",
                 "config.yaml:3: limits.marketing.quiet_hour: unknown key 'quiet_hour'; did you mean 'quiet_hours'?",
                 id="limits.marketing"),
    pytest.param("limits:\n  channels:\n    log: {rat: 5/s}\n",
                 "config.yaml:3: limits.channels.log.rat: unknown key 'rat'; did you mean 'rate'?",
                 id="limits.channels"),
    pytest.param("profile:\n  rfn: {}\n", "config.yaml:2: profile.rfn: unknown key 'rfn'; did you mean 'rfm'?",
                 id="profile"),
    pytest.param("profile:\n  rfm:\n    monetery: [1, 2, 3, 4]\n",
                 "config.yaml:3: profile.rfm.monetery: unknown key 'monetery'; did you mean 'monetary'?",
                 id="profile.rfm"),
    pytest.param("profile:\n  tiers:\n    - {name: a, min_spnt: 5}\n",
                 "config.yaml:3: profile.tiers[0].min_spnt: unknown key 'min_spnt'; did you mean 'min_spent'?; "
                 "a tier has name, min_spent, min_orders", id="profile.tiers"),
    pytest.param("fields:\n  ordr: [x]\n",
                 "config.yaml:2: fields.ordr: unknown object 'ordr'; did you mean 'order'?; custom fields can be "
                 "declared for customer, order, item, data", id="fields"),
]


@pytest.mark.parametrize(("text", "message"), UNKNOWN_KEYS)
def test_every_section_names_an_unknown_key_with_its_line_and_the_key_meant(write, validator, text, message):
    assert problems(write(text)) == [message]
    assert validator.iter_errors(yaml.safe_load(text)) != []


def test_the_sweeps_key_nothing_reads_is_an_unknown_key(write, validator):
    text = "timezone: Asia/Shanghai\nsweeps:\n  idle: 1h\n"

    assert problems(write(text)) == ["config.yaml:2: sweeps: unknown key 'sweeps'"]
    assert list(validator.iter_errors(yaml.safe_load(text))) != []


BAD_VALUES = [
    pytest.param("timezone: 8\n",
                 "config.yaml:1: timezone: unknown time zone 8; write an IANA name such as Asia/Shanghai", id="timezone"),
    pytest.param("database: 5\n", "config.yaml:1: database: must be a database URL such as sqlite:///var/engine.db "
                                  "or postgresql+psycopg://user@host/db", id="database"),
    pytest.param("shop: 5\n", "config.yaml:1: shop: must be a mapping, such as {name: 小明户外}", id="shop"),
    pytest.param("channels:\n  sms: 5\n", "config.yaml:2: channels.sms: needs a type; known types: aliyun_sms, file, "
                                         "log, recording, smtp, webhook", id="channels"),
    pytest.param("dispatch:\n  batch_size: many\n",
                 "config.yaml:2: dispatch.batch_size: must be a whole number of messages, such as 500", id="dispatch"),
    pytest.param("dispatch:\n  retry:\n    max_backoff: 5\n",
                 f"config.yaml:3: dispatch.retry.max_backoff: bad duration 5: a unit is missing; {DURATION_HINT}",
                 id="dispatch.retry"),
    pytest.param("dispatch:\n  retry: null\n", "config.yaml:2: dispatch.retry: must be a mapping such as "
                                               "{attempts: 5, backoff: 30s, max_backoff: 30m}", id="dispatch.retry-null"),
    pytest.param("log:\n  json: 1\n", "config.yaml:2: log.json: must be true or false", id="log.json"),
    pytest.param("log:\n  file: [a]\n", "config.yaml:2: log.file: must be a file path, such as var/engine.log",
                 id="log.file"),
    pytest.param("log:\n  level: loud\n",
                 "config.yaml:2: log.level: unknown log level 'loud'; choose one of: DEBUG, INFO, WARNING, ERROR",
                 id="log.level"),
    pytest.param("http:\n  max_body: true\n",
                 "config.yaml:2: http.max_body: bad size True; write bytes or a size such as 512KB or 5MB",
                 id="http.max_body"),
    pytest.param("limits:\n  max_deferral: 5\n",
                 f"config.yaml:2: limits.max_deferral: bad duration 5: a unit is missing; {DURATION_HINT}",
                 id="limits.max_deferral"),
    pytest.param("limits:\n  channels:\n    log: {rate: 5}\n", "config.yaml:3: limits.channels.log.rate: bad rate 5; "
                                                              "write COUNT/s, COUNT/m or COUNT/h, such as 50/s",
                 id="limits.channels.rate"),
    pytest.param("profile:\n  tiers:\n    - {name: gold, min_orders: -1}\n",
                 "config.yaml:3: profile.tiers[0].min_orders: must be a whole number of paid orders, such as 3",
                 id="profile.tiers"),
    pytest.param("profile:\n  rfm:\n    frequency: often\n",
                 "config.yaml:3: profile.rfm.frequency: must be four ascending numbers (the limits of the five "
                 "scores), such as [30, 90, 180, 365]", id="profile.rfm"),
    pytest.param("fields:\n  customer: vip\n", "config.yaml:2: fields.customer: must be a list of field names "
                                               "(letters, digits, _), such as [vip_level, wechat_id]", id="fields"),
    pytest.param("segments:\n  vip: 5\n",
                 "config.yaml:2: segments.vip: must be a condition, such as customer.orders >= 3", id="segments"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VALUES)
def test_a_bad_value_in_every_section_names_its_key_and_line_and_the_schema_refuses_it(write, validator, text,
                                                                                       message):
    assert problems(write(text)) == [message]
    assert list(validator.iter_errors(yaml.safe_load(text))) != []


@pytest.mark.parametrize("text", [
    "dispatch: null\nlog:\nprofile:\n  rfm: null\n",
    "limits:\n  marketing: {quiet_hours: null, per_customer: null}\n  service:\n  channels:\n",
    "http: false\n",
    "http:\n  max_body: 512KB\n  listen: '[::1]:8787'\n",
    "profile:\n  tiers:\n    - {name: 金卡, min_spent: 2000.5}\n    - {name: 会员}\n",
    "fields:\n  customer: {vip_level: the VIP level}\n",
], ids=["null-sections", "limits-switched-off", "http-off", "http-settings", "tiers", "fields-as-mapping"])
def test_what_the_validator_accepts_the_schema_accepts(write, validator, text):
    load_config(write(text))
    assert list(validator.iter_errors(yaml.safe_load(text))) == []


def test_a_null_means_what_each_key_declares(write):
    config = load_config(write("dispatch: null\nlimits:\n  marketing: {quiet_hours: null, per_customer: null}\n"))

    assert config.dispatch.batch_size == 500  # the section's defaults
    assert (config.limits.marketing.quiet_hours, config.limits.marketing.per_customer) == (None, ())  # off
    assert str(config.limits.service.quiet_hours) == "23:00-07:00"


def _sections(spec, path=()):
    """Every fixed-key section of a spec, with its path."""
    if isinstance(spec, Section):
        yield path, spec
        for key in spec.keys:
            yield from _sections(key.spec, path + (key.name,))
    elif isinstance(spec, (Each, ListOf)):
        yield from _sections(spec.value if isinstance(spec, Each) else spec.item, path + ("*",))


def test_every_section_of_the_spec_is_in_the_schema_with_exactly_its_keys():
    found = list(_sections(CONFIG))
    assert len(found) >= 10
    for path, section in found:
        fragment = schema(section)
        fragment = next((v for v in fragment.get("anyOf", [fragment]) if "properties" in v), fragment)
        assert list(fragment["properties"]) == [k.name for k in section.keys], path
        assert fragment["additionalProperties"] is False, path


def test_every_key_has_help_for_the_editor():
    for path, section in _sections(CONFIG):
        for key in section.keys:
            assert key_schema(key).get("description"), path + (key.name,)
