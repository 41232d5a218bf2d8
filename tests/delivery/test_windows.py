"""When may a message go? `next_allowed` answers with the first moment at or after a
given time that lies outside the quiet hours and inside the rule's send window, in the
customer's local time, DST-safe.

Every case below is written as local wall-clock time in the zone that decides (the
customer's), and the expected answer likewise; None means the message can never go
(a send window wholly inside the quiet hours)."""

from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.config.limits import parse_window
from engine.delivery.windows import allowed_at, next_allowed

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
UTC = timezone.utc

QUIET = "21:00-09:00"  # the marketing quiet hours of the shipped config


def local(tz: ZoneInfo, y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz, fold=fold)


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


CASES = [
    # ---- quiet hours spanning midnight, shop and customer in Shanghai --------------------
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 22, 30), QUIET, None,
                 local(SHANGHAI, 2026, 11, 12, 9, 0), id="quiet-22:30-waits-for-09:00-next-day"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 8, 59), QUIET, None,
                 local(SHANGHAI, 2026, 11, 11, 9, 0), id="quiet-08:59-waits-one-minute"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 9, 0), QUIET, None,
                 local(SHANGHAI, 2026, 11, 11, 9, 0), id="quiet-ends-at-09:00-exactly-allowed"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 20, 59), QUIET, None,
                 local(SHANGHAI, 2026, 11, 11, 20, 59), id="quiet-20:59-allowed"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 20, 59, 59), QUIET, None,
                 local(SHANGHAI, 2026, 11, 11, 20, 59, 59), id="quiet-20:59:59-allowed"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 21, 0), QUIET, None,
                 local(SHANGHAI, 2026, 11, 12, 9, 0), id="quiet-starts-at-21:00-exactly"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 12, 0, 0), QUIET, None,
                 local(SHANGHAI, 2026, 11, 12, 9, 0), id="quiet-midnight-waits-for-09:00-same-day"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 23, 30), "23:00-07:00", None,
                 local(SHANGHAI, 2026, 11, 12, 7, 0), id="service-quiet-23:30-waits-for-07:00"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 13, 0), "12:00-14:00", None,
                 local(SHANGHAI, 2026, 11, 11, 14, 0), id="daytime-quiet-hours-not-spanning-midnight"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 12, 31, 23, 0), QUIET, None,
                 local(SHANGHAI, 2027, 1, 1, 9, 0), id="quiet-across-new-year"),
    # ---- a rule's send window, intersected with the quiet hours -------------------------
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 9, 30), QUIET, "10:00-20:00",
                 local(SHANGHAI, 2026, 11, 11, 10, 0), id="window-09:30-waits-for-10:00"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 10, 0), QUIET, "10:00-20:00",
                 local(SHANGHAI, 2026, 11, 11, 10, 0), id="window-opens-at-10:00-exactly"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 19, 59), QUIET, "10:00-20:00",
                 local(SHANGHAI, 2026, 11, 11, 19, 59), id="window-19:59-allowed"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 20, 0), QUIET, "10:00-20:00",
                 local(SHANGHAI, 2026, 11, 12, 10, 0), id="window-closes-at-20:00-before-quiet-hours"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 22, 0), QUIET, "10:00-20:00",
                 local(SHANGHAI, 2026, 11, 12, 10, 0), id="window-and-quiet-at-22:00-the-later-end-wins"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 8, 0), QUIET, "08:00-12:00",
                 local(SHANGHAI, 2026, 11, 11, 9, 0), id="window-opens-inside-quiet-hours-waits-for-quiet-end"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 21, 30), QUIET, "20:00-10:00",
                 local(SHANGHAI, 2026, 11, 12, 9, 0), id="window-spanning-midnight-minus-quiet-hours"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 10, 30), QUIET, "20:00-10:00",
                 local(SHANGHAI, 2026, 11, 11, 20, 0), id="window-spanning-midnight-opens-at-20:00"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 15, 0), None, "10:00-20:00",
                 local(SHANGHAI, 2026, 11, 11, 15, 0), id="window-without-quiet-hours"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 22, 0), QUIET, "22:00-23:00",
                 None, id="window-wholly-inside-quiet-hours-never"),
    pytest.param(SHANGHAI, local(SHANGHAI, 2026, 11, 11, 12, 0), QUIET, "02:00-08:30",
                 None, id="early-morning-window-inside-quiet-hours-never"),
    # ---- America/New_York, spring forward on 2026-03-08 (02:00 EST -> 03:00 EDT) ---------
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 3, 7, 22, 30), QUIET, None,
                 local(NEW_YORK, 2026, 3, 8, 9, 0), id="new-york-quiet-night-of-spring-forward"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 3, 8, 1, 59), QUIET, None,
                 local(NEW_YORK, 2026, 3, 8, 9, 0), id="new-york-just-before-the-gap"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 3, 8, 1, 0), "23:00-02:30", None,
                 local(NEW_YORK, 2026, 3, 8, 3, 0), id="new-york-quiet-end-in-the-gap-is-03:00-edt"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 3, 8, 0, 30), None, "02:15-20:00",
                 local(NEW_YORK, 2026, 3, 8, 3, 0), id="new-york-window-start-in-the-gap-is-03:00-edt"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 3, 8, 1, 0), "00:00-02:00", None,
                 local(NEW_YORK, 2026, 3, 8, 3, 0), id="new-york-quiet-end-at-the-vanished-02:00"),
    # ---- America/New_York, fall back on 2026-11-01 (02:00 EDT -> 01:00 EST) -------------
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 10, 31, 22, 0), QUIET, None,
                 local(NEW_YORK, 2026, 11, 1, 9, 0), id="new-york-quiet-night-of-fall-back"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1), QUIET, None,
                 local(NEW_YORK, 2026, 11, 1, 9, 0), id="new-york-second-01:30-est-quiet-until-09:00"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 11, 1, 0, 30), "00:00-01:30", None,
                 local(NEW_YORK, 2026, 11, 1, 1, 30, fold=0), id="new-york-repeated-hour-first-pass-counts"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 11, 1, 1, 45, fold=0), "00:00-01:30", None,
                 local(NEW_YORK, 2026, 11, 1, 1, 45, fold=0), id="new-york-01:45-edt-after-quiet-end-allowed"),
    pytest.param(NEW_YORK, local(NEW_YORK, 2026, 11, 1, 1, 15, fold=1), "00:00-01:30", None,
                 local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1),
                 id="new-york-second-pass-of-repeated-hour-waits-minutes-not-a-day"),
    # ---- Europe/London: spring forward 2026-03-29 01:00 GMT, fall back 2026-10-25 -------
    pytest.param(LONDON, local(LONDON, 2026, 3, 28, 22, 0), QUIET, None,
                 local(LONDON, 2026, 3, 29, 9, 0), id="london-quiet-night-of-spring-forward"),
    pytest.param(LONDON, local(LONDON, 2026, 3, 29, 0, 30), None, "01:30-20:00",
                 local(LONDON, 2026, 3, 29, 2, 0), id="london-window-start-in-the-gap-is-02:00-bst"),
    pytest.param(LONDON, local(LONDON, 2026, 10, 24, 22, 0), QUIET, None,
                 local(LONDON, 2026, 10, 25, 9, 0), id="london-quiet-night-of-fall-back"),
    # ---- a customer in another zone than the shop (Asia/Shanghai) ------------------------
    pytest.param(LOS_ANGELES, local(SHANGHAI, 2026, 11, 11, 14, 0), QUIET, None,
                 local(LOS_ANGELES, 2026, 11, 11, 9, 0), id="los-angeles-22:00-while-shanghai-is-at-14:00"),
    pytest.param(LOS_ANGELES, local(SHANGHAI, 2026, 11, 11, 10, 0), QUIET, None,
                 local(SHANGHAI, 2026, 11, 11, 10, 0), id="los-angeles-18:00-allowed-though-late-nowhere"),
    pytest.param(LOS_ANGELES, local(SHANGHAI, 2026, 11, 11, 22, 30), QUIET, None,
                 local(LOS_ANGELES, 2026, 11, 11, 9, 0), id="los-angeles-06:30-is-quiet-though-shanghai-is-at-22:30"),
    pytest.param(LOS_ANGELES, local(SHANGHAI, 2026, 11, 12, 0, 30), QUIET, None,
                 local(SHANGHAI, 2026, 11, 12, 1, 0), id="los-angeles-08:30-waits-for-its-09:00"),
    pytest.param(LOS_ANGELES, local(SHANGHAI, 2026, 11, 11, 13, 0), QUIET, "10:00-20:00",
                 local(SHANGHAI, 2026, 11, 12, 2, 0), id="los-angeles-window-opens-at-its-10:00"),
    pytest.param(SHANGHAI, local(LOS_ANGELES, 2026, 11, 11, 9, 0), QUIET, None,
                 local(SHANGHAI, 2026, 11, 12, 9, 0), id="shanghai-customer-time-given-in-los-angeles-time"),
    pytest.param(LOS_ANGELES, local(LOS_ANGELES, 2026, 11, 1, 1, 30, fold=1), QUIET, None,
                 local(LOS_ANGELES, 2026, 11, 1, 9, 0), id="los-angeles-fall-back-night"),
]


