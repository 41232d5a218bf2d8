"""The anti-spam limits as a marketer writes them: caps ("3/7d"), daily windows
("21:00-09:00"), channel rates ("50/s"), and the `limits:` section of config.yaml,
where every mistake is reported with file, line, key path and the fix."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from re import escape as _escape
from textwrap import dedent

import pytest

from engine.config.limits import Cap, DailyWindow, Rate, parse_cap, parse_rate, parse_window
from engine.config.loader import load_config
from engine.errors import ConfigError
from tests.conftest import ROOT

CAP_HINT = "write COUNT/WINDOW, such as 3/7d (at most 3 messages in any 7 days)"
WINDOW_HINT = "write HH:MM-HH:MM in local time, such as 21:00-09:00 (it may span midnight)"
RATE_HINT = "write COUNT/s, COUNT/m or COUNT/h, such as 50/s"
DURATION_HINT = "write a number and a unit: 30s, 30m, 2h, 3d, 1w (or combined, like 1d12h)"

CHANNELS = """\
channels:
  sms: {type: recording, contact: phone}
  email: {type: recording, contact: email}
"""


# ---- caps ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "count", "window", "shown"), [
    ("3/7d", 3, timedelta(days=7), "3/7d"),
    ("1/1d", 1, timedelta(days=1), "1/1d"),
    ("6/24h", 6, timedelta(hours=24), "6/24h"),
    ("2/1d12h", 2, timedelta(hours=36), "2/1d12h"),
    ("10/1w", 10, timedelta(weeks=1), "10/1w"),
    (" 3 / 7d ", 3, timedelta(days=7), "3 / 7d"),
], ids=["3-in-7-days", "1-a-day", "hours", "combined-duration", "a-week", "spaces"])
def test_a_cap_is_a_count_over_a_rolling_window(text, count, window, shown):
    cap = parse_cap(text)

    assert (cap.count, cap.window, str(cap)) == (count, window, shown)


@pytest.mark.parametrize(("text", "message"), [
    ("3 per 7d", f"bad cap '3 per 7d'; {CAP_HINT}"),
    ("0/1d", f"bad cap '0/1d'; {CAP_HINT}"),
    ("-1/1d", f"bad cap '-1/1d'; {CAP_HINT}"),
    ("1.5/1d", f"bad cap '1.5/1d'; {CAP_HINT}"),
    ("3/", f"bad cap '3/'; {CAP_HINT}"),
    ("3", f"bad cap '3'; {CAP_HINT}"),
    (3, f"bad cap 3; {CAP_HINT}"),
    (None, f"bad cap None; {CAP_HINT}"),
    ("3/7x", "bad cap '3/7x': '7x' is not a duration like 1d or 7d"),
    ("3/week", "bad cap '3/week': 'week' is not a duration like 1d or 7d"),
], ids=["words", "zero", "negative", "fraction", "no-window", "no-slash", "a-number", "empty",
        "unknown-unit", "unit-in-words"])
def test_a_bad_cap_says_how_to_write_one(text, message):
    with pytest.raises(ValueError, match=f"^{_escape(message)}$"):
        parse_cap(text)


# ---- daily windows ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "start", "end", "shown"), [
    ("21:00-09:00", time(21, 0), time(9, 0), "21:00-09:00"),
    ("10:00-20:00", time(10, 0), time(20, 0), "10:00-20:00"),
    ("9:30-17:45", time(9, 30), time(17, 45), "9:30-17:45"),
    (" 23:00 - 07:00 ", time(23, 0), time(7, 0), "23:00 - 07:00"),
    ("00:00-23:59", time(0, 0), time(23, 59), "00:00-23:59"),
], ids=["spanning-midnight", "daytime", "single-digit-hour", "spaces", "almost-all-day"])
def test_a_window_is_a_local_time_of_day_range(text, start, end, shown):
    window = parse_window(text)

    assert (window.start, window.end, str(window)) == (start, end, shown)


@pytest.mark.parametrize(("text", "shown"), [
    ("25:00-09:00", "'25:00-09:00'"),
    ("21:60-09:00", "'21:60-09:00'"),
    ("24:00-09:00", "'24:00-09:00'"),
    ("21:00-21:00", "'21:00-21:00'"),
    ("23:00-7", "'23:00-7'"),
    ("9-17", "'9-17'"),
    ("21:00 to 09:00", "'21:00 to 09:00'"),
    ("", "''"),
    (2100, "2100"),
    (None, "None"),
], ids=["hour-25", "minute-60", "hour-24", "empty-range", "end-without-minutes", "hours-only", "words",
        "empty", "a-number", "nothing"])
def test_a_bad_window_says_how_to_write_one(text, shown):
    with pytest.raises(ValueError, match=f"^bad time window {_escape(shown)}; {_escape(WINDOW_HINT)}$"):
        parse_window(text)


@pytest.mark.parametrize(("window", "wall", "inside"), [
    ("21:00-09:00", time(21, 0), True),
    ("21:00-09:00", time(23, 59), True),
    ("21:00-09:00", time(0, 0), True),
    ("21:00-09:00", time(8, 59, 59), True),
    ("21:00-09:00", time(9, 0), False),
    ("21:00-09:00", time(20, 59, 59), False),
    ("10:00-20:00", time(10, 0), True),
    ("10:00-20:00", time(19, 59), True),
    ("10:00-20:00", time(20, 0), False),
    ("10:00-20:00", time(9, 59), False),
], ids=["night-start-included", "night-before-midnight", "night-midnight", "night-last-second",
        "night-end-excluded", "night-just-before", "day-start-included", "day-last-minute",
        "day-end-excluded", "day-just-before"])
def test_a_window_includes_its_start_and_excludes_its_end(window, wall, inside):
    assert parse_window(window).contains(wall) is inside


# ---- channel rates ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "count", "per", "spacing"), [
    ("50/s", 50, timedelta(seconds=1), timedelta(milliseconds=20)),
    ("600/m", 600, timedelta(minutes=1), timedelta(milliseconds=100)),
    ("3600/h", 3600, timedelta(hours=1), timedelta(seconds=1)),
    (" 1 / s ", 1, timedelta(seconds=1), timedelta(seconds=1)),
], ids=["per-second", "per-minute", "per-hour", "spaces"])
def test_a_rate_is_a_provider_throughput(text, count, per, spacing):
    rate = parse_rate(text)

    assert (rate.count, rate.per, rate.spacing) == (count, per, spacing)


@pytest.mark.parametrize(("text", "shown"), [
    ("50/d", "'50/d'"),
    ("0/s", "'0/s'"),
    ("50 per second", "'50 per second'"),
    ("50/sec", "'50/sec'"),
    ("fast", "'fast'"),
    (50, "50"),
], ids=["per-day", "zero", "words", "unit-spelled-out", "a-word", "a-number"])
def test_a_bad_rate_says_how_to_write_one(text, shown):
    with pytest.raises(ValueError, match=f"^bad rate {_escape(shown)}; {_escape(RATE_HINT)}$"):
        parse_rate(text)


# ---- config.yaml: the limits section ------------------------------------------------

@pytest.fixture
def write(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(CHANNELS + dedent(text), encoding="utf-8")
        return path

    return write


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p).replace(str(path), "config.yaml") for p in caught.value.problems]


BROKEN = [
    pytest.param(
        """\
        limit:
          marketing: {per_customer: ["1/1d"]}
        """,
        ["config.yaml:4: limit: unknown key 'limit'; did you mean 'limits'?"],
        id="limits-misspelt"),
    pytest.param(
        """\
        limits:
          marketting:
            per_customer: ["1/1d"]
        """,
        ["config.yaml:5: limits.marketting: unknown key 'marketting'; did you mean 'marketing'?"],
        id="unknown-kind-did-you-mean"),
    pytest.param(
        """\
        limits:
          marketing:
            per_customer: ["1/1d"]
            quiet_hour: "21:00-09:00"
        """,
        ["config.yaml:7: limits.marketing.quiet_hour: unknown key 'quiet_hour'; did you mean 'quiet_hours'?"],
        id="unknown-kind-key-did-you-mean"),
    pytest.param(
        """\
        limits:
          max_deferal: 1d
        """,
        ["config.yaml:5: limits.max_deferal: unknown key 'max_deferal'; did you mean 'max_deferral'?"],
        id="max-deferral-misspelt"),
    pytest.param(
        """\
        limits:
          marketing:
            per_customer: ["1/1d", "3/7x", "0/1d"]
        """,
        ["config.yaml:6: limits.marketing.per_customer[1]: bad cap '3/7x': '7x' is not a duration like 1d or 7d",
         f"config.yaml:6: limits.marketing.per_customer[2]: bad cap '0/1d'; {CAP_HINT}"],
        id="bad-caps-in-a-flow-list"),
    pytest.param(
        """\
        limits:
          service:
            per_customer:
              - 6/1d
              - 3 per week
        """,
        [f"config.yaml:8: limits.service.per_customer[1]: bad cap '3 per week'; {CAP_HINT}"],
        id="bad-cap-in-a-block-list-names-its-line"),
    pytest.param(
        """\
        limits:
          service:
            per_customer: 6/1d
        """,
        ['config.yaml:6: limits.service.per_customer: must be a list of caps, such as ["1/1d", "3/7d"]'],
        id="cap-not-in-a-list"),
    pytest.param(
        """\
        limits:
          marketing:
            quiet_hours: "21:00-9"
        """,
        [f"config.yaml:6: limits.marketing.quiet_hours: bad time window '21:00-9'; {WINDOW_HINT}"],
        id="bad-quiet-hours"),
    pytest.param(
        """\
        limits:
          service:
            quiet_hours: "23:00-23:00"
        """,
        [f"config.yaml:6: limits.service.quiet_hours: bad time window '23:00-23:00'; {WINDOW_HINT}"],
        id="empty-quiet-hours"),
    pytest.param(
        """\
        limits:
          channels:
            smss: {per_customer: ["2/1d"]}
        """,
        ["config.yaml:6: limits.channels.smss: unknown channel 'smss'; channels: sms, email; did you mean 'sms'?"],
        id="unknown-channel-did-you-mean"),
    pytest.param(
        """\
        limits:
          channels:
            wechat: {rate: "10/s"}
        """,
        ["config.yaml:6: limits.channels.wechat: unknown channel 'wechat'; channels: sms, email"],
        id="unknown-channel-lists-channels"),
    pytest.param(
        """\
        limits:
          channels:
            sms: {per_customer: ["2/1d"], rates: "50/s"}
        """,
        ["config.yaml:6: limits.channels.sms.rates: unknown key 'rates'; did you mean 'rate'?"],
        id="unknown-channel-key-did-you-mean"),
    pytest.param(
        """\
        limits:
          channels:
            sms:
              per_customer: ["2/1d"]
              rate: 50/d
        """,
        [f"config.yaml:8: limits.channels.sms.rate: bad rate '50/d'; {RATE_HINT}"],
        id="bad-rate"),
    pytest.param(
        """\
        limits:
          channels:
            sms:
              per_customer: ["2 a day"]
        """,
        [f"config.yaml:7: limits.channels.sms.per_customer[0]: bad cap '2 a day'; {CAP_HINT}"],
        id="bad-channel-cap"),
    pytest.param(
        """\
        limits:
          channels:
            sms: "2/1d"
        """,
        ['config.yaml:6: limits.channels.sms: must be a mapping, such as {per_customer: ["2/1d"], rate: 50/s}'],
        id="channel-limits-not-a-mapping"),
    pytest.param(
        """\
        limits:
          channels: [sms]
        """,
        ["config.yaml:5: limits.channels: must map channel names to {per_customer, rate}"],
        id="channels-as-a-list"),
    pytest.param(
        """\
        limits:
          marketing: "1/1d"
        """,
        ["config.yaml:5: limits.marketing: must be a mapping with per_customer and quiet_hours"],
        id="kind-not-a-mapping"),
    pytest.param(
        "limits: strict\n",
        ["config.yaml:4: limits: must be a mapping with marketing, service, channels"],
        id="limits-not-a-mapping"),
    pytest.param(
        """\
        limits:
          max_deferral: 1 day
        """,
        [f"config.yaml:5: limits.max_deferral: bad duration '1 day'; {DURATION_HINT}"],
        id="bad-max-deferral"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_a_limits_error_names_file_line_key_and_fix(write, text, expected):
    assert problems(write(text)) == expected


def test_every_limits_error_is_reported_at_once(write):
    path = write("""\
        limits:
          marketing:
            per_customer: ["1/1d", "3/7x"]
            quiet_hours: "9pm-9am"
          service:
            per_customer: [six/1d]
          channels:
            smss: {rate: "50/s"}
          max_deferral: 1 day
        """)

    assert problems(path) == [
        "config.yaml:6: limits.marketing.per_customer[1]: bad cap '3/7x': '7x' is not a duration like 1d or 7d",
        f"config.yaml:7: limits.marketing.quiet_hours: bad time window '9pm-9am'; {WINDOW_HINT}",
        f"config.yaml:9: limits.service.per_customer[0]: bad cap 'six/1d'; {CAP_HINT}",
        "config.yaml:11: limits.channels.smss: unknown channel 'smss'; channels: sms, email; did you mean 'sms'?",
        f"config.yaml:12: limits.max_deferral: bad duration '1 day'; {DURATION_HINT}",
    ]


def test_without_a_limits_section_the_safe_defaults_apply(write):
    limits = load_config(write("")).limits

    assert [str(c) for c in limits.marketing.per_customer] == ["1/1d", "3/7d"]
    assert str(limits.marketing.quiet_hours) == "21:00-09:00"
    assert [str(c) for c in limits.service.per_customer] == ["6/1d"]
    assert str(limits.service.quiet_hours) == "23:00-07:00"
    assert limits.channels == {}
    assert limits.max_deferral == timedelta(days=1)


def test_an_empty_limits_section_means_the_defaults_too(write):
    limits = load_config(write("limits:\n")).limits

    assert limits.marketing.per_customer == (Cap(1, timedelta(days=1), "1/1d"), Cap(3, timedelta(days=7), "3/7d"))
    assert limits.service.quiet_hours == DailyWindow(time(23, 0), time(7, 0), "23:00-07:00")


def test_a_kind_given_in_part_keeps_the_default_of_what_it_leaves_out(write):
    limits = load_config(write("""\
        limits:
          marketing:
            per_customer: ["2/1d"]
          service:
            quiet_hours: "22:00-08:00"
        """)).limits

    assert [str(c) for c in limits.marketing.per_customer] == ["2/1d"]
    assert str(limits.marketing.quiet_hours) == "21:00-09:00"
    assert [str(c) for c in limits.service.per_customer] == ["6/1d"]
    assert str(limits.service.quiet_hours) == "22:00-08:00"


def test_quiet_hours_null_and_an_empty_cap_list_turn_them_off(write):
    limits = load_config(write("""\
        limits:
          marketing:
            quiet_hours: null
          service:
            per_customer: []
            quiet_hours: ~
        """)).limits

    assert limits.marketing.quiet_hours is None
    assert [str(c) for c in limits.marketing.per_customer] == ["1/1d", "3/7d"]
    assert limits.service.per_customer == ()
    assert limits.service.quiet_hours is None


def test_channel_limits_are_read_per_channel(write):
    limits = load_config(write("""\
        limits:
          channels:
            sms: {per_customer: ["2/1d"], rate: "50/s"}
            email: {per_customer: ["1/1d", "2/7d"]}
          max_deferral: 12h
        """)).limits

    assert sorted(limits.channels) == ["email", "sms"]
    assert [str(c) for c in limits.channels["sms"].per_customer] == ["2/1d"]
    assert limits.channels["sms"].rate == Rate(50, timedelta(seconds=1), "50/s")
    assert [str(c) for c in limits.channels["email"].per_customer] == ["1/1d", "2/7d"]
    assert limits.channels["email"].rate is None
    assert limits.max_deferral == timedelta(hours=12)


def test_the_shipped_config_has_the_documented_limits():
    limits = load_config(ROOT / "config.yaml").limits

    assert [str(c) for c in limits.marketing.per_customer] == ["1/1d", "3/7d"]
    assert str(limits.marketing.quiet_hours) == "21:00-09:00"
    assert [str(c) for c in limits.service.per_customer] == ["6/1d"]
    assert str(limits.service.quiet_hours) == "23:00-07:00"
    assert [str(c) for c in limits.channels["sms"].per_customer] == ["2/1d"]
    assert limits.channels["sms"].rate.text == "50/s"
    assert limits.max_deferral == timedelta(days=1)


def test_the_gate_looks_back_as_far_as_the_longest_cap_or_cooldown(write):
    limits = load_config(write("""\
        limits:
          channels:
            email: {per_customer: ["1/14d"]}
        """)).limits

    assert limits.lookback() == timedelta(days=14)
    assert limits.lookback(timedelta(days=30)) == timedelta(days=30)
    assert (limits.for_kind("service"), limits.for_kind("marketing")) == (limits.service, limits.marketing)
