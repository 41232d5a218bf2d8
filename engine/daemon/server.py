"""Serving the HTTP API (engine/http.py) with uvicorn in a thread of the daemon.

The daemon's main thread keeps the signals: on SIGTERM it stops the server first (no new
requests; the ones in flight finish), then the scheduler. The listening socket is bound
here, before the thread starts, so a port already in use is a clear error at start-up."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class ListenError(RuntimeError):
    pass


class HttpServer:
    def __init__(self, app, host: str, port: int):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}; change http.listen in config.yaml "
                              "(or stop what uses the port)") from None
        self.sock.listen(2048)
        self._address: tuple[str, int] = tuple(self.sock.getsockname()[:2])
        self.sock.set_inheritable(True)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="http",
                                       daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ListenError(f"the HTTP server did not start on {self.address[0]}:{self.address[1]}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop accepting; wait for the requests in flight (at most the graceful timeout)."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join()
        self.sock.close()
