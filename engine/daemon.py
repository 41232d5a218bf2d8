"""The daemon: APScheduler 3 ticks the dispatcher and the housekeeping; pending
messages live in the database, never as one scheduler job each.

Nothing else in the engine knows APScheduler."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger

from engine.app import Engine

log = logger.bind(component="daemon")
HOUSEKEEPING_SECONDS = 60
SWEEP_SECONDS = 60  # each sweep enqueues up to an hour ahead (engine.sweeps.AHEAD): messages go at their moment


class Daemon:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._stop = threading.Event()
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def tick(self) -> None:
        """One dispatch job: work off everything due now (a backlog included)."""
        try:
            report = self.engine.dispatch(stop=self._stop.is_set)
        except Exception:
            log.exception("dispatch failed; retrying at the next tick")
            return
        if report.handled:
            summary = ", ".join(f"{k} {v}" for k, v in sorted(report.by_outcome.items()))
            log.info("dispatched {} messages: {}", report.handled, summary)

    def sweep(self) -> None:
        """Calendar rules: enqueue the idle, birthday, holiday, date and cron messages due soon."""
        try:
            report = self.engine.sweep()
        except Exception:
            log.exception("sweep failed; retrying at the next one")
            return
        for rule_id, count in report.enqueued.items():
            if count:
                log.info("sweep {}: {} messages enqueued in {:.3f}s", rule_id, count, report.seconds[rule_id])

    def housekeeping(self) -> None:
        try:
            released = self.engine.housekeeping()
        except Exception:
            log.exception("housekeeping failed")
            return
        if released:
            log.warning("{} messages claimed by a dispatcher that stopped were put back in the queue", released)

    def stop(self, *_args) -> None:
        self._stop.set()

    def run(self) -> None:
        """Run until SIGTERM / SIGINT; finish the pass in flight, then exit."""
        tick = self.engine.project.config.dispatch.tick.total_seconds()
        now = datetime.now(timezone.utc)
        self.scheduler.add_job(self.tick, "interval", seconds=tick, id="dispatch", coalesce=True,
                               max_instances=1, next_run_time=now, misfire_grace_time=None)
        self.scheduler.add_job(self.sweep, "interval", seconds=SWEEP_SECONDS, id="sweep", coalesce=True,
                               max_instances=1, next_run_time=now, misfire_grace_time=None)
        self.scheduler.add_job(self.housekeeping, "interval", seconds=HOUSEKEEPING_SECONDS, id="housekeeping",
                               coalesce=True, max_instances=1, next_run_time=now, misfire_grace_time=None)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.scheduler.start()
        log.info("running: dispatch every {}s; stop with Ctrl-C or SIGTERM", tick)
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            log.info("stopping: finishing the dispatch pass in flight")
            self.scheduler.shutdown(wait=True)
            self.engine.close()
            log.info("stopped")
