"""What every channel is: something that takes a rendered message and delivers it.

Channels know nothing of rules or the store. A new channel is one file with a class
and one line in the registry (engine/channels/__init__.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from engine.contacts import normalise_email, normalise_phone
from engine.errors import EventError


def is_env_name(value) -> bool:
    """Whether a config value names an environment variable (secrets are kept there,
    never in config.yaml: settings ending in `_env` hold only the name)."""
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) is not None


@dataclass(frozen=True)
class Outbound:
    message_id: int
    idempotency_key: str  # the same for every attempt of one message
    channel: str
    rule_id: str
    kind: str
    customer_id: str
    order_id: str | None
    to: str | None
    body: str
    time: datetime

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "idempotency_key": self.idempotency_key, "channel": self.channel,
                "rule_id": self.rule_id, "kind": self.kind, "customer_id": self.customer_id,
                "order_id": self.order_id, "to": self.to, "body": self.body, "time": self.time.isoformat()}


class SendError(Exception):
    """Delivery failed. `permanent` failures are not retried. `scope`: "channel" when the
    provider or its configuration failed (counts towards pausing the channel), "message"
    when only this recipient or text did (a rate limit on one number, a refused mailbox)."""

    def __init__(self, reason: str, *, permanent: bool = False, scope: str = "channel"):
        self.reason = reason
        self.permanent = permanent
        self.scope = scope
        super().__init__(reason)


class Channel:
    type_name: ClassVar[str] = ""
    # option name -> help; options in `required` must be present
    options_help: ClassVar[dict[str, str]] = {
        "contact": "customer field holding the address: phone, email, or none (default)",
        "sms": "this channel sends SMS: {signature: 【店名】, unsubscribe: 回T退订, max_segments: 2}",
    }
    required: ClassVar[tuple[str, ...]] = ()
    CONTACTS: ClassVar[tuple[str, ...]] = ("phone", "email")
    # Whether this type sends SMS: True always (an SMS provider), False never (email, the
    # log), None when the channel's options say so (an `sms:` block: a file outbox or a
    # webhook in front of an SMS gateway). engine.sms.sms_style is the one place that asks.
    sends_sms: ClassVar[bool | None] = None

    def __init__(self, name: str, options: dict[str, Any], base_dir: Path):
        self.name = name
        self.options = options
        self.base_dir = base_dir
        self.contact: str | None = options.get("contact")

    @classmethod
    def option_problems(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        """(option, message) for every bad option; empty when all is well."""
        out = []
        for key in options:
            if key not in cls.options_help:
                out.append((key, f"unknown option {key!r} for a {cls.type_name} channel; "
                                 f"options: {', '.join(cls.options_help)}"))
        for key in cls.required:
            if key not in options:
                out.append((key, f"channel type {cls.type_name} needs {key!r}: {cls.options_help[key]}"))
        for key, value in options.items():
            if key.endswith("_env") and key in cls.options_help and not is_env_name(value):
                out.append((key, "must be the NAME of an environment variable (the secret itself never goes in "
                                 "config.yaml)"))
        contact = options.get("contact")
        if contact is not None and contact not in cls.CONTACTS:
            out.append(("contact", f"contact must be one of {', '.join(cls.CONTACTS)}, not {contact!r}"))
        sms = options.get("sms")
        if sms is not None and not isinstance(sms, dict):
            out.append(("sms", "must be a mapping: {signature: 【店名】, unsubscribe: 回T退订, max_segments: 2}"))
        elif sms:
            for key in sms:
                if key not in ("signature", "unsubscribe", "max_segments"):
                    out.append(("sms", f"unknown sms option {key!r}; options: signature, unsubscribe, max_segments"))
        return out

    @classmethod
    def sms_signature(cls, options: dict[str, Any]) -> str | None:
        """The signature this provider puts on every SMS itself, if any (shown in the
        dry-run and counted in the length as the customer receives it)."""
        return None

    def address(self, customer: dict[str, Any]) -> str | None:
        """The customer's address on this channel; None means no way to reach them."""
        if self.contact is None:
            return customer.get("id")
        value = customer.get(self.contact)
        if value in (None, ""):
            return None
        try:  # one valid address, as intake keeps them (a row stored before it checked may hold a list)
            return normalise_phone(str(value)) if self.contact == "phone" else normalise_email(str(value))
        except EventError:
            return None

    def send(self, message: Outbound) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Called after each dispatch batch."""

    def close(self) -> None:
        self.flush()