@pytest.mark.parametrize(("tz", "at", "quiet", "window", "expected"), CASES)
def test_next_allowed_is_the_first_moment_outside_quiet_hours_and_inside_the_window(tz, at, quiet, window,
                                                                                    expected):
    blocked = [parse_window(quiet)] if quiet else []
    allowed = parse_window(window) if window else None

    found = next_allowed(at, tz, blocked, allowed)

    if expected is None:
        assert found is None
    else:
        assert found is not None and found.tzinfo is not None
        # compared as UTC: Python never calls an ambiguous (repeated-hour) time equal across zones
        assert found.astimezone(UTC) == expected.astimezone(UTC)
        assert found.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z") == \
            expected.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


@pytest.mark.parametrize(("at", "quiet", "expected"), [
    (utc(2026, 3, 8, 6, 0), "23:00-02:30", utc(2026, 3, 8, 7, 0)),     # 01:00 EST -> 03:00 EDT
    (utc(2026, 11, 1, 5, 15), "00:00-01:30", utc(2026, 11, 1, 5, 30)),  # 01:15 EDT -> 01:30 EDT
    (utc(2026, 11, 1, 6, 45), "00:00-01:30", utc(2026, 11, 1, 6, 45)),  # 01:45 EST: past 01:30 twice
], ids=["gap-end-is-07:00-utc", "first-pass-01:30-is-05:30-utc", "second-pass-01:45-est-allowed"])
def test_new_york_dst_answers_as_utc_instants(at, quiet, expected):
    assert next_allowed(at, NEW_YORK, [parse_window(quiet)]) == expected


