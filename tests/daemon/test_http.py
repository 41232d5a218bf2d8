"""The daemon's HTTP API over real HTTP: uvicorn serving on a loopback port, the engine
on the test's real database (SQLite file and PostgreSQL), requests sent with urllib."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import urllib.error
import urllib.request

import pytest
from loguru import logger

from engine.config.http import HttpConfig
from engine.daemon.http import build_app
from engine.daemon.metrics import Metrics
from engine.daemon.server import HttpServer, ListenError
from tests.helpers import created, event, jsonl

TOKEN = "tok-3f9a2c77e1"
SECRET = "hmac-secret-81b4d0"
ENV = {"ENGINE_TOKEN": TOKEN, "ENGINE_HMAC_SECRET": SECRET}


class Api:
    """A running server and a small client for it."""

    def __init__(self, engine, environ: dict[str, str], max_body: int = 64 * 1024):
        self.engine = engine
        self.cfg = HttpConfig(host="127.0.0.1", port=0, max_body=max_body)
        self.metrics = Metrics(engine.store, engine.clock.now)
        self.server = HttpServer(build_app(engine, self.cfg, metrics=self.metrics, environ=environ), "127.0.0.1", 0)
        self.server.start()
        self.base = "http://127.0.0.1:%d" % self.server.address[1]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def post(self, body, *, token: str | None = TOKEN, headers: dict | None = None):
        raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        status, answer, _ = self.request("POST", "/events", raw, sent)
        return status, json.loads(answer) if answer else None


@pytest.fixture
def api(engine):
    servers = []

    def start(environ=ENV, **kw) -> Api:
        servers.append(Api(engine, environ, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.server.stop()


def test_one_event_is_stored_and_schedules_its_messages(api, engine):
    status, answer = api().post(created("e-1"))

    assert status == 202
    assert answer == {"accepted": ["e-1"], "duplicates": []}
    assert [e["id"] for e in engine.store.rows("events")] == ["e-1"]
    assert [(m["rule_id"], m["customer_id"], m["state"]) for m in engine.store.rows("messages")] == [
        ("payment-reminder", "c-1", "pending")]


@pytest.mark.parametrize("shape", ["array", "json-lines"])
def test_a_batch_comes_as_a_json_array_or_as_json_lines(api, engine, shape):
    events = [created("e-1"), event("e-2", "order.paid", 5), created("e-3", 6, customer="c-2", order="o-2")]
    body = json.dumps(events) if shape == "array" else jsonl(events)

    status, answer = api().post(body, headers={"Content-Type": "application/x-ndjson"})

    assert status == 202
    assert answer["accepted"] == ["e-1", "e-2", "e-3"]
    assert sorted(e["id"] for e in engine.store.rows("events")) == ["e-1", "e-2", "e-3"]


def test_a_repeated_event_id_is_accepted_and_ignored(api, engine):
    server = api()
    server.post(created("e-1"))

    status, answer = server.post([created("e-1"), created("e-2", 1, customer="c-2", order="o-2")])

    assert status == 202
    assert answer == {"accepted": ["e-1", "e-2"], "duplicates": ["e-1"]}
    assert engine.store.count("messages") == 2  # e-1's reminder once, e-2's


def test_a_bad_line_gets_400_with_its_line_and_reason_and_is_kept_while_the_good_ones_are_stored(api, engine):
    body = (json.dumps(created("e-1")) + "\n"
            + '{"id": "e-2", "type": "order.created",\n'
            + json.dumps({"id": "e-3", "type": "order.paid", "customer": {"id": "c-1"}, "order": {"id": "o-1"}}) + "\n"
            + "\n"
            + json.dumps(created("e-5", 2, customer="c-5", order="o-5")) + "\n")

    status, answer = api().post(body)

    assert status == 400
    assert answer["error"] == "2 of 4 events rejected; the other 2 were stored"
    assert answer["accepted"] == ["e-1", "e-5"]
    assert [r["line"] for r in answer["rejected"]] == [2, 3]
    assert answer["rejected"][0]["reason"].startswith("not valid JSON")
    assert "time" in answer["rejected"][1]["reason"]
    assert sorted(e["id"] for e in engine.store.rows("events")) == ["e-1", "e-5"]
    kept = engine.store.rows("rejected_events")
    assert [(r["source"], r["line"]) for r in kept] == [("http:127.0.0.1", 2), ("http:127.0.0.1", 3)]
    assert kept[1]["raw"].startswith('{"id": "e-3"')


@pytest.mark.parametrize(("body", "error"), [
    ('{"id": "e-1", "type": "order.created"}', "the event was rejected; nothing was stored"),
    ('{"id": "e-1"}\n{"id": "e-2"}\n', "all 2 events were rejected; nothing was stored"),
], ids=["one", "all"])
def test_a_request_with_no_good_event_does_not_say_the_others_were_stored(api, engine, body, error):
    status, answer = api().post(body)

    assert (status, answer["error"], answer["accepted"]) == (400, error, [])
    assert engine.store.count("events") == 0


def test_an_array_item_is_named_by_its_position(api):
    status, answer = api().post([created("e-1"), {"id": "e-2", "type": "order.created", "time": "yesterday"}])

    assert status == 400
    assert answer["rejected"] == [{"line": 2, "reason": answer["rejected"][0]["reason"]}]
    assert "time" in answer["rejected"][0]["reason"]


def test_an_empty_body_is_a_clear_400(api):
    status, answer = api().post(b"  \n")

    assert status == 400
    assert "empty body" in answer["error"]


@pytest.fixture
def logs():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    yield lines
    logger.remove(sink)


@pytest.mark.parametrize("headers, why", [
    ({}, "no credentials"),
    ({"Authorization": "Bearer wrong-token"}, "wrong bearer token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "is not 'Bearer <token>'"),
    ({"X-Signature": "sha256=" + "0" * 64}, "signature does not match the body"),
    ({"X-Signature": "md5=abc"}, "is not 'sha256=<hex digest>'"),
], ids=["none", "wrong-token", "basic-auth", "wrong-signature", "other-algorithm"])
def test_wrong_or_missing_credentials_get_401_and_nothing_is_stored(api, engine, logs, headers, why):
    status, answer = api().post(created("e-1"), token=None, headers=headers)

    assert status == 401
    assert why in answer["error"]
    assert engine.store.count("events") == 0
    refused = [line for line in logs if "refused (401)" in line]
    assert len(refused) == 1 and why in refused[0]
    assert not any(TOKEN in line or SECRET in line for line in logs)


def test_a_body_signed_with_the_shared_secret_is_accepted(api, engine):
    body = json.dumps(created("e-1"), ensure_ascii=False).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()

    status, answer = api().post(body, token=None, headers={"X-Signature": f"sha256={signature}"})

    assert status == 202
    assert answer["accepted"] == ["e-1"]


def test_without_any_secret_configured_the_intake_refuses_with_what_to_set(api, engine):
    status, answer = api(environ={}).post(created("e-1"))

    assert status == 503
    assert "ENGINE_TOKEN" in answer["error"] and "ENGINE_HMAC_SECRET" in answer["error"]
    assert engine.store.count("events") == 0


def test_a_body_over_the_limit_gets_413_before_it_is_read(api, engine):
    server = api(max_body=2048)
    events = [created(f"e-{i}", i, customer=f"c-{i}", order=f"o-{i}") for i in range(20)]

    status, answer = server.post(jsonl(events))

    assert status == 413
    assert "2 KB" in answer["error"] and "http.max_body" in answer["error"]
    assert engine.store.count("events") == 0


def test_a_chunked_body_over_the_limit_gets_413_too(api, engine):
    server = api(max_body=2048)
    payload = jsonl([created(f"e-{i}", i, customer=f"c-{i}", order=f"o-{i}") for i in range(20)]).encode()
    with socket.create_connection(("127.0.0.1", server.server.address[1]), timeout=30) as sock:
        head = (f"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 500]), payload[i:i + 500])
                          for i in range(0, len(payload), 500))
        sock.sendall(head + chunks + b"0\r\n\r\n")
        answer = b""
        while data := sock.recv(65536):
            answer += data

    assert answer.startswith(b"HTTP/1.1 413")
    assert engine.store.count("events") == 0


def test_healthz_and_metrics(api, engine):
    server = api()
    server.post([created("e-1"), created("e-1")])
    server.post(b'{"id": "bad"}')

    status, body, _ = server.request("GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})

    status, body, headers = server.request("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'engine_events_total{outcome="accepted"} 1.0' in text
    assert 'engine_events_total{outcome="duplicate"} 1.0' in text
    assert 'engine_events_total{outcome="rejected"} 1.0' in text
    assert 'engine_queue_messages{rule="payment-reminder",state="pending"} 1.0' in text
    assert "engine_queue_oldest_due_lag_seconds 0.0" in text  # due 30 minutes after the clock


def test_a_port_in_use_is_a_clear_error_at_start_up(engine):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ListenError, match=rf"cannot listen on 127.0.0.1:{port}: .*http.listen"):
            HttpServer(build_app(engine, HttpConfig()), "127.0.0.1", port)
    finally:
        taken.close()


def test_an_sms_reply_t_unsubscribes_that_number_from_marketing_sms(api, engine):
    server = api()
    other = created("e-2", customer="c-2", order="o-2")
    other["customer"]["phone"] = "+86 13911112222"
    server.post([created("e-1", customer="c-1", order="o-1"), other])
    replies = [
        {"phone_number": "13911112222", "send_time": "2026-11-11 10:05:00", "content": " 退订 ", "sign_name": "山野户外",
         "dest_code": "1234", "sequence_id": 9001},
        {"phone_number": "13800000000", "send_time": "2026-11-11 10:06:00", "content": "好的，谢谢", "sign_name": "山野户外",
         "dest_code": "1234", "sequence_id": 9002},
    ]

    for _ in range(2):  # Aliyun pushes again when unsure: the same reply changes nothing more
        status, body, _ = server.request("POST", f"/sms/replies?token={TOKEN}", json.dumps(replies).encode(),
                                         {"Content-Type": "application/json"})
        assert (status, json.loads(body)) == (200, {"code": 0, "msg": "接收成功"})

    customers = {c["id"]: c for c in engine.store.rows("customers")}
    assert customers["c-2"]["opted_out"] == ["sms"]
    assert customers["c-1"]["opted_out"] == []
    assert [e["type"] for e in engine.store.rows("events") if e["customer_id"] == "c-2"] == [
        "order.created", "customer.unsubscribed"]


def test_sms_replies_without_the_token_are_refused(api, engine):
    status, body, _ = api().request("POST", "/sms/replies", b"[]", {"Content-Type": "application/json"})

    assert status == 401
    assert json.loads(body)["code"] == 1


def test_concurrent_one_event_requests_are_all_stored_once(api, engine):
    import threading

    server = api()
    events = [created(f"e-{i}", i, customer=f"c-{i}", order=f"o-{i}") for i in range(60)]
    answers: list = []

    def send(chunk):
        for e in chunk:
            answers.append(server.post(e))

    threads = [threading.Thread(target=send, args=(events[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(status for status, _ in answers) == [202] * 60
    assert sorted(a["accepted"][0] for _, a in answers) == sorted(e["id"] for e in events)
    assert all(a["duplicates"] == [] for _, a in answers)
    assert engine.store.count("events") == 60
    assert engine.store.count("messages") == 60  # one payment reminder each
