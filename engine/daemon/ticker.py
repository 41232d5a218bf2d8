"""The daemon: APScheduler 3 ticks the dispatcher and the housekeeping; pending
messages live in the database, never as one scheduler job each.

Nothing else in the engine knows APScheduler."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger

from engine.app import Engine
from engine.daemon.http import build_app
from engine.daemon.metrics import Metrics
from engine.daemon.reload import Reloader
from engine.daemon.server import HttpServer

log = logger.bind(component="daemon")
HOUSEKEEPING_SECONDS = 60
FAILING_AFTER = 3  # failures in a row of the dispatch pass or of a rule's sweep that make health "degraded"
SWEEP_SECONDS = 60  # each sweep enqueues up to an hour ahead (engine.sweeps.AHEAD): messages go at their moment


class Daemon:
    def __init__(self, engine: Engine, *, http: bool | None = None, environ: dict[str, str] | None = None,
                 reloader: Reloader | None = None):
        """`http`: serve the HTTP API (engine/http.py); None follows config.yaml `http:`.
        `reloader`: watch the project's files and reload them while running."""
        self.engine = engine
        self.reloader = reloader
        self.started_at = datetime.now(timezone.utc)
        engine.log_decisions = engine.dispatcher.log_decisions = True
        self._stop = threading.Event()
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self.failures: dict[str, tuple[int, str]] = {}  # "dispatch", "sweep of rule x" -> (in a row, last error)
        self.metrics = Metrics(engine.store, engine.clock.now, lambda: len(self.rule_errors()),
                               lambda: {what: n for what, (n, _) in self.failures.items()})
        if reloader is not None:
            reloader.on_reload.append(lambda _result: self._record("running"))
        self.server: HttpServer | None = None
        cfg = engine.project.config.http
        if cfg.enabled if http is None else http:
            app = build_app(engine, cfg, metrics=self.metrics, health=self.health, environ=environ)
            self.server = HttpServer(app, cfg.host, cfg.port)  # binds now: a port in use fails at start-up

    def _record(self, state: str) -> None:
        """What `run.py status` shows of this daemon."""
        project = self.engine.project
        value = {"state": state, "pid": os.getpid(), "started_at": self.started_at.isoformat(),
                 "rules": len(project.rules.rules), "failing": self.failing(),
                 "http": f"{self.server.address[0]}:{self.server.address[1]}" if self.server else None,
                 "rule_errors": self.rule_errors()}
        try:
            self.engine.store.set_daemon_state("daemon", value, datetime.now(timezone.utc))
        except Exception:  # noqa: BLE001 - status is a convenience; the daemon runs without it
            log.exception("could not record the daemon's state for run.py status")

    def rule_errors(self) -> list[str]:
        """Why the rules running differ from the files on disk: the errors of the last
        reload when it was refused (the last good version runs), else those of the rules
        left out when the daemon started. Empty when they agree."""
        last = self.reloader.last if self.reloader is not None else None
        if last is not None and not last.ok:
            return list(last.errors)
        return [str(p) for p in self.engine.project.errors]

    def failing(self) -> list[str]:
        """What has failed FAILING_AFTER times in a row or more (the dispatch pass, a rule's
        sweep), with its last error: a poisoned row or a rule that breaks its sweep."""
        return [f"{what} failed {n} times in a row: {error}" for what, (n, error) in sorted(self.failures.items())
                if n >= FAILING_AFTER]

    def _outcome(self, what: str, error: str | None) -> None:
        """Count a failure of `what` (or its success, error None); tell `status` when the
        list of what is failing changes."""
        before = self.failing()
        if error is None:
            self.failures.pop(what, None)
        else:
            n, _ = self.failures.get(what, (0, ""))
            self.failures[what] = (n + 1, error)
        if self.failing() != before:
            self._record("running")

    def health(self) -> dict:
        """What GET /healthz shows: "ok"; "degraded" (answered with 200) when the running
        rules differ from the files on disk, with the errors in rule_errors; "error"
        (503) when the database does not answer or the scheduler stopped."""
        project = self.engine.project
        errors, failing = self.rule_errors(), self.failing()
        state = {"status": "degraded" if errors or failing else "ok", "rules": len(project.rules.rules),
                 "rule_errors": errors}
        if failing:
            state["failing"] = failing
        try:
            self.engine.store.next_due_at()
            state["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            state["status"], state["database"] = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
        if not self.scheduler.running:
            state["status"], state["scheduler"] = "error", "not running"
        if self.reloader is not None and self.reloader.last is not None:
            state["last_reload"] = self.reloader.last.as_dict(self.engine.project.config.timezone)
        return state

    def tick(self) -> None:
        """One dispatch job: work off everything due now (a backlog included)."""
        try:
            report = self.engine.dispatch(stop=self._stop.is_set)
        except Exception as exc:
            log.exception("dispatch failed; retrying at the next tick")
            self._outcome("dispatch", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            return
        self._outcome("dispatch", None)
        self.metrics.dispatched(report)
        decided = report.handled - report.paced
        if decided:
            summary = ", ".join(f"{k} {v}" for k, v in sorted(report.by_outcome.items()))
            log.info("dispatched {} messages: {}", decided, summary)
        if report.paced:
            log.info("gave {} messages a later send slot at their channel's rate (each waits in the queue for it)",
                     report.paced)

    def sweep(self) -> None:
        """Calendar rules: enqueue the idle, birthday, holiday, date and cron messages due soon."""
        try:
            report = self.engine.sweep()
        except Exception as exc:
            log.exception("sweep failed; retrying at the next one")
            self._outcome("sweep", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            return
        self._outcome("sweep", None)
        for rule in self.engine.project.rules.calendar:
            self._outcome(f"sweep of rule {rule.id}", report.errors.get(rule.id))
        self.metrics.swept(report)
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
        # in-flight messages of a dispatcher that died come back once their lease is over
        lease = self.engine.project.config.dispatch.lease.total_seconds()
        housekeeping = max(1.0, min(HOUSEKEEPING_SECONDS, lease / 2))
        self.scheduler.add_job(self.housekeeping, "interval", seconds=housekeeping, id="housekeeping",
                               coalesce=True, max_instances=1, next_run_time=now, misfire_grace_time=None)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self._record("running")
        self.scheduler.start()
        if self.server is not None:
            self.server.start()
            host, port = self.server.address
            log.info("HTTP API on http://{}:{} (POST /events, GET /healthz, GET /metrics)", host, port)
        if self.reloader is not None:
            self.reloader.watch(self._stop)
            log.info("watching {}, {} and {} for changes", self.reloader.config_path, self.reloader.rules_dir,
                     self.reloader.templates_dir)
        log.info("running: dispatch every {}s; stop with Ctrl-C or SIGTERM", tick)
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            if self.server is not None:
                log.info("stopping: no new HTTP requests; finishing the ones in flight")
                self.server.stop()
            log.info("stopping: finishing the dispatch pass in flight")
            self.scheduler.shutdown(wait=True)
            self._record("stopped")
            self.engine.close()
            log.info("stopped")
