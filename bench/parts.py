"""The engine's measurements: parse, ingest + match + enqueue, dispatch, dry-run, and the
engine's side of the burst that the naive APScheduler store also runs (naive.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from common import OUT, ROOT, Timer, build_engine, file_channels, rate, sqlite_url, utc

from engine.app import Engine, Project
from engine.channels.file import FileChannel
from engine.clock import SystemClock
from engine.config.limits import ChannelLimits, parse_rate
from engine.dryrun.replay import default_until, read_events
from engine.intake.events import Event, parse_event
from engine.store import Store

CHUNK = 100_000  # events per Engine.ingest call (the engine batches 2,000 per transaction inside)


def parse(project: Project, path: Path) -> tuple[list[Event], dict]:
    """Read and validate the file as `ingest` and `dry-run` do (engine.dryrun.read_events)."""
    timer = Timer()
    with path.open(encoding="utf-8") as fh:
        events, rejected = read_events(enumerate(fh, start=1), project)
    seconds = timer.seconds
    return events, {"events": len(events), "rejected": len(rejected), "seconds": round(seconds, 2),
                    "events_per_s": round(rate(len(events), seconds))}


def ingest(project: Project, events: list[Event], url: str, outbox: Path, log=print) -> tuple[Engine, dict]:
    """Engine.ingest on a fresh store, each event arriving at its own time (VirtualClock)."""
    engine = build_engine(project, url, outbox, events[0].time)
    chunks, accepted, scheduled, suppressed, failed = [], 0, 0, 0, 0
    total = Timer()
    for start in range(0, len(events), CHUNK):
        chunk = events[start:start + CHUNK]
        engine.clock.set(chunk[-1].time)
        timer = Timer()
        report = engine.ingest(chunk, virtual=True)
        seconds = timer.seconds
        chunks.append(round(rate(len(chunk), seconds)))
        accepted += report.accepted
        scheduled += len(report.scheduled)
        suppressed += report.suppressed
        failed += report.failed
        log(f"  ingest {start + len(chunk):>9,} events: {chunks[-1]:>8,} events/s this chunk")
    seconds = total.seconds
    return engine, {"events": len(events), "accepted": accepted, "messages_scheduled": scheduled,
                    "suppressed_duplicates": suppressed, "failed": failed, "seconds": round(seconds, 2),
                    "events_per_s": round(rate(len(events), seconds)),
                    "messages_per_s": round(rate(scheduled, seconds)),
                    "events_per_s_by_chunk": chunks, "chunk": CHUNK}


def dispatch(engine: Engine, project: Project, events: list[Event], outbox: Path) -> dict:
    """After ingest: move the clock past every due time and work off the whole queue.
    virtual=True: each message is decided at its own due time (so `expires` means what
    it means live), against the final state of customers and orders."""
    until = default_until(project, events)
    engine.clock.set(until)
    timer = Timer()
    report = engine.dispatch(until, virtual=True)
    seconds = timer.seconds
    for channel in engine.channels.values():
        channel.flush()
    written = {p.stem: _lines(p) for p in sorted(outbox.glob("*.jsonl"))}
    left = engine.store.count("messages", state="pending") + engine.store.count("messages", state="claimed")
    sent = report.by_outcome.get("sent", 0)
    return {"handled": report.handled, "by_outcome": dict(sorted(report.by_outcome.items())),
            "seconds": round(seconds, 2), "messages_per_s": round(rate(report.handled, seconds)),
            "sent_per_s": round(rate(sent, seconds)), "written_to_files": written,
            "left_pending": left, "batch_size": engine.dispatcher.batch_size}


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def dry_run(path: Path, timeout: float, log=print) -> dict:
    """`python run.py dry-run --events FILE --json > /dev/null` as a subprocess: wall time
    and the child's own peak resident memory (ru_maxrss from wait4). Killed after
    `timeout` seconds (then the figures are a lower bound and `timed_out` is true)."""
    cmd = [sys.executable, str(ROOT / "run.py"), "dry-run", "--events", str(path), "--json"]
    err_path = OUT / "dryrun-stderr.txt"
    log(f"  {' '.join(cmd[1:])} > /dev/null 2> {err_path}")
    timed_out = False
    with err_path.open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                timed_out = True
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = err_path.read_text(encoding="utf-8", errors="replace").splitlines()
    total = next((line for line in reversed(tail) if line.startswith("total")), None)
    return {"exit_code": proc.returncode, "timed_out": timed_out, "seconds": round(seconds, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "user_s": round(usage.ru_utime, 2),
            "sys_s": round(usage.ru_stime, 2), "summary_head": tail[0] if tail else None,
            "summary_total": " ".join(total.split()) if total else None, "command": " ".join(cmd[1:])}


# ---- the engine's side of the naive comparison ---------------------------------------------
def burst_events(project: Project, jobs: int, base: float, window: float) -> list[Event]:
    """`jobs` unpaid orders whose payment reminders fall due evenly over `window` s from `base`."""
    rule = project.rules.get("payment-reminder")
    if rule is None or rule.wait is None:
        raise SystemExit("the burst needs the shipped payment-reminder rule (order.created, wait)")
    wait = rule.wait.total_seconds()
    tz = project.config.timezone
    out = []
    for i in range(jobs):
        created = utc(base + window * i / jobs - wait)
        raw = {"id": f"burst-{i:07d}", "type": "order.created", "time": created.isoformat(),
               "customer": {"id": f"b-{i:07d}", "name": "王小明", "phone": f"138{i:08d}"},
               "order": {"id": f"bo-{i:07d}", "amount": 99.0,
                         "items": [{"sku": "LP-05", "name": "头灯", "category": "gear", "qty": 1, "price": 99.0}]}}
        out.append(parse_event(raw, tz))
    return out


class StampedFileChannel(FileChannel):
    """The `file` channel, noting the wall-clock moment of each send (for lateness and
    the per-second rate as the provider would see it)."""

    def __init__(self, name, options, base_dir):
        super().__init__(name, options, base_dir)
        self.stamps: dict[str, float] = {}  # customer id -> time.time() of the send

    def send(self, message) -> None:
        self.stamps[message.customer_id] = time.time()
        super().send(message)


def engine_burst(project: Project, jobs: int, window: float, timeout: float, db: Path, outbox: Path,
                 log=print, rate_text: str | None = "off") -> dict:
    """The same burst through the engine, in real time: ingest `jobs` order.created events
    (each schedules one payment reminder due within the window), then tick like the daemon
    (engine.dispatch() on the system clock, once a second; a send waits for its slot on a
    rate-limited channel) until every message is handled. `rate_text`: the sms channel's
    rate for this run ("off": none, as the naive scheduler has none; None: as configured)."""
    limits = project.config.limits
    if rate_text != "config":
        limits.channels["sms"] = replace(limits.channels.get("sms") or ChannelLimits(),
                                         rate=None if rate_text == "off" else parse_rate(rate_text))
    rate_used = limits.channels["sms"].rate.text if limits.channels.get("sms") and limits.channels["sms"].rate else None
    store = Store(sqlite_url(db))
    channels = file_channels(project, outbox)
    sms = channels["sms"] = StampedFileChannel("sms", dict(channels["sms"].options), outbox)
    engine = Engine(project, store, channels, SystemClock())
    t0 = time.time()
    base = t0 + max(20.0, jobs / 2000)  # assumes ingest >= 2,000 events/s; checked below
    events = burst_events(project, jobs, base, window)
    # due times are rounded up to the whole minute (the engine never sends early)
    due = {e.customer_id: math.ceil((base + window * i / jobs) / 60) * 60 for i, e in enumerate(events)}
    timer = Timer()
    report = engine.ingest(events)
    schedule_seconds = timer.seconds
    scheduled = len(report.scheduled)
    overdue = sum(1 for i in range(jobs) if base + window * i / jobs < time.time())
    log(f"engine: scheduled {scheduled} messages in {schedule_seconds:.1f} s; ticking through the burst"
        + (f" (sms rate {rate_used})" if rate_used else ""))
    busy, handled, ticks = 0.0, 0, 0
    deadline = base + window + timeout
    while True:
        started = time.time()
        result = engine.dispatch()
        ended = time.time()
        ticks += 1
        if result.handled:
            busy += ended - started
            handled += result.handled - getattr(result, "paced", 0)
        if (handled >= scheduled and ended > base + window) or ended > deadline:
            break
        time.sleep(max(0.0, started + 1.0 - time.time()))
    states: dict[str, int] = {}
    for r in store.rows("messages"):
        states[r["state"]] = states.get(r["state"], 0) + 1
    for channel in engine.channels.values():
        channel.flush()
    written = _lines(outbox / "sms.jsonl") if (outbox / "sms.jsonl").exists() else 0
    engine.close()
    from naive import _quantiles

    late = sorted(stamp - due[customer] for customer, stamp in sms.stamps.items())
    stamps = sorted(sms.stamps.values())
    sent = states.get("sent", 0)
    first, last = (stamps[0], stamps[-1]) if stamps else (None, None)
    return {"jobs": jobs, "window_s": window, "sms_rate": rate_used, "scheduled": scheduled,
            "schedule_seconds": round(schedule_seconds, 2),
            "schedule_rate": round(rate(scheduled, schedule_seconds), 1), "due_before_ingest_finished": overdue,
            "states": states, "sent": sent, "written_to_file": written, "lost": jobs - sent,
            "dispatch_busy_seconds": round(busy, 2), "dispatch_rate": round(rate(handled, busy), 1),
            "lateness_s": _quantiles(late), "ticks": ticks,
            "send_span_s": round(last - first, 2) if stamps else None,
            "most_sent_in_one_second": _most_in_window(stamps, 1.0),
            "note": "lateness = wall-clock moment of the send - due time (rounded up to the minute, as the "
                    "engine schedules it); a paced burst is late by its place in the queue (N / rate at the end)"}


def _most_in_window(stamps: list[float], window: float) -> int:
    most, left = 0, 0
    for right, t in enumerate(stamps):
        while stamps[left] <= t - window:
            left += 1
        most = max(most, right - left + 1)
    return most
