"""The canonical event: parse, validate and normalise one JSON object.

Required: id, type, time, customer.id, and order.id for order.* types. A time
without an offset is in the shop's time zone. Everything else is optional and
merged into the stored profile and order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from engine.errors import EventError

STANDARD_TYPES = (
    "order.created",
    "order.paid",
    "order.shipped",
    "order.out_for_delivery",
    "order.signed",
    "order.logistics_exception",
    "order.completed",
    "order.closed",
    "order.reviewed",
    "order.refund_requested",
    "order.refunded",
    "customer.updated",
    "customer.unsubscribed",
    "coupon.issued",
    "coupon.used",
)

_CUSTOMER_STR = ("name", "phone", "email", "timezone", "nick")
_ORDER_NUM = ("amount",)


@dataclass(slots=True)
class Event:
    id: str
    type: str
    time: datetime  # aware, UTC
    customer: dict[str, Any]
    order: dict[str, Any] | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def customer_id(self) -> str:
        return self.customer["id"]

    @property
    def order_id(self) -> str | None:
        return self.order["id"] if self.order else None

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "type": self.type, "time": self.time.isoformat(),
               "customer": self.customer, "order": self.order, "data": self.data}
        if self.order is None:
            del out["order"]
        return out


def parse_time(value: Any, tz: ZoneInfo, field_name: str = "time") -> datetime:
    """ISO 8601 to an aware UTC datetime; a naive time is in `tz`."""
    if not isinstance(value, str) or not value.strip():
        raise EventError("must be an ISO 8601 time such as 2026-11-11T00:00:05+08:00", field_name)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise EventError(f"{value!r} is not an ISO 8601 time (like 2026-11-11T00:00:05+08:00)", field_name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(timezone.utc)


def _require_id(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise EventError("is required (a non-empty string)", f"{where}{key}")
    return str(value)


def _check_customer(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise EventError("is required (an object with at least an id)", "customer")
    cust = dict(raw)
    cust["id"] = _require_id(raw, "id", "customer.")
    if isinstance(cust.get("phone"), int) and not isinstance(cust["phone"], bool):
        cust["phone"] = str(cust["phone"])  # a phone number sent as a JSON number
    for key in _CUSTOMER_STR:
        if key in cust and cust[key] is not None and not isinstance(cust[key], str):
            raise EventError("must be a string", f"customer.{key}")
    if cust.get("phone") is not None and cust["phone"] != "":
        cust["phone"] = str(cust["phone"]).strip()
    if cust.get("birthday") is not None:
        try:  # kept as YYYY-MM-DD whatever ISO form it came in (19900501 too, even as a number)
            cust["birthday"] = date.fromisoformat(str(cust["birthday"]).strip()).isoformat()
        except ValueError:
            raise EventError(f"{cust['birthday']!r} is not a date like 1990-05-01", "customer.birthday") from None
    if cust.get("timezone") is not None:
        try:
            ZoneInfo(cust["timezone"])
        except Exception:
            raise EventError(f"{cust['timezone']!r} is not an IANA time zone like Asia/Shanghai",
                             "customer.timezone") from None
    for key in ("tags", "opted_out"):
        value = cust.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(t, str) for t in value)):
            raise EventError("must be a list of strings", f"customer.{key}")
    return cust


def _check_order(raw: Any, required: bool) -> dict[str, Any] | None:
    if raw is None:
        if required:
            raise EventError("is required for order.* events (an object with an id)", "order")
        return None
    if not isinstance(raw, dict):
        raise EventError("must be an object with an id", "order")
    order = dict(raw)
    order["id"] = _require_id(raw, "id", "order.")
    for key in _ORDER_NUM:
        value = order.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise EventError("must be a number", f"order.{key}")
    items = order.get("items")
    if items is not None:
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise EventError("must be a list of objects", "order.items")
    return order


def parse_event(raw: Any, tz: ZoneInfo) -> Event:
    """Validate one decoded JSON value and return a normalised Event."""
    if not isinstance(raw, dict):
        raise EventError("an event must be a JSON object")
    event_id = _require_id(raw, "id", "")
    etype = raw.get("type")
    if not isinstance(etype, str) or not etype.strip():
        raise EventError("is required (a string such as order.paid)", "type")
    if "time" not in raw:
        raise EventError("is required (ISO 8601, such as 2026-11-11T00:00:05+08:00)", "time")
    when = parse_time(raw["time"], tz)
    customer = _check_customer(raw.get("customer"))
    order = _check_order(raw.get("order"), required=etype.startswith("order."))
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise EventError("must be an object", "data")
    return Event(event_id, etype.strip(), when, customer, order, data)


def parse_line(line: str, tz: ZoneInfo) -> Event:
    """Parse one line of a JSON-lines file."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EventError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    return parse_event(raw, tz)


@dataclass
class Rejected:
    line: int
    reason: str
    raw: str


def numbered_texts(lines: Iterable[tuple[int, str | bytes]], rejected: list[Rejected]):
    """(number, text) of the non-blank lines; raw bytes are decoded here as UTF-8, line
    by line, so one line in another encoding is rejected alone."""
    for number, text in lines:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                shown = text.decode("utf-8", errors="replace").replace("\ufffd", "?")
                rejected.append(Rejected(number, f"not UTF-8 text (byte {exc.start + 1}); save the file as UTF-8",
                                         shown.rstrip("\r")))
                continue
        if text.strip():
            yield number, text


def read_events(lines: Iterable[tuple[int, str | bytes]], project) -> tuple[list[Event], list[Rejected]]:
    """Parse and validate numbered lines (what `ingest` and the dry-run read)."""
    events, rejected = [], []
    tz = project.config.timezone
    for number, text in numbered_texts(lines, rejected):
        try:
            events.append(parse_line(text, tz))
        except EventError as exc:
            rejected.append(Rejected(number, str(exc), text.rstrip("\n")))
    return events, rejected
