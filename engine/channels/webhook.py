"""`webhook`: a JSON POST per message (httpx, one pooled client per channel).

Presets:
- `generic` (default): the message as JSON (Outbound.to_json) with an `Idempotency-Key`
  header, the same for every attempt of one message. 2xx: delivered; 429, 5xx,
  timeouts and connection errors: transient (retried); other 4xx: permanent.
- `dingtalk`, `wecom`: the group robots of DingTalk and WeCom, for staff alerts
  ({"msgtype": "text", ...}); their JSON `errcode` decides (0 delivered; their
  rate-limit codes transient; the rest permanent). DingTalk's signed robots (加签)
  take the secret from `secret_env`.

Robot URLs carry their access token, so a URL can come from an environment variable
(`url_env`); neither the URL nor a secret ever appears in an error or a log line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import urllib.parse
from datetime import datetime
from typing import Any

import httpx

from engine.channels.base import Channel, Outbound, SendError
from engine.durations import parse_duration

PRESETS = ("generic", "dingtalk", "wecom")
# robot error codes worth retrying: DingTalk "sending too fast" (130101) and its rate
# limit (410100); WeCom "API frequency out of limit" (45009) and "system busy" (-1)
TRANSIENT_CODES = {"dingtalk": {130101, 410100}, "wecom": {45009, -1}}


class WebhookChannel(Channel):
    type_name = "webhook"
    options_help = {
        **Channel.options_help,
        "url": "the URL to POST to (for a URL without secrets; otherwise url_env)",
        "url_env": "the NAME of the environment variable holding the URL (robot URLs carry their token)",
        "preset": "generic (the message as JSON), dingtalk or wecom (group robots, for staff alerts)",
        "secret_env": "dingtalk: the NAME of the environment variable holding the robot's signing secret (加签)",
        "timeout": "how long to wait for an answer, such as 10s (default)",
        "headers": "extra HTTP headers to send (no secrets: use url_env / secret_env)",
        "body": "generic: the JSON to send instead of the message, with {to}, {body}, {idempotency_key}, "
                "{message_id}, {rule_id}, {customer_id}, {kind} in its strings (an HTTP SMS gateway's format)",
    }

    def __init__(self, name, options, base_dir):
        super().__init__(name, options, base_dir)
        self.preset = options.get("preset", "generic")
        timeout = parse_duration(options.get("timeout", "10s")).total_seconds()
        self.client = httpx.Client(timeout=timeout, headers={str(k): str(v) for k, v in
                                                             (options.get("headers") or {}).items()})

    @classmethod
    def option_problems(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        out = super().option_problems(options)
        if ("url" in options) == ("url_env" in options):
            out.append(("url", "a webhook channel needs exactly one of url or url_env"))
        url = options.get("url")
        if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            out.append(("url", f"must be an http:// or https:// URL, not {url!r}"))
        if options.get("preset", "generic") not in PRESETS:
            out.append(("preset", f"unknown preset {options.get('preset')!r}; choose one of {', '.join(PRESETS)}"))
        try:
            parse_duration(options.get("timeout", "10s"))
        except ValueError as exc:
            out.append(("timeout", str(exc)))
        headers = options.get("headers")
        if headers is not None and not isinstance(headers, dict):
            out.append(("headers", "must be a mapping of header names to values"))
        body = options.get("body")
        if body is not None:
            try:
                _fill(body, Outbound(0, "k", "c", "r", "service", "c-1", None, "138", "text", datetime.now()))
            except (KeyError, ValueError, IndexError) as exc:
                out.append(("body", f"unknown placeholder {exc}; use {', '.join('{' + f + '}' for f in FIELDS)}"))
        return out

    def _url(self) -> str:
        if "url" in self.options:
            return self.options["url"]
        name = self.options["url_env"]
        url = os.environ.get(name)
        if not url:  # the operator's to fix: the messages wait, the channel pauses
            raise SendError(f"{name} is not set in the environment (the webhook URL)")
        return url

    def send(self, message: Outbound) -> None:
        url = self._url()
        headers = {"Idempotency-Key": message.idempotency_key}
        if self.preset == "generic":
            payload: Any = _fill(self.options["body"], message) if "body" in self.options else message.to_json()
        else:
            payload = {"msgtype": "text", "text": {"content": message.body}}
            if self.preset == "dingtalk" and self.options.get("secret_env"):
                url = self._signed(url)
        try:
            response = self.client.post(url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise SendError("no answer within the timeout") from None
        except httpx.TransportError as exc:
            raise SendError(f"connection failed ({type(exc).__name__})") from None
        self._judge(response)

    def _judge(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            raise SendError(f"HTTP {status}{_excerpt(response)}")
        if status >= 400:
            raise SendError(f"HTTP {status}{_excerpt(response)}", permanent=True)
        if status >= 300:  # redirects are not followed: the message did not arrive
            raise SendError(f"HTTP {status}: a redirect (to {response.headers.get('location', '?')!r} is not "
                            "followed); configure the final URL", permanent=True)
        if self.preset == "generic":
            return
        try:
            answer = response.json()
            code = int(answer.get("errcode", 0))
        except (ValueError, AttributeError, TypeError):
            raise SendError(f"unexpected answer from the {self.preset} robot{_excerpt(response)}") from None
        if code != 0:
            raise SendError(f"{self.preset} errcode {code}: {answer.get('errmsg', '')}",
                            permanent=code not in TRANSIENT_CODES[self.preset])

    def _signed(self, url: str) -> str:
        """DingTalk 加签: timestamp (ms) and sign = base64(HMAC-SHA256(secret, "timestamp\\nsecret"))."""
        name = self.options["secret_env"]
        secret = os.environ.get(name)
        if not secret:
            raise SendError(f"{name} is not set in the environment (the robot's signing secret)")
        timestamp = str(round(time.time() * 1000))
        digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
        sign = urllib.parse.quote_plus(base64.b64encode(digest))
        return f"{url}{'&' if '?' in url else '?'}timestamp={timestamp}&sign={sign}"

    def close(self) -> None:
        self.client.close()


FIELDS = ("to", "body", "idempotency_key", "message_id", "rule_id", "customer_id", "kind")


def _fill(template: Any, message: Outbound) -> Any:
    """The `body` template with the message's fields put into its strings."""
    if isinstance(template, str):
        return template.format_map({f: getattr(message, f) for f in FIELDS})
    if isinstance(template, dict):
        return {k: _fill(v, message) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, message) for v in template]
    return template


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return f": {text[:200]}" if text else ""
