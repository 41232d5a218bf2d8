"""Segments: named conditions in config.yaml, usable in any rule as segment('name') and
counted from the store with `python run.py segment NAME`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.app import load_project
from engine.cli import main
from engine.config.loader import load_config
from engine.errors import ConfigError
from tests.conftest import ROOT
from tests.helpers import created, event, jsonl


@pytest.fixture
def shop(tmp_path) -> Path:
    """A copy of the shipped project whose database is a file in tmp_path."""
    for name in ("rules", "templates"):
        shutil.copytree(ROOT / name, tmp_path / name)
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["database"] = f"sqlite:///{tmp_path / 'shop.db'}"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return tmp_path


def cli(shop: Path, *args):
    return CliRunner().invoke(main, [*args, "--config", str(shop / "config.yaml")], catch_exceptions=False)


def test_segment_prints_size_and_a_masked_sample_from_the_store(shop):
    events = [created("a1", 0, customer="c-1", order="o-1"), event("a2", "order.paid", 5, "c-1", "o-1"),
              created("b1", 0, customer="c-2", order="o-2"), event("b2", "order.paid", 5, "c-2", "o-2"),
              event("b3", "order.reviewed", 60 * 24 * 5, "c-2", "o-2", data={"rating": "bad"}),
              created("d1", 0, customer="c-3", order="o-3")]  # never paid
    (shop / "events.jsonl").write_text(jsonl(events), encoding="utf-8")
    assert cli(shop, "ingest", str(shop / "events.jsonl")).exit_code == 0

    result = cli(shop, "segment", "high_quality")

    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "segment high_quality: 1 of 3 customers (33.3%)",
        "  customer.orders >= 1 and not customer.had_bad_review   (config.yaml)",
        "  c-1  王小明  138****0000",
    ]


def test_an_unknown_segment_is_a_usage_error_naming_the_known_ones(shop):
    result = CliRunner().invoke(main, ["segment", "vip", "--config", str(shop / "config.yaml")])

    assert result.exit_code == 2
    assert ("unknown segment 'vip'; segments defined (config.yaml, rules files): high_quality, frequent, lapsed_vip"
            in result.output)


def test_a_rule_uses_a_segment_and_a_misspelt_one_is_reported_with_file_and_line(shop):
    (shop / "rules" / "vip.yaml").write_text(
        "rules:\n"
        "  - id: thanks-good-customers\n"
        "    when: order.signed\n"
        "    if: segment('high_quality')\n"
        "    channel: sms\n"
        "    template: review_request.sms.j2\n"
        "  - id: typo\n"
        "    when: order.signed\n"
        "    if: segment('high_qualty')\n"
        "    channel: sms\n"
        "    template: review_request.sms.j2\n", encoding="utf-8")

    project = load_project(shop / "config.yaml", shop / "rules", shop / "templates")

    assert [str(p).replace(str(shop) + "/", "") for p in project.errors] == [
        "rules/vip.yaml:9: rules[1].if: unknown segment 'high_qualty'; did you mean 'high_quality'?; "
        "segments (config.yaml or a rules file's segments:): high_quality, frequent, lapsed_vip, "
        "double11_high_intent, outdoor_without_pad"]  # config.yaml's, then rules/segments.yaml's
    assert project.rules.get("thanks-good-customers") is not None


SEGMENTS_FILE = (
    "# named conditions, next to the rules that use them\n"
    "segments:\n"
    "  big_spender: \"customer.spent >= 1000\"\n"
    "  outdoor_fan: \"customer.bought_category('outdoor') and segment('high_quality')\"\n")


def test_rules_segments_yaml_defines_segments_every_rule_and_the_cli_can_use(shop):
    (shop / "rules" / "my_segments.yaml").write_text(SEGMENTS_FILE, encoding="utf-8")
    (shop / "rules" / "a_vip.yaml").write_text(  # sorts before segments.yaml: still sees them
        "rules:\n"
        "  - id: vip-thanks\n"
        "    when: order.signed\n"
        "    if: segment('big_spender')\n"
        "    channel: sms\n"
        "    template: review_request.sms.j2\n", encoding="utf-8")
    events = [created("a1", 0, customer="c-1", amount=1200.0), event("a2", "order.paid", 1, "c-1", "o-1"),
              created("b1", 0, customer="c-2", order="o-2", amount=99.0), event("b2", "order.paid", 1, "c-2", "o-2")]
    (shop / "events.jsonl").write_text(jsonl(events), encoding="utf-8")

    project = load_project(shop / "config.yaml", shop / "rules", shop / "templates")
    assert project.errors == []
    assert project.rules.get("vip-thanks") is not None
    assert cli(shop, "ingest", str(shop / "events.jsonl")).exit_code == 0
    result = cli(shop, "segment", "big_spender")

    assert result.exit_code == 0, result.output
    assert result.output.replace(str(shop) + "/", "").splitlines()[:2] == ["segment big_spender: 1 of 2 customers (50.0%)",
                                              "  customer.spent >= 1000   (rules/my_segments.yaml:3)"]


@pytest.mark.parametrize("content, expected", [
    ("segments:\n  high_quality: \"customer.orders >= 2\"\n",
     "rules/my_segments.yaml:2: segments.high_quality: segment 'high_quality' is already defined in config.yaml; "
     "rename one of them"),
    ("segments:\n  vip: \"customer.spent >=\"\n",
     "rules/my_segments.yaml:2: segments.vip: expression does not compile:"),
    ("segments:\n  - vip\n",
     "rules/my_segments.yaml:1: segments: must map names to conditions"),
], ids=["same-name-as-config", "does-not-compile", "a-list-not-a-mapping"])
def test_a_broken_segment_in_a_rules_file_is_reported_with_file_and_line(shop, content, expected):
    (shop / "rules" / "my_segments.yaml").write_text(content, encoding="utf-8")

    project = load_project(shop / "config.yaml", shop / "rules", shop / "templates")

    assert any(str(p).replace(str(shop) + "/", "").startswith(expected) for p in project.errors), project.errors
    assert project.rules.get("payment-reminder") is not None  # the other rules keep working


def test_a_segment_that_does_not_compile_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("segments:\n  vip: \"customer.spent >= \"\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    [problem] = caught.value.problems
    assert str(problem).startswith(f"{path}:2: segments.vip: expression does not compile:")
