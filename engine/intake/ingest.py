"""Ingest: store events idempotently, update customers and orders, schedule messages.

Work is batched: one query loads the batch's known event ids, customers and orders; the
state changes and rule matches happen in Python; one transaction writes it all."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from loguru import logger

from engine.config.profile import ProfileConfig
from engine.intake.events import Event
from engine.intake.profile import OrderBefore, apply_profile
from engine.intake.state import apply_customer, apply_order, new_customer, new_order, with_profile
from engine.outcomes import Outcome, Reason
from engine.rules.context import build_context
from engine.rules.model import RuleSet
from engine.store import ConcurrentIngest, IngestWrite, Store
from engine.store.rows import LogRow, MessageRow, log_row
from engine.triggers.match import Broken, match
from engine.triggers.schedule import message_row

log = logger.bind(component="intake")


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0  # events already stored (same id)
    duplicate_ids: list[str] = field(default_factory=list)
    scheduled: list[tuple[str, datetime]] = field(default_factory=list)  # (customer id, due)
    suppressed: int = 0  # messages that lost to the dedup key
    failed: int = 0  # rules whose expressions failed on an event
    rejected: list[tuple[Event, str]] = field(default_factory=list)  # events refused here, with why

    def add(self, other: "IngestReport") -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.duplicate_ids.extend(other.duplicate_ids)
        self.scheduled.extend(other.scheduled)
        self.suppressed += other.suppressed
        self.failed += other.failed
        self.rejected.extend(other.rejected)


class Intake:
    def __init__(self, store: Store, rules: Callable[[], RuleSet], tz: ZoneInfo, shop: dict,
                 profile: ProfileConfig | None = None):
        self.profile = profile
        self.store = store
        self.rules = rules  # a callable, so a reload swaps rules between batches
        self.tz = tz
        self.shop = shop

    def ingest(self, events: Iterable[Event], now: datetime | None, batch_size: int = 2000) -> IngestReport:
        """Ingest events. `now` is the arrival time; None means each event arrives at
        its own time (the dry-run's virtual clock)."""
        report = IngestReport()
        batch: list[Event] = []
        for event in events:
            batch.append(event)
            if len(batch) >= batch_size:
                report.add(self._batch_with_retry(batch, now))
                batch = []
        if batch:
            report.add(self._batch_with_retry(batch, now))
        return report

    def _batch_with_retry(self, batch: list[Event], now: datetime | None) -> IngestReport:
        for _ in range(3):
            try:
                return self._batch(batch, now)
            except ConcurrentIngest as exc:
                log.warning("batch of {} events raced another writer ({}); redoing it", len(batch), exc)
            except Exception as exc:  # noqa: BLE001 - one event the database refuses must not lose the others
                if not self.store.answers():
                    raise  # the database is away: nothing can be stored, the caller says so
                return self._isolate(batch, now, exc)
        return self._batch(batch, now)

    def _isolate(self, batch: list[Event], now: datetime | None, exc: Exception) -> IngestReport:
        """A batch the database refused though it answers: store its halves apart, down to
        the one event that cannot be stored, which is rejected with the reason (and
        logged, without its data)."""
        if len(batch) == 1:
            reason = f"could not be stored: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            log.error("event {} rejected: {}", batch[0].id, reason)
            return IngestReport(rejected=[(batch[0], reason)])
        report = IngestReport()
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            report.add(self._batch_with_retry(half, now))
        return report

    def _batch(self, batch: list[Event], now: datetime | None) -> IngestReport:
        report = IngestReport()
        fresh = self._fresh(batch, report)
        if not fresh:
            return report
        customers = self.store.customers_by_id(e.customer_id for e in fresh)
        orders = self.store.orders_by_id(e.order_id for e in fresh if e.order_id)
        rules = self.rules()
        write = IngestWrite()
        planned: dict[tuple[str, str], dict] = {}
        lost: list[dict] = []
        for event in fresh:
            arrived = now or event.time
            customer, order = self._apply(event, customers, orders)
            write.events.append({"id": event.id, "type": event.type, "time": event.time,
                                 "customer_id": event.customer_id, "order_id": event.order_id,
                                 "payload": event.to_json(), "received_at": arrived})
            if rules.for_event(event.type):
                self._plan(rules, event, customer, order, arrived, planned, lost, write, report)
        write.customers = [customers[c] for c in {e.customer_id for e in fresh}]
        write.orders = [orders[o] for o in {e.order_id for e in fresh if e.order_id}]
        write.messages = list(planned.values())

        def duplicates(scheduled: set) -> list[dict]:
            rows = lost + [r for k, r in planned.items() if k not in scheduled]
            return [_duplicate_row(r) for r in rows]

        inserted, scheduled = self.store.write_ingest(write, duplicates)
        report.accepted = len(inserted)
        for key, row in planned.items():
            if key in scheduled:
                report.scheduled.append((row["customer_id"], row["due_at"]))
        report.suppressed += len(lost) + len(planned) - len(scheduled)
        return report

    def _fresh(self, batch: list[Event], report: IngestReport) -> list[Event]:
        """The events not stored yet; a repeat of a stored one is a duplicate, an id another
        customer's event has is rejected."""
        known = self.store.existing_events(e.id for e in batch)  # id -> its customer
        fresh: list[Event] = []
        for event in batch:
            owner = known.get(event.id)
            if owner is None:
                known[event.id] = event.customer_id
                fresh.append(event)
            elif owner == event.customer_id:
                report.duplicates += 1
                report.duplicate_ids.append(event.id)
            else:
                report.rejected.append((event, f"id: {event.id!r} is already the id of another customer's event "
                                               f"(customer {owner}); each event needs its own id"))
        return fresh

    @staticmethod
    def _apply(event: Event, customers: dict, orders: dict) -> tuple[dict, dict | None]:
        """The event's changes to its customer, order and profile (the dicts are updated)."""
        customer = customers.get(event.customer_id)
        customer = new_customer(event.customer_id) if customer is None else with_profile(customer)
        customers[event.customer_id] = apply_customer(customer, event)
        order = None
        before = OrderBefore.of(None)
        if event.order_id:
            order = orders.get(event.order_id)
            before = OrderBefore.of(order)
            order = order or new_order(event.order_id, event.customer_id)
            orders[event.order_id] = apply_order(order, event)
        apply_profile(customer, order, before, event)
        return customer, order

    def _plan(self, rules: RuleSet, event: Event, customer: dict, order: dict | None, arrived: datetime,
              planned: dict, lost: list, write: IngestWrite, report: IngestReport) -> None:
        """The messages the event's rules schedule (a second one of a dedup key is lost)."""
        context = build_context(customer, order, {"id": event.id, "type": event.type, "time": event.time},
                                event.data, self.shop, arrived, self.tz, self.profile)
        for result in match(rules, event, context, self.tz):
            if isinstance(result, Broken):
                report.failed += 1
                write.log.append(_log_row(result.rule, event, arrived, Outcome.FAILED, Reason.EXPRESSION_ERROR,
                                          result.detail))
                continue
            row = message_row(result, event, arrived)
            key = (row["rule_id"], row["dedup_key"])
            if key in planned:
                lost.append(row)
            else:
                planned[key] = row


def _log_row(rule, event: Event, when: datetime, outcome: Outcome, reason: Reason, detail: str) -> LogRow:
    return log_row(message_id=None, time=when, rule_id=rule.id, customer_id=event.customer_id,
                   order_id=event.order_id, channel=rule.channel, kind=rule.kind, outcome=outcome, reason=reason,
                   detail=detail)


def _duplicate_row(row: MessageRow) -> LogRow:
    scope, _, value = row["dedup_key"].partition(":")
    detail = f"rule {row['rule_id']} already fired once for {scope} {value} (once_per: {scope})"
    return log_row(message_id=None, time=row["created_at"], rule_id=row["rule_id"], customer_id=row["customer_id"],
                   order_id=row["order_id"], channel=row["channel"], kind=row["kind"], outcome=Outcome.SUPPRESSED,
                   reason=Reason.DUPLICATE, detail=detail)
