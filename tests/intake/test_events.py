"""The canonical event: what the engine accepts, and why it rejects a line.

Required: id, type, time, customer.id, and order.id for order.* types; everything
else is optional. A time without an offset is in the shop's time zone; all times are
stored in UTC."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.errors import EventError
from engine.intake.events import parse_event, parse_line
from engine.rules.fields import STANDARD_TYPES

SHANGHAI = ZoneInfo("Asia/Shanghai")


def paid(**changes) -> dict:
    """A valid order.paid event; a change to ... removes the key."""
    raw = {"id": "evt-1001", "type": "order.paid", "time": "2026-11-11T00:00:05+08:00",
           "customer": {"id": "c-42", "name": "王小明", "phone": "13800000000", "email": "x@example.com",
                        "birthday": "1990-05-01", "tags": ["vip"]},
           "order": {"id": "o-9", "amount": 199.0,
                     "items": [{"sku": "SB-01", "name": "羽绒睡袋", "category": "outdoor", "qty": 1, "price": 199.0}]},
           "data": {}}
    for key, value in changes.items():
        if value is ...:
            del raw[key]
        else:
            raw[key] = value
    return raw


def test_the_brief_example_event_parses():
    event = parse_event(paid(), SHANGHAI)

    assert (event.id, event.type, event.customer_id, event.order_id) == ("evt-1001", "order.paid", "c-42", "o-9")
    assert event.time == datetime(2026, 11, 10, 16, 0, 5, tzinfo=timezone.utc)
    assert event.customer["name"] == "王小明"
    assert event.order["items"][0]["name"] == "羽绒睡袋"


ISO_EXAMPLE = "2026-11-11T00:00:05+08:00"

MALFORMED = [
    pytest.param(paid(id=...), "id", "is required (a non-empty string)", id="missing-id"),
    pytest.param(paid(id=""), "id", "is required (a non-empty string)", id="empty-id"),
    pytest.param(paid(id=None), "id", "is required (a non-empty string)", id="null-id"),
    pytest.param(paid(type=...), "type", "is required (a string such as order.paid)", id="missing-type"),
    pytest.param(paid(type=5), "type", "is required (a string such as order.paid)", id="numeric-type"),
    pytest.param(paid(time=...), "time", f"is required (ISO 8601, such as {ISO_EXAMPLE})", id="missing-time"),
    pytest.param(paid(time="11/11/2026 10:00"), "time",
                 f"'11/11/2026 10:00' is not an ISO 8601 time (like {ISO_EXAMPLE})", id="bad-time"),
    pytest.param(paid(time="2026-11-31T10:00"), "time",
                 f"'2026-11-31T10:00' is not an ISO 8601 time (like {ISO_EXAMPLE})", id="no-such-day"),
    pytest.param(paid(time=1762790405), "time", f"must be an ISO 8601 time such as {ISO_EXAMPLE}",
                 id="epoch-number"),
    pytest.param(paid(customer=...), "customer", "is required (an object with at least an id)", id="missing-customer"),
    pytest.param(paid(customer="c-42"), "customer", "is required (an object with at least an id)",
                 id="customer-is-text"),
    pytest.param(paid(customer={"name": "王小明"}), "customer.id", "is required (a non-empty string)",
                 id="missing-customer-id"),
    pytest.param(paid(order=...), "order", "is required for order.* events (an object with an id)",
                 id="order-event-without-order"),
    pytest.param(paid(order={"amount": 199.0}), "order.id", "is required (a non-empty string)",
                 id="order-without-id"),
    pytest.param(paid(order={"id": "o-9", "amount": "199"}), "order.amount", "must be a number",
                 id="amount-is-text"),
    pytest.param(paid(order={"id": "o-9", "amount": True}), "order.amount", "must be a number",
                 id="amount-is-boolean"),
    pytest.param(paid(order={"id": "o-9", "items": {"sku": "SB-01"}}), "order.items", "must be a list of objects",
                 id="items-not-a-list"),
    pytest.param(paid(customer={"id": "c-42", "birthday": "1990-13-01"}), "customer.birthday",
                 "'1990-13-01' is not a date like 1990-05-01", id="bad-birthday"),
    pytest.param(paid(customer={"id": "c-42", "birthday": "5月1日"}), "customer.birthday",
                 "'5月1日' is not a date like 1990-05-01", id="birthday-in-words"),
    pytest.param(paid(customer={"id": "c-42", "timezone": "Asia/Shangai"}), "customer.timezone",
                 "'Asia/Shangai' is not an IANA time zone like Asia/Shanghai", id="bad-timezone"),
    pytest.param(paid(customer={"id": "c-42", "timezone": "../../etc/passwd"}), "customer.timezone",
                 "'../../etc/passwd' is not an IANA time zone like Asia/Shanghai", id="timezone-path"),
    pytest.param(paid(customer={"id": "c-42", "tags": "vip"}), "customer.tags", "must be a list of strings",
                 id="tags-not-a-list"),
    pytest.param(paid(customer={"id": "c-42", "name": ["王", "小明"]}), "customer.name", "must be a string",
                 id="name-not-text"),
    pytest.param(paid(data=["carrier"]), "data", "must be an object", id="data-not-an-object"),
    pytest.param(["evt-1001", "order.paid"], None, "an event must be a JSON object", id="not-an-object"),
]


@pytest.mark.parametrize(("raw", "field", "reason"), MALFORMED)
def test_a_malformed_event_is_rejected_with_field_and_reason(raw, field, reason):
    with pytest.raises(EventError) as caught:
        parse_event(raw, SHANGHAI)

    assert (caught.value.field, caught.value.reason) == (field, reason)
    assert str(caught.value) == (f"{field}: {reason}" if field else reason)


@pytest.mark.parametrize(("line", "reason"), [
    ('{"id": "evt-1", "type": "order.paid",', "not valid JSON: Expecting property name enclosed in double quotes "
                                              "at column 38"),
    ("order.paid evt-1", "not valid JSON: Expecting value at column 1"),
    ("", "not valid JSON: Expecting value at column 1"),
    ('"evt-1"', "an event must be a JSON object"),
], ids=["cut-off", "not-json", "empty-line", "json-text"])
def test_a_line_that_is_not_a_json_object_is_rejected(line, reason):
    with pytest.raises(EventError) as caught:
        parse_line(line, SHANGHAI)

    assert (caught.value.field, caught.value.reason) == (None, reason)


def test_a_valid_line_parses_like_the_object():
    assert parse_line(json.dumps(paid(), ensure_ascii=False), SHANGHAI) == parse_event(paid(), SHANGHAI)


@pytest.mark.parametrize(("tz", "written", "utc"), [
    ("Asia/Shanghai", "2026-11-11T10:00", datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)),
    ("Asia/Shanghai", "2026-11-11T10:00:00", datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)),
    ("Asia/Shanghai", "2026-11-11 00:00:05", datetime(2026, 11, 10, 16, 0, 5, tzinfo=timezone.utc)),
    ("Asia/Shanghai", "2026-11-11", datetime(2026, 11, 10, 16, 0, tzinfo=timezone.utc)),
    ("Asia/Shanghai", "2026-11-11T10:00:00+08:00", datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)),
    ("Asia/Shanghai", "2026-11-11T10:00:00-05:00", datetime(2026, 11, 11, 15, 0, tzinfo=timezone.utc)),
    ("Asia/Shanghai", "2026-11-11T02:00:00Z", datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)),
    ("Asia/Shanghai", " 2026-11-11T10:00 ", datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)),
    ("America/New_York", "2026-11-11T10:00", datetime(2026, 11, 11, 15, 0, tzinfo=timezone.utc)),
    ("America/New_York", "2026-07-01T10:00", datetime(2026, 7, 1, 14, 0, tzinfo=timezone.utc)),
    ("Europe/London", "2026-11-11T10:00+08:00", datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)),
], ids=["naive-is-shop-time", "naive-with-seconds", "space-separator", "date-only-is-shop-midnight",
        "shanghai-offset", "offset-converted", "zulu", "surrounding-spaces", "new-york-winter",
        "new-york-summer-dst", "offset-wins-over-shop-zone"])
def test_event_times_are_stored_in_utc(tz, written, utc):
    event = parse_event(paid(time=written), ZoneInfo(tz))

    assert event.time == utc
    assert event.time.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(("raw", "ids"), [
    (paid(id=1001), ("1001", "c-42", "o-9")),
    (paid(customer={"id": 42}), ("evt-1001", "42", "o-9")),
    (paid(order={"id": 9}), ("evt-1001", "c-42", "9")),
], ids=["event-id", "customer-id", "order-id"])
def test_integer_ids_are_turned_into_text(raw, ids):
    event = parse_event(raw, SHANGHAI)

    assert (event.id, event.customer_id, event.order_id) == ids


def test_a_customer_event_needs_no_order():
    event = parse_event({"id": "evt-7", "type": "customer.updated", "time": "2026-11-11T10:00",
                         "customer": {"id": "c-42", "phone": "13900000000"}}, SHANGHAI)

    assert event.order is None
    assert event.order_id is None
    assert event.customer == {"id": "c-42", "phone": "13900000000"}


def test_a_coupon_event_may_carry_an_order_it_does_not_need():
    event = parse_event({"id": "evt-8", "type": "coupon.used", "time": "2026-11-11T10:00",
                         "customer": {"id": "c-42"}, "order": {"id": "o-9"},
                         "data": {"coupon_id": "cp-1"}}, SHANGHAI)

    assert (event.order_id, event.data) == ("o-9", {"coupon_id": "cp-1"})


def test_custom_event_types_are_allowed():
    event = parse_event({"id": "evt-9", "type": "erp.invoice_sent", "time": "2026-11-11T10:00",
                         "customer": {"id": "c-42"}}, SHANGHAI)

    assert event.type == "erp.invoice_sent"
    assert event.type not in STANDARD_TYPES


def test_only_ids_are_required_and_data_defaults_to_empty():
    event = parse_event({"id": "evt-3", "type": "order.shipped", "time": "2026-11-12T09:00",
                         "customer": {"id": "c-42"}, "order": {"id": "o-9"}}, SHANGHAI)

    assert (event.customer, event.order, event.data) == ({"id": "c-42"}, {"id": "o-9"}, {})


def test_to_json_round_trips():
    event = parse_event(paid(), SHANGHAI)

    assert parse_event(event.to_json(), SHANGHAI) == event
    assert event.to_json()["time"] == "2026-11-10T16:00:05+00:00"


def test_the_brief_lists_the_standard_event_types():
    assert STANDARD_TYPES == (
        "order.created", "order.paid", "order.shipped", "order.out_for_delivery", "order.signed",
        "order.logistics_exception", "order.completed", "order.closed", "order.reviewed",
        "order.refund_requested", "order.refunded", "customer.updated", "customer.unsubscribed",
        "coupon.issued", "coupon.used")
