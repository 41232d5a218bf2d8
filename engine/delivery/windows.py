"""When may a message go? Quiet hours and send windows in the customer's local time.

`next_allowed` finds the first moment at or after a given time that is outside every
blocked window and inside the allowed one, stepping from boundary to boundary in local
wall-clock time (DST-safe: a boundary that falls in a spring-forward gap resolves to
the first moment after the gap; in the repeated fall-back hour, the first pass counts)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from engine.config.limits import DailyWindow

_SEARCH_DAYS = 3


def allowed_at(local: datetime, blocked: list[DailyWindow], allowed: DailyWindow | None) -> bool:
    t = local.time()
    return not any(w.contains(t) for w in blocked) and (allowed is None or allowed.contains(t))


def next_allowed(at: datetime, tz: ZoneInfo, blocked: list[DailyWindow],
                 allowed: DailyWindow | None = None) -> datetime | None:
    """The first moment >= `at` when a message may go; None if none within 3 days
    (a send window that lies wholly inside quiet hours)."""
    candidate = at.astimezone(timezone.utc)
    boundaries = sorted({w.end for w in blocked} | ({allowed.start} if allowed else set()))
    limit = candidate + timedelta(days=_SEARCH_DAYS)
    while candidate <= limit:
        local = candidate.astimezone(tz)
        if allowed_at(local, blocked, allowed):
            return candidate
        following = _next_boundary(local, boundaries, tz)
        if following is None or following <= candidate:
            return None
        candidate = following
    return None


def _next_boundary(local: datetime, boundaries: list[time], tz: ZoneInfo) -> datetime | None:
    """The next boundary time-of-day strictly after `local`, as an aware UTC moment."""
    now = local.astimezone(timezone.utc)
    for day in range(-1, _SEARCH_DAYS + 1):
        date = (local + timedelta(days=day)).date()
        moments = sorted(m for b in boundaries for m in _moments(datetime.combine(date, b), tz) if m > now)
        if moments:
            return moments[0]
    return None


def _moments(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """The UTC moments a local wall time stands for: one; two in the repeated hour of a
    fall-back night; in a spring-forward gap, the moment the gap ends."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    exists = first.astimezone(tz).replace(tzinfo=None) == wall
    if exists:
        return sorted({first, second} if second.astimezone(tz).replace(tzinfo=None) == wall else {first})
    probe = min(first, second)  # in the gap: step to the first minute that exists after it
    while probe.astimezone(tz).replace(tzinfo=None) < wall:
        probe += timedelta(minutes=1)
    return [probe]
