"""One bad event, row, request or rule must never stop the engine (issue 12). Each finding
of the security pass is replayed here against the real intake (HTTP on a loopback port,
`run.py ingest`), the real dispatcher and the real sweeps, on SQLite and PostgreSQL: a
clear rejection or error for the bad one, and the rest goes on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from engine.app import Engine, load_project
from engine.clock import SystemClock
from engine.intake.events import parse_event
from engine.store.tables import customers
from tests.conftest import ROOT, recording_channels
from tests.daemon.test_http import ENV, TOKEN, Api
from tests.helpers import T0, created, event, jsonl


@pytest.fixture
def api(engine):
    servers: list[Api] = []

    def start(**kw) -> Api:
        servers.append(Api(engine, ENV, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.server.stop()


def shipped(eid: str, customer: str, order: str, **data) -> dict:
    return event(eid, "order.shipped", 1, customer, order, data=data or {"carrier": "顺丰", "tracking_no": "SF1"},
                 phone="13800000000", name="王小明")


def line(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False)


# each: how the bad event is written (a JSON text), and what the rejection says
HOSTILE = [
    ('{"id": "bad", "type": "order.paid", "time": "2026-11-11T10:00:00+08:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9", "amount": Infinity}}', "order.amount: Infinity is not a number JSON allows"),
    ('{"id": "bad", "type": "order.paid", "time": "2026-11-11T10:00:00+08:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9", "amount": NaN}}', "order.amount: NaN is not a number JSON allows"),
    ('{"id": "bad", "type": "order.paid", "time": "2026-11-11T10:00:00+08:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9", "amount": 1e400}}', "order.amount: 1e400 is not a finite number"),
    ('{"id": "bad", "type": "order.paid", "time": "2026-11-11T10:00:00+08:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9", "amount": ' + "9" * 4000 + '}}', "order.amount: 99999999999999999999... is beyond ±10^15"),
    ('{"id": "bad", "type": "order.shipped", "time": "2026-11-11T10:00:00+08:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9"}, "data": {"carrier": "SF\\u0000"}}', "data.carrier: contains a NUL character (\\u0000)"),
    ('{"id": "bad", "type": "customer.updated", "time": "2026-11-11T10:00:00+08:00", '
     '"customer": {"id": "c-9", "name": "王\\u0000"}}', "customer.name: contains a NUL character (\\u0000)"),
    ('{"id": "bad", "type": "customer.updated", "time": "2026-11-11T10:00:00+08:00", '
     '"customer": {"id": "c-9", "name": "\\ud800"}}', "customer.name: contains an unpaired surrogate"),
    ('{"id": "bad", "type": "order.paid", "time": "9999-12-31T23:59:59-14:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9"}}', "time: '9999-12-31T23:59:59-14:00' is out of the range of times"),
    ('{"id": "bad", "type": "order.paid", "time": "0001-01-01T00:00:00+14:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9"}}', "time: '0001-01-01T00:00:00+14:00' is out of the range of times"),
    ('{"id": "bad", "type": "order.paid", "time": "2099-01-01T00:00:00+08:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9"}}', "is more than a day after now"),
    ('{"id": "bad", "type": "order.paid", "time": "1999-12-31T00:00:00+08:00", "customer": {"id": "c-9"}, '
     '"order": {"id": "o-9"}}', "is before 2000-01-01"),
    ('{"id": "bad", "type": "customer.updated", "time": "2026-11-11T10:00:00+08:00", '
     '"customer": {"id": "c-9"}, "data": {"x": ' + "[" * 1000 + "]" * 1000 + '}}', "nested more than 32 levels"),
    ('{"id": "bad", "type": "customer.updated", "time": "2026-11-11T10:00:00+08:00", '
     '"customer": {"id": "c-9", "phone": "13800000001,13800000002"}}',
     "customer.phone: holds more than one number; send one: 138****0001,138****0002"),
    ('{"id": "bad", "type": "customer.updated", "time": "2026-11-11T10:00:00+08:00", '
     '"customer": {"id": "c-9", "email": "a@x.com, b@y.org"}}',
     "customer.email: holds more than one address; send one"),
    ('{"id": "bad", "type": "customer.updated", "time": "2026-11-11T10:00:00+08:00", '
     '"customer": {"id": "c-9", "name": "' + "王" * 201 + '"}}', "customer.name: is longer than 200 characters"),
]
IDS = ["infinity", "nan", "1e400", "4000-digits", "nul-in-data", "nul-in-name", "surrogate", "year-10000",
       "year-0", "2099", "1999", "nesting-1000", "two-phones", "two-emails", "long-name"]


@pytest.mark.parametrize(("bad", "reason"), HOSTILE, ids=IDS)
def test_a_hostile_event_over_http_is_one_rejected_line_and_the_others_are_stored_and_sent(api, engine, bad, reason):
    good = [shipped("good-1", "c-1", "o-1"), shipped("good-2", "c-2", "o-2")]
    body = line(good[0]) + "\n" + bad + "\n" + line(good[1]) + "\n"

    status, answer = api().post(body.encode())
    engine.clock.set(T0 + timedelta(minutes=5))
    engine.dispatch()

    assert status == 400
    assert answer["accepted"] == ["good-1", "good-2"]
    assert [r["line"] for r in answer["rejected"]] == [2]
    assert reason in answer["rejected"][0]["reason"]
    kept = engine.store.rows("rejected_events")
    assert [(r["line"], reason in r["reason"]) for r in kept] == [(2, True)]
    assert sorted(m.order_id for m in engine.channels["sms"].sent) == ["o-1", "o-2"]


def test_a_hostile_item_of_a_json_array_is_rejected_alone(api, engine):
    body = ('[' + line(shipped("good-1", "c-1", "o-1")) + ', {"id": "bad", "type": "order.paid", "time": '
            '"2026-11-11T10:00:00+08:00", "customer": {"id": "c-9"}, "order": {"id": "o-9", "amount": 1e400}}]')

    status, answer = api().post(body.encode())

    assert (status, answer["accepted"]) == (400, ["good-1"])
    assert answer["rejected"] == [{"line": 2, "reason": "order.amount: 1e400 is not a finite number"}]


def test_a_body_that_is_not_utf8_is_refused_with_the_reason(api, engine):
    body = line(created("e-1")).encode("utf-8")[:-2] + "王".encode("gbk") + b'"}'

    status, answer = api().post(body)

    assert status == 400
    assert answer == {"error": f"the body is not UTF-8 text (byte {len(body) - 3}); send UTF-8"}
    assert engine.store.count("events") == 0


def test_at_least_1000_events_a_request_are_taken_and_more_than_10000_is_413(api, engine):
    many = "".join(line(event(f"e-{i}", "customer.updated", 0, f"c-{i}", None)) + "\n" for i in range(1000))
    too_many = "".join(line(event(f"x-{i}", "customer.updated", 0, "c-1", None)) + "\n" for i in range(10_001))
    server = api(max_body=5 * 1024 * 1024)

    taken = server.post(many.encode())
    refused = server.post(too_many.encode())

    assert taken[0] == 202 and len(taken[1]["accepted"]) == 1000
    assert refused == (413, {"error": "10001 events in one request; send at most 10,000 per request"})
    assert engine.store.count("events") == 1000


def test_without_credentials_nothing_of_the_body_is_read(api, engine):
    server = api()
    port = server.server.address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # a body announced but never sent: the answer must come at once, from the headers alone
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        started = time.monotonic()
        answer = sock.recv(65536)

    assert answer.startswith(b"HTTP/1.1 401")
    assert time.monotonic() - started < 5


def test_a_body_trickled_slowly_is_cut_off(api, engine, monkeypatch):
    import engine.daemon.http as http

    monkeypatch.setattr(http, "BODY_SECONDS", 1)
    server = api()
    with socket.create_connection(("127.0.0.1", server.server.address[1]), timeout=10) as sock:
        sock.sendall((f"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                      "Content-Length: 1000\r\n\r\n{").encode())
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            sock.sendall(b" ")  # one byte now and then, as a slow-loris client does
            time.sleep(0.2)
            sock.settimeout(0.1)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                pass
            assert time.monotonic() - started < 10, "the server kept waiting for the body"

    assert answer.startswith(b"HTTP/1.1 408")


def test_an_event_id_another_customer_used_is_rejected_not_dropped_as_a_duplicate(api, engine):
    server = api()
    first = server.post(line(created("e-1", customer="c-1", order="o-1")))
    again = server.post(line(created("e-1", customer="c-1", order="o-1")))
    other = server.post(line(created("e-1", customer="c-2", order="o-2")))

    assert first[0] == 202 and again == (202, {"accepted": ["e-1"], "duplicates": ["e-1"]})
    assert other[0] == 400
    assert other[1]["rejected"] == [{"line": 1, "reason": "id: 'e-1' is already the id of another customer's event "
                                                         "(customer c-1); each event needs its own id"}]
    assert [r["reason"].startswith("id: 'e-1'") for r in engine.store.rows("rejected_events")] == [True]


def test_a_phone_is_kept_as_one_normalised_number(engine):
    tz = engine.project.config.timezone
    engine.ingest([parse_event(event("e-1", "customer.updated", 0, "c-1", None, phone="+86 138-0000-0001",
                                     email=" a@x.com "), tz)])

    assert engine.store.customers_by_id(["c-1"])["c-1"]["phone"] == "13800000001"
    assert engine.store.customers_by_id(["c-1"])["c-1"]["email"] == "a@x.com"


# ---- the file intake ------------------------------------------------------------------

def test_ingest_of_a_file_with_hostile_lines_stores_the_rest_and_exits_3_without_a_traceback(workdir, tmp_path,
                                                                                             db_url):
    config = workdir / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("database: sqlite:///var/engine.db",
                                                                 f"database: {db_url}"), encoding="utf-8")
    now = datetime.now(timezone.utc)
    good = [created(f"e-{i}", customer=f"c-{i}", order=f"o-{i}", start=now - timedelta(hours=1)) for i in range(3)]
    source = tmp_path / "orders.jsonl"
    source.write_text(line(good[0]) + "\n" + "\n".join(bad for bad, _ in HOSTILE) + "\n" + jsonl(good[1:]),
                      encoding="utf-8")

    result = subprocess.run([sys.executable, "run.py", "ingest", str(source), "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    rejected = [ln for ln in result.stderr.splitlines() if ": rejected: " in ln]
    assert len(rejected) == len(HOSTILE)
    for (_, reason), shown in zip(HOSTILE, rejected):
        assert reason in shown
    assert result.stdout.startswith(f"{source}: 3 events stored, 0 already stored (ignored), {len(HOSTILE)} rejected")


# ---- a row that cannot be read back ------------------------------------------------------

def poison_event_row(store, event_id: str) -> None:
    """What an older version let in: an event payload the database cannot read back
    (SQLite: not JSON; PostgreSQL: a NUL escape, which json -> text refuses)."""
    payload = '{"data": {"carrier": "SF' + ("\\u0000" if store.dialect == "postgresql" else "") + '", '
    payload += '"x": 1}}' if store.dialect == "postgresql" else '"x": Infinity}}'
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE events SET payload = :p WHERE id = :id"), {"p": payload, "id": event_id})


def test_a_message_whose_stored_event_cannot_be_read_fails_alone_and_the_batch_goes_on(engine, store, clock):
    tz = engine.project.config.timezone
    engine.ingest([parse_event(shipped(f"e-{i}", f"c-{i}", f"o-{i}"), tz) for i in range(3)])
    poison_event_row(store, "e-1")
    clock.set(T0 + timedelta(minutes=5))

    engine.dispatch()
    engine.dispatch()  # and again: nothing stalls

    outcomes = {r["order_id"]: (r["outcome"], r["reason"], r["detail"]) for r in store.rows("message_log")
                if r["rule_id"] == "shipping-notice"}
    assert outcomes["o-0"][0] == outcomes["o-2"][0] == "sent"
    assert outcomes["o-1"][:2] == ("failed", "engine_error")
    assert outcomes["o-1"][2].startswith("the stored event e-1 cannot be read back: ")
    assert store.count("messages", state="pending", rule_id="shipping-notice") == 0


def test_database_errors_never_show_the_values_of_a_statement(store):
    row = {"id": "c-1", "name": "王小明", "phone": "13812345678", "email": "a@x.com", "tags": [], "attrs": {},
           "opted_out": []}
    with store.engine.begin() as conn:
        conn.execute(customers.insert(), row)
    with pytest.raises(Exception) as caught:
        with store.engine.begin() as conn:
            conn.execute(customers.insert(), row)

    assert "13812345678" not in str(caught.value) and "a@x.com" not in str(caught.value)


# ---- rules the check must bound ---------------------------------------------------------

def check_project(workdir, rules_text: str, config_extra: str = ""):
    (workdir / "rules" / "x.yaml").write_text(rules_text, encoding="utf-8")
    if config_extra:
        config = workdir / "config.yaml"
        config.write_text(config.read_text(encoding="utf-8") + config_extra, encoding="utf-8")
    started = time.monotonic()
    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")
    return [str(p) for p in project.errors if "x.yaml" in p.file], time.monotonic() - started


RULE = "rules:\n  - id: r\n    when: order.paid\n    channel: sms\n    template: signed_care.sms.j2\n"


@pytest.mark.parametrize(("extra", "message"), [
    ("    wait: 900000000d\n", "bad duration '900000000d': longer than 10 years (3650d)"),
    ("    wait: 99999999999d\n", "bad duration '99999999999d': longer than 10 years (3650d)"),
    ("    if: \"customer.orders >= 99999999999999999999999\"\n", "the number 99999999999999999999999 is beyond ±10^15"),
    ("    if: \"(lipsum(100000)|length) > 0\"\n", "unknown name 'lipsum'"),
    ("    if: \"'a' * 10**9 == ''\"\n", "repeating that would make 1,000,000,000 items; at most 100,000"),
    ("    unless: \"('x'|center(400000000)) == ''\"\n", "center wider than 1,000 characters is not allowed"),
], ids=["wait-900000000d", "wait-99999999999d", "huge-number", "lipsum", "repeat-a-billion", "center"])
def test_check_bounds_what_a_rule_may_ask_for(workdir, extra, message):
    errors, seconds = check_project(workdir, RULE + extra)

    assert len(errors) == 1 and message in errors[0], errors
    assert seconds < 10


@pytest.mark.parametrize("text", [
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefghi", "bcdefghij")) + "rules: [*j]\n",
    "rules: &r [*r]\n",
], ids=["billion-laughs", "alias-to-itself"])
def test_yaml_aliases_are_refused_at_once(workdir, text):
    errors, seconds = check_project(workdir, text)

    assert errors and "is not allowed in these files; write the value out in full" in errors[0]
    assert seconds < 10


def test_a_loop_of_segments_is_named(workdir):
    errors, _ = check_project(workdir, "segments:\n  a: \"segment('b') or customer.orders > 3\"\n  b: \"segment('a')\"\n"
                                       + RULE + "    if: \"segment('a')\"\n")

    assert errors == [
        f"{workdir / 'rules' / 'x.yaml'}:2: segments.a: segments use each other in a loop: a → b → a; a segment "
        "cannot use itself, directly or through others",
        f"{workdir / 'rules' / 'x.yaml'}:9: rules[0].if: segment 'a' is part of a loop of segments (a → b → a); "
        "break the loop"]


def test_a_template_that_runs_too_long_is_named_by_check(workdir):
    (workdir / "templates" / "slow.sms.j2").write_text(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}好", encoding="utf-8")

    errors, seconds = check_project(workdir, RULE.replace("signed_care.sms.j2", "slow.sms.j2"))

    assert len(errors) == 1 and "took too long to render (over 1 s)" in errors[0], errors
    assert seconds < 10


def test_an_expression_over_its_budget_fails_that_message_and_the_others_go(workdir, store, clock):
    (workdir / "rules" / "slow.yaml").write_text(
        "rules:\n  - id: slow\n    kind: service\n    when: order.shipped\n    channel: sms\n"
        "    template: signed_care.sms.j2\n    unless: \"data.slow == 'yes' and (range(100000)|map('string')|"
        "map('center', 999)|map('length')|sum) < 0\"\n", encoding="utf-8")
    (workdir / "config.yaml").write_text((workdir / "config.yaml").read_text(encoding="utf-8")
                                         + "fields:\n  data: [slow]\n", encoding="utf-8")
    import engine.rules.templates as templates

    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")
    assert project.errors == []
    engine = Engine(project, store, recording_channels(project), clock)
    tz = project.config.timezone
    engine.ingest([parse_event(shipped("e-1", "c-1", "o-1", slow="yes"), tz),
                   parse_event(shipped("e-2", "c-2", "o-2", slow="no"), tz)])
    clock.set(T0 + timedelta(minutes=5))
    old = templates.EVALUATION_SECONDS
    templates.EVALUATION_SECONDS = 0.05
    try:
        engine.dispatch()
    finally:
        templates.EVALUATION_SECONDS = old

    slow = {r["order_id"]: (r["outcome"], r["reason"], r["detail"]) for r in store.rows("message_log")
            if r["rule_id"] == "slow"}
    assert slow["o-2"][0] == "sent"
    assert slow["o-1"][:2] == ("failed", "expression_error")
    assert "took too long" in slow["o-1"][2]


def test_a_rule_that_breaks_its_sweep_fails_alone_and_the_other_calendar_rules_go_on(workdir, store, clock):
    (workdir / "rules" / "x.yaml").write_text(
        "rules:\n  - id: far-idle\n    when: {cron: '0 10 * * *'}\n    if: \"customer.days_since_last_order >= "
        "99999999\"\n    channel: sms\n    template: member_day.sms.j2\n", encoding="utf-8")
    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")
    assert project.errors == []
    engine = Engine(project, store, recording_channels(project), clock)

    report = engine.sweep(T0)

    assert report.errors == {}
    assert "far-idle" in report.enqueued


def test_repeated_dispatch_failures_make_health_degraded_until_it_works_again(engine, monkeypatch, request):
    from engine.daemon.ticker import FAILING_AFTER, Daemon

    daemon = Daemon(engine, http=False)
    daemon.scheduler.start(paused=True)
    request.addfinalizer(daemon.scheduler.shutdown)
    real = engine.dispatch

    def broken(**_kw):
        raise RuntimeError("database disk image is malformed")

    monkeypatch.setattr(engine, "dispatch", broken)
    for _ in range(FAILING_AFTER):
        daemon.tick()
    degraded = daemon.health()
    metrics = daemon.metrics.render()[0].decode()
    recorded = engine.store.daemon_state()["daemon"]["failing"]  # what run.py status shows
    monkeypatch.setattr(engine, "dispatch", real)
    daemon.tick()

    assert degraded["status"] == "degraded"
    assert degraded["failing"] == [f"dispatch failed {FAILING_AFTER} times in a row: RuntimeError: database disk "
                                   "image is malformed"]
    assert f'engine_failures_in_a_row{{part="dispatch"}} {FAILING_AFTER}.0' in metrics
    assert recorded == degraded["failing"]
    assert daemon.health()["status"] == "ok" and "failing" not in daemon.health()
    assert engine.store.daemon_state()["daemon"]["failing"] == []


# ---- the real daemon --------------------------------------------------------------------

def test_the_daemon_keeps_sending_after_poison_posted_to_it_and_poison_already_stored(tmp_path, db_url):
    """The security pass's first finding, as it happened: one poisoned order.paid posted to
    the running daemon (and, for good measure, a row an older version stored that cannot
    be read back) stopped every delivery. Now the poison is refused or fails alone, and an
    unrelated shipping notice arrives."""
    import os
    import signal
    import urllib.request

    from engine.store import Store  # noqa: PLC0415
    from tests.daemon.test_burst import project as burst_project
    from tests.daemon.test_daemon import free_port
    from tests.localhttp import Sink

    sink = Sink()
    try:
        config = burst_project(tmp_path, db_url, sink)
        port = free_port()
        config.write_text(config.read_text(encoding="utf-8").replace("http: false", f"http:\n  listen: "
                                                                     f"127.0.0.1:{port}"), encoding="utf-8")
        now = datetime.now(timezone.utc) - timedelta(minutes=1)
        stored = Store(db_url)
        project = load_project(config, tmp_path / "rules", tmp_path / "templates")
        tz = project.config.timezone
        Engine(project, stored, {}, SystemClock()).ingest(
            [parse_event({"id": "old", "type": "order.shipped", "time": now.isoformat(),
                          "customer": {"id": "c-old", "phone": "13900000000"}, "order": {"id": "o-old"}}, tz)])
        poison_event_row(stored, "old")
        stored.close()
        log = tmp_path / "daemon.log"
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "run.py", "daemon", "--config", str(config)], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "ENGINE_TOKEN": TOKEN})
        try:
            deadline = time.monotonic() + 30
            while "[daemon] running" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            poison = ('{"id": "p-1", "type": "order.paid", "time": "%s", "customer": {"id": "c-9"}, '
                      '"order": {"id": "o-9", "amount": Infinity}}\n' % now.isoformat())
            poison += ('{"id": "p-2", "type": "order.shipped", "time": "%s", "customer": {"id": "c-8", "phone": '
                       '"13800000008"}, "order": {"id": "o-8"}, "data": {"carrier": "SF\\u0000"}}\n' % now.isoformat())
            good = line({"id": "g-1", "type": "order.shipped", "time": now.isoformat(),
                         "customer": {"id": "c-1", "phone": "13800000001"}, "order": {"id": "o-1"}}) + "\n"
            request = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=(poison + good).encode(),
                                             method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
            try:
                urllib.request.urlopen(request, timeout=30)
                status, answer = 202, None
            except urllib.error.HTTPError as exc:
                status, answer = exc.code, json.loads(exc.read())
            while not any(body["to"] == "13800000001" for _, _, body in sink.arrivals) \
                    and time.monotonic() < deadline + 30:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as resp:
                health = json.loads(resp.read())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        check = Store(db_url, create=False)
        try:
            old = [r for r in check.rows("message_log") if r["order_id"] == "o-old"]
        finally:
            check.close()
    finally:
        sink.close()

    assert status == 400 and answer["accepted"] == ["g-1"]
    assert [r["line"] for r in answer["rejected"]] == [1, 2]
    assert [body["to"] for _, _, body in sink.arrivals] == ["13800000001"]  # the good one, and only it
    assert [(r["outcome"], r["reason"]) for r in old] == [("failed", "engine_error")]
    assert health["status"] == "ok"  # one message failed alone: nothing is failing over and over
