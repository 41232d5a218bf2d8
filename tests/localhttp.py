"""A real HTTP server on a loopback port for the tests that play a provider (a webhook
receiver, Aliyun SMS, a message sink): the test gives a function from the request to
(status, JSON answer); the standard library's server does the HTTP."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class LocalServer:
    def __init__(self, answer: Callable[[Request], tuple[int, object]]):
        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
                status, body = answer(request)
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # noqa: N815 - the standard library's names

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sink:
    """A message provider for the daemon tests: answers 200 to each POST and notes when
    each request arrived (time.monotonic()), with its idempotency key and body. Like a
    real provider, it applies a key once (`applied`: the first body of each key)."""

    def __init__(self):
        self.arrivals: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        self.local = LocalServer(self._receive)

    def _receive(self, request: Request) -> tuple[int, str]:
        stamp = time.monotonic()
        with self.lock:
            self.arrivals.append((stamp, request.headers["Idempotency-Key"], request.json()))
        return 200, "ok"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    @property
    def requests(self) -> list[str]:
        """The key of every request, repeats included."""
        with self.lock:
            return [key for _, key, _ in self.arrivals]

    @property
    def applied(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        with self.lock:
            for _, key, body in self.arrivals:
                out.setdefault(key, body)
        return out

    @property
    def url(self) -> str:
        return f"{self.local.base}/send"

    def close(self) -> None:
        self.local.close()
