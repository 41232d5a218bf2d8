"""The webhook channel against a local HTTP server: the generic JSON POST with its
idempotency key, an SMS gateway's own body format, the DingTalk and WeCom robots (their
signing and error codes), and how answers map to delivered / transient / permanent."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.channels import Outbound, SendError
from engine.channels.webhook import WebhookChannel
from tests.localhttp import LocalServer


class Receiver:
    """Records each request; answers with `self.answer` (status, JSON body)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answer: tuple[int, dict] = (200, {"ok": True})
        self.local = LocalServer(self._answer)
        self.url = self.local.base + "/hook"

    def _answer(self, request) -> tuple[int, dict]:
        self.requests.append({"path": request.path, "headers": request.headers, "body": request.json()})
        return self.answer

    def close(self):
        self.local.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def channel(tmp_path, **options) -> WebhookChannel:
    assert WebhookChannel.option_problems(options) == []
    return WebhookChannel("hook", options, tmp_path)


MESSAGE = Outbound(42, "msg-42", "hook", "bad-review-alert", "service", "c-1", "o-1", "13800000000",
                   "客户 c-1 给了差评，请跟进", datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc))


def test_the_generic_post_carries_the_message_and_its_idempotency_key(receiver, tmp_path):
    ch = channel(tmp_path, url=receiver.url, headers={"X-Shop": "shanye"})

    ch.send(MESSAGE)
    ch.send(MESSAGE)  # a retry: same key

    first, again = receiver.requests
    assert first["body"] == MESSAGE.to_json()
    assert (first["headers"]["Idempotency-Key"], first["headers"]["X-Shop"]) == ("msg-42", "shanye")
    assert again["headers"]["Idempotency-Key"] == "msg-42"


def test_an_sms_gateway_gets_its_own_body_format(receiver, tmp_path):
    ch = channel(tmp_path, url=receiver.url, body={"mobile": "{to}", "content": "{body}", "ref": "{idempotency_key}",
                                                   "tags": ["{rule_id}"], "priority": 1})

    ch.send(MESSAGE)

    assert receiver.requests[0]["body"] == {"mobile": "13800000000", "content": "客户 c-1 给了差评，请跟进",
                                            "ref": "msg-42", "tags": ["bad-review-alert"], "priority": 1}


def test_a_body_template_with_an_unknown_placeholder_is_a_config_error():
    problems = dict(WebhookChannel.option_problems({"url": "http://x/", "body": {"m": "{phone}"}}))

    assert problems["body"].startswith("unknown placeholder 'phone'; use {to}, {body}")


@pytest.mark.parametrize("status, permanent", [(500, False), (503, False), (429, False), (400, True), (404, True)])
def test_http_errors_are_transient_or_permanent(receiver, tmp_path, status, permanent):
    receiver.answer = (status, {"error": "nope"})

    with pytest.raises(SendError) as caught:
        channel(tmp_path, url=receiver.url).send(MESSAGE)

    assert caught.value.permanent is permanent
    assert caught.value.reason == f'HTTP {status}: {{"error": "nope"}}'


def test_the_url_from_the_environment_never_shows_in_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:1/robot/send?access_token=SECRET123")
    ch = channel(tmp_path, url_env="HOOK_URL", timeout="2s")

    with pytest.raises(SendError) as caught:
        ch.send(MESSAGE)

    assert not caught.value.permanent
    assert "SECRET123" not in caught.value.reason and "access_token" not in caught.value.reason
    monkeypatch.delenv("HOOK_URL")
    with pytest.raises(SendError, match="^HOOK_URL is not set in the environment"):
        ch.send(MESSAGE)


def test_a_signed_dingtalk_robot_gets_a_text_message_with_timestamp_and_sign(receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("DING_URL", receiver.url + "?access_token=abc")
    monkeypatch.setenv("DING_SECRET", "SEC0123456789")
    receiver.answer = (200, {"errcode": 0, "errmsg": "ok"})
    ch = channel(tmp_path, preset="dingtalk", url_env="DING_URL", secret_env="DING_SECRET")

    ch.send(MESSAGE)

    request = receiver.requests[0]
    assert request["body"] == {"msgtype": "text", "text": {"content": "客户 c-1 给了差评，请跟进"}}
    query = parse_qs(urlsplit(request["path"]).query)
    timestamp, sign = query["timestamp"][0], query["sign"][0]
    expected = base64.b64encode(hmac.new(b"SEC0123456789", f"{timestamp}\nSEC0123456789".encode(),
                                         hashlib.sha256).digest()).decode()
    assert (query["access_token"], sign) == (["abc"], expected)


@pytest.mark.parametrize("preset, code, permanent", [
    ("dingtalk", 130101, False),  # sending too fast
    ("dingtalk", 310000, True),   # keywords / signature not matched
    ("wecom", 45009, False),      # API frequency out of limit
    ("wecom", 93000, True),       # invalid webhook key
])
def test_robot_error_codes_are_transient_or_permanent(receiver, tmp_path, preset, code, permanent):
    receiver.answer = (200, {"errcode": code, "errmsg": "robot says no"})

    with pytest.raises(SendError) as caught:
        channel(tmp_path, preset=preset, url=receiver.url).send(MESSAGE)

    assert (caught.value.permanent, caught.value.reason) == (permanent, f"{preset} errcode {code}: robot says no")


def test_a_redirect_is_not_taken_for_delivery(receiver, tmp_path):
    receiver.answer = (302, {})

    with pytest.raises(SendError) as caught:
        channel(tmp_path, url=receiver.url).send(MESSAGE)

    assert caught.value.permanent and caught.value.reason.startswith("HTTP 302: a redirect")
