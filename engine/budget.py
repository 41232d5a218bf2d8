"""A time budget for evaluating a marketer's expression or rendering a template.

The sandbox already bounds what one step may build (engine.templates: texts and lists of
at most 100,000, no huge powers, no padding to a billion characters). A loop can still
run for ever; so each evaluation runs under a deadline: one watchdog thread looks at the
evaluations under way every WATCH seconds and raises OverBudget in the thread of any that
ran past its deadline (CPython's PyThreadState_SetAsyncExc: the exception arrives at the
thread's next bytecode, inside the evaluation). Leaving the budget clears an exception
that was sent but not yet delivered, under the same lock, so it never reaches code
outside the evaluation. An evaluation inside another (a segment inside a condition)
runs under the outer one's deadline."""

from __future__ import annotations

import ctypes
import threading
import time

WATCH = 0.05  # seconds between the watchdog's looks

_lock = threading.Lock()
_active: dict[int, list] = {}  # thread id -> [deadline, depth, fired]
_watchdog: threading.Thread | None = None


class OverBudget(Exception):
    """An evaluation ran past its deadline."""


class limited:
    """`with limited(seconds): ...` raises OverBudget when the block runs longer."""

    __slots__ = ("seconds", "tid")

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self) -> "limited":
        tid = self.tid = threading.get_ident()
        with _lock:
            entry = _active.get(tid)
            if entry is None:
                _active[tid] = [time.monotonic() + self.seconds, 1, False]
            else:
                entry[1] += 1
            if _watchdog is None:
                _start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        with _lock:
            entry = _active[self.tid]
            entry[1] -= 1
            if entry[1]:
                return False
            del _active[self.tid]
            if entry[2]:  # sent: clear it if it has not arrived yet
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.tid), None)
        return False


def _start() -> None:
    global _watchdog
    _watchdog = threading.Thread(target=_watch, name="evaluation-budget", daemon=True)
    _watchdog.start()


def _watch() -> None:
    while True:
        time.sleep(WATCH)
        now = time.monotonic()
        with _lock:
            for tid, entry in _active.items():
                if not entry[2] and now > entry[0]:
                    entry[2] = True
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(OverBudget))
