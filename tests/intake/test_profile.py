"""The customer profile kept from events, as the store keeps it and as rules read it:
order totals and times, purchases (cross-sell in one condition), reviews, coupons,
member tier and RFM scores from config.yaml. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.config.loader import load_config
from engine.config.profile import ProfileConfig, Tier
from engine.errors import ConfigError
from engine.intake.events import parse_event
from engine.intake.profile import birthday_md
from engine.rules.context import build_context
from engine.rules.templates import Templates
from engine.store import Store
from engine.store.tables import customers
from tests.helpers import T0, created, event

UTC = timezone.utc


def ingest(engine, *events: dict) -> None:
    tz = engine.project.config.timezone
    engine.ingest([parse_event(e, tz) for e in events])


def paid(eid: str, minutes: float, order: str, customer: str = "c-1") -> dict:
    return event(eid, "order.paid", minutes, customer, order)


def order_with(eid: str, minutes: float, order: str, amount: float, *items: tuple[str, str]) -> dict:
    ev = created(eid, minutes, order=order, amount=amount)
    ev["order"]["items"] = [{"sku": sku, "name": sku, "category": cat, "qty": 1, "price": amount} for sku, cat in items]
    return ev


def evaluate(engine, customer_id: str, source: str, now: datetime, profile: ProfileConfig | None = None,
             order_id: str | None = None):
    customer = engine.store.customers_by_id([customer_id])[customer_id]
    order = engine.store.orders_by_id([order_id])[order_id] if order_id else None
    context = build_context(customer, order, {"id": "x", "type": "test", "time": now}, {}, {}, now,
                            engine.project.config.timezone, profile or engine.project.config.profile)
    return Templates(None, engine.project.config.timezone).compile_expression(source)(context)


def test_the_store_keeps_order_totals_and_times_from_the_events(engine):
    ingest(engine,
           order_with("e1", 0, "o-1", 199.0, ("SB-01", "outdoor")),
           paid("e2", 5, "o-1"),
           order_with("e3", 60 * 24 * 10, "o-2", 59.0, ("MUG-1", "kitchen")),  # never paid: closed
           event("e4", "order.closed", 60 * 24 * 11, order="o-2"),
           order_with("e5", 60 * 24 * 20, "o-3", 399.0, ("TENT-2", "outdoor")),
           paid("e6", 60 * 24 * 20 + 3, "o-3"),
           event("e7", "order.refunded", 60 * 24 * 30, order="o-3"))

    customer = engine.store.customers_by_id(["c-1"])["c-1"]

    assert (customer["order_count"], customer["spent"]) == (2, 199.0)  # o-3 refunded: not spent
    assert customer["first_order_at"] == T0.astimezone(UTC)
    assert customer["last_order_at"] == (T0 + timedelta(days=20)).astimezone(UTC)  # any order counts, paid or not
    assert customer["stats"]["skus"] == ["SB-01", "TENT-2"]  # bought = paid; the unpaid mug is not
    assert customer["stats"]["categories"] == ["outdoor"]


def test_an_order_time_is_its_earliest_event_whatever_arrives_first(engine):
    ingest(engine, paid("e2", 5, "o-1"))
    ingest(engine, order_with("e1", 0, "o-1", 199.0, ("SB-01", "outdoor")))

    customer = engine.store.customers_by_id(["c-1"])["c-1"]

    assert customer["last_order_at"] == T0.astimezone(UTC)
    assert (customer["order_count"], customer["spent"]) == (1, 199.0)  # the amount came after the payment


def test_reviews_and_coupons_are_kept(engine):
    ingest(engine,
           created("e1", 0), paid("e2", 5, "o-1"),
           event("e3", "order.reviewed", 60 * 24 * 5, data={"rating": "bad", "text": "拉链坏了"}),
           event("e4", "order.reviewed", 60 * 24 * 6, data={"rating": "good"}),
           event("e5", "coupon.issued", 60 * 24 * 7, order=None, data={"coupon_id": "CP-11", "expires_at": "2026-11-30"}),
           event("e6", "coupon.issued", 60 * 24 * 7, order=None, data={"coupon_id": "CP-12"}),
           event("e7", "coupon.used", 60 * 24 * 8, order=None, data={"coupon_id": "CP-11"}))
    now = T0 + timedelta(days=9)

    assert evaluate(engine, "c-1", "customer.had_bad_review", now) is True  # once bad, always noted
    assert evaluate(engine, "c-1", "customer.last_rating", now) == "good"
    assert evaluate(engine, "c-1", "customer.coupon_used('CP-11')", now) is True
    assert evaluate(engine, "c-1", "customer.coupon_used('CP-12')", now) is False
    assert evaluate(engine, "c-1", "customer.has_coupon('CP-12')", now) is True
    assert evaluate(engine, "c-1", "customer.coupons['CP-11'].expires_at", now) == "2026-11-30"


CROSS_SELL = "customer.bought('SB-01') and not customer.bought('TENT-2')"


@pytest.mark.parametrize("skus, expected", [
    ((("SB-01", "outdoor"),), True),
    ((("SB-01", "outdoor"), ("TENT-2", "outdoor")), False),
    ((("MUG-1", "kitchen"),), False),
], ids=["bought-A-only", "bought-A-and-B", "bought-neither"])
def test_cross_sell_is_one_readable_condition(engine, skus, expected):
    ingest(engine, order_with("e1", 0, "o-1", 199.0, *skus), paid("e2", 5, "o-1"))

    assert evaluate(engine, "c-1", CROSS_SELL, T0 + timedelta(days=1)) is expected
    assert evaluate(engine, "c-1", "customer.bought_category('outdoor')", T0) is (skus[0][1] == "outdoor")


def test_days_since_last_order_tier_rfm_and_average_order_value(engine):
    ingest(engine, *[e for i in range(3) for e in (order_with(f"c{i}", i * 60 * 24, f"o-{i}", 400.0, ("SB-01", "x")),
                                                    paid(f"p{i}", i * 60 * 24 + 1, f"o-{i}"))])
    now = T0 + timedelta(days=2 + 45, hours=1)  # 45 days after the last order
    profile = ProfileConfig(tiers=[Tier("金卡", 2000), Tier("银卡", 1000, 3), Tier("会员")])

    assert evaluate(engine, "c-1", "customer.days_since_last_order", now) == 45
    assert evaluate(engine, "c-1", "customer.orders", now) == 3
    assert evaluate(engine, "c-1", "customer.aov", now) == 400.0
    assert evaluate(engine, "c-1", "customer.tier", now, profile) == "银卡"  # 1,200 spent in 3 orders
    assert evaluate(engine, "c-1", "[customer.rfm.recency, customer.rfm.frequency, customer.rfm.monetary]",
                    now) == [4, 3, 4]  # 45 days: 31-90; 3 orders: >=3; 1,200: >=1,000


@pytest.mark.parametrize("order, expected", [
    ("o-0", ("银卡", "会员")),   # 400 + 300 = 700: this order moved the customer up
    ("o-1", ("银卡", "银卡")),   # 400 + 300 + 900 = 1,600: already 银卡 before it
    ("o-2", ("金卡", "银卡")),   # 2,100: up again
    ("o-3", ("金卡", "金卡")),   # never paid: it moves nothing
], ids=["first-upgrade", "no-change", "second-upgrade", "unpaid-order"])
def test_tier_before_an_order_tells_a_tier_upgrade(engine, order, expected):
    ingest(engine, order_with("c0", 0, "o-pre", 400.0, ("SB-01", "x")), paid("p0", 1, "o-pre"),
           order_with("c1", 60, "o-0", 300.0, ("SB-01", "x")), paid("p1", 61, "o-0"),
           order_with("c2", 120, "o-1", 900.0, ("SB-01", "x")), paid("p2", 121, "o-1"),
           order_with("c3", 180, "o-2", 500.0, ("SB-01", "x")), paid("p3", 181, "o-2"),
           order_with("c4", 240, "o-3", 999.0, ("SB-01", "x")))
    profile = ProfileConfig(tiers=[Tier("金卡", 2000), Tier("银卡", 500), Tier("会员")])
    # as the rule `when: order.paid` sees it right after that order's payment: the totals
    # of the orders paid up to and including it
    upto = {"o-0": (2, 700.0), "o-1": (3, 1600.0), "o-2": (4, 2100.0), "o-3": (4, 2100.0)}[order]
    with engine.store.engine.begin() as conn:
        # through the table's types: an amount is stored as cents on SQLite, a decimal on PostgreSQL
        conn.execute(customers.update().where(customers.c.id == "c-1").values(order_count=upto[0], spent=upto[1]))

    got = evaluate(engine, "c-1", "[customer.tier, customer.tier_before(order)]", T0 + timedelta(days=1),
                   profile, order_id=order)

    assert tuple(got) == expected


@pytest.mark.parametrize("hours_later, expected", [(3, True), (13, True), (15, False), (24 * 3, False)],
                         ids=["same-afternoon", "23:00-same-day", "after-midnight", "three-days-later"])
def test_ordered_today_is_the_shop_calendar_day(engine, hours_later, expected):
    ingest(engine, created("e1", 0))  # T0 is 10:00 in Shanghai: midnight is 14 hours later

    assert evaluate(engine, "c-1", "customer.ordered_today", T0 + timedelta(hours=hours_later)) is expected


def test_spend_is_kept_to_the_cent_so_exactly_the_threshold_reaches_the_tier(engine):
    # as floats, 477.39 + 321.94 + 200.67 = 999.9999999999999: never 金卡 at 1,000
    amounts = (477.39, 321.94, 200.67)
    ingest(engine, *[e for i, amount in enumerate(amounts)
                     for e in (order_with(f"c{i}", i * 60, f"o-{i}", amount, ("SB-01", "x")),
                               paid(f"p{i}", i * 60 + 1, f"o-{i}"))])
    profile = ProfileConfig(tiers=[Tier("金卡", 1000), Tier("会员")])

    assert evaluate(engine, "c-1", "customer.spent", T0 + timedelta(days=1)) == 1000.0
    assert evaluate(engine, "c-1", "customer.tier", T0 + timedelta(days=1), profile) == "金卡"
    assert evaluate(engine, "c-1", "customer.tier_before(order)", T0 + timedelta(days=1), profile,
                    order_id="o-2") == "会员"


def test_tier_before_a_refunded_order_tells_a_tier_drop(engine):
    ingest(engine, order_with("c1", 0, "o-1", 1800.0, ("TN-02", "x")), paid("p1", 1, "o-1"),
           order_with("c2", 60, "o-2", 200.0, ("SB-01", "x")), paid("p2", 61, "o-2"),
           event("r2", "order.refunded", 600, order="o-2"))
    profile = ProfileConfig(tiers=[Tier("金卡", 2000), Tier("银卡", 500), Tier("会员")])

    got = evaluate(engine, "c-1", "[customer.spent, customer.tier, customer.tier_before(order)]",
                   T0 + timedelta(days=1), profile, order_id="o-2")

    assert got == [1800.0, "银卡", "金卡"]  # the refund took them down from 金卡


def test_a_birthday_in_any_iso_form_is_kept_as_a_date_and_a_big_batch_stores(engine):
    """19900501 (a number, or basic ISO) is 1990-05-01; ten customers in one batch, so the
    bulk write takes its many-rows path on PostgreSQL with a uniform column."""
    events = [event(f"u{i}", "customer.updated", i, f"c-{i}", None, birthday="1991-02-03") for i in range(9)]
    events.append(event("u9", "customer.updated", 9, "c-9", None, birthday=19900501))
    ingest(engine, *events)

    stored = engine.store.customers_by_id(["c-9", "c-1"])
    assert stored["c-9"]["birthday"] == "1990-05-01"
    assert [c["id"] for c in engine.store.birthday_customers(["05-01"])] == ["c-9"]
    assert stored["c-1"]["birthday"] == "1991-02-03"


def test_a_customer_who_never_ordered_has_no_days_since_and_zero_scores(engine):
    ingest(engine, event("e1", "customer.updated", 0, order=None, name="李雷"))

    assert evaluate(engine, "c-1", "customer.orders", T0) == 0
    assert evaluate(engine, "c-1", "customer.days_since_last_order is defined", T0) is False
    assert evaluate(engine, "c-1", "customer.rfm.recency", T0) == 0
    assert evaluate(engine, "c-1", "customer.orders >= 1 and not customer.had_bad_review", T0) is False


@pytest.mark.parametrize("written, expected", [
    ("1990-05-01", "05-01"), ("05-01", "05-01"), ("1990-5-1", "05-01"), ("2000-02-29", "02-29"),
    ("1990-13-01", None), ("next may", None), ("", None), (None, None),
])
def test_birthday_month_day(written, expected):
    assert birthday_md(written) == expected


# ---- config.yaml: profile ------------------------------------------------------------

def write_config(tmp_path: Path, profile: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("timezone: Asia/Shanghai\nprofile:\n" + profile, encoding="utf-8")
    return path


def test_tiers_and_rfm_bands_come_from_config(tmp_path):
    config = load_config(write_config(tmp_path, "  tiers:\n    - {name: 金卡, min_spent: 2000}\n    - {name: 会员}\n"
                                                 "  rfm:\n    frequency: [2, 4, 6, 8]\n"))

    assert config.profile.tiers == [Tier("金卡", 2000.0), Tier("会员")]
    assert config.profile.frequency == (2, 4, 6, 8)
    assert config.profile.recency_days == (30, 90, 180, 365)  # the default kept


@pytest.mark.parametrize("profile, message", [
    ("  tier: []\n", "config.yaml:3: profile.tier: unknown key 'tier'; did you mean 'tiers'?"),
    ("  tiers:\n    - {min_spent: 10}\n", "config.yaml:4: profile.tiers[0]: each tier needs a name, and min_spent "
                                           "and/or min_orders"),
    ("  tiers:\n    - {name: 金卡, min_spent: lots}\n", "config.yaml:4: profile.tiers[0].min_spent: must be an amount, "
                                                        "such as 2000"),
    ("  rfm:\n    monetary: [500, 100, 1000, 3000]\n", "config.yaml:4: profile.rfm.monetary: must be four ascending "
                                                       "numbers (the limits of the five scores), such as [30, 90, 180, 365]"),
], ids=["misspelt-key", "tier-without-name", "amount-not-a-number", "bands-not-ascending"])
def test_a_broken_profile_section_is_reported_with_file_line_and_key(tmp_path, profile, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, profile))

    assert [str(p).replace(str(tmp_path) + "/", "") for p in caught.value.problems] == [message]


# ---- a database from before the profile -----------------------------------------------

def test_a_database_made_before_the_profile_columns_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    old = create_engine(f"sqlite:///{path}")
    with old.begin() as conn:
        conn.execute(text("CREATE TABLE customers (id VARCHAR(200) PRIMARY KEY, name VARCHAR(200), phone VARCHAR(50), "
                          "email VARCHAR(320), birthday VARCHAR(10), timezone VARCHAR(64), tags JSON NOT NULL, "
                          "attrs JSON NOT NULL, opted_out JSON NOT NULL, first_seen_at BIGINT, updated_at BIGINT)"))
        conn.execute(text("INSERT INTO customers VALUES ('c-1', '王小明', '13800000000', NULL, '1990-05-01', NULL, "
                          "'[]', '{}', '[]', 0, 0)"))
        conn.execute(text("ALTER TABLE customers ADD COLUMN last_order_at BIGINT"))  # as an earlier version had it
        conn.execute(text("CREATE INDEX ix_customers_last_order ON customers (last_order_at)"))
    old.dispose()

    store = Store(f"sqlite:///{path}")
    try:
        customer = store.customers_by_id(["c-1"])["c-1"]
        assert customer["name"] == "王小明"
        assert (customer["order_count"], customer["last_order_at"], customer["stats"]) == (None, None, None)
        indexes = {i["name"] for i in __import__("sqlalchemy").inspect(store.engine).get_indexes("customers")}
        assert {"ix_customers_idle", "ix_customers_birthday_day"} <= indexes  # covering: the sweeps read them alone
        assert "ix_customers_last_order" not in indexes  # replaced, not kept as a second copy
    finally:
        store.close()
