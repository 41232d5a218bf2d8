"""The dry-run: the real engine on a throwaway database with a virtual clock and
recording channels. It never opens the configured database.

Events are fed in time order. The virtual clock jumps from one due time to the next;
each message is decided at its own due time. Events are ingested in batches, and a batch
is cut before any event whose customer has a message that could be due by then, so
every decision sees the customer's state exactly as it was at that moment."""

from __future__ import annotations

import heapq
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from engine.app import Engine, Project
from engine.channels import Channel
from engine.channels.recording import FailingRecordingChannel, RecordingChannel
from engine.clock import VirtualClock
from engine.errors import EngineError, EventError
from engine.intake.events import Event, Rejected, numbered_texts, parse_line, read_events  # noqa: F401 - re-exported
from engine.store import Store
from engine.triggers.sweeps import AHEAD

BATCH = 2000


def _floor(t: datetime, step: timedelta) -> datetime:
    """`t` rounded down to a multiple of `step` since the Unix epoch."""
    epoch = datetime.fromtimestamp(0, t.tzinfo)
    return epoch + ((t - epoch) // step) * step


class UntilBeforeEvents(EngineError, ValueError):
    """--until lies before the first event: there is nothing to replay."""

    def __init__(self, until: datetime, first: datetime):
        self.until, self.first = until, first
        super().__init__(f"{until.isoformat()} is before the first event ({first.isoformat()}): nothing to replay; "
                         "leave --until out, or give a time after the first event")


@dataclass
class DryRunResult:
    decisions: list[dict]
    rejected: list[Rejected]
    events: int
    duplicates: int
    start: datetime | None
    until: datetime | None
    channels: dict[str, Channel] = field(default_factory=dict)


def _timetable(lines: Iterable[tuple[int, str | bytes]], project: Project
               ) -> tuple[list[tuple[datetime, int, str]], list[Rejected]]:
    """Validate every line but keep only (time, line number, text), in time order: a
    million parsed events would not fit the dry-run's memory budget; each is parsed
    again when the virtual clock reaches it."""
    entries, rejected = [], []
    tz = project.config.timezone
    for number, text in numbered_texts(lines, rejected):
        try:
            entries.append((parse_line(text, tz).time, number, text))
        except EventError as exc:
            rejected.append(Rejected(number, str(exc), text.rstrip("\n")))
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return entries, rejected


def _sweep_covering(moment: datetime) -> datetime:
    """The hourly sweep time t (on the AHEAD grid) with t < moment <= t + AHEAD."""
    t = _floor(moment, AHEAD)
    return t - AHEAD if t == moment else t


def default_until(project: Project, events: list[Event]) -> datetime | None:
    """The last event + the longest wait/expires of the rules + one day."""
    return _until_after(project, max((e.time for e in events), default=None))


def _until_after(project: Project, last: datetime | None) -> datetime | None:
    if last is None:
        return None
    horizon = max((r.horizon for r in project.rules.rules), default=timedelta(0))
    return last + horizon + timedelta(days=1)


def _leads(project: Project) -> dict[str, timedelta]:
    """For each event type, the earliest a message it starts can be due after it."""
    leads: dict[str, timedelta] = {}
    for rule in project.rules.rules:
        lead = timedelta(0) if rule.send_at is not None else (rule.wait or timedelta(0))
        for etype in rule.when:
            leads[etype] = min(leads.get(etype, lead), lead)
    return leads


class _Replay:
    def __init__(self, engine: Engine, leads: dict[str, timedelta]):
        self.engine = engine
        # calendar rules: sweep as the daemon's sweeps would (each covers AHEAD of time),
        # but only at the sweeps that can enqueue something (see _plan_next_sweep)
        self.next_sweep: datetime | None = None
        calendar = engine.project.rules.calendar
        self.sweeps = bool(calendar)
        idles = [r.trigger.idle for r in calendar if r.trigger.kind == "idle"]
        self.shortest_idle: timedelta | None = min(idles) if idles else None
        self.leads = leads
        self.dues: dict[str, list[datetime]] = {}  # customer -> heap of pending due times
        self.batch: list[Event] = []
        self.possible: dict[str, datetime] = {}  # customer -> earliest due the batch may create
        self.dispatched_until: datetime | None = None
        self.duplicates = 0
        self.rejected: list[Rejected] = []  # events refused when stored (an id another customer's event has)

    def feed(self, event: Event) -> None:
        self.sweep_until(event.time)
        if self.shortest_idle is not None and self.next_sweep is not None and event.order is not None:
            # an order makes its customer idle `shortest_idle` later: sweep then at the latest
            self.next_sweep = min(self.next_sweep, _sweep_covering(event.time + self.shortest_idle))
        if self._must_cut(event) or len(self.batch) >= BATCH:
            self.flush()
            self.dispatch(event.time)
        self.batch.append(event)
        lead = self.leads.get(event.type)
        if lead is not None:
            due = event.time + lead
            current = self.possible.get(event.customer_id)
            self.possible[event.customer_id] = due if current is None else min(current, due)

    def _must_cut(self, event: Event) -> bool:
        possible = self.possible.get(event.customer_id)
        if possible is not None and possible <= event.time:
            return True
        heap = self.dues.get(event.customer_id)
        while heap and self.dispatched_until is not None and heap[0] <= self.dispatched_until:
            heapq.heappop(heap)
        return bool(heap) and heap[0] <= event.time

    def flush(self) -> None:
        if not self.batch:
            return
        report = self.engine.ingest(self.batch, virtual=True)
        self.duplicates += report.duplicates
        self.rejected.extend(Rejected(event.line, reason, json.dumps(event.to_json(), ensure_ascii=False))
                             for event, reason in report.rejected)
        for customer, due in report.scheduled:
            heapq.heappush(self.dues.setdefault(customer, []), due)
        self.batch = []
        self.possible.clear()

    def sweep_until(self, until: datetime) -> None:
        """Run the sweeps due by `until` (each on the state as of its own time)."""
        if not self.sweeps:
            return
        if self.next_sweep is None:
            self.next_sweep = _floor(until, AHEAD)
        while self.next_sweep <= until:
            self.flush()
            self.dispatch(self.next_sweep)
            report = self.engine.sweep(self.next_sweep)
            for customer, due in report.scheduled:
                heapq.heappush(self.dues.setdefault(customer, []), due)
            self.next_sweep = self._plan_next_sweep(self.next_sweep)

    def _plan_next_sweep(self, last: datetime) -> datetime:
        """The first hourly sweep after `last` whose span (t, t + AHEAD] holds a moment.
        The daemon's sweeps in between would enqueue nothing: skipping them changes no
        decision, and a months-long replay does not pay for thousands of empty sweeps."""
        moment = self.engine.sweeper.next_moment(last + AHEAD)
        if moment is None:
            return datetime.max.replace(tzinfo=last.tzinfo)
        return max(last + AHEAD, _sweep_covering(moment))

    def dispatch(self, until: datetime) -> None:
        self.engine.clock.set(until)
        report = self.engine.dispatch(until, virtual=True)
        for customer, due in report.rescheduled:
            heapq.heappush(self.dues.setdefault(customer, []), due)
        self.dispatched_until = until


def run_dry(project: Project, lines: Iterable[tuple[int, str]], until: datetime | None = None,
            workdir: Path | None = None, failing: dict[str, float] | None = None) -> DryRunResult:
    """`failing`: channel name -> the share of its attempts that fail (a provider outage
    to rehearse: retries, pauses and final failures then show in the decisions)."""
    entries, rejected = _timetable(lines, project)
    if until is not None and entries and until < entries[0][0]:
        raise UntilBeforeEvents(until, entries[0][0])
    until = until or _until_after(project, entries[-1][0] if entries else None)
    kept = [entry for entry in entries if until is None or entry[0] <= until]
    del entries
    start = kept[0][0] if kept else until
    tz = project.config.timezone
    failing = failing or {}
    channels = {name: (FailingRecordingChannel.failing_twin(name, c.options, project.config.base_dir, failing[name])
                       if name in failing else RecordingChannel.twin(name, c.options, project.config.base_dir))
                for name, c in project.config.channels.items()}
    with tempfile.TemporaryDirectory(prefix="engine-dry-run-", dir=workdir) as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'dry-run.db'}", throwaway=True)
        engine = Engine(project, store, channels, VirtualClock(start or datetime.now().astimezone()))
        try:
            replay = _Replay(engine, _leads(project))
            for _, number, text in kept:
                event = parse_line(text, tz)
                event.line = number
                replay.feed(event)
            replay.flush()
            if until is not None:
                replay.sweep_until(until)
                replay.dispatch(until)
            decisions = store.rows("message_log", order_by="id")
        finally:
            engine.close()  # its send threads and the store (the recording channels keep what they recorded)
    decisions.sort(key=lambda d: (d["time"], d["id"]))
    rejected = sorted(rejected + replay.rejected, key=lambda r: r.line or 0)
    return DryRunResult(decisions, rejected, len(kept) - len(replay.rejected), replay.duplicates, start, until,
                        channels)