def test_next_allowed_answers_in_utc_whatever_zone_the_question_was_asked_in():
    found = next_allowed(local(SHANGHAI, 2026, 11, 11, 22, 30), SHANGHAI, [parse_window(QUIET)])

    assert found == utc(2026, 11, 12, 1, 0)
    assert found.utcoffset().total_seconds() == 0


def test_without_quiet_hours_or_window_every_moment_is_allowed():
    at = local(SHANGHAI, 2026, 11, 11, 3, 0)

    assert next_allowed(at, SHANGHAI, []) == at


@pytest.mark.parametrize(("wall", "quiet", "window", "expected"), [
    (time(20, 59), QUIET, None, True),
    (time(21, 0), QUIET, None, False),
    (time(3, 0), QUIET, None, False),
    (time(8, 59), QUIET, None, False),
    (time(9, 0), QUIET, None, True),
    (time(9, 30), QUIET, "10:00-20:00", False),
    (time(10, 0), QUIET, "10:00-20:00", True),
    (time(20, 0), QUIET, "10:00-20:00", False),
    (time(20, 30), QUIET, "20:00-10:00", True),
    (time(21, 30), QUIET, "20:00-10:00", False),
], ids=["20:59", "21:00", "03:00", "08:59", "09:00", "09:30-before-window", "10:00-window-opens",
        "20:00-window-closed", "20:30-night-window", "21:30-night-window-but-quiet"])
def test_allowed_at_reads_the_local_wall_clock(wall, quiet, window, expected):
    at = datetime.combine(datetime(2026, 11, 11).date(), wall, tzinfo=SHANGHAI)

    assert allowed_at(at, [parse_window(quiet)], parse_window(window) if window else None) is expected


# ---- the gate's memory of its last answer ---------------------------------------------

from datetime import timedelta  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.config.limits import Limits  # noqa: E402
from engine.delivery.gate import Gate  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6 * 24 * 60),  # minutes from the start, around a DST change
                          st.sampled_from([NEW_YORK, LONDON, SHANGHAI]),
                          st.sampled_from([None, "10:00-20:00", "22:00-02:00", "01:30-02:30"])),
                min_size=1, max_size=40))
def test_the_gates_remembered_answer_is_always_the_answer_next_allowed_gives(moments):
    # the dispatcher asks in time order, mostly; any order must give the same answers
    gate = Gate(Limits(), SHANGHAI)
    quiet = parse_window(QUIET)
    start = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)  # New York springs forward on 03-08, London on 03-29
    for minutes, tz, window in sorted(moments, key=lambda m: m[0]) + moments:
        at = start + timedelta(minutes=minutes, seconds=minutes % 7)
        allowed = parse_window(window) if window else None
        assert gate._next_allowed(at, tz, quiet, allowed) == next_allowed(at, tz, [quiet], allowed)


@pytest.mark.parametrize("order", ["forward", "backward"])
@pytest.mark.parametrize("tz", [NEW_YORK, LONDON, SHANGHAI], ids=lambda z: z.key)
def test_the_gates_remembered_answer_holds_every_17_minutes_across_a_dst_week(order, tz):
    gate = Gate(Limits(), SHANGHAI)
    quiet = parse_window(QUIET)
    start = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    steps = range(0, 6 * 24 * 60, 17) if order == "forward" else range(6 * 24 * 60, 0, -17)
    for window in (None, parse_window("10:00-20:00"), parse_window("01:30-02:30")):
        for minutes in steps:
            at = start + timedelta(minutes=minutes)
            assert gate._next_allowed(at, tz, quiet, window) == next_allowed(at, tz, [quiet], window), at
