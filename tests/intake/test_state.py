"""How events change the stored customer and order (pure functions, no database).

An order's status is its latest lifecycle stage and never moves backwards when events
arrive out of order, but every stage keeps the time it happened. A customer's profile
is merged from every event; later events may carry only the id."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.intake.events import parse_event
from engine.intake.state import STAGES, apply_customer, apply_order, new_customer, new_order
from tests.helpers import created, event

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def order_after(*raws: dict) -> dict:
    order = new_order("o-1", "c-1")
    for raw in raws:
        apply_order(order, parse_event(raw, SHANGHAI))
    return order


def customer_after(*raws: dict) -> dict:
    customer = new_customer("c-1")
    for raw in raws:
        apply_customer(customer, parse_event(raw, SHANGHAI))
    return customer


# helpers.T0 is 2026-11-11 10:00 in Shanghai = 02:00 UTC; `minutes` count from there.
CREATED = created("e-created", 0)
PAID = event("e-paid", "order.paid", 5)
SHIPPED = event("e-shipped", "order.shipped", 360, data={"carrier": "顺丰速运", "tracking_no": "SF1"})
OUT = event("e-out", "order.out_for_delivery", 2820)
SIGNED = event("e-signed", "order.signed", 3180)
COMPLETED = event("e-completed", "order.completed", 10080)
REFUND_REQUESTED = event("e-refund-req", "order.refund_requested", 4000)
REFUNDED = event("e-refunded", "order.refunded", 5000)
CLOSED = event("e-closed", "order.closed", 1440)


@pytest.mark.parametrize(("arrivals", "status"), [
    ([CREATED], "created"),
    ([CREATED, PAID], "paid"),
    ([CREATED, PAID, SHIPPED, OUT, SIGNED], "signed"),
    ([CREATED, PAID, SIGNED, SHIPPED], "signed"),
    ([SIGNED, OUT, SHIPPED, PAID, CREATED], "signed"),
    ([CREATED, PAID, SHIPPED, SIGNED, COMPLETED], "completed"),
    ([CREATED, PAID, COMPLETED, SIGNED], "completed"),
    ([CREATED, PAID, SHIPPED, SIGNED, REFUND_REQUESTED], "refund_requested"),
    ([CREATED, PAID, REFUND_REQUESTED, REFUNDED, SIGNED], "refunded"),
    ([CREATED, CLOSED], "closed"),
    ([CREATED, CLOSED, PAID], "closed"),
    ([PAID], "paid"),
], ids=["created", "paid", "in-order", "shipped-after-signed", "all-reversed", "completed",
        "signed-after-completed", "refund-requested", "signed-after-refunded", "closed-unpaid",
        "paid-after-closed", "paid-without-created"])
def test_order_status_is_the_latest_stage_and_never_moves_backwards(arrivals, status):
    assert order_after(*arrivals)["status"] == status


def test_a_late_shipped_event_still_records_when_it_shipped():
    order = order_after(CREATED, PAID, SIGNED, SHIPPED)

    assert order["status"] == "signed"
    assert order["shipped_at"] == utc(11, 8)
    assert order["signed_at"] == utc(13, 7)


def test_every_stage_keeps_its_own_time():
    order = order_after(CREATED, PAID, SHIPPED, OUT, SIGNED, COMPLETED)

    assert {stage: order[f"{stage}_at"] for stage in STAGES} == {
        "created": utc(11, 2), "paid": utc(11, 2, 5), "shipped": utc(11, 8), "out_for_delivery": utc(13, 1),
        "signed": utc(13, 7), "completed": utc(18, 2), "refund_requested": None, "refunded": None, "closed": None}


def test_a_replayed_stage_keeps_the_earliest_time():
    second_paid = event("e-paid-again", "order.paid", 65)

    assert order_after(CREATED, second_paid, PAID)["paid_at"] == utc(11, 2, 5)
    assert order_after(CREATED, PAID, second_paid)["paid_at"] == utc(11, 2, 5)


def test_order_first_event_time_is_the_earliest_seen():
    order = order_after(SHIPPED, CREATED, PAID)

    assert order["first_event_at"] == utc(11, 2)
    assert order["updated_at"] == utc(11, 8)


def test_order_amount_and_items_come_from_the_events():
    order = order_after(CREATED, PAID)

    assert order["amount"] == 199.0
    assert order["items"] == [{"sku": "SB-01", "name": "羽绒睡袋", "qty": 1, "price": 199.0}]


def test_an_older_event_does_not_overwrite_a_newer_amount_but_fills_gaps():
    repriced = event("e-paid", "order.paid", 5)
    repriced["order"]["amount"] = 149.0
    old = created("e-created", 0, amount=199.0)

    order = order_after(repriced, old)

    assert order["amount"] == 149.0
    assert order["items"][0]["name"] == "羽绒睡袋"


def test_other_order_fields_are_kept_as_attributes():
    raw = event("e-paid", "order.paid", 5)
    raw["order"].update({"platform": "tmall", "coupon_id": "cp-1"})

    assert order_after(CREATED, raw)["attrs"] == {"platform": "tmall", "coupon_id": "cp-1"}


@pytest.mark.parametrize("rating", ["good", "neutral", "bad"])
def test_a_reviewed_event_records_the_rating(rating):
    reviewed = event("e-review", "order.reviewed", 7800, data={"rating": rating, "text": "很暖和"})

    order = order_after(CREATED, PAID, SHIPPED, SIGNED, reviewed)

    assert order["attrs"]["rating"] == rating
    assert order["attrs"]["reviewed_at"] == "2026-11-16T12:00:00+00:00"
    assert order["status"] == "signed"


@pytest.mark.parametrize("etype", ["order.reviewed", "order.logistics_exception"])
def test_events_that_are_not_stages_do_not_change_the_status(etype):
    assert order_after(CREATED, PAID, event("e-x", etype, 600, data={"rating": "good"}))["status"] == "paid"


# Customers -------------------------------------------------------------------------------

def test_a_later_event_with_only_the_id_keeps_the_profile():
    customer = customer_after(created("e-created", 0), event("e-paid", "order.paid", 5))

    assert (customer["name"], customer["phone"]) == ("王小明", "13800000000")
    assert customer["updated_at"] == utc(11, 2, 5)


def test_a_newer_event_updates_the_profile():
    customer = customer_after(created("e-created", 0), event("e-upd", "customer.updated", 60, order=None,
                                                             phone="13900000000"))

    assert (customer["name"], customer["phone"]) == ("王小明", "13900000000")


def test_an_older_replayed_event_does_not_overwrite_a_newer_phone_but_fills_gaps():
    newer = event("e-upd", "customer.updated", 60, order=None, phone="13900000000")
    older = event("e-old", "order.created", 0, name="王小明", phone="13800000000", email="x@example.com")

    customer = customer_after(newer, older)

    assert customer["phone"] == "13900000000"
    assert (customer["name"], customer["email"]) == ("王小明", "x@example.com")
    assert customer["updated_at"] == utc(11, 3)
    assert customer["first_seen_at"] == utc(11, 2)


def test_tags_are_replaced_by_a_newer_list_and_other_fields_kept_as_attributes():
    customer = customer_after(
        event("e-1", "customer.updated", 0, order=None, tags=["vip"], level="gold"),
        event("e-2", "customer.updated", 10, order=None, tags=["vip", "outdoor"]),
    )

    assert customer["tags"] == ["vip", "outdoor"]
    assert customer["attrs"] == {"level": "gold"}


def test_birthday_and_timezone_are_profile_fields():
    customer = customer_after(event("e-1", "customer.updated", 0, order=None, birthday="1990-05-01",
                                    timezone="Europe/London"))

    assert (customer["birthday"], customer["timezone"]) == ("1990-05-01", "Europe/London")


@pytest.mark.parametrize("field", ["name", "phone"])
def test_an_empty_value_does_not_erase_a_known_one(field):
    blank = event("e-upd", "customer.updated", 60, order=None, **{field: ""})

    customer = customer_after(created("e-created", 0), blank)

    assert customer[field] == {"name": "王小明", "phone": "13800000000"}[field]
