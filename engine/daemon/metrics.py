"""Prometheus metrics of the daemon (prometheus_client, text format on GET /metrics).

Counters are kept as things happen (events in, messages decided, sweeps); the queue's
depth and the lag of its oldest due message are read from the database when scraped,
so they are true even with several dispatchers or an `ingest` run beside the daemon."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

SWEEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Queue:
    """Collector: messages waiting or in flight by rule and state, and the oldest due
    message's lag behind the clock."""

    def __init__(self, store, now: Callable[[], datetime]):
        self.store = store
        self.now = now

    def describe(self):
        return []  # collected at scrape time only

    def collect(self):
        depth = GaugeMetricFamily("engine_queue_messages", "Messages waiting (pending) or in flight, by rule and state",
                                  labels=["rule", "state"])
        for (rule_id, state), n in sorted(self.store.queue_depth().items()):
            depth.add_metric([rule_id, state], n)
        yield depth
        oldest = self.store.next_due_at()
        lag = max(0.0, (self.now() - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily("engine_queue_oldest_due_lag_seconds",
                                "How far the earliest pending message's due time lies behind now (0 when none is late)",
                                value=lag)


class _RuleErrors:
    """Collector: how many errors keep the running rules from matching the files on disk."""

    def __init__(self, count: Callable[[], int]):
        self.count = count

    def describe(self):
        return []

    def collect(self):
        yield GaugeMetricFamily("engine_rule_errors", "Errors in the rules, templates or config on disk that the "
                                "running daemon could not take (a refused reload, rules left out at start)",
                                value=self.count())


class _Failing:
    """Collector: how many times in a row each part of the daemon has failed."""

    def __init__(self, failures: Callable[[], dict[str, int]]):
        self.failures = failures

    def describe(self):
        return []

    def collect(self):
        gauge = GaugeMetricFamily("engine_failures_in_a_row", "Consecutive failures of the dispatch pass, the "
                                  "sweep, or one rule's sweep (0 once it succeeds again)", labels=["part"])
        for part, n in sorted(self.failures().items()):
            gauge.add_metric([part], n)
        yield gauge


class Metrics:
    def __init__(self, store, now: Callable[[], datetime], rule_errors: Callable[[], int] | None = None,
                 failures: Callable[[], dict[str, int]] | None = None):
        self.registry = CollectorRegistry()
        self._events = Counter("engine_events", "Events received over HTTP, by outcome (accepted, duplicate, rejected)",
                               ["outcome"], registry=self.registry)
        self._messages = Counter("engine_messages", "Messages decided by dispatch, by rule and outcome",
                                 ["rule", "outcome"], registry=self.registry)
        self._sweeps = Histogram("engine_sweep_duration_seconds", "Duration of each calendar rule's sweep", ["rule"],
                                 buckets=SWEEP_BUCKETS, registry=self.registry)
        self.registry.register(_Queue(store, now))
        if rule_errors is not None:
            self.registry.register(_RuleErrors(rule_errors))
        if failures is not None:
            self.registry.register(_Failing(failures))

    def events(self, accepted: int, duplicates: int, rejected: int) -> None:
        for outcome, n in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
            if n:
                self._events.labels(outcome).inc(n)

    def dispatched(self, report) -> None:
        for (rule_id, outcome), n in report.by_rule.items():
            self._messages.labels(rule_id, outcome).inc(n)

    def swept(self, report) -> None:
        for rule_id, seconds in report.seconds.items():
            self._sweeps.labels(rule_id).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
