"""Sample data for `check`: each rule's template rendered as its messages would be, to find
a template that would fail every message (and, for SMS, to measure its length).

The sample is full: a customer with a name and a profile, an order at every stage with a
review, every standard field of an event's data, and a placeholder for each custom field
config.yaml declares. What fails here fails for real messages too; what a real message
may lack (a customer without a name) is for `| default(...)`, not for the sample."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.money import to_money
from engine.rules.context import build_context
from engine.rules.fields import KNOWN, STAGES, Fields
from engine.rules.templates import Scope

SAMPLE_TIME = datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)
_EARLIER = SAMPLE_TIME - timedelta(days=40)
SAMPLE_CUSTOMER = {"id": "c-1", "name": "王小明", "phone": "13800000000", "email": "buyer@example.com",
                   "birthday": "1990-05-01", "timezone": None, "tags": ["vip"], "attrs": {}, "opted_out": [],
                   "first_seen_at": _EARLIER, "updated_at": SAMPLE_TIME, "order_count": 2, "spent": to_money("798.00"),
                   "first_order_at": _EARLIER, "last_order_at": SAMPLE_TIME,
                   "stats": {"skus": ["SB-01"], "categories": ["outdoor"], "last_rating": "good",
                             "had_bad_review": False, "coupons": {"CP-11": {"issued_at": _EARLIER.isoformat()}}}}
SAMPLE_ORDER = {"id": "o-10001", "customer_id": "c-1", "status": "completed", "amount": to_money("399.00"),
                "attrs": {"rating": "good", "reviewed_at": SAMPLE_TIME.isoformat()},
                "items": [{"sku": "SB-01", "name": "羽绒睡袋", "category": "outdoor", "qty": 1, "price": 399.0}],
                "first_event_at": SAMPLE_TIME, "updated_at": SAMPLE_TIME,
                **{f"{stage}_at": SAMPLE_TIME for stage in STAGES if stage not in ("refund_requested", "refunded",
                                                                                     "closed")}}
SAMPLE_DATA = {"carrier": "顺丰速运", "tracking_no": "SF1234567890123", "rating": "good", "text": "很好用",
               "description": "包裹滞留在转运中心", "coupon_id": "CP-11", "expires_at": "2026-11-12T00:00:00+08:00",
               "name": "双11满300减50券", "channel": "sms", "reason": "尺码不合适", "amount": 399.0}
assert set(SAMPLE_DATA) == set(KNOWN["data"]), "every standard data field has a sample"


def sample_context(event_types: tuple[str, ...], label: str, fields: Fields, shop: dict, tz, profile=None) -> Scope:
    """What a message of a rule started by `event_types` sees, with placeholders for the
    declared custom fields. Any event may carry an order and data; a calendar rule (no
    event types) has neither."""
    declared = fields.declared
    customer = {**SAMPLE_CUSTOMER, "attrs": {name: f"<{name}>" for name in declared.get("customer", ())}}
    order = None
    if event_types:
        item = {**SAMPLE_ORDER["items"][0], **{name: f"<{name}>" for name in declared.get("item", ())}}
        order = {**SAMPLE_ORDER, "items": [item],
                 "attrs": {**SAMPLE_ORDER["attrs"], **{name: f"<{name}>" for name in declared.get("order", ())}}}
    data = {**SAMPLE_DATA, **{name: f"<{name}>" for name in declared.get("data", ())}} if event_types else {}
    return build_context(customer, order, {"id": "e-1", "type": label, "time": SAMPLE_TIME}, data, shop,
                         SAMPLE_TIME, tz, profile)
