"""The daemon end to end, as an operator runs it: `python run.py daemon` in one process,
`python run.py ingest FILE` in another, messages appearing in the file channel's outbox.

The daemon reads the real clock, so the events here are a few minutes old by the wall
clock: their messages are due now and not yet expired. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.store import Store
from tests.conftest import ROOT
from tests.helpers import created, event, jsonl

DEADLINE = 30  # seconds


@pytest.fixture
def config(workdir, db_url) -> Path:
    """The shipped config.yaml, rules/ and templates/ copied to a temporary folder, with
    the database and the outboxes pointing there."""
    config = workdir / "config.yaml"
    text = config.read_text(encoding="utf-8")
    replacements = {
        "database: sqlite:///var/engine.db": f"database: {db_url}",
        "path: var/outbox/sms.jsonl": f"path: {workdir / 'outbox' / 'sms.jsonl'}",
        "path: var/outbox/email.jsonl": f"path: {workdir / 'outbox' / 'email.jsonl'}",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    text, ticks = re.subn(r"(?m)^(\s+tick:)\s*\S+", r"\1 1s", text)
    assert ticks == 1
    # these tests run at any hour of the real clock: no quiet hours
    text, quiet = re.subn(r"(?m)^(\s+quiet_hours:).*$", r"\1 null", text)
    assert quiet == 2
    text += f'\nhttp:\n  listen: "127.0.0.1:{free_port()}"\n'
    config.write_text(text, encoding="utf-8")
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_port(config: Path) -> int:
    return int(re.search(r'listen: "127.0.0.1:(\d+)"', config.read_text(encoding="utf-8")).group(1))


def run_py(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, **kw)


def wait_for(predicate, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        assert proc.poll() is None, f"the daemon exited ({proc.returncode}):\n{log.read_text()}"
        time.sleep(0.1)
    pytest.fail(f"no {what} after {DEADLINE}s; daemon log:\n{log.read_text()}")


def outbox_lines(path: Path, count: int) -> list[dict] | None:
    if not path.is_file():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines] if len(lines) >= count else None


TOKEN = "daemon-test-token-5d1e"


@pytest.fixture
def daemon(config, tmp_path):
    log = tmp_path / "daemon.log"
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen([sys.executable, "run.py", "daemon", "--config", str(config)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, text=True,
                                env={**os.environ, "ENGINE_TOKEN": TOKEN})
    try:
        wait_for(lambda: "[daemon] running: dispatch every 1.0s" in log.read_text(encoding="utf-8"),
                 "'running' line in the daemon's log", proc, log)
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_the_daemon_sends_what_an_ingested_file_makes_due_and_stops_cleanly_on_sigterm(daemon, config, tmp_path,
                                                                                       db_url):
    proc, log = daemon
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(hours=3)  # the helpers count minutes from here
    events = [
        created("evt-1", 140, customer="c-1", order="o-1", start=start),      # 40 min ago: reminder due
        created("evt-2", 140, customer="c-2", order="o-2", start=start),      # paid 35 min ago: cancelled
        event("evt-3", "order.paid", 145, "c-2", "o-2", start=start),
        created("evt-4", 0, customer="c-3", order="o-3", start=start),        # paid, shipped 5 min ago
        event("evt-5", "order.paid", 5, "c-3", "o-3", start=start),
        event("evt-6", "order.shipped", 175, "c-3", "o-3", start=start, data={"carrier": "顺丰", "tracking_no": "SF100"}),
    ]
    events[3]["customer"]["name"] = "张伟"
    events[3]["order"]["items"][0]["name"] = "冲锋衣"
    source = tmp_path / "orders.jsonl"
    source.write_text(jsonl(events), encoding="utf-8")

    ingest = run_py("ingest", str(source), "--config", str(config))

    assert ingest.returncode == 0, ingest.stderr
    assert ingest.stdout == (f"{source}: 6 events stored, 0 already stored (ignored), 0 rejected; "
                             "7 messages scheduled, 0 held back as duplicates\n")  # 2 of them honeymoon notes, 30 d ahead
    sent = wait_for(lambda: outbox_lines(tmp_path / "outbox" / "sms.jsonl", 2), "2 messages in the outbox", proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE) == 0

    assert [(m["rule_id"], m["customer_id"], m["order_id"], m["channel"], m["kind"], m["to"], m["body"])
            for m in sent] == [
        ("payment-reminder", "c-1", "o-1", "sms", "service", "13800000000",
         "【山野户外】王小明，您拍下的羽绒睡袋还未付款，库存有限，付款后我们会尽快为您发货哦~"),
        ("shipping-notice", "c-3", "o-3", "sms", "service", "13800000000",
         "【山野户外】张伟，您的冲锋衣已发货，顺丰单号SF100，请留意查收。"),
    ]
    assert len(outbox_lines(tmp_path / "outbox" / "sms.jsonl", 0)) == 2  # nothing more after the wait
    assert all(m["time"].endswith("+08:00") for m in sent)  # the shop's time, with its offset
    lines = log.read_text(encoding="utf-8").splitlines()
    assert any(line.endswith("[daemon] dispatched 4 messages: cancelled 2, sent 2") for line in lines), lines
    # one operator line per decision, the phone masked
    assert any(line.endswith("[dispatch] payment-reminder c-1 (138****0000) sent") for line in lines), lines
    assert any("[dispatch] payment-reminder c-2 (138****0000) cancelled/unless: order o-2 is paid now" in line
               for line in lines), lines
    assert not any("13800000000" in line for line in lines)
    assert lines[-1].endswith("[daemon] stopped"), lines
    # the web server's own lines (standard logging) come through the same sink, in the same format
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00 INFO    "
    assert any(re.fullmatch(stamp + r"\[uvicorn\.error\] Started server process \[\d+\]", line) for line in lines), lines
    assert any(re.fullmatch(stamp + r"\[uvicorn\.error\] Shutting down", line) for line in lines), lines
    store = Store(db_url, create=False)
    try:
        decisions = sorted((r["rule_id"], r["customer_id"], r["outcome"], r["reason"])
                           for r in store.rows("message_log"))
        pending = [(m["rule_id"], m["customer_id"]) for m in store.rows("messages", state="pending")]
    finally:
        store.close()
    assert decisions == [
        ("payment-reminder", "c-1", "sent", None),
        ("payment-reminder", "c-2", "cancelled", "unless"),
        ("payment-reminder", "c-3", "cancelled", "unless"),
        ("shipping-notice", "c-3", "sent", None),
    ]
    # due 72 h after shipping, and 30 days after each customer's first paid order
    assert pending == [("honeymoon-30d", "c-2"), ("honeymoon-30d", "c-3"), ("logistics-stuck", "c-3")]


def test_ingest_rejects_a_malformed_line_with_its_line_number_keeps_it_and_loads_the_rest(config, tmp_path, db_url):
    good = created("evt-1", customer="c-1", order="o-1")
    source = tmp_path / "orders.jsonl"
    source.write_text(jsonl([good])
                      + '{"id": "evt-2", "type": "order.paid", "time": \n'
                      + '{"id": "evt-3", "type": "order.paid", "customer": {"id": "c-1"}, "order": {"id": "o-1"}}\n',
                      encoding="utf-8")

    result = run_py("ingest", str(source), "--config", str(config))

    assert result.returncode == 3
    assert [line for line in result.stderr.splitlines() if ": rejected: " in line] == [
        f"{source}:2: rejected: not valid JSON: Expecting value at column 47",
        f"{source}:3: rejected: time: is required (ISO 8601, such as 2026-11-11T00:00:05+08:00)",
    ]
    assert result.stdout == (f"{source}: 1 events stored, 0 already stored (ignored), 2 rejected; "
                             "1 messages scheduled, 0 held back as duplicates\n")
    store = Store(db_url, create=False)
    try:
        rejected = [(r["source"], r["line"], r["raw"], r["reason"]) for r in store.rows("rejected_events")]
        stored = [e["id"] for e in store.rows("events")]
    finally:
        store.close()
    assert rejected == [
        (str(source), 2, '{"id": "evt-2", "type": "order.paid", "time": ',
         "not valid JSON: Expecting value at column 47"),
        (str(source), 3, '{"id": "evt-3", "type": "order.paid", "customer": {"id": "c-1"}, "order": {"id": "o-1"}}',
         "time: is required (ISO 8601, such as 2026-11-11T00:00:05+08:00)"),
    ]
    assert stored == ["evt-1"]


def test_ingest_keeps_a_line_that_is_not_utf8_and_loads_the_rest(config, tmp_path, db_url, request):
    source = tmp_path / "orders.jsonl"
    source.write_bytes(jsonl([created("evt-1")]).encode("utf-8")
                       + '{"id": "evt-2", "type": "order.paid", "customer": {"id": "c-1", "name": "王'.encode("gbk")
                       + b'"}}\n')

    result = run_py("ingest", str(source), "--config", str(config))

    assert result.returncode == 3, result.stderr
    assert result.stdout == (f"{source}: 1 events stored, 0 already stored (ignored), 1 rejected; "
                             "1 messages scheduled, 0 held back as duplicates\n")
    store = Store(db_url, create=False)
    try:
        rejected = [(r["source"], r["line"]) for r in store.rows("rejected_events")]
        stored = [e["id"] for e in store.rows("events")]
    finally:
        store.close()
    assert rejected == [(str(source), 2)]
    assert stored == ["evt-1"]


def test_ingesting_the_same_file_twice_stores_and_schedules_nothing_the_second_time(config, tmp_path):
    source = tmp_path / "orders.jsonl"
    source.write_text(jsonl([created("evt-1"), event("evt-2", "order.paid", 5)]), encoding="utf-8")

    first = run_py("ingest", str(source), "--config", str(config))
    second = run_py("ingest", str(source), "--config", str(config))

    assert (first.returncode, second.returncode) == (0, 0)
    assert second.stdout == (f"{source}: 0 events stored, 2 already stored (ignored), 0 rejected; "
                             "0 messages scheduled, 0 held back as duplicates\n")


def test_ingest_reads_events_from_stdin(config, tmp_path):
    result = run_py("ingest", "-", "--config", str(config), input=jsonl([created("evt-1")]))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "-: 1 events stored, 0 already stored (ignored), 0 rejected; 1 messages scheduled, " \
                            "0 held back as duplicates\n"


def test_ingest_with_no_rules_folder_refuses_to_load_rather_than_consuming_the_events(config, tmp_path, db_url):
    bare = tmp_path / "bare"
    bare.mkdir()
    lonely_config = bare / "config.yaml"
    lonely_config.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    source = tmp_path / "orders.jsonl"
    source.write_text(jsonl([created("evt-1")]), encoding="utf-8")

    result = run_py("ingest", str(source), "--config", str(lonely_config))

    assert result.returncode == 2
    assert f"no rules/ folder beside {lonely_config}; pass --rules DIR" in result.stderr
    store = Store(db_url)
    try:
        assert store.count("events") == 0
    finally:
        store.close()


def test_events_posted_over_http_are_sent_and_sigterm_stops_intake_then_the_daemon(daemon, config, tmp_path):
    proc, log = daemon
    base = f"http://127.0.0.1:{http_port(config)}"
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    body = jsonl([created("evt-1", 20, customer="c-1", order="o-1", start=start)]).encode()  # reminder due 10 min ago
    request = urllib.request.Request(f"{base}/events", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})

    with urllib.request.urlopen(request, timeout=DEADLINE) as resp:
        assert (resp.status, json.loads(resp.read())) == (202, {"accepted": ["evt-1"], "duplicates": []})
    sent = wait_for(lambda: outbox_lines(tmp_path / "outbox" / "sms.jsonl", 1), "the reminder in the outbox", proc, log)
    with urllib.request.urlopen(f"{base}/healthz", timeout=DEADLINE) as resp:
        health = json.loads(resp.read())
    with urllib.request.urlopen(f"{base}/metrics", timeout=DEADLINE) as resp:
        metrics = resp.read().decode()
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=DEADLINE) == 0
    assert [(m["rule_id"], m["customer_id"]) for m in sent] == [("payment-reminder", "c-1")]
    assert health == {"status": "ok", "rules": 22, "rule_errors": [], "database": "ok"}
    assert 'engine_events_total{outcome="accepted"} 1.0' in metrics
    assert 'engine_messages_total{outcome="sent",rule="payment-reminder"} 1.0' in metrics
    text = log.read_text(encoding="utf-8")
    assert f"HTTP API on http://127.0.0.1:{http_port(config)}" in text
    assert text.index("no new HTTP requests") < text.index("finishing the dispatch pass") < text.index("stopped")
    assert TOKEN not in text


def test_the_running_daemon_reloads_a_changed_rule_file_and_refuses_a_broken_one(daemon, config, tmp_path):
    proc, log = daemon
    rules = config.parent / "rules" / "order_service.yaml"
    good = rules.read_text(encoding="utf-8")
    health_url = f"http://127.0.0.1:{http_port(config)}/healthz"

    def health():
        with urllib.request.urlopen(health_url, timeout=DEADLINE) as resp:
            return resp.status, json.loads(resp.read())

    def last_reload():
        return health()[1].get("last_reload")

    rules.write_text(good.replace("    wait: 30m\n", "    wait: soon\n", 1), encoding="utf-8")
    refused = wait_for(lambda: (r := last_reload()) and not r["ok"] and r, "a refused reload", proc, log)
    degraded = health()
    status = run_py("status", "--config", str(config))
    rules.write_text(good.replace("    wait: 30m\n", "    wait: 45m\n", 1), encoding="utf-8")
    accepted = wait_for(lambda: (r := last_reload()) and r["ok"] and r, "an accepted reload", proc, log)
    healthy = health()
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=DEADLINE) == 0
    assert refused["errors"][0].startswith(f"{rules}:10: rules[0].wait:")
    assert refused["at"].endswith("+08:00")  # the shop's time
    assert degraded[0] == 200
    assert (degraded[1]["status"], degraded[1]["rule_errors"]) == ("degraded", refused["errors"])
    assert "health: degraded: the rules running differ from the files on disk, 1 error(s):\n" \
           f"  {refused['errors'][0]}\n" in status.stdout, status.stdout
    assert accepted["changed"] == ["payment-reminder"]
    assert healthy[0] == 200 and (healthy[1]["status"], healthy[1]["rule_errors"]) == ("ok", [])
    text = log.read_text(encoding="utf-8")
    assert "reload refused: 1 error(s); the last good rules, templates and config keep running" in text
    assert "reloaded: 22 rules (0 added, 0 removed, 1 changed)" in text


def test_status_shows_the_queue_the_next_due_failures_and_the_daemons_state(daemon, config, tmp_path):
    proc, log = daemon
    now = datetime.now(timezone.utc).replace(microsecond=0)
    events = [created("evt-1", 0, customer="c-1", order="o-1", start=now + timedelta(minutes=5)),  # due in 35 min
              created("evt-2", 0, customer="c-2", order="o-2", start=now - timedelta(minutes=40))]  # due now
    events[1]["customer"]["phone"] = ""  # no phone: fails as no_contact
    source = tmp_path / "orders.jsonl"
    source.write_text(jsonl(events), encoding="utf-8")
    assert run_py("ingest", str(source), "--config", str(config)).returncode == 0
    wait_for(lambda: "no_contact" in log.read_text(encoding="utf-8"), "the failure", proc, log)

    result = run_py("status", "--config", str(config))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE) == 0
    after = run_py("status", "--config", str(config))

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(rf"^daemon: running \(pid {proc.pid}, since .*, HTTP 127.0.0.1:{http_port(config)}\)$", out, re.M), out
    assert "rules on disk: 22 (22 enabled), 0 error(s)" in out
    assert re.search(r"^  payment-reminder\s+1\s+0\s+0$", out, re.M), out
    assert re.search(r"^  \S+ \S+  payment-reminder\s+sms\s+c-1 \(138\*\*\*\*0000\)$", out, re.M), out
    assert re.search(r"payment-reminder\s+c-2  no_contact: customer c-2 has no phone for channel sms", out), out
    assert after.stdout.startswith(f"daemon: stopped (pid {proc.pid}")
