"""The Aliyun SMS channel: RPC signature v1 checked against Aliyun's worked example, and
SendSms against a local fake server that speaks the provider's protocol (it recomputes
the signature with the secret, and answers with the documented success and error
bodies). No request leaves the machine."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest

from engine.channels import Outbound, SendError
from engine.channels.aliyun_sms import AliyunSmsChannel, canonical_query, sign, string_to_sign
from tests.localhttp import LocalServer

KEY_ID, SECRET = "LTAI-test-id", "test-secret-9f2b"
ENV = {"ALIYUN_ID": KEY_ID, "ALIYUN_SECRET": SECRET}

# documented bodies (../shared/realdata/aliyun_sms/sendsms_response_examples.json)
OK = {"Code": "OK", "Message": "OK", "BizId": "9006197469364984400", "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"}
LIMITED = {"Message": "触发天级流控Permits:10", "RequestId": "C0A0BE93-B44F-4350-BCC8-B677F78C3802",
           "Code": "isv.BUSINESS_LIMIT_CONTROL"}
ILLEGAL = {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "invalid mobile number", "RequestId": "A1"}


def test_the_signature_matches_aliyuns_worked_example(shared_dir):
    vector = json.loads((shared_dir / "realdata" / "aliyun_sms" / "sendsms_rpc_signature_test_vector.json")
                        .read_text(encoding="utf-8"))

    assert canonical_query(vector["params"]) == vector["canonicalized_query_string"]
    assert string_to_sign("GET", vector["params"]) == vector["string_to_sign"]
    assert sign("GET", vector["params"], vector["access_key_secret"]) == vector["signature_base64"]


class FakeAliyun:
    """SendSms as Aliyun answers it, on a loopback port."""

    def __init__(self):
        self.calls: list[dict] = []
        self.nonces: set[str] = set()
        self.local = LocalServer(lambda r: self.answer(dict(parse_qsl(urlsplit(r.path).query, keep_blank_values=True))))
        self.endpoint = self.local.base + "/"

    def answer(self, params: dict) -> tuple[int, dict]:
        given = params.pop("Signature", "")
        if params.get("AccessKeyId") != KEY_ID:
            return 404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."}
        if sign("GET", params, SECRET) != given:
            return 400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched with our "
                                                                      "calculation."}
        if params["SignatureNonce"] in self.nonces:
            return 400, {"Code": "SignatureNonceUsed", "Message": "Specified signature nonce was used already."}
        self.nonces.add(params["SignatureNonce"])
        datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        for required in ("Action", "Version", "PhoneNumbers", "SignName", "TemplateCode", "TemplateParam"):
            if not params.get(required):
                return 400, {"Code": "MissingParameter", "Message": f"{required} is mandatory"}
        self.calls.append(params)
        phone = params["PhoneNumbers"]
        if phone.startswith("139"):
            return 200, LIMITED
        if len(phone) != 11:
            return 200, ILLEGAL
        if phone.startswith("150"):
            return 503, {"Code": "ServiceUnavailable", "Message": "The request has failed due to a temporary failure"}
        return 200, OK

    def close(self):
        self.local.close()


@pytest.fixture
def fake():
    f = FakeAliyun()
    yield f
    f.close()


@pytest.fixture
def channel(fake, tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    options = {"sign_name": "山野户外", "template_code": "SMS_100001", "template_codes": {"winback-60d": "SMS_100060"},
               "access_key_id_env": "ALIYUN_ID", "access_key_secret_env": "ALIYUN_SECRET", "endpoint": fake.endpoint,
               "sms": {"signature": "【山野户外】"}}
    assert AliyunSmsChannel.option_problems(options) == []
    ch = AliyunSmsChannel("sms", options, tmp_path)
    yield ch
    ch.close()


def outbound(to: str, body: str = "【山野户外】王小明，您的冲锋衣已发货", rule: str = "shipping-notice", mid: int = 7) -> Outbound:
    return Outbound(mid, f"msg-{mid}", "sms", rule, "service", "c-1", "o-1", to, body,
                    datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc))


def test_a_message_goes_as_the_template_parameter_with_its_idempotency_key(channel, fake):
    channel.send(outbound("13800000001"))
    channel.send(outbound("13800000002", "【山野户外】好久不见，送您一张券 回T退订", rule="winback-60d", mid=8))

    first, second = fake.calls
    assert (first["PhoneNumbers"], first["SignName"], first["TemplateCode"], first["OutId"]) == (
        "13800000001", "山野户外", "SMS_100001", "msg-7")
    assert json.loads(first["TemplateParam"]) == {"content": "王小明，您的冲锋衣已发货"}  # Aliyun adds 【山野户外】 itself
    assert (second["TemplateCode"], json.loads(second["TemplateParam"])) == (
        "SMS_100060", {"content": "好久不见，送您一张券 回T退订"})
    assert first["SignatureNonce"] != second["SignatureNonce"]


@pytest.mark.parametrize("to, permanent, scope, reason", [
    ("13900000001", False, "message", "isv.BUSINESS_LIMIT_CONTROL: 触发天级流控Permits:10"),  # that number only
    ("1230", True, "channel", "isv.MOBILE_NUMBER_ILLEGAL: invalid mobile number"),
    ("15000000001", False, "channel", "ServiceUnavailable: The request has failed due to a temporary failure"),
], ids=["rate-limited", "invalid-number", "5xx"])
def test_provider_errors_are_transient_or_permanent_as_documented(channel, to, permanent, scope, reason):
    with pytest.raises(SendError) as caught:
        channel.send(outbound(to))

    assert (caught.value.permanent, caught.value.scope, caught.value.reason) == (permanent, scope, reason)


def test_a_wrong_secret_is_refused_by_the_provider_and_never_shown(channel, monkeypatch):
    monkeypatch.setenv("ALIYUN_SECRET", "not-the-secret")

    with pytest.raises(SendError) as caught:
        channel.send(outbound("13800000001"))

    # every message would fail alike until the operator fixes the key: they wait (the
    # channel pauses) instead of failing one by one
    assert (caught.value.permanent, caught.value.scope) == (False, "channel")
    assert caught.value.reason.startswith("SignatureDoesNotMatch")
    assert "not-the-secret" not in caught.value.reason and SECRET not in caught.value.reason


def test_missing_credentials_name_the_variable_only(channel, monkeypatch):
    monkeypatch.delenv("ALIYUN_ID")

    with pytest.raises(SendError, match="^ALIYUN_ID is not set in the environment$") as caught:
        channel.send(outbound("13800000001"))
    assert (caught.value.permanent, caught.value.scope) == (False, "channel")


def test_an_unreachable_provider_is_a_transient_failure(channel, fake):
    fake.close()

    with pytest.raises(SendError) as caught:
        channel.send(outbound("13800000001"))
    assert not caught.value.permanent


def test_config_names_what_is_missing():
    problems = dict(AliyunSmsChannel.option_problems({"sign_name": "山野户外", "access_key_id_env": "my id"}))

    assert "template_code" in problems and "access_key_secret_env" in problems
    assert "NAME of an environment variable" in problems["access_key_id_env"]
