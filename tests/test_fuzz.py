"""Fuzzing the doors (issue 12): hypothesis writes hostile events and hostile rule files.

Events: whatever a request holds, the HTTP intake answers 202 or 400 (never 500), every
valid event of the request is stored, and dispatch goes on sending the valid customers'
messages. Rules: whatever a rules file holds, loading it (`check`, the daemon's start and
reload) never raises, and a rule it accepts never breaks intake, dispatch or the sweeps.
On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.app import Engine, load_project
from engine.intake.events import parse_event
from tests.conftest import recording_channels
from tests.daemon.test_http import ENV, Api
from tests.helpers import T0, event

HOSTILE_NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 10 ** 30, -(10 ** 20), 1e300])
HOSTILE_TEXTS = st.sampled_from(["\u0000", "a\u0000b", "\ud800", "x" * 5000, "", " ", "13800000001,13800000002",
                                 "a@x.com; b@y.org", "2099-01-01T00:00:00+08:00", "9999-12-31T23:59:59-14:00",
                                 "0001-01-01T00:00:00+14:00", "not a time", "☃" * 300])
HOSTILE_VALUES = st.one_of(HOSTILE_NUMBERS, HOSTILE_TEXTS, st.just(None), st.just([]), st.just({}),
                           st.just([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
                           st.integers(-(10 ** 18), 10 ** 18), st.text(max_size=50))
PATHS = [("id",), ("type",), ("time",), ("customer", "id"), ("customer", "name"), ("customer", "phone"),
         ("customer", "email"), ("customer", "birthday"), ("customer", "timezone"), ("customer", "tags"),
         ("order", "id"), ("order", "amount"), ("order", "items"), ("data", "carrier"), ("data", "x"),
         ("customer", "\u0000key"), ("order", "items", 0, "price")]


def valid(tag: str, i: int) -> dict:
    return event(f"{tag}-ok-{i}", "order.shipped", 1, f"{tag}-c{i}", f"{tag}-o{i}", phone="13800000000",
                 name="王小明", data={"carrier": "顺丰", "tracking_no": "SF1"})


def spoil(value: dict, path: tuple, bad) -> dict:
    out = json.loads(json.dumps(value))
    node = out
    for key in path[:-1]:
        if isinstance(key, int):
            if not isinstance(node, list) or not node:
                return out
            node = node[key]
        else:
            node = node.setdefault(key, {} if path[path.index(key) + 1] != 0 else [{}])
    if isinstance(node, dict):
        node[path[-1]] = bad
    return out


@pytest.fixture
def server(engine):
    s = Api(engine, ENV, max_body=5 * 1024 * 1024)
    yield s
    s.server.stop()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(spoiled=st.lists(st.tuples(st.sampled_from(PATHS), HOSTILE_VALUES), min_size=1, max_size=4),
       as_array=st.booleans())
def test_whatever_a_request_holds_the_intake_answers_and_stores_every_valid_event(server, engine, spoiled,
                                                                                  as_array):
    tag = uuid.uuid4().hex[:8]
    good = [valid(tag, i) for i in range(2)]
    bad = [spoil(valid(tag, 10 + n), path, value) for n, (path, value) in enumerate(spoiled)]
    items = [good[0], *bad, good[1]]
    body = (json.dumps(items) if as_array else "\n".join(json.dumps(e) for e in items)).encode()

    status, answer = server.post(body)

    assert status in (202, 400), answer
    assert {e["id"] for e in good} <= set(answer["accepted"])
    stored = {e["id"] for e in engine.store.rows("events")}
    assert {e["id"] for e in good} <= stored
    assert len(answer["accepted"]) + len(answer.get("rejected", [])) == len(items)
    engine.clock.set(T0 + timedelta(minutes=5))
    engine.clock.advance(timedelta(seconds=10))  # each example a little later: the sms channel paces at 50/s
    engine.dispatch()  # never raises, whatever was stored
    sent = {m.order_id for m in engine.channels["sms"].sent}
    assert {e["order"]["id"] for e in good} <= sent


# ---- rule files ---------------------------------------------------------------------

DURATIONS = st.sampled_from(["30m", "1d", "3650d", "3651d", "900000000d", "99999999999d", "1e9d", "0s", "-1d",
                             "1.5h", "5", "", "  ", "1 w", "10y"])
EXPRESSIONS = st.sampled_from([
    "customer.orders >= 1", "customer.orders >= 99999999999999999999999", "customer.days_since_last_order >= 99999999",
    "customer.days_since_last_order < -99999999", "order.amount * 10 ** 20 > 0", "'a' * 10 ** 9 == ''",
    "(range(100000)|list|length) > 0", "customer.spent > 1e400", "order.rating == 'bad'", "customer.rfm.frequency >= 7",
    "customer.tags contains 'vip'", "segment('nope')", "lipsum(5) != ''", "1 / 0 > 0", "order.items[99].sku == 'x'",
    "customer.nmae == 'x'", "now > datetime('9999-12-31')", "'%s' % 1 == '1'", "'x'.ljust(99999999) == ''",
])
TRIGGERS = st.one_of(
    st.sampled_from(["order.paid", "order.shipped", "order.created"]),
    st.fixed_dictionaries({"idle": DURATIONS}),
    st.fixed_dictionaries({"birthday": st.sampled_from(["-3d", "0d", "-99999d", "3650d", "x"])}),
    st.fixed_dictionaries({"cron": st.sampled_from(["0 10 * * *", "0 10 * * */2", "* * * * *", "61 * * * *",
                                                    "0 0 31 2 *", "@yearly", "0 10 * * 1-5/2"])}),
    st.fixed_dictionaries({"date": st.sampled_from(["11-11", "02-30", "9999-12-31", "0001-01-01", "13-01"]),
                           "at": st.sampled_from(["14:00", "25:00", "10:00"])}),
    st.fixed_dictionaries({"holiday": st.sampled_from(["singles_day", "中秋节", "double_eleven", "x"]),
                           "offset": st.sampled_from(["-3d", "-3650d", "-99999999d"])}),
)


@st.composite
def rule_files(draw):
    rule = {"id": "fuzzed", "kind": draw(st.sampled_from(["marketing", "service"])), "when": draw(TRIGGERS),
            "channel": "sms", "template": "signed_care.sms.j2"}
    for key in ("wait", "expires", "cooldown"):
        if draw(st.booleans()) and not isinstance(rule["when"], dict):
            rule[key] = draw(DURATIONS)
    for key in ("if", "unless"):
        if draw(st.booleans()):
            rule[key] = draw(EXPRESSIONS)
    if draw(st.booleans()):
        rule["window"] = draw(st.sampled_from(["10:00-20:00", "23:00-23:00", "25:00-01:00", "22:00-02:00"]))
    if draw(st.booleans()):
        rule["priority"] = draw(st.integers(-(10 ** 20), 10 ** 20))
    return yaml.safe_dump({"rules": [rule]}, allow_unicode=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(text=rule_files())
def test_whatever_a_rules_file_holds_check_answers_and_an_accepted_rule_breaks_nothing(workdir, store, clock, text):
    for path in (workdir / "rules").glob("*.yaml"):
        path.unlink()
    (workdir / "rules" / "fuzzed.yaml").write_text(text, encoding="utf-8")

    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")  # never raises

    if not project.rules.rules:
        assert project.errors, "a rule left out without a reason"
        return
    engine = Engine(project, store, recording_channels(project), clock)
    tz = project.config.timezone
    tag = uuid.uuid4().hex[:8]
    raw = [event(f"{tag}-{i}", etype, i, f"{tag}-c", f"{tag}-o", phone="13800000000", name="王小明")
           for i, etype in enumerate(["order.created", "order.paid", "order.shipped"])]
    engine.ingest([parse_event(r, tz) for r in raw])
    clock.set(T0 + timedelta(days=400))
    engine.sweep(T0 + timedelta(days=400))
    engine.dispatch()
    assert engine.sweep(T0 + timedelta(days=401)).errors == {}
