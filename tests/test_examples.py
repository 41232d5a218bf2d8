"""The shipped examples: the season file is what its generator writes, the shipped rules
all fire on the shipped examples, and the lifecycle messages of the season go at the
moments the playbook promises (checked against the events, customer by customer)."""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from engine.dryrun.replay import run_dry
from tests.conftest import ROOT

SEASON = ROOT / "examples" / "season_2026.jsonl"
DOUBLE11 = ROOT / "examples" / "double11_week.jsonl"
UNTIL = datetime(2027, 2, 1, tzinfo=timezone(timedelta(hours=8)))  # past the 2027 Spring Festival greeting


def lines_of(path):
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))


@pytest.fixture(scope="module")
def season(project):
    return run_dry(project, lines_of(SEASON), UNTIL)


@pytest.fixture(scope="module")
def project():
    from engine.app import load_project

    return load_project(ROOT / "config.yaml", ROOT / "rules", ROOT / "templates")


def test_the_season_file_is_what_make_season_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_season", ROOT / "examples" / "make_season.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.OUT = tmp_path / "season.jsonl"

    module.main()

    assert module.OUT.read_bytes() == SEASON.read_bytes()


def test_every_shipped_rule_sends_on_the_shipped_examples(project, season):
    double11 = run_dry(project, lines_of(DOUBLE11))
    sent = {d["rule_id"] for d in season.decisions + double11.decisions if d["outcome"] == "sent"}

    assert sorted(r.id for r in project.rules.rules if r.id not in sent) == []


def _orders(path, paid_only: bool = False) -> dict[str, list[datetime]]:
    """Each customer's order times (an order's earliest event), from the raw file;
    `paid_only`: the orders that were paid, at their payment time."""
    first: dict[tuple[str, str], datetime] = {}
    paid: dict[tuple[str, str], datetime] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("order"):
            key = (event["customer"]["id"], event["order"]["id"])
            t = datetime.fromisoformat(event["time"])
            first[key] = min(first.get(key, t), t)
            if event["type"] == "order.paid":
                paid[key] = t
    out: dict[str, list[datetime]] = defaultdict(list)
    for (customer, _), t in (paid if paid_only else first).items():
        out[customer].append(t)
    return {c: sorted(ts) for c, ts in out.items()}


@pytest.mark.parametrize("rule_id, days", [("winback-60d", 60), ("winback-90d", 90), ("winback-180d", 180)])
def test_win_back_letters_go_once_per_idle_spell_never_after_a_new_order(season, rule_id, days):
    orders = _orders(SEASON)
    letters = [d for d in season.decisions if d["rule_id"] == rule_id and d["outcome"] == "sent"]
    assert len(letters) >= 20
    per_spell = defaultdict(int)
    for letter in letters:
        before = [t for t in orders[letter["customer_id"]] if t <= letter["time"]]
        last = max(before)
        moment = last + timedelta(days=days)
        # at the idle moment, or when the window / quiet hours let it go (10:00 at the latest next day)
        assert moment <= letter["time"] <= moment + timedelta(hours=34), letter
        per_spell[(letter["customer_id"], last)] += 1
    assert max(per_spell.values()) == 1


def test_honeymoon_goes_30_days_after_the_first_order_only_to_who_did_not_come_back(season):
    orders = _orders(SEASON, paid_only=True)  # customer.orders counts paid orders
    notes = [d for d in season.decisions if d["rule_id"] == "honeymoon-30d"]
    sent = [d for d in notes if d["outcome"] == "sent"]
    cancelled = [d for d in notes if d["outcome"] == "cancelled"]
    assert len(sent) >= 50 and len(cancelled) >= 10
    for note in sent:
        first, *later = orders[note["customer_id"]]
        assert note["time"] >= first + timedelta(days=30)
        assert not [t for t in later if t <= note["time"]], note  # no second order before it
    for note in cancelled:
        first, *later = orders[note["customer_id"]]
        assert any(t <= note["time"] for t in later), note  # cancelled because they came back


def test_double11_afternoon_leaves_out_who_ordered_that_morning(season):
    orders = _orders(SEASON)
    pushed = {d["customer_id"] for d in season.decisions if d["rule_id"] == "double11-afternoon"}
    ordered_on_11_11 = {c for c, ts in orders.items()
                        if any(t.date() == datetime(2026, 11, 11).date() for t in ts)}
    assert pushed and ordered_on_11_11
    assert pushed & ordered_on_11_11 == set()
