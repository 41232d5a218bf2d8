"""SMS conventions of Chinese providers: the shop's signature 【店名】 in front, the
unsubscribe suffix (回T退订) at the end of marketing texts, and billing by segments of
70 characters (67 per part when longer), counted in characters, signature included."""

from __future__ import annotations

from dataclasses import dataclass

from engine.templates import sms_segments

DEFAULT_UNSUBSCRIBE = "回T退订"


@dataclass(frozen=True)
class SmsStyle:
    signature: str
    unsubscribe: str = DEFAULT_UNSUBSCRIBE
    max_segments: int = 2

    @classmethod
    def from_options(cls, options: dict | None, shop: dict) -> "SmsStyle | None":
        """None when the channel does not send SMS (no `sms:` option)."""
        if options is None:
            return None
        options = options if isinstance(options, dict) else {}
        signature = options.get("signature") or shop.get("signature") or f"【{shop.get('name', '')}】"
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
