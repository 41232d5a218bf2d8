"""`recording`: keeps every message in memory. The dry-run binds each configured channel
name to one of these (keeping the channel's contact field, so a customer without a
phone is still reported as `no_contact`)."""

from __future__ import annotations

from engine.channels.base import Channel, Outbound


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
