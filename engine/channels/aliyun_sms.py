"""`aliyun_sms`: Aliyun SMS `SendSms` (dysmsapi, API version 2017-05-25), RPC signature v1.

Aliyun sends only approved templates: the channel sends the rendered text as one
template parameter (`template_param`, default `content`) of an approved template whose
text is just that variable (`template_code`, or per rule in `template_codes`). Aliyun
prefixes the signature itself (`sign_name`), so a leading 【...】 in the rendered text is
taken off. `OutId` carries the message's idempotency key (the same for every attempt;
note that Aliyun itself does not refuse a repeated OutId).

Credentials come from the environment variables named by `access_key_id_env` and
`access_key_secret_env`; they never appear in logs or errors. Answers: `Code: OK` is
delivered; throttling, the provider's transient codes and account problems (keys,
balance, volume caps: every message would fail alike until an operator acts) are
retried and pause the channel; the rest (invalid number, rejected content or template)
are permanent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx

from engine.channels.base import Channel, Outbound, SendError
from engine.durations import parse_duration

DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
# worth trying again: throttling and the provider's own trouble (the channel), and the
# frequency limit on one number (that message only)
TRANSIENT = {"Throttling", "Throttling.User", "Throttling.Api", "isp.SYSTEM_ERROR", "ServiceUnavailable",
             "InternalError", "isv.BUSINESS_LIMIT_CONTROL"}
# the account or its keys: every message would fail the same way until an operator acts,
# so they wait (the channel pauses) instead of failing one by one
ACCOUNT = {"SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
           "isp.RAM_PERMISSION_DENY", "isv.OUT_OF_SERVICE", "isv.AMOUNT_NOT_ENOUGH", "isv.DAY_LIMIT_CONTROL",
           "isv.MONTH_LIMIT_CONTROL"}
PER_NUMBER = {"isv.BUSINESS_LIMIT_CONTROL"}
_SIGNATURE = re.compile(r"^【[^】]{1,20}】")


def percent_encode(value: str) -> str:
    """RFC 3986 as Aliyun's RPC signature wants it: everything but A-Z a-z 0-9 - _ . ~."""
    return quote(str(value), safe="-_.~")


def canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def string_to_sign(method: str, params: dict[str, str]) -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(method: str, params: dict[str, str], secret: str) -> str:
    """Base64(HMAC-SHA1(secret + "&", StringToSign)) over every parameter but Signature."""
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSmsChannel(Channel):
    type_name = "aliyun_sms"
    sends_sms = True
    options_help = {
        **Channel.options_help,
        "sign_name": "the approved signature name (Aliyun adds 【sign_name】 to every SMS)",
        "template_code": "the approved template, such as SMS_15305xxxx, whose text is ${content}",
        "template_codes": "per rule: {rule-id: SMS_code} where a rule has its own approved template",
        "template_param": "the template's variable that receives the text (default content)",
        "access_key_id_env": "the NAME of the environment variable holding the AccessKey ID",
        "access_key_secret_env": "the NAME of the environment variable holding the AccessKey secret",
        "endpoint": "the API endpoint (default: Aliyun's public dysmsapi endpoint)",
        "region": "RegionId (default cn-hangzhou)",
        "timeout": "how long to wait for an answer, such as 5s (default)",
    }
    required = ("sign_name", "template_code", "access_key_id_env", "access_key_secret_env")

    @classmethod
    def sms_signature(cls, options):
        return f"【{options['sign_name']}】" if options.get("sign_name") else None

    def __init__(self, name, options, base_dir):
        super().__init__(name, options, base_dir)
        if self.contact is None:
            self.contact = "phone"
        self.endpoint = options.get("endpoint", DEFAULT_ENDPOINT)
        timeout = parse_duration(options.get("timeout", "5s")).total_seconds()
        self.client = httpx.Client(timeout=timeout)

    @classmethod
    def option_problems(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        out = super().option_problems(options)
        codes = options.get("template_codes")
        if codes is not None and not isinstance(codes, dict):
            out.append(("template_codes", "must map rule ids to template codes, such as {winback-60d: SMS_1234}"))
        try:
            parse_duration(options.get("timeout", "5s"))
        except ValueError as exc:
            out.append(("timeout", str(exc)))
        return out

    def _secret(self, key: str) -> str:
        name = self.options[key]
        value = os.environ.get(name)
        if not value:  # the operator's to fix: the messages wait, the channel pauses
            raise SendError(f"{name} is not set in the environment")
        return value

    def request_params(self, message: Outbound, *, now: datetime | None = None, nonce: str | None = None) -> dict:
        """The signed query parameters of one SendSms call."""
        text = _SIGNATURE.sub("", message.body, count=1)
        code = (self.options.get("template_codes") or {}).get(message.rule_id, self.options["template_code"])
        params = {
            "AccessKeyId": self._secret("access_key_id_env"),
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": message.idempotency_key,
            "PhoneNumbers": message.to or "",
            "RegionId": self.options.get("region", "cn-hangzhou"),
            "SignName": self.options["sign_name"],
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "TemplateCode": code,
            "TemplateParam": json.dumps({self.options.get("template_param", "content"): text}, ensure_ascii=False,
                                        separators=(",", ":")),
            "Timestamp": (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        params["Signature"] = sign("GET", params, self._secret("access_key_secret_env"))
        return params

    def send(self, message: Outbound) -> None:
        params = self.request_params(message)
        try:
            response = self.client.get(self.endpoint, params=params)
        except httpx.TimeoutException:
            raise SendError("no answer from Aliyun SMS within the timeout") from None
        except httpx.TransportError as exc:
            raise SendError(f"connection to Aliyun SMS failed ({type(exc).__name__})") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        code = answer.get("Code")
        if response.status_code == 200 and code == "OK":
            return
        if code is None:
            raise SendError(f"HTTP {response.status_code} from Aliyun SMS without a Code",
                            permanent=400 <= response.status_code < 500 and response.status_code != 429)
        transient = code in TRANSIENT or code in ACCOUNT or response.status_code >= 500
        raise SendError(f"{code}: {answer.get('Message', '')}", permanent=not transient,
                        scope="message" if code in PER_NUMBER else "channel")

    def close(self) -> None:
        self.client.close()
