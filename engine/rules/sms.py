"""SMS conventions of Chinese providers: the shop's signature 【店名】 in front, the
unsubscribe suffix (回T退订) at the end of marketing texts, and billing by segments of
70 characters (67 per part when longer), counted in characters, signature included."""

from __future__ import annotations

from dataclasses import dataclass

from engine.rules.templates import sms_segments

DEFAULT_UNSUBSCRIBE = "回T退订"


@dataclass(frozen=True)
class SmsStyle:
    signature: str
    unsubscribe: str = DEFAULT_UNSUBSCRIBE
    max_segments: int = 2

    @classmethod
    def from_options(cls, options: dict | None, shop: dict, signature: str | None = None) -> "SmsStyle | None":
        """None when there are no SMS options (the channel does not send SMS). `signature`:
        the provider's own, which goes first."""
        if options is None:
            return None
        options = options if isinstance(options, dict) else {}
        signature = (signature or options.get("signature") or shop.get("signature")
                     or f"【{shop.get('name', '')}】")
        return cls(signature, options.get("unsubscribe", DEFAULT_UNSUBSCRIBE), int(options.get("max_segments", 2)))

    def finish(self, body: str, kind: str) -> str:
        """Add the signature (every SMS) and the unsubscribe suffix (marketing) when missing."""
        if self.signature and not body.startswith(self.signature):
            body = self.signature + body
        if kind == "marketing" and self.unsubscribe and self.unsubscribe not in body:
            body = body + self.unsubscribe
        return body

    def segments(self, body: str) -> int:
        return sms_segments(body)


def sms_style(type_name: str, options: dict, shop: dict) -> SmsStyle | None:
    """How a configured channel's SMS look, or None when it does not send SMS: the one
    place that decides. An SMS provider's type (aliyun_sms) always sends SMS, with or
    without an `sms:` block; a file or webhook channel does when it has one; email and
    the log never. Every marketing SMS then carries the signature and the unsubscribe
    suffix, whatever the provider."""
    from engine.channels import channel_class  # noqa: PLC0415 - the registry imports the channels

    kind = channel_class(type_name)
    if kind.sends_sms is False or (kind.sends_sms is None and "sms" not in options):
        return None
    return SmsStyle.from_options(options.get("sms") or {}, shop, kind.sms_signature(options))


def sms_channels(config) -> frozenset[str]:
    """The names of config.yaml's channels that send SMS."""
    return frozenset(name for name, c in config.channels.items() if sms_style(c.type, c.options, config.shop))
