"""Dispatch: claim due messages → expiry → re-check `unless` → gate → render → send → record.

One pass handles a batch: one claim, three lookups (customers, orders, events), the
sends, one transaction for the outcomes. `virtual=True` is the dry-run's virtual clock:
each message is decided at its own due time, as the clock jumps from one to the next."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from loguru import logger

from engine.channels import Channel, Outbound, SendError
from engine.context import build_context
from engine.errors import ExpressionError, TemplateError
from engine.gate import Gate, Hold
from engine.rules.model import Rule, RuleSet
from engine.state import new_customer
from engine.store import Store

log = logger.bind(component="dispatch")


@dataclass
class Decision:
    outcome: str
    reason: str | None = None
    detail: str | None = None
    body: str | None = None
    retry_at: datetime | None = None


@dataclass
class DispatchReport:
    by_outcome: dict[str, int] = field(default_factory=dict)
    rescheduled: list[tuple[str, datetime]] = field(default_factory=list)  # (customer, new due)

    @property
    def handled(self) -> int:
        return sum(self.by_outcome.values())

    def count(self, outcome: str) -> None:
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1

    def add(self, other: "DispatchReport") -> None:
        for key, value in other.by_outcome.items():
            self.by_outcome[key] = self.by_outcome.get(key, 0) + value
        self.rescheduled.extend(other.rescheduled)


class Dispatcher:
    def __init__(self, store: Store, rules: Callable[[], RuleSet], templates, channels: dict[str, Channel],
                 gate: Gate, tz: ZoneInfo, shop: dict, batch_size: int = 500):
        self.store = store
        self.rules = rules
        self.templates = templates
        self.channels = channels
        self.gate = gate
        self.tz = tz
        self.shop = shop
        self.batch_size = batch_size

    def run(self, now: datetime, *, virtual: bool = False,
            stop: Callable[[], bool] | None = None) -> DispatchReport:
        """Work off everything due at `now`, batch after batch (a backlog included).
        `stop` is asked between batches: a stopping daemon finishes the batch in hand."""
        report = DispatchReport()
        while True:
            batch = self.run_batch(now, virtual=virtual)
            report.add(batch)
            if batch.handled < self.batch_size or (stop is not None and stop()):
                return report

    def run_batch(self, now: datetime, *, virtual: bool = False) -> DispatchReport:
        report = DispatchReport()
        claimed = self.store.claim_due(now, self.batch_size)
        if not claimed:
            return report
        customers = self.store.customers_by_id(m["customer_id"] for m in claimed)
        orders = self.store.orders_by_id(m["order_id"] for m in claimed if m["order_id"])
        events = self.store.events_by_id(m["event_id"] for m in claimed if m["event_id"])
        rules = self.rules()
        updates, log_rows = [], []
        for message in claimed:
            at = message["due_at"] if virtual else now
            customer = customers.get(message["customer_id"]) or new_customer(message["customer_id"])
            decision = self._decide(message, rules.get(message["rule_id"]), customer,
                                    orders.get(message["order_id"]), events.get(message["event_id"]), at)
            report.count(decision.outcome)
            if decision.retry_at is not None:
                report.rescheduled.append((message["customer_id"], decision.retry_at))
            updates.append({"_id": message["id"], "state": "pending" if decision.outcome == "deferred"
                            else decision.outcome, "reason": decision.reason, "detail": decision.detail,
                            "due_at": decision.retry_at or message["due_at"], "updated_at": at})
            log_rows.append({"message_id": message["id"], "time": at, "rule_id": message["rule_id"],
                             "customer_id": message["customer_id"], "order_id": message["order_id"],
                             "channel": message["channel"], "kind": message["kind"], "outcome": decision.outcome,
                             "reason": decision.reason, "detail": decision.detail, "body": decision.body})
        for channel in self.channels.values():
            channel.flush()
        self.store.finish(updates, log_rows)
        log.debug("dispatched {} messages: {}", len(claimed), report.by_outcome)
        return report

    def _decide(self, message: dict, rule: Rule | None, customer: dict, order: dict | None,
                event: dict | None, at: datetime) -> Decision:
        if rule is None or not rule.enabled:
            return Decision("cancelled", "rule_unavailable",
                            f"rule {message['rule_id']} is not loaded now (removed, disabled or broken)")
        if message["expires_at"] is not None and at > message["expires_at"]:
            late = at - message["due_at"]
            return Decision("expired", "expired", f"could not be sent within {rule.raw.get('expires')} of its "
                                                  f"due time ({_minutes(late)} late)")
        payload = (event or {}).get("payload") or {}
        context = build_context(customer, order, _event_view(event, message), payload.get("data") or {},
                                self.shop, at, self.tz)
        try:
            for condition in rule.unless:
                if condition.evaluate(context):
                    return Decision("cancelled", "unless", _unless_detail(condition.source, order))
        except ExpressionError as exc:
            return Decision("failed", "expression_error", str(exc))
        hold: Hold | None = self.gate.check(message, customer, at)
        if hold is not None:
            return Decision(hold.outcome, hold.reason, hold.detail, retry_at=hold.retry_at)
        channel = self.channels.get(message["channel"])
        if channel is None:
            return Decision("failed", "channel_unavailable",
                            f"channel {message['channel']!r} is not in config.yaml any more")
        to = channel.address(customer)
        if to is None:
            return Decision("failed", "no_contact", f"customer {message['customer_id']} has no "
                                                     f"{channel.contact} for channel {channel.name}")
        try:
            body = self.templates.render(rule.template, context)
        except TemplateError as exc:
            return Decision("failed", "template_error", str(exc))
        outbound = Outbound(message["id"], f"msg-{message['id']}", channel.name, rule.id, message["kind"],
                            message["customer_id"], message["order_id"], to, body, at)
        try:
            channel.send(outbound)
        except SendError as exc:
            return Decision("failed", "channel_error", f"{channel.name}: {exc.reason}", body=body)
        return Decision("sent", None, None, body=body)


def _event_view(event: dict | None, message: dict) -> dict[str, Any]:
    if event is None:
        return {"id": message["event_id"], "type": None, "time": message["created_at"]}
    return {"id": event["id"], "type": event["type"], "time": event["time"]}


def _unless_detail(source: str, order: dict | None) -> str:
    if order and order.get("status"):
        return f"order {order['id']} is {order['status']} now ({source})"
    return f"true at send time: {source}"


def _minutes(delta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes >= 120:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes} min"
