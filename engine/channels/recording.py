"""`recording`: keeps every message in memory. The dry-run binds each configured channel
name to one of these (keeping the channel's contact field, so a customer without a
phone is still reported as `no_contact`)."""

from __future__ import annotations

import zlib

from engine.channels.base import Channel, Outbound, SendError


class RecordingChannel(Channel):
    type_name = "recording"

    @classmethod
    def twin(cls, name: str, options: dict, base_dir) -> "RecordingChannel":
        """A recording channel standing in for a configured one: same contact field, same
        SMS conventions, nothing sent anywhere."""
        return cls(name, {k: options[k] for k in ("contact", "sms") if k in options}, base_dir)

    def __init__(self, name, options, base_dir):
        super().__init__(name, options, base_dir)
        self.sent: list[Outbound] = []

    def send(self, message: Outbound) -> None:
        self.sent.append(message)


class FailingRecordingChannel(RecordingChannel):
    """The dry-run's stand-in for a provider that fails (`dry-run --fail-channel`): a
    transient failure for `rate` of the attempts (all when 1.0), chosen from the message's
    idempotency key and attempt number, so the same run gives the same failures."""

    def __init__(self, name, options, base_dir, rate: float = 1.0):
        super().__init__(name, options, base_dir)
        self.rate = rate
        self._attempts: dict[str, int] = {}

    @classmethod
    def failing_twin(cls, name: str, options: dict, base_dir, rate: float) -> "FailingRecordingChannel":
        return cls(name, {k: options[k] for k in ("contact", "sms") if k in options}, base_dir, rate)

    def send(self, message: Outbound) -> None:
        attempt = self._attempts[message.idempotency_key] = self._attempts.get(message.idempotency_key, 0) + 1
        draw = (zlib.crc32(f"{message.idempotency_key}/{attempt}".encode()) % 10_000) / 10_000
        if draw < self.rate:
            raise SendError("simulated provider failure (dry-run --fail-channel)")
        super().send(message)
