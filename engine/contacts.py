"""A customer's contact details: one phone number and one email address, as intake keeps
them and as channels send to them, and how a log line may show them (masked)."""

from __future__ import annotations

import re

from engine.errors import EventError

_PHONE_NOISE = re.compile(r"[\s\-().]")
_PHONE = re.compile(r"^\+?\d{5,15}$")
_EMAIL = re.compile(r"^[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"'.]+$")


def normalise_phone(value: str) -> str:
    """One phone number: spaces, dashes, dots and brackets dropped; a mainland number
    given as +86 / 86 / 0086 keeps its 11 digits. EventError for anything else (two
    numbers in one field, letters)."""
    digits = _PHONE_NOISE.sub("", value)
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == 11 + len(prefix) and digits[len(prefix)] == "1":
            digits = digits[len(prefix):]
    if not _PHONE.match(digits):
        several = any(sep in value for sep in ",;/|、，")
        raise EventError(("holds more than one number; send one" if several else
                          "is not a phone number (digits, optionally +country code)")
                         + f": {mask_contact(value)}", "customer.phone")
    return digits


def normalise_email(value: str) -> str:
    text = value.strip()
    if not _EMAIL.match(text):
        several = any(sep in text for sep in ",;") or text.count("@") > 1
        raise EventError(("holds more than one address; send one" if several else "is not an email address")
                         + f": {mask_contact(text)}", "customer.email")
    return text


def mask_contact(value: str) -> str:
    """A phone number or an address as a log line may show it: 138****0000, a***@x.com."""
    text = str(value)
    if "@" in text:
        return re.sub(r"([^@\s,;]{1,2})[^@\s,;]*@", lambda m: m.group(1) + "***@", text)
    return re.sub(r"\d{7,}", lambda m: m.group(0)[:3] + "*" * (len(m.group(0)) - 7) + m.group(0)[-4:], text)


def mask_phone(value) -> str:
    """13800000000 -> 138****0000 (also used for logs)."""
    text = str(value or "")
    if len(text) >= 7:
        return text[:3] + "*" * (len(text) - 7) + text[-4:]
    return "*" * len(text)
