"""A broadcast's `if:` translated to SQL picks the candidates in the database. The promise
that makes it safe: the SQL never drops a customer the expression would accept (and for
the fully translated conditions it selects exactly them), on SQLite and PostgreSQL, for
customers at the edges (no orders, exactly 30 / 45 / 90 days, the band thresholds)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.config.profile import ProfileConfig, Tier
from engine.errors import ExpressionError
from engine.intake.state import new_customer
from engine.rules.context import build_context
from engine.rules.templates import Templates
from engine.store import IngestWrite
from engine.store.tables import encode_money, encode_time
from engine.triggers.prefilter import customer_filter

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 11, 6, 0, tzinfo=timezone.utc)
PROFILE = ProfileConfig(tiers=[Tier("金卡会员", 2000), Tier("银卡会员", 500), Tier("普通会员")])
SEGMENTS = {"high_quality": "customer.orders >= 1 and not customer.had_bad_review",
            "lapsed_vip": "customer.spent >= 1000 and customer.days_since_last_order >= 90",
            "frequent": "customer.rfm.frequency >= 3"}

# (condition, fully translated: the SQL selects exactly the customers it holds for)
CONDITIONS = [
    ("customer.orders >= 3", True),
    ("customer.spent > 500", True),
    # amounts as written and compared exactly to the cent (engine.money), on both databases
    ("customer.spent > 99.99", True),
    ("customer.spent <= 99.99", True),
    ("customer.spent >= 99.995", True),
    ("customer.spent < 999.991", True),
    ("customer.spent == 999.99", True),
    ("customer.spent == 100.001", True),  # never: no amount is between two cents
    ("1 <= customer.orders", True),
    ("customer.days_since_last_order >= 90", True),
    ("customer.days_since_last_order < 30", True),
    ("customer.days_since_last_order == 45", True),
    ("customer.days_since_last_order > 45", True),
    ("customer.days_since_last_order <= 45", True),
    ("customer.rfm.frequency >= 3", True),
    ("customer.rfm.frequency != 1", True),
    ("customer.rfm.monetary == 2", True),
    ("customer.rfm.monetary < 3", True),
    ("not customer.orders >= 2", True),
    ("customer.orders >= 2 or customer.spent >= 3000", True),
    ("segment('lapsed_vip')", True),
    ("segment('frequent') and not customer.days_since_last_order < 1", True),
    ("customer.orders >= 1 and not customer.had_bad_review", False),  # half of it known
    ("customer.orders >= 2 or 'vip' in customer.tags", False),  # unknown: every customer
    ("customer.tier == '金卡会员'", False),
    ("not (customer.orders >= 1 and 'vip' in customer.tags)", False),
]


@pytest.fixture
def customers(store):
    rng = random.Random(11)
    rows = []
    for i in range(80):
        row = {**new_customer(f"c-{i:02d}"), "first_seen_at": NOW, "updated_at": NOW}
        orders = rng.choice([0, 0, 1, 2, 3, 4, 5, 9, 10, 12])
        days = rng.choice([0, 0.5, 1, 29, 30, 30.01, 44.99, 45, 45.5, 46, 89.9, 90, 120, 400])
        row.update(order_count=orders if orders or rng.random() < 0.5 else None,
                   spent=rng.choice([0, 99.99, 100, 500, 999.99, 1000, 2999, 3000, 5000]) if orders else None,
                   last_order_at=NOW - timedelta(days=days) if orders or rng.random() < 0.3 else None,
                   stats={"had_bad_review": rng.random() < 0.3, "skus": [], "categories": [], "coupons": {}},
                   tags=["vip"] if rng.random() < 0.2 else [])
        rows.append(row)
    store.write_ingest(IngestWrite(customers=rows))
    return store.customers_by_id([r["id"] for r in rows])


def python_says(templates: Templates, condition: str, customer: dict) -> bool:
    context = build_context(customer, None, {"id": None, "type": "sweep.date", "time": NOW}, {}, {}, NOW, SHANGHAI,
                            PROFILE)
    try:
        return bool(templates.compile_expression(condition)(context))
    except ExpressionError:  # e.g. days since the last order of a customer who never ordered
        return False


@pytest.mark.parametrize("condition, exact", CONDITIONS, ids=[c for c, _ in CONDITIONS])
def test_the_sql_keeps_every_customer_the_condition_accepts(store, customers, condition, exact):
    templates = Templates(None, SHANGHAI)
    templates.define_segments(SEGMENTS)
    accepted = {cid for cid, c in customers.items() if python_says(templates, condition, c)}

    where = customer_filter([condition], templates.parse_expression, PROFILE, SEGMENTS, NOW,
                            lambda t: encode_time(t, store.dialect), lambda a: encode_money(a, store.dialect))
    selected = {c["id"] for page in store.customer_pages(size=7, where=where.sql if where else None,
                                                         params=where.params if where else ())
                for c in page}

    assert accepted <= selected, f"the SQL dropped {sorted(accepted - selected)}"
    if exact:
        assert selected == accepted
    if condition.startswith("customer.orders >= 2 or 'vip'"):
        assert where is None and len(selected) == len(customers)  # nothing known: everyone, page by page
    if exact or "had_bad_review" in condition:
        assert len(selected) < len(customers)  # the database did pick


def test_a_broadcast_sweep_reads_only_the_candidates_from_the_database(store, customers, monkeypatch):
    """The 11-11 broadcast to frequent customers asks the store for those customers only."""
    from engine.rules.loader import load_rules  # noqa: PLC0415
    from engine.triggers.sweeps import Sweeper  # noqa: PLC0415

    seen = []
    pages = store.customer_pages

    def spy(size=2000, where=None, params=()):
        for page in pages(size=size, where=where, params=params):
            seen.extend(c["id"] for c in page)
            yield page

    monkeypatch.setattr(store, "customer_pages", spy)
    rules = load_broadcast(load_rules, "customer.rfm.frequency >= 3 and not customer.ordered_today")
    sweeper = Sweeper(store, lambda: rules, SHANGHAI, {}, PROFILE, segments=lambda: SEGMENTS)
    store.write_sweep("d11", NOW - timedelta(hours=1), NOW, [], [], 0.0)

    report = sweeper.run(NOW)

    frequent = {cid for cid, c in customers.items() if (c["order_count"] or 0) >= 3}
    assert set(seen) == frequent  # read: only the customers with 3 orders or more
    today = {cid for cid in frequent if customers[cid]["last_order_at"].astimezone(SHANGHAI).date()
             == (NOW + timedelta(hours=1)).astimezone(SHANGHAI).date()}
    assert report.enqueued["d11"] == len(frequent - today) > 0


def load_broadcast(load_rules, condition: str):
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    folder = Path(tempfile.mkdtemp())
    (folder / "rules").mkdir()
    (folder / "templates").mkdir()
    (folder / "templates" / "p.j2").write_text("双11下午场", encoding="utf-8")
    moment = (NOW + timedelta(minutes=30)).astimezone(SHANGHAI)
    (folder / "rules" / "r.yaml").write_text(
        "rules:\n  - id: d11\n"
        f"    when: {{date: \"{moment:%m-%d}\", at: \"{moment:%H:%M}\"}}\n"
        f"    if: \"{condition}\"\n    channel: sms\n    template: p.j2\n", encoding="utf-8")
    rules = load_rules(folder / "rules", Templates(folder / "templates", SHANGHAI), ["sms"])
    assert rules.errors == [], rules.errors
    return rules
