"""config.yaml `http:`: where the daemon's HTTP API listens and how senders prove who
they are. Secrets are never in the file: it names the environment variables that hold
them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.channels.base import is_env_name
from engine.config.yamlfile import Lines, did_you_mean

KEYS = ("listen", "token_env", "hmac_env", "max_body")
SIZE_PATTERN = r"^\s*(\d+)\s*([Bb]|[Kk][Bb]|[Mm][Bb])?\s*$"  # also config.schema.json's
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


def read_http(raw, lines: Lines, problems: list) -> HttpConfig:
    cfg = HttpConfig()
    if raw is None:
        return cfg
    if raw is False or (isinstance(raw, str) and raw.strip().lower() == "off"):
        cfg.enabled = False
        return cfg
    if not isinstance(raw, dict):
        problems.append(lines.problem(("http",), "must be a mapping such as {listen: \"127.0.0.1:8787\"}, "
                                                 "or false to run without the HTTP API"))
        return cfg
    for key, value in raw.items():
        path = ("http", key)
        if key == "listen":
            host, port = _listen(value)
            if host is None:
                problems.append(lines.problem(path, f"bad address {value!r}; write HOST:PORT, such as 127.0.0.1:8787 "
                                                    "(0.0.0.0:8787 listens on every interface)"))
            else:
                cfg.host, cfg.port = host, port
        elif key in ("token_env", "hmac_env"):
            if not is_env_name(value):
                problems.append(lines.problem(path, "must be the NAME of an environment variable, such as "
                                                    "ENGINE_TOKEN (the secret itself never goes in config.yaml)"))
            else:
                setattr(cfg, key, value)
        elif key == "max_body":
            size = parse_size(value)
            if size is None:
                problems.append(lines.problem(path, f"bad size {value!r}; write bytes or a size such as 512KB or 5MB"))
            else:
                cfg.max_body = size
        else:
            problems.append(lines.problem(path, f"unknown key {key!r}{did_you_mean(str(key), KEYS)}"))
    return cfg


def parse_size(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    match = _SIZE.match(str(value))
    if not match or int(match.group(1)) < 1:
        return None
    return int(match.group(1)) * _UNITS[(match.group(2) or "B").upper()]


def _listen(value) -> tuple[str | None, int]:
    if not isinstance(value, str):
        return None, 0
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None, 0
    return host.strip("[]"), int(port)
