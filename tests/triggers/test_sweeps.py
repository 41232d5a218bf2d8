"""Calendar and state triggers end to end: events go in, sweeps run on an injected clock,
messages come out at their moments. Idle (once per spell, reset by a new order),
birthday, holiday (lunar festivals from the calendar library), date broadcasts with a
condition, cron; idempotent sweeps, catch-up after downtime, no back-filling of history.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from engine.app import Engine, load_project
from engine.clock import VirtualClock
from engine.dryrun.replay import run_dry
from engine.intake.events import parse_event
from engine.rules.calendar import TriggerError, holiday_date, parse_trigger
from tests.conftest import recording_channels

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[2]

TEMPLATES = {"care.j2": "{{ customer.name | default('亲') }}，好久不见，送您一张20元券",
             "bday.j2": "{{ customer.name | default('亲') }}，生日快乐！",
             "promo.j2": "双11下午场，老客专享"}


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


@pytest.fixture
def build(tmp_path, store):
    engines = []

    def build(rules: list[dict], start: datetime) -> Engine:
        folder = tmp_path / f"p{len(engines)}"
        (folder / "rules").mkdir(parents=True)
        (folder / "templates").mkdir()
        config = {"timezone": "Asia/Shanghai", "shop": {"name": "山野户外"},
                  "channels": {"sms": {"type": "recording", "contact": "phone"}},
                  "limits": {"marketing": {"per_customer": [], "quiet_hours": "21:00-09:00"}}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        (folder / "rules" / "r.yaml").write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True), encoding="utf-8")
        for name, text in TEMPLATES.items():
            (folder / "templates" / name).write_text(text, encoding="utf-8")
        project = load_project(folder / "config.yaml", folder / "rules", folder / "templates")
        assert [str(p) for p in project.problems if p.severity == "error"] == []
        engine = Engine(project, store, recording_channels(project), VirtualClock(start))
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        for channel in engine.channels.values():
            channel.close()


def rule(rule_id: str, when, template: str = "care.j2", **keys) -> dict:
    return {"id": rule_id, "when": when, "channel": "sms", "template": template, **keys}


def order(eid: str, when: datetime, customer: str = "c-1", oid: str | None = None, **profile) -> list:
    cust = {"id": customer, "name": "王小明", "phone": "13800000000", **profile}
    oid = oid or f"o-{eid}"
    return [{"id": eid, "type": "order.created", "time": when.isoformat(), "customer": cust,
             "order": {"id": oid, "amount": 100.0}},
            {"id": f"{eid}-paid", "type": "order.paid", "time": (when + timedelta(minutes=2)).isoformat(),
             "customer": {"id": customer}, "order": {"id": oid}}]


def ingest(engine: Engine, events: list[dict]) -> None:
    engine.ingest([parse_event(e, SHANGHAI) for e in events], virtual=True)


def run(engine: Engine, until: datetime, every: timedelta = timedelta(hours=6), start: datetime | None = None):
    """The daemon's loop on an injected clock: sweep, then dispatch what is due, each step
    (a sweep enqueues what fell due since the last one too, and each message is decided at
    its own due time, so steps longer than the daemon's minute give the same messages)."""
    t = start or engine.clock.now()
    while t <= until:
        engine.clock.set(t)
        engine.sweep(t)
        engine.dispatch(t, virtual=True)  # each message decided at its own due time
        t += every


def sent(engine: Engine) -> list[tuple[str, str, str]]:
    return sorted((m.time.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"), m.rule_id, m.customer_id)
                  for m in engine.channels["sms"].sent)


# ---- idle -----------------------------------------------------------------------------

def test_idle_fires_once_exactly_its_time_after_the_latest_order_and_a_new_order_resets_it(build):
    engine = build([rule("winback-60d", {"idle": "60d"})], at(2026, 1, 1, 0))
    ingest(engine, order("a", at(2026, 1, 5, 10, 17)) + order("b", at(2026, 1, 5, 11), customer="c-2"))
    ingest(engine, order("c", at(2026, 2, 1, 15), customer="c-2"))  # c-2 ordered again: a new spell

    run(engine, at(2026, 4, 10, 0))

    assert sent(engine) == [
        ("2026-03-06 10:17", "winback-60d", "c-1"),  # 60 x 24 h after 01-05 10:17
        ("2026-04-02 15:00", "winback-60d", "c-2"),  # from its latest order, once
    ]


def test_an_order_after_the_idle_message_was_enqueued_cancels_it(build):
    engine = build([rule("winback-60d", {"idle": "60d"})], at(2026, 1, 1, 0))
    ingest(engine, order("a", at(2026, 1, 5, 10)))
    run(engine, at(2026, 3, 6, 6))
    engine.sweep(at(2026, 3, 6, 9, 30))  # enqueued, due at 10:00
    assert [m["state"] for m in engine.store.rows("messages")] == ["pending"]
    ingest(engine, order("b", at(2026, 3, 6, 9, 40)))  # the customer came back meanwhile

    run(engine, at(2026, 3, 7, 0), start=at(2026, 3, 6, 10))

    assert sent(engine) == []
    [decision] = [r for r in engine.store.rows("message_log") if r["rule_id"] == "winback-60d"]
    assert (decision["outcome"], decision["reason"]) == ("cancelled", "unless")
    assert "customer.days_since_last_order < 60" in decision["detail"]


def test_several_idle_rules_each_fire_in_their_turn(build):
    engine = build([rule("care-60d", {"idle": "60d"}), rule("care-90d", {"idle": "90d"})], at(2026, 1, 1, 0))
    ingest(engine, order("a", at(2026, 1, 5, 10)))

    run(engine, at(2026, 4, 30, 0))

    assert sent(engine) == [("2026-03-06 10:00", "care-60d", "c-1"), ("2026-04-05 10:00", "care-90d", "c-1")]


def test_sweeps_are_idempotent_and_catch_up_after_downtime(build):
    engine = build([rule("winback-60d", {"idle": "60d"})], at(2026, 1, 1, 0))
    ingest(engine, order("a", at(2026, 1, 5, 10)) + order("b", at(2026, 1, 6, 10), customer="c-2"))
    engine.sweep(at(2026, 3, 1, 0))  # the daemon's first sweep

    engine.sweep(at(2026, 3, 9, 0))  # down from 03-01 to 03-09: both spells ended meanwhile
    engine.sweep(at(2026, 3, 9, 0))  # and the same sweep again

    messages = engine.store.rows("messages")
    assert sorted((m["customer_id"], m["due_at"]) for m in messages) == [
        ("c-1", at(2026, 3, 6, 10).astimezone(UTC)), ("c-2", at(2026, 3, 7, 10).astimezone(UTC))]
    [status] = engine.store.sweep_status()
    assert (status["rule_id"], status["swept_until"]) == ("winback-60d", at(2026, 3, 9, 1).astimezone(UTC))


def test_a_new_rule_does_not_write_to_everyone_who_went_idle_before_it_existed(build):
    engine = build([rule("winback-60d", {"idle": "60d"})], at(2026, 1, 1, 0))
    ingest(engine, order("a", at(2025, 6, 1, 10)))  # idle since August 2025

    run(engine, at(2026, 1, 3, 0))

    assert engine.store.rows("messages") == []


# ---- birthday, holiday, date, cron ----------------------------------------------------------

def test_birthday_three_days_before_at_ten_local_and_feb_29_in_a_common_year(build):
    engine = build([rule("bday", {"birthday": "-3d", "at": "10:00"}, "bday.j2")], at(2027, 1, 1, 0))
    ingest(engine, order("a", at(2027, 1, 2), birthday="1990-05-01")
           + order("b", at(2027, 1, 2), customer="c-2", birthday="2000-02-29")
           + order("c", at(2027, 1, 2), customer="c-3"))  # no birthday known

    run(engine, at(2027, 5, 2, 0))

    assert sent(engine) == [("2027-02-25 10:00", "bday", "c-2"), ("2027-04-28 10:00", "bday", "c-1")]


@pytest.mark.parametrize("name, year, expected", [
    ("spring_festival", 2026, date(2026, 2, 17)),  # lunar new year's day, not the first day off (02-15)
    ("new_years_eve", 2026, date(2026, 2, 16)),
    ("lantern_festival", 2026, date(2026, 3, 3)),
    ("tomb_sweeping_day", 2026, date(2026, 4, 5)),
    ("dragon_boat_festival", 2026, date(2026, 6, 19)),
    ("mid_autumn_festival", 2026, date(2026, 9, 25)),
    ("spring_festival", 2027, date(2027, 2, 6)),
    ("national_day", 2026, date(2026, 10, 1)),
], ids=lambda v: str(v))
def test_holiday_dates_come_from_the_calendar_library(name, year, expected):
    assert holiday_date(name, year) == expected


def test_the_first_statutory_day_off_comes_from_the_official_schedule():
    assert holiday_date("spring_festival", 2026, first_day_off=True) == date(2026, 2, 15)
    assert holiday_date("national_day", 2026, first_day_off=True) == date(2026, 10, 1)


def test_a_holiday_greeting_a_week_before_the_spring_festival(build):
    engine = build([rule("cny", {"holiday": "spring_festival", "offset": "-7d", "at": "10:00"}, "promo.j2")],
                   at(2026, 2, 1, 0))
    ingest(engine, order("a", at(2026, 2, 2)) + order("b", at(2026, 2, 2), customer="c-2"))

    run(engine, at(2026, 2, 20, 0))

    assert sent(engine) == [("2026-02-10 10:00", "cny", "c-1"), ("2026-02-10 10:00", "cny", "c-2")]


def test_an_11_11_afternoon_broadcast_to_frequent_customers_who_have_not_ordered_today(build):
    broadcast = rule("d11-afternoon", {"date": "11-11", "at": "14:00"}, "promo.j2",
                     **{"if": "customer.rfm.frequency >= 3 and customer.days_since_last_order >= 1"})
    engine = build([broadcast], at(2026, 10, 1, 0))
    frequent = [e for i in range(3) for e in order(f"f{i}", at(2026, 10, 2 + i), customer="frequent")]
    today = [e for i in range(3) for e in order(f"t{i}", at(2026, 10, 2 + i), customer="bought-today")]
    ingest(engine, frequent + today + order("t9", at(2026, 11, 11, 0, 30), customer="bought-today")
           + order("o1", at(2026, 10, 2), customer="once"))

    run(engine, at(2026, 11, 12, 0), start=at(2026, 11, 1, 0))

    assert sent(engine) == [("2026-11-11 14:00", "d11-afternoon", "frequent")]


def test_a_broadcast_enqueues_page_by_page_and_a_crash_half_way_loses_and_repeats_nothing(build, monkeypatch):
    """Millions of matching customers must not be held in memory until the sweep ends: the
    messages are written a chunk at a time; if the sweep dies before it finishes, the next
    one covers the same moment again and skips the keys already taken."""
    import engine.triggers.sweeps as sweeps

    broadcast = rule("d11", {"date": "11-11", "at": "14:00"}, "promo.j2", **{"if": "customer.orders >= 1"})
    engine = build([broadcast], at(2026, 11, 1, 0))
    ingest(engine, [e for i in range(10) for e in order(f"b{i}", at(2026, 10, 2), customer=f"c-{i:02d}")])
    engine.sweep(at(2026, 11, 10, 0))  # the rule's first sweep: from here on
    monkeypatch.setattr(sweeps, "PAGE_WRITE", 2)
    pages = engine.store.customer_pages
    monkeypatch.setattr(engine.store, "customer_pages", lambda size=2000, **kw: pages(size=3, **kw))
    write_sweep = engine.store.write_sweep

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went down")

    monkeypatch.setattr(engine.store, "write_sweep", crash)
    failed = engine.sweep(at(2026, 11, 11, 13, 30))  # the rule's sweep fails alone, and says why
    assert failed.errors == {"d11": "RuntimeError: the machine went down"}
    early = engine.store.rows("messages")
    assert len(early) == 9  # three pages of 3 written before the crash, the last customer not

    monkeypatch.setattr(engine.store, "write_sweep", write_sweep)
    report = engine.sweep(at(2026, 11, 11, 13, 30))

    assert report.enqueued["d11"] == 1
    assert sorted(m["customer_id"] for m in engine.store.rows("messages")) == [f"c-{i:02d}" for i in range(10)]


def test_a_cron_trigger_fires_at_each_of_its_times(build):
    engine = build([rule("monday-note", {"cron": "0 10 * * 1"}, "promo.j2")], at(2026, 11, 1, 0))
    ingest(engine, order("a", at(2026, 11, 1, 1)))

    run(engine, at(2026, 11, 17, 0))

    assert sent(engine) == [("2026-11-02 10:00", "monday-note", "c-1"), ("2026-11-09 10:00", "monday-note", "c-1"),
                            ("2026-11-16 10:00", "monday-note", "c-1")]


# Standard cron (Vixie/Debian, POSIX): weekday 0 and 7 are Sunday; a step over the weekday
# field counts from Sunday; when both day-of-month and weekday are restricted, either one
# matches. Next fire times after Monday 2026-11-30 10:00 Shanghai, as `cron` computes them.
CRON_TABLE = [
    ("0 10 * * 1", ["Mon 12-07 10:00", "Mon 12-14 10:00", "Mon 12-21 10:00"]),
    ("0 10 * * */2", ["Tue 12-01 10:00", "Thu 12-03 10:00", "Sat 12-05 10:00", "Sun 12-06 10:00"]),
    ("0 10 * * 0-6/2", ["Tue 12-01 10:00", "Thu 12-03 10:00", "Sat 12-05 10:00", "Sun 12-06 10:00"]),
    ("0 10 * * 0", ["Sun 12-06 10:00", "Sun 12-13 10:00"]),
    ("0 10 * * 7", ["Sun 12-06 10:00", "Sun 12-13 10:00"]),
    ("0 10 * * SUN,WED", ["Wed 12-02 10:00", "Sun 12-06 10:00", "Wed 12-09 10:00"]),
    ("30 9 1-3 * *", ["Tue 12-01 09:30", "Wed 12-02 09:30", "Thu 12-03 09:30", "Fri 01-01 09:30"]),
    ("0 10 8 * 5", ["Fri 12-04 10:00", "Tue 12-08 10:00", "Fri 12-11 10:00"]),  # the 8th, or a Friday
    ("0 20 11 11 *", ["Thu 11-11 20:00"]),
    ("*/20 10 * * 2", ["Tue 12-01 10:00", "Tue 12-01 10:20", "Tue 12-01 10:40", "Tue 12-08 10:00"]),
    ("0 0 29 2 *", ["Tue 02-29 00:00"]),
]


@pytest.mark.parametrize(("expression", "expected"), CRON_TABLE, ids=[e for e, _ in CRON_TABLE])
def test_a_cron_trigger_means_standard_cron(expression, expected):
    trigger = parse_trigger({"cron": expression}, SHANGHAI)
    start = datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI)  # a Monday
    end = datetime(2028, 3, 1, tzinfo=SHANGHAI)

    moments = [t.astimezone(SHANGHAI) for t, _ in trigger.moments(start, end, SHANGHAI)]

    assert [t.strftime("%a %m-%d %H:%M") for t in moments[:len(expected)]] == expected
    if expression == "0 0 29 2 *":
        assert moments[0].year == 2028  # 2027 has no 29 February


@pytest.mark.parametrize(("expression", "why"), [
    ("0 10 * *", "Wrong number of fields"),
    ("0 25 * * *", "Bad hour"),
    ("0 10 * * 8", "Bad day-of-week"),
    ("every monday", "Wrong number of fields"),
], ids=["four-fields", "hour-25", "weekday-8", "words"])
def test_a_bad_cron_expression_says_how_to_write_one(expression, why):
    with pytest.raises(TriggerError) as caught:
        parse_trigger({"cron": expression}, SHANGHAI)

    assert caught.value.message == (f"bad cron expression {expression!r} ({why}); write five fields: minute hour "
                                    "day month weekday, such as '0 10 * * 1' (Monday 10:00)")


def test_quiet_hours_hold_a_calendar_message_that_falls_at_night(build):
    engine = build([rule("winback-60d", {"idle": "60d"})], at(2026, 1, 1, 0))
    ingest(engine, order("a", at(2026, 1, 5, 23, 10)))

    run(engine, at(2026, 3, 8, 0))

    assert sent(engine) == [("2026-03-07 09:00", "winback-60d", "c-1")]


# ---- the dry-run sweeps too ---------------------------------------------------------------

def test_the_dry_run_shows_the_idle_and_birthday_messages_of_a_few_months(build):
    engine = build([rule("winback-60d", {"idle": "60d"}), rule("bday", {"birthday": "0d", "at": "10:00"}, "bday.j2")],
                   at(2026, 1, 1, 0))
    events = order("a", at(2026, 1, 5, 10), birthday="1990-02-20") + order("b", at(2026, 3, 1, 12), customer="c-2")
    lines = [(i + 1, __import__("json").dumps(e, ensure_ascii=False)) for i, e in enumerate(events)]

    result = run_dry(engine.project, lines, until=at(2026, 3, 31, 0))

    assert [(d["time"].astimezone(SHANGHAI).strftime("%m-%d %H:%M"), d["rule_id"], d["customer_id"], d["outcome"])
            for d in result.decisions] == [("02-20 10:00", "bday", "c-1", "sent"),
                                           ("03-06 10:00", "winback-60d", "c-1", "sent")]


@pytest.mark.parametrize("page_write", [1, 5000], ids=["written-page-by-page", "written-at-the-end"])
def test_the_dry_run_decides_a_broadcast_before_the_customers_next_event(build, monkeypatch, page_write):
    """A broadcast's messages written before its sweep ends must still be decided at their
    moment, before a later event of their customer (here an order at 10:30 that the
    `unless` would see)."""
    import json

    import engine.triggers.sweeps as sweeps

    monkeypatch.setattr(sweeps, "PAGE_WRITE", page_write)
    broadcast = rule("d11", {"date": "11-11", "at": "10:00"}, "promo.j2",
                     **{"if": "customer.orders >= 1", "unless": "customer.ordered_today"})
    engine = build([broadcast], at(2026, 10, 1, 0))
    events = [e for i in range(3) for e in order(f"o{i}", at(2026, 10, 2), customer=f"c-{i}")]
    events += order("again", at(2026, 11, 11, 10, 30), customer="c-0")
    lines = [(i + 1, json.dumps(e, ensure_ascii=False)) for i, e in enumerate(events)]

    result = run_dry(engine.project, lines, until=at(2026, 11, 12, 0))

    assert sorted((d["customer_id"], d["outcome"]) for d in result.decisions if d["rule_id"] == "d11") == [
        ("c-0", "sent"), ("c-1", "sent"), ("c-2", "sent")]
