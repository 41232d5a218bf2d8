"""Small builders for canonical events used across the tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

SHANGHAI = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 11, 10, 0, tzinfo=SHANGHAI)


def event(eid: str, etype: str, minutes: float = 0, customer: str = "c-1", order: str | None = "o-1",
          start: datetime = T0, data: dict | None = None, **customer_fields) -> dict:
    """A canonical event `minutes` after `start`."""
    cust = {"id": customer, **customer_fields}
    out = {"id": eid, "type": etype, "time": (start + timedelta(minutes=minutes)).isoformat(), "customer": cust}
    if order is not None:
        out["order"] = {"id": order}
    if data:
        out["data"] = data
    return out


def created(eid: str, minutes: float = 0, customer: str = "c-1", order: str = "o-1", amount: float = 199.0,
            **kw) -> dict:
    ev = event(eid, "order.created", minutes, customer, order, name="王小明", phone="13800000000", **kw)
    ev["order"].update({"amount": amount, "items": [{"sku": "SB-01", "name": "羽绒睡袋", "qty": 1, "price": amount}]})
    return ev


def jsonl(events: list[dict]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
