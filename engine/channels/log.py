"""`log`: writes each message to the operator's log (phone numbers masked)."""

from __future__ import annotations

from loguru import logger

from engine.channels.base import Channel, Outbound
from engine.contacts import mask_phone


class LogChannel(Channel):
    type_name = "log"
    sends_sms = False

    def send(self, message: Outbound) -> None:
        to = mask_phone(message.to) if self.contact == "phone" else message.to
        logger.bind(component="channel", channel=self.name).info(
            "{} -> {} [{}]: {}", self.name, to, message.rule_id, message.body)
