"""The project's own text files (config.yaml, rules, templates) are UTF-8; a UTF-8 byte
order mark is accepted. A file in another encoding (Chinese Windows editors save GBK)
is one clear line, never a traceback: `not UTF-8 text (it looks like GBK); save it as UTF-8`."""

from __future__ import annotations

from pathlib import Path

BOM = b"\xef\xbb\xbf"


class NotUtf8(ValueError):
    """A file that is not UTF-8 text; the message says what it looks like and the fix."""

    def __init__(self, looks_like: str):
        self.looks_like = looks_like
        super().__init__(f"not UTF-8 text ({looks_like}); save it as UTF-8")


def decode(raw: bytes) -> str:
    """UTF-8 bytes as text (a leading byte order mark dropped); NotUtf8 otherwise."""
    try:
        return raw.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(_looks_like(raw, exc)) from None


def read_text(path: Path) -> str:
    """A file's text; NotUtf8 when it is not UTF-8, OSError when it cannot be read."""
    return decode(Path(path).read_bytes())


def _looks_like(raw: bytes, exc: UnicodeDecodeError) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it looks like UTF-16"
    for codec, name in (("gb18030", "GBK"), ("big5", "Big5")):  # GB18030: GBK and the rest of Unicode
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if any("\u4e00" <= ch <= "\u9fff" for ch in text):
            return f"it looks like {name}"
    line = raw.count(b"\n", 0, exc.start) + 1
    return f"byte 0x{raw[exc.start]:02x} on line {line} is not UTF-8"
