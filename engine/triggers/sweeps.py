"""Sweeps: the calendar and state rules (idle, birthday, holiday, date, cron) become
scheduled messages through indexed queries that return only the customers due.

A sweep at time `now` covers, for each calendar rule, the moments after the rule's
`swept_until` (kept in the `sweeps` table) up to `now + AHEAD`, and enqueues one message
per customer and moment, due at that moment. So:
- a message goes at its exact moment (the dispatcher holds it until then), however often
  the sweeps run: the daemon sweeps every minute, the dry-run every hour of its clock;
- running a sweep twice enqueues nothing twice (the moments are covered, and each
  message's dedup key names its customer and moment);
- after downtime the next sweep catches up on the moments missed (their messages are
  due at once; a rule's `expires` drops the stale ones);
- a rule's first sweep starts at that moment: adding a win-back rule does not write to
  every customer who went idle in the past.

Which customers: idle -> those whose latest order lies in one range of the index on
last_order_at; birthday -> the index on birthday_md; holiday / date / cron are
broadcasts: every customer passing the rule's `if:`. The database picks the candidates
with the part of `if:` that translates to SQL (engine.triggers.prefilter: order counts,
spend, days since the last order, RFM bands, segments made of those); they are read a
page at a time, in id order, and the whole `if:` decides on each.
An idle message is cancelled at send time if the customer ordered again meanwhile."""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

import jinja2
from loguru import logger

from engine.clock import ceil_minute
from engine.config.profile import DEFAULT_PROFILE, ProfileConfig
from engine.errors import ExpressionError
from engine.outcomes import Outcome, Reason
from engine.rules.context import build_context
from engine.rules.model import Rule, RuleSet
from engine.store import Store
from engine.store.rows import LogRow, log_row, new_message
from engine.store.tables import encode_money, encode_time
from engine.triggers.prefilter import customer_filter

log = logger.bind(component="sweeps")
PAGE_WRITE = 5000  # a broadcast enqueues its messages in chunks of about this many
AHEAD = timedelta(hours=1)  # how far past `now` a sweep enqueues (the dry-run sweeps once per hour)


@dataclass
class SweepReport:
    enqueued: dict[str, int] = field(default_factory=dict)  # rule id -> messages enqueued
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # rule id -> why its sweep failed (the others went on)
    scheduled: list[tuple[str, datetime]] = field(default_factory=list)  # (customer, due)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.enqueued.values())


