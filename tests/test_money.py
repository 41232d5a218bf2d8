"""Money is exact from intake to the template (engine/money.py): amounts are decimals to
the cent, compare and compute with the numbers a marketer writes as written, are stored
exactly on both databases, and are shown in the shop's currency."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from engine.intake.state import new_customer, new_order
from engine.money import Money, format_money, to_money
from engine.rules.context import build_context
from engine.rules.templates import Templates
from engine.store import IngestWrite, Store
from tests.helpers import T0, created, event
from tests.intake.test_profile import evaluate, ingest, paid


def test_amounts_as_written_compare_and_compute_exactly():
    amount = to_money(19.99)
    assert isinstance(amount, Money) and str(amount) == "19.99"
    # Decimal alone says Decimal('19.99') > 19.99 (the float just below it): a marketer's 19.99 is 19.99
    assert Decimal("19.99") > 19.99
    assert not amount > 19.99 and amount >= 19.99 and amount == 19.99 and amount <= 19.99
    assert amount * 0.9 == Decimal("17.991") and isinstance(amount * 0.9, Money)
    assert 100 - amount == Decimal("80.01") and amount / 2 > 9.99
    assert to_money(477.39) + to_money(321.94) + to_money(200.67) == 1000  # as floats: 999.9999999999999
    assert to_money(2.675) == Decimal("2.68")  # half up (the float 2.675 is 2.67499999...)
    assert to_money(None) is None
    with pytest.raises(ValueError, match="not an amount"):
        to_money("abc")


def test_the_money_filter_rounds_half_up_in_the_shops_currency():
    assert format_money(2.675, "¥") == "¥2.68"
    assert format_money(Decimal("1299.5"), "US$") == "US$1,299.50"
    assert format_money(to_money(19.99) * 0.9, "¥") == "¥17.99"
    templates = Templates(None, T0.tzinfo, {"currency_symbol": "£"})
    order = {"id": "o-1", "amount": to_money(19.99), "items": [], "attrs": {}}
    context = build_context({"id": "c-1"}, order, {"id": "e-1", "type": "order.paid", "time": T0}, {}, {}, T0,
                            T0.tzinfo)
    assert templates.compile_expression("order.amount > 19.99")(context) is False
    assert templates.compile_expression("(order.amount * 0.9) | money")(context) == "£17.99"
    assert templates.compile_expression("order.amount ~ ''")(context) == "19.99"


def test_a_customers_spend_is_exact_to_the_cent(engine):
    """Three orders of £477.39, £321.94 and £200.67 are £1,000.00 spent, not 999.9999999999999."""
    for i, amount in enumerate((477.39, 321.94, 200.67)):
        ingest(engine, created(f"c{i}", 10 * i, order=f"o-{i}", amount=amount), paid(f"p{i}", 10 * i + 1, f"o-{i}"))
    now = T0 + timedelta(days=1)

    spent = evaluate(engine, "c-1", "customer.spent", now)
    assert spent == Decimal("1000.00") and isinstance(spent, Money)
    assert evaluate(engine, "c-1", "customer.spent >= 1000", now) is True
    assert evaluate(engine, "c-1", "customer.aov", now) == Decimal("333.33")
    ingest(engine, event("r0", "order.refunded", 100, "c-1", "o-0"))
    assert evaluate(engine, "c-1", "customer.spent", now + timedelta(hours=2)) == Decimal("522.61")


@pytest.mark.parametrize("amount", [0.01, 19.99, 0.1 + 0.2, 1234567.89, 10 ** 15, -5.5])
def test_amounts_are_stored_and_read_back_exactly(db_url, amount):
    store = Store(db_url)
    try:
        order = {**new_order("o-1", "c-1"), "status": "paid", "amount": to_money(amount), "first_event_at": T0,
                 "updated_at": T0}
        customer = {**new_customer("c-1"), "spent": to_money(amount), "order_count": 1, "first_seen_at": T0,
                    "updated_at": T0}
        store.write_ingest(IngestWrite(customers=[customer], orders=[order]))
        read_order = store.orders_by_id(["o-1"])["o-1"]
        read_customer = store.customers_by_id(["c-1"])["c-1"]
        typed = store.rows("orders")[0]
    finally:
        store.close()
    expected = to_money(amount)
    for value in (read_order["amount"], read_customer["spent"], typed["amount"]):
        assert isinstance(value, Money) and value == expected and str(value) == str(expected)
