"""Crash safety, as an operator would meet it: `python run.py daemon` sending a few
thousand messages through a webhook channel to a local HTTP sink is killed with SIGKILL
at random moments and started again, until the queue is empty. Then we count at the
sink: every message arrived (zero lost), and no message took effect twice (zero
duplicates by idempotency key: a message re-sent after a crash carries the key of its
first attempt, and the sink, like a real provider, applies a key once). On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from engine.store import Store
from tests.conftest import ROOT
from tests.localhttp import Sink

MESSAGES = 3000


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def project(tmp_path: Path, db_url: str, sink: Sink) -> Path:
    for name in ("rules", "templates"):
        (tmp_path / name).mkdir()
    config = {
        "timezone": "Asia/Shanghai", "database": db_url, "shop": {"name": "山野户外"},
        "channels": {"sms": {"type": "webhook", "url": sink.url, "contact": "phone", "timeout": "5s"}},
        "limits": {"marketing": {"per_customer": [], "quiet_hours": None},
                   "service": {"per_customer": [], "quiet_hours": None}},  # any hour of the real clock
        "dispatch": {"batch_size": 200, "tick": "1s", "lease": "2s"},
        "http": False,
    }
    rules = {"rules": [{"id": "shipping-notice", "kind": "service", "when": "order.shipped", "channel": "sms",
                        "template": "shipped.j2", "once_per": "order"}]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (tmp_path / "rules" / "r.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    (tmp_path / "templates" / "shipped.j2").write_text("订单{{ order.id }}已发货", encoding="utf-8")
    return tmp_path / "config.yaml"


def test_sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice(tmp_path, db_url, sink):
    config = project(tmp_path, db_url, sink)
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    events = tmp_path / "shipped.jsonl"
    events.write_text("".join(json.dumps({
        "id": f"e-{i}", "type": "order.shipped", "time": now.isoformat(),
        "customer": {"id": f"c-{i}", "phone": f"138{i:08d}"}, "order": {"id": f"o-{i}"}}) + "\n"
        for i in range(MESSAGES)), encoding="utf-8")
    ingest = subprocess.run([sys.executable, "run.py", "ingest", str(events), "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert ingest.returncode == 0, ingest.stderr
    rng = random.Random(20261125)
    kills, log = 0, tmp_path / "daemon.log"

    def start() -> subprocess.Popen:
        with log.open("a", encoding="utf-8") as err:
            return subprocess.Popen([sys.executable, "run.py", "daemon", "--config", str(config)], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=err)

    # kill it whenever it has sent a little more, at a random moment of its work
    while kills < 6 and len(set(sink.requests)) < MESSAGES * 0.8:
        proc = start()
        seen = sink.count()
        deadline = time.monotonic() + 60
        while sink.count() < seen + rng.randint(50, 400) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    # then let it finish: the last claims come back after the lease
    proc = start()
    store = Store(db_url, create=False)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if store.count("messages", state="sent") == MESSAGES:
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        states = Counter(m["state"] for m in store.rows("messages"))
        sent_log = Counter(r["message_id"] for r in store.rows("message_log") if r["outcome"] == "sent")
    finally:
        store.close()

    assert kills >= 3
    assert states == {"sent": MESSAGES}
    assert len(sink.applied) == MESSAGES  # zero lost
    repeats = Counter(sink.requests)
    assert sum(repeats.values()) - len(repeats) < kills * 200  # re-sent: at most a batch in flight per kill
    assert all(n == 1 for n in sent_log.values()) and len(sent_log) == MESSAGES  # one 'sent' record each
    assert {body["idempotency_key"] for body in sink.applied.values()} == {f"msg-{i}" for i in range(1, MESSAGES + 1)}
    assert sorted(body["to"] for body in sink.applied.values()) == sorted(f"138{i:08d}" for i in range(MESSAGES))
