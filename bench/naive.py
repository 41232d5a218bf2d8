"""The naive alternative a Python shop would write: one APScheduler 3 `DateTrigger` job
per message, kept in `SQLAlchemyJobStore` on a SQLite file, default settings
(thread pool of 10, misfire_grace_time 1 s, no coalescing).

Workload: `jobs` messages whose due times are spread evenly over `window` seconds (a
burst, like the payment reminders of a Double-11 midnight peak). The jobs are added
while the scheduler runs (as an application would add them, event by event); the burst
starts after the last add is expected to be done (estimated from a probe of 1,000 adds),
so what follows measures the store's run side, not our estimate. Then we wait until
every job has either run or been dropped as missed (or a time limit passes) and count.

`deliver` must stay a module-level function: the job store pickles a reference to it."""

from __future__ import annotations

import logging
import sqlite3
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import apscheduler
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from common import sqlite_url, utc

_late: list[float] = []  # seconds between the due time and the job actually running
_lock = threading.Lock()


def deliver(number: int, due_ts: float) -> None:
    """The job: 'send' message `number`; record how late it ran."""
    late = time.time() - due_ts
    with _lock:
        _late.append(late)


def _scheduler(db: Path) -> BackgroundScheduler:
    store = SQLAlchemyJobStore(url=sqlite_url(db))
    return BackgroundScheduler(jobstores={"default": store}, timezone="UTC")


def probe_add_rate(db: Path, jobs: int = 1000) -> float:
    """Jobs/s for a first small batch, to place the burst after the real adds end."""
    scheduler = _scheduler(db)
    scheduler.start()
    far = time.time() + 86400
    started = time.perf_counter()
    for i in range(jobs):
        scheduler.add_job(deliver, "date", run_date=utc(far + i), args=(i, far + i))
    seconds = time.perf_counter() - started
    scheduler.shutdown(wait=False)
    return jobs / seconds


def _stored_jobs(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from apscheduler_jobs").fetchone()[0]


def run(db: Path, jobs: int, window: float, timeout: float, log=print) -> dict:
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # one "was missed by" warning per dropped job
    _late.clear()
    probe = probe_add_rate(db.with_name(db.stem + "-probe.db"))
    counts: Counter = Counter()
    last_event = [0.0]

    def listener(event) -> None:
        counts[event.code] += 1
        last_event[0] = time.time()

    scheduler = _scheduler(db)
    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    scheduler.start()
    t0 = time.time()
    base = t0 + jobs / probe * 1.3 + 10
    log(f"naive: adding {jobs} jobs (probe {probe:,.0f} jobs/s); burst of {window:.0f} s starts in {base - t0:.0f} s")
    started = time.perf_counter()
    for i in range(jobs):
        due = base + window * i / jobs
        scheduler.add_job(deliver, "date", run_date=utc(due), args=(i, due))
    add_seconds = time.perf_counter() - started
    added_at = time.time()
    overdue = sum(1 for i in range(jobs) if base + window * i / jobs < added_at)
    log(f"naive: added in {add_seconds:.1f} s ({jobs / add_seconds:,.0f} jobs/s); {overdue} were already due; "
        "waiting for the burst")
    deadline = base + window + timeout
    processed = 0
    while time.time() < deadline:
        processed = counts[EVENT_JOB_EXECUTED] + counts[EVENT_JOB_MISSED] + counts[EVENT_JOB_ERROR]
        if processed >= jobs:
            break
        time.sleep(0.5)
    timed_out = processed < jobs
    left_in_store = _stored_jobs(db)
    if timed_out:
        log(f"naive: stopped waiting after {timeout:.0f} s past the burst; {left_in_store} jobs still stored")
    else:
        scheduler.shutdown(wait=True)
    with _lock:
        late = sorted(_late)
    executed, missed = counts[EVENT_JOB_EXECUTED], counts[EVENT_JOB_MISSED]
    run_seconds = (last_event[0] - base) if last_event[0] else None
    return {
        "jobs": jobs, "window_s": window, "probe_add_rate": round(probe, 1),
        "add_seconds": round(add_seconds, 2), "add_rate": round(jobs / add_seconds, 1),
        "due_before_adds_finished": overdue,
        "executed": executed, "missed": missed, "errors": counts[EVENT_JOB_ERROR],
        "not_processed": jobs - processed, "left_in_store": left_in_store, "timed_out": timed_out,
        "lost": jobs - executed, "lost_share": round((jobs - executed) / jobs, 4),
        "ran_late_over_0_5s": sum(1 for x in late if x > 0.5),
        "lateness_s": _quantiles(late),
        "run_seconds_from_burst_start": round(run_seconds, 2) if run_seconds else None,
        "processed_rate": round(processed / run_seconds, 1) if run_seconds else None,
        "settings": f"APScheduler {apscheduler.__version__} defaults: ThreadPoolExecutor(10), misfire_grace_time=1 s, "
                    "coalesce=False; SQLite file with SQLAlchemy's defaults (rollback journal, synchronous=FULL)",
    }


def _quantiles(values: list[float]) -> dict | None:
    if not values:
        return None
    if len(values) == 1:
        return {"p50": round(values[0], 3), "p99": round(values[0], 3), "max": round(values[0], 3)}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(q[49], 3), "p99": round(q[98], 3), "max": round(values[-1], 3)}