class Sweeper:
    def __init__(self, store: Store, rules: Callable[[], RuleSet], tz: ZoneInfo, shop: dict,
                 profile: ProfileConfig | None = None, segments: Callable[[], dict[str, str]] | None = None,
                 parse: Callable[[str], jinja2.nodes.Expr] | None = None):
        self.segments = segments  # name -> condition, for translating segment('name') to SQL
        # the project's expression parser (Templates.parse_expression); a sweeper made without a
        # project (a benchmark, a test) parses with an environment of its own
        self.parse = parse or _own_parser()
        self.store = store
        self.rules = rules
        self.tz = tz
        self.shop = shop
        self.profile = profile

    def run(self, now: datetime) -> SweepReport:
        report = SweepReport()
        rules = self.rules().calendar
        if not rules:
            return report
        covered = self.store.swept_until()
        end = now + AHEAD
        for rule in rules:
            start = covered.get(rule.id) or now
            if end <= start:
                continue
            try:
                self._sweep(rule, start, end, now, report)
            except Exception as exc:  # noqa: BLE001 - one rule's sweep fails; the others go on
                log.exception("sweep of rule {} failed; it is tried again at the next sweep", rule.id)
                report.errors[rule.id] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return report

    def _sweep(self, rule: Rule, start: datetime, end: datetime, now: datetime, report: SweepReport) -> None:
        began = _time.perf_counter()
        early = _Early()  # what a broadcast enqueued page by page
        rows, failures = self._plan(rule, start, end, now, early)
        seconds = _time.perf_counter() - began
        if failures:  # one record per sweep, not one per customer
            first = failures[0]
            if len(failures) > 1:
                first["detail"] += f" (and {len(failures) - 1} more customers)"
            log.error("{}", first["detail"])
            failures = [first]
        written = self.store.write_sweep(rule.id, end, now, rows, failures, seconds) + early.written
        report.enqueued[rule.id] = written
        report.failed += len(failures)
        report.seconds[rule.id] = seconds
        report.scheduled.extend(early.scheduled)  # the dry-run decides each before its customer's next event
        report.scheduled.extend((r["customer_id"], r["due_at"]) for r in rows)

    def next_moment(self, after: datetime) -> datetime | None:
        """The earliest moment after `after` at which a calendar rule may enqueue something,
        as the store stands (idle: the next customer to turn idle; birthday: the next day's
        moment; holiday, date, cron: the trigger's next moment). The dry-run sweeps only
        then instead of every hour; orders ingested later can only bring it nearer by their
        own time plus the shortest idle span (see dryrun)."""
        best = None
        for rule in self.rules().calendar:
            trigger = rule.trigger
            if trigger.kind == "idle":
                last = self.store.next_last_order_after(after - trigger.idle)
                moment = last + trigger.idle if last is not None else None
            else:
                moment = None
                for span in (timedelta(days=2), timedelta(days=40), timedelta(days=800)):
                    moments = trigger.moments(after, after + span, self.tz)
                    if moments:
                        moment = moments[0][0]
                        break
            if moment is not None and (best is None or moment < best):
                best = moment
        return best

    # -------------------------------------------------------------------------------------
    def _plan(self, rule: Rule, start: datetime, end: datetime, now: datetime,
              early: "_Early") -> tuple[list[dict], list[dict]]:
        trigger = rule.trigger
        rows: list[dict] = []
        failures: list[dict] = []
        if trigger.kind == "idle":
            full = bool(rule.conditions)  # without `if:` only the ids are needed
            for customer in self.store.idle_customers(start - trigger.idle, end - trigger.idle, full=full):
                moment = customer["last_order_at"] + trigger.idle
                key = f"idle:{customer['id']}:{customer['last_order_at'].isoformat()}"
                self._consider(rule, customer, moment, key, now, rows, failures)
            return rows, failures
        for moment, day in trigger.moments(start, end, self.tz):
            if trigger.kind == "birthday":
                key_of = f"birthday:{{}}:{day.isoformat()}"
                for customer in self.store.birthday_customers(trigger.birthdays_on(day), full=bool(rule.conditions)):
                    self._consider(rule, customer, moment, key_of.format(customer["id"]), now, rows, failures)
                continue
            where = self._prefilter(rule, moment)
            for page in self.store.customer_pages(where=where.sql if where else None,
                                                  params=where.params if where else ()):
                for customer in page:
                    key = f"{trigger.kind}:{customer['id']}:{moment.isoformat()}"
                    self._consider(rule, customer, moment, key, now, rows, failures)
                if len(rows) >= PAGE_WRITE:  # memory stays at about a page however many match
                    early.written += self.store.enqueue_swept(rows)
                    early.scheduled.extend((r["customer_id"], r["due_at"]) for r in rows)
                    rows = []
        return rows, failures

    def _prefilter(self, rule: Rule, moment: datetime):
        """The part of the broadcast's `if:` the database can check (see prefilter)."""
        if not rule.conditions:
            return None
        return customer_filter([c.source for c in rule.conditions], self.parse, self.profile or DEFAULT_PROFILE,
                               self.segments() if self.segments else {}, moment,
                               lambda t: encode_time(t, self.store.dialect),
                               lambda amount: encode_money(amount, self.store.dialect))

    def _consider(self, rule: Rule, customer: dict, moment: datetime, key: str, now: datetime,
                  rows: list[dict], failures: list[dict]) -> None:
        """The rule's `if:` on the customer as of the moment; a message row when it holds."""
        if rule.conditions:
            context = build_context(customer, None, {"id": None, "type": rule.event_label, "time": moment}, {},
                                    self.shop, moment, self.tz, self.profile)
            try:
                if not all(c.evaluate(context) for c in rule.conditions):
                    return
            except ExpressionError as exc:
                failures.append(_log_row(rule, customer["id"], now, Outcome.FAILED, Reason.EXPRESSION_ERROR,
                                         f"rule {rule.id}: {exc}"))
                return
        due = ceil_minute(moment)
        rows.append(new_message(rule_id=rule.id, dedup_key=key, customer_id=customer["id"], order_id=None,
                                event_id=None, channel=rule.channel, kind=rule.kind, due_at=due,
                                expires_at=due + rule.expires if rule.expires is not None else None, now=now))


@dataclass
class _Early:
    """A broadcast's messages written before its sweep ends (a chunk at a time)."""

    written: int = 0
    scheduled: list[tuple[str, datetime]] = field(default_factory=list)


def _own_parser() -> Callable[[str], jinja2.nodes.Expr]:
    env = jinja2.Environment()
    return lambda source: env.parse("{{ " + source + " }}").body[0].nodes[0]


def _log_row(rule: Rule, customer_id: str, when: datetime, outcome: Outcome, reason: Reason, detail: str) -> LogRow:
    return log_row(message_id=None, time=when, rule_id=rule.id, customer_id=customer_id, order_id=None,
                   channel=rule.channel, kind=rule.kind, outcome=outcome, reason=reason, detail=detail)
