"""config.yaml `http:`: where the daemon's HTTP API listens and how senders prove who
they are. Secrets are never in the file: it names the environment variables that hold
them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.config.spec import ENV_NAME, Key, Kind, Section, Walk, read_section
from engine.config.yamlfile import Lines

SIZE_PATTERN = r"^\s*(\d+)\s*([Bb]|[Kk][Bb]|[Mm][Bb])?\s*$"
_SIZE = re.compile(SIZE_PATTERN)
_UNITS = {"B": 1, "KB": 1024, "MB": 1024 * 1024}


@dataclass
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"  # loopback unless the operator says otherwise
    port: int = 8787
    token_env: str = "ENGINE_TOKEN"  # Authorization: Bearer <token>
    hmac_env: str = "ENGINE_HMAC_SECRET"  # X-Signature: sha256=<hex of HMAC-SHA256(secret, body)>
    max_body: int = 5 * 1024 * 1024

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


def _listen(value) -> tuple[str, int]:
    """HOST:PORT, such as 127.0.0.1:8787 or [::1]:8787."""
    if isinstance(value, str):
        host, sep, port = value.strip().rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return host.strip("[]"), int(port)
    raise ValueError(f"bad address {value!r}; write HOST:PORT, such as 127.0.0.1:8787 (0.0.0.0:8787 listens on "
                     "every interface)")


def _size(value) -> int:
    size = parse_size(value)
    if size is None:
        raise ValueError(f"bad size {value!r}; write bytes or a size such as 512KB or 5MB")
    return size


LISTEN = Kind("listen", _listen, {"type": "string", "pattern": r"^\s*\S.*:\d+\s*$"})
SIZE = Kind("size", _size, {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}]})
ENV_MESSAGE = ("must be the NAME of an environment variable, such as ENGINE_TOKEN (the secret itself never goes in "
               "config.yaml)")


def _build(values: dict) -> HttpConfig:
    host, port = values.pop("listen", (HttpConfig.host, HttpConfig.port))
    return HttpConfig(host=host, port=port, **values)


HTTP = Section((
    Key("listen", LISTEN, "Where the API listens, HOST:PORT (0.0.0.0:8787: every interface).",
        examples=("127.0.0.1:8787",)),
    Key("token_env", ENV_NAME, "The NAME of the environment variable holding the bearer token.", ENV_MESSAGE),
    Key("hmac_env", ENV_NAME, "The NAME of the environment variable holding the HMAC secret.", ENV_MESSAGE),
    Key("max_body", SIZE, "The largest request body: bytes, or a size such as 512KB or 5MB.", examples=("5MB",)),
), 'must be a mapping such as {listen: "127.0.0.1:8787"}, or false to run without the HTTP API',
    "The daemon's HTTP API, or false for none.", build=_build, off=lambda: HttpConfig(enabled=False))


def read_http(raw, lines: Lines, problems: list) -> HttpConfig:
    return read_section(HTTP, raw, ("http",), Walk(lines, problems))


def parse_size(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    match = _SIZE.match(str(value))
    if not match or int(match.group(1)) < 1:
        return None
    return int(match.group(1)) * _UNITS[(match.group(2) or "B").upper()]

