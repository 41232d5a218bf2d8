"""The canonical event: parse, validate and normalise one JSON object.

Required: id, type, time, customer.id, and order.id for order.* types. A time
without an offset is in the shop's time zone. Everything else is optional and
merged into the stored profile and order."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from engine.contacts import normalise_email, normalise_phone
from engine.errors import EventError

_CUSTOMER_STR = ("name", "phone", "email", "timezone", "nick")
_ORDER_NUM = ("amount",)

# What intake accepts, so that whatever is stored can be read back on SQLite and
# PostgreSQL (README "Limits"): numbers finite and within ±10^15; no NUL character and no
# unpaired surrogate in any text or key; nesting at most 32 levels; event times from
# 2000-01-01 to a day after now (the dry-run: no later bound, its clock is the events');
# texts within the columns that keep them.
MAX_NUMBER = 10 ** 15
MAX_DEPTH = 32
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
AHEAD = timedelta(days=1)  # how far an event may be stamped after now (clocks differ a little)
MAX_LENGTH = {"id": 200, "type": 100, "customer.id": 200, "order.id": 200, "customer.name": 200,
              "customer.nick": 200, "customer.email": 320, "customer.timezone": 64}
_SUSPECT = re.compile(r"\\u0000|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # an escaped NUL or surrogate in JSON text


class _Invalid:
    """A number JSON holds that intake refuses (kept until the event is checked, so one
    bad item of an array is rejected alone)."""

    __slots__ = ("reason",)
    made = 0  # how many were ever made: a decode that made one needs the check

    def __init__(self, reason: str):
        self.reason = reason
        _Invalid.made += 1


def _float(text: str):
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        return _Invalid(f"{text} is not a finite number")
    if abs(value) > MAX_NUMBER:
        return _Invalid(f"{text} is beyond ±10^15")
    return value


def _int(text: str):
    if len(text.lstrip("-")) > 16 or abs(int(text)) > MAX_NUMBER:
        return _Invalid(f"{text[:20]}{'...' if len(text) > 20 else ''} is beyond ±10^15")
    return int(text)


def _constant(text: str):
    return _Invalid(f"{text} is not a number JSON allows")


def decode_json(text: str) -> Any:
    """JSON text as Python, with the numbers intake refuses marked (see check_value).
    Raises EventError for text that is not JSON or nests beyond what Python reads."""
    return _decode(text)[0]


def _decode(text: str) -> tuple[Any, bool]:
    """The value, and whether check_value must look at it (most lines need not)."""
    made = _Invalid.made
    try:
        value = json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_constant)
        return value, _Invalid.made != made or needs_check(text)
    except json.JSONDecodeError as exc:
        raise EventError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise EventError(f"nested more than {MAX_DEPTH} levels deep") from None


def needs_check(text: str) -> bool:
    """Whether decoded JSON text may hold something check_value refuses beyond numbers
    (which decode_json marks): an escaped NUL or surrogate, or deep nesting. Cheap: most
    lines are passed over."""
    return _SUSPECT.search(text) is not None or text.count("{") + text.count("[") > MAX_DEPTH


def check_value(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The first thing in a decoded event that could not be stored and read back: a
    refused number, a NUL or unpaired surrogate in a text or key, too deep a nesting."""
    if isinstance(value, _Invalid):
        return f"{path or 'value'}: {value.reason}"
    if isinstance(value, str):
        return _text_problem(value, path)
    if depth > MAX_DEPTH:
        return f"{path or 'event'}: nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            problem = _text_problem(str(key), f"{path or 'event'} key") or check_value(item, where, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problem = check_value(item, f"{path}[{i}]", depth + 1)
            if problem:
                return problem
    return None


def _text_problem(text: str, path: str) -> str | None:
    if "\x00" in text:
        return f"{path}: contains a NUL character (\\u0000)"
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        return f"{path}: contains an unpaired surrogate (a broken \\uD8xx escape)"
    return None


