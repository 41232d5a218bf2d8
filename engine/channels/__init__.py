"""Channels by name. Adding a channel type: one file with a Channel subclass, one entry here."""

from __future__ import annotations

from pathlib import Path

from engine.channels.aliyun_sms import AliyunSmsChannel
from engine.channels.base import Channel, Outbound, SendError
from engine.channels.file import FileChannel
from engine.channels.log import LogChannel
from engine.channels.recording import RecordingChannel
from engine.channels.smtp import SmtpChannel
from engine.channels.webhook import WebhookChannel
from engine.errors import UnknownKindError

REGISTRY: dict[str, type[Channel]] = {
    "log": LogChannel,
    "file": FileChannel,
    "recording": RecordingChannel,
    "webhook": WebhookChannel,
    "aliyun_sms": AliyunSmsChannel,
    "smtp": SmtpChannel,
}


def channel_types() -> list[str]:
    return sorted(REGISTRY)


def channel_class(type_name: str) -> type[Channel]:
    try:
        return REGISTRY[type_name]
    except KeyError:
        raise UnknownKindError("channel type", type_name, list(REGISTRY)) from None


def create_channel(name: str, type_name: str, options: dict, base_dir: Path) -> Channel:
    return channel_class(type_name)(name, options, base_dir)


__all__ = ["Channel", "Outbound", "SendError", "REGISTRY", "channel_types", "channel_class", "create_channel"]