@dataclass(slots=True)
class Event:
    id: str
    type: str
    time: datetime  # aware, UTC
    customer: dict[str, Any]
    order: dict[str, Any] | None
    data: dict[str, Any] = field(default_factory=dict)
    line: int | None = field(default=None, compare=False)  # where it was read (file line, request item)

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
        raise EventError(f"{value[:40]!r} is not an ISO 8601 time (like 2026-11-11T00:00:05+08:00)",
                         field_name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise EventError(f"{value!r} is out of the range of times", field_name) from None


def check_time(when: datetime, latest: datetime | None, field_name: str = "time") -> None:
    """Event times from 2000-01-01 to `latest` (a day after now; None: no later bound)."""
    if when < EARLIEST:
        raise EventError(f"{when.isoformat()} is before 2000-01-01; check the sender's clock", field_name)
    if latest is not None and when > latest:
        raise EventError(f"{when.isoformat()} is more than a day after now ({(latest - AHEAD).isoformat()}); "
                         "check the sender's clock", field_name)


def _require_id(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise EventError("is required (a non-empty string)", f"{where}{key}")
    text = str(value)
    if len(text) > 200:
        raise EventError("is longer than 200 characters", f"{where}{key}")
    return text


def _check_lengths(obj: dict, where: str) -> None:
    for key, value in obj.items():
        limit = MAX_LENGTH.get(f"{where}{key}")
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise EventError(f"is longer than {limit} characters", f"{where}{key}")


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
    _contacts(cust)
    _check_lengths(cust, "customer.")
    _birthday_and_zone(cust)
    for key in ("tags", "opted_out"):
        value = cust.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(t, str) for t in value)):
            raise EventError("must be a list of strings", f"customer.{key}")
    return cust


def _contacts(cust: dict[str, Any]) -> None:
    """One phone number and one email address, normalised (an empty one stays empty)."""
    if cust.get("phone") is not None and str(cust["phone"]).strip() != "":
        cust["phone"] = normalise_phone(str(cust["phone"]))
    if cust.get("email") is not None and cust["email"].strip() != "":
        cust["email"] = normalise_email(cust["email"])


def _birthday_and_zone(cust: dict[str, Any]) -> None:
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


def parse_event(raw: Any, tz: ZoneInfo, latest: datetime | None = None, *, checked: bool = False) -> Event:
    """Validate one decoded JSON value and return a normalised Event. `latest`: the
    latest event time accepted (a day after now; None: no later bound). `checked`: the
    value is known to hold nothing check_value refuses (its JSON text was looked at)."""
    if not isinstance(raw, dict):
        raise EventError("an event must be a JSON object")
    problem = None if checked else check_value(raw)
    if problem:
        raise EventError(problem)
    event_id = _require_id(raw, "id", "")
    etype = raw.get("type")
    if not isinstance(etype, str) or not etype.strip():
        raise EventError("is required (a string such as order.paid)", "type")
    if len(etype) > MAX_LENGTH["type"]:
        raise EventError(f"is longer than {MAX_LENGTH['type']} characters", "type")
    if "time" not in raw:
        raise EventError("is required (ISO 8601, such as 2026-11-11T00:00:05+08:00)", "time")
    when = parse_time(raw["time"], tz)
    check_time(when, latest)
    customer = _check_customer(raw.get("customer"))
    order = _check_order(raw.get("order"), required=etype.startswith("order."))
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise EventError("must be an object", "data")
    return Event(event_id, etype.strip(), when, customer, order, data)


def parse_line(line: str, tz: ZoneInfo, latest: datetime | None = None) -> Event:
    """Parse one line of a JSON-lines file."""
    value, suspect = _decode(line)
    return parse_event(value, tz, latest, checked=not suspect)


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


def read_events(lines: Iterable[tuple[int, str | bytes]], project, latest: datetime | None = None
                ) -> tuple[list[Event], list[Rejected]]:
    """Parse and validate numbered lines (what `ingest` and the dry-run read). `latest`:
    the latest event time accepted (None: no later bound)."""
    events, rejected = [], []
    tz = project.config.timezone
    for number, text in numbered_texts(lines, rejected):
        try:
            event = parse_line(text, tz, latest)
        except EventError as exc:
            rejected.append(Rejected(number, str(exc), text.rstrip("\n")))
            continue
        event.line = number
        events.append(event)
    return events, rejected


def rejected_later(report_rejected: list, source: str, now: datetime) -> list[dict]:
    """Rows for the rejected_events table of events refused when they were stored (an id
    another customer's event has, an event the database refused), kept with the event's
    JSON as read."""
    return [{"source": source, "line": event.line, "raw": json.dumps(event.to_json(), ensure_ascii=False),
             "reason": reason, "received_at": now} for event, reason in report_rejected]
