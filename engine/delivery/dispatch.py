"""Dispatch: claim due → expiry → re-check `unless` → gate → render → send → record.

One pass handles a batch: one claim, three lookups (customers, orders, events), one gate
transaction (per-customer locks, the send ledger, every decision but the sends), the
sends, one transaction for their outcomes. `virtual=True` is the dry-run's virtual
clock: each message is decided at its own due time, as the clock jumps from one to the
next."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

from loguru import logger

from engine.channels import Channel, Outbound, SendError
from engine.clock import ceil_minute
from engine.config.loader import RetryConfig
from engine.config.profile import ProfileConfig
from engine.contacts import mask_contact, mask_phone
from engine.delivery.gate import Candidate, Gate, Hold, ledger_row
from engine.delivery.pacing import PACE_AHEAD, Schedule, SendPace
from engine.durations import format_duration
from engine.errors import ExpressionError, TemplateError
from engine.intake.state import new_customer
from engine.outcomes import Outcome, Reason, State
from engine.rules.context import build_context
from engine.rules.model import Rule, RuleSet
from engine.rules.sms import SmsStyle
from engine.store import Store
from engine.store.rows import LogRow, log_row

log = logger.bind(component="dispatch")
PACED = "paced"  # a message waiting for its send slot on a rate-limited channel (not a decision)


@dataclass
class Decision:
    outcome: Outcome | State  # a final outcome, or the state a message moves to (claimed, sending, pending)
    reason: Reason | str | None = None  # a reason code, or PACED
    detail: str | None = None
    body: str | None = None
    retry_at: datetime | None = None
    logged: bool = True
    deadline: datetime | None = None  # kept as the message's expiry when a deferral sets one
    slot: datetime | None = None  # its send slot on a rate-limited channel (kept while it waits for it)


@dataclass
class Ready:
    """A message that passed the checks before the gate, with an address. It is rendered
    only once the gate lets it through (a deferred message would be rendered again)."""

    candidate: Candidate
    channel: Channel
    to: str
    context: Any
    slot: datetime | None = None  # when it is sent: its decision time, or its slot on a paced channel


@dataclass
class DispatchReport:
    by_outcome: dict[str, int] = field(default_factory=dict)
    by_rule: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, outcome) -> count
    rescheduled: list[tuple[str, datetime]] = field(default_factory=list)  # (customer, new due)
    paced: int = 0  # messages given a later send slot on a rate-limited channel (not decisions)

    @property
    def handled(self) -> int:
        return sum(self.by_outcome.values()) + self.paced

    def count(self, outcome: str, rule_id: str) -> None:
        outcome = str(outcome)  # the code ('sent'), as the report's readers print and compare it
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1
        key = (rule_id, outcome)
        self.by_rule[key] = self.by_rule.get(key, 0) + 1

    def add(self, other: "DispatchReport") -> None:
        for key, value in other.by_outcome.items():
            self.by_outcome[key] = self.by_outcome.get(key, 0) + value
        for key, value in other.by_rule.items():
            self.by_rule[key] = self.by_rule.get(key, 0) + value
        self.rescheduled.extend(other.rescheduled)
        self.paced += other.paced


@dataclass
class _Rows:
    """Rows read for dispatch, by id; bounded (cleared when full)."""

    customers: dict[str, dict] = field(default_factory=dict)
    orders: dict[str, dict] = field(default_factory=dict)
    events: dict[str, dict] = field(default_factory=dict)
    limit: int = 200_000

    def fit(self) -> None:
        if len(self.customers) + len(self.orders) + len(self.events) > self.limit:
            self.customers.clear()
            self.orders.clear()
            self.events.clear()


class Dispatcher:
    def __init__(self, store: Store, rules: Callable[[], RuleSet], templates, channels: dict[str, Channel],
                 gate: Gate, tz: ZoneInfo, shop: dict, batch_size: int = 500, profile: ProfileConfig | None = None,
                 retry: RetryConfig | None = None, health: "ChannelHealth | None" = None,
                 pace: SendPace | None = None, senders: Executor | None = None):
        """`pace`: the send loops' own pacing on the real clock (the engine's, kept across
        reloads); without it, or on the virtual clock, a send does not wait for its slot.
        `senders`: the threads that send each channel's share of a batch side by side (the
        engine's, closed with it); without them, the channels' shares go one after another."""
        self.pace = pace
        self.senders = senders
        self.profile = profile
        self.retry = retry or RetryConfig()
        self.health = health or ChannelHealth()
        self.log_decisions = False  # the daemon's operator log: one line per decision
        self.store = store
        self.rules = rules
        self.templates = templates
        self.channels = channels
        self.gate = gate
        self.tz = tz
        self.shop = shop
        self.batch_size = batch_size
        self.sms: dict[str, SmsStyle] = {}  # channel name -> its SMS conventions (set by the engine from config)

    def run(self, now: datetime, *, virtual: bool = False, stop: Callable[[], bool] | None = None,
            clock: Callable[[], datetime] | None = None) -> DispatchReport:
        """Work off everything due at `now`, batch after batch (a backlog included, and
        messages deferred to a time that has come meanwhile). `stop` is asked between
        batches: a stopping daemon finishes the batch in hand. `clock`: the real clock,
        read again for each batch (a backlog that takes minutes is judged at the time each
        batch goes, for quiet hours, and its lease starts then)."""
        report = DispatchReport()
        if not virtual:  # an idle tick looks without taking the write lock
            due = self.store.next_due_at()
            if due is None or due > now:
                return report
        # On the virtual clock nothing else writes while this runs (the dry-run ingests
        # between calls), so customers, orders and events read once are kept for the
        # rest of the run instead of being read and decoded again for each message.
        rows: _Rows | None = _Rows() if virtual else None
        while True:
            batch = self.run_batch(now, virtual=virtual, rows=rows)
            report.add(batch)
            if batch.handled == 0 or (stop is not None and stop()):
                return report
            if clock is not None and not virtual:
                now = max(now, clock())

    def _load(self, txn, claimed: list[dict], rows: "_Rows | None"):
        """The customers, orders and event data of a batch, by id (read in its transaction),
        and for each message whose rows cannot be read back, why (it fails alone)."""
        rows = rows if rows is not None else _Rows()
        rows.fit()
        found, bad_customers = txn.customers_by_id(m["customer_id"] for m in claimed
                                                   if m["customer_id"] not in rows.customers)
        rows.customers.update(found)
        found, bad_orders = txn.orders_by_id(m["order_id"] for m in claimed
                                             if m["order_id"] and m["order_id"] not in rows.orders)
        rows.orders.update(found)
        found, bad_events = txn.event_data_by_id(m["event_id"] for m in claimed
                                                 if m["event_id"] and m["event_id"] not in rows.events)
        rows.events.update(found)
        unreadable: dict[int, str] = {}
        for m in claimed:
            for what, key, bad in (("customer", "customer_id", bad_customers), ("order", "order_id", bad_orders),
                                   ("event", "event_id", bad_events)):
                if m[key] in bad:
                    unreadable[m["id"]] = f"the stored {what} {m[key]} cannot be read back: {bad[m[key]]}"
                    log.error("message {} of rule {}: {}", m["id"], m["rule_id"], unreadable[m["id"]])
        return rows.customers, rows.orders, rows.events, unreadable

    def run_batch(self, now: datetime, *, virtual: bool = False, rows: "_Rows | None" = None) -> DispatchReport:
        """One batch: take the due messages, judge them and write every decision in one
        transaction; then send what the gate let through and record the outcomes."""
        report = DispatchReport()
        rules = self.rules()
        decided: list[tuple[dict, datetime, Decision]] = []
        with self.store.dispatch_transaction(now, self.batch_size, None if virtual else now + PACE_AHEAD) as txn:
            claimed = txn.messages
            if not claimed:
                return report
            customers, orders, events, unreadable = self._load(txn, claimed, rows)
            ready: list[Ready] = []
            for message in claimed:
                at = message["due_at"] if virtual else now
                if message["id"] in unreadable:
                    decided.append((message, at, Decision(Outcome.FAILED, Reason.ENGINE_ERROR,
                                                          unreadable[message["id"]])))
                    continue
                customer = customers.get(message["customer_id"]) or new_customer(message["customer_id"])
                try:
                    result = self._prepare(message, rules.get(message["rule_id"]), customer,
                                           orders.get(message["order_id"]), events.get(message["event_id"]), at)
                except Exception as exc:  # noqa: BLE001 - one message's problem must not stop the queue
                    log.exception("message {} of rule {}: unexpected error", message["id"], message["rule_id"])
                    result = Decision(Outcome.FAILED, Reason.ENGINE_ERROR, f"{type(exc).__name__}: {exc}")
                if isinstance(result, Decision):
                    decided.append((message, at, result))
                else:
                    ready.append(result)
            allowed, provisional = self._gate(txn, ready, decided, rules, virtual)
        sent_updates, sent_log, unreserve = self._send(allowed, real=not virtual)
        for channel in self.channels.values():
            channel.flush()
        for row in sent_log:
            report.count(row["outcome"], row["rule_id"])
        report.rescheduled.extend((row["customer_id"], update["due_at"]) for row, update in zip(sent_log, sent_updates)
                                  if update["state"] == State.PENDING)
        failed = set(unreserve)
        judged_before = list(decided)
        for message, at, decision, depends_on in provisional:
            if failed & depends_on:  # the send that capped it did not happen: judge it again
                sent_updates.append(_update(message, message["due_at"], State.PENDING, Decision(State.PENDING)))
            else:
                decided.append((message, at, decision))
                sent_updates.append(_update(message, at, _state_after(decision), decision))
                sent_log.append(_log_row(message, at, decision))
        self.store.finish(sent_updates, sent_log, unreserve)
        if self.log_decisions:
            self._log_decisions(sent_log, judged_before, customers)
        for message, _, decision in decided:
            if decision.reason == PACED:
                report.paced += 1
            else:
                report.count(decision.outcome, message["rule_id"])
            if decision.retry_at is not None:
                report.rescheduled.append((message["customer_id"], decision.retry_at))
        return report

    def _log_decisions(self, sent_log: list[dict], decided: list, customers: dict) -> None:
        """One operator log line per decision: rule, customer (phone masked), outcome, reason."""
        rows = sent_log + [_log_row(m, at, d) for m, at, d in decided if d.logged]
        for row in rows:
            customer = customers.get(row["customer_id"]) or {}
            phone = f" ({mask_phone(customer['phone'])})" if customer.get("phone") else ""
            why = f"/{row['reason']}" if row["reason"] else ""
            detail = f": {row['detail']}" if row["detail"] else ""
            log.info("{} {}{} {}{}{}", row["rule_id"], row["customer_id"], phone, row["outcome"], why, detail)

    # before the gate ---------------------------------------------------------------------
    def _prepare(self, message: dict, rule: Rule | None, customer: dict, order: dict | None,
                 event: dict | None, at: datetime) -> Decision | Ready:
        if rule is None or not rule.enabled:
            return Decision(Outcome.CANCELLED, Reason.RULE_UNAVAILABLE,
                            f"rule {message['rule_id']} is not loaded now (removed, disabled or broken)")
        if message["expires_at"] is not None and at > message["expires_at"]:
            if rule.expires is None:  # a deadline set by a deferral (limits.max_deferral)
                return Decision(Outcome.EXPIRED, Reason.EXPIRED, "could not be sent before its deadline "
                                                      f"{message['expires_at'].astimezone(self.tz):%Y-%m-%d %H:%M} "
                                                      "(limits.max_deferral after its first due time): "
                                                      f"{_late(at - message['expires_at'])} past it")
            late = at - message["due_at"]
            return Decision(Outcome.EXPIRED, Reason.EXPIRED,
                            f"could not be sent within {rule.raw.get('expires')} of its "
                            f"due time ({_late(late)} late)")
        if message["expires_at"] is None and at > message["due_at"] + self.gate.limits.max_deferral:
            # a backlog (the daemon was stopped, or fell behind): stale past the longest deferral
            return Decision(Outcome.EXPIRED, Reason.EXPIRED, f"not sent within limits.max_deferral "
                                                  f"({format_duration(self.gate.limits.max_deferral)}) of its due time "
                                                  f"{message['due_at'].astimezone(self.tz):%Y-%m-%d %H:%M}: "
                                                  f"{_late(at - message['due_at'])} late")
        hold = self.gate.time_windows(Candidate(message, rule, customer, at))
        if hold is not None:
            return _held(hold)
        context = build_context(customer, order, _event_view(event, message, rule), (event or {}).get("data") or {},
                                self.shop, at, self.tz, self.profile)
        try:
            for condition in rule.unless:
                if condition.evaluate(context):
                    return Decision(Outcome.CANCELLED, Reason.UNLESS, _unless_detail(condition.source, order))
        except ExpressionError as exc:
            return Decision(Outcome.FAILED, Reason.EXPRESSION_ERROR, str(exc))
        channel = self.channels.get(message["channel"])
        if channel is None:
            return Decision(Outcome.FAILED, Reason.CHANNEL_UNAVAILABLE,
                            f"channel {message['channel']!r} is not in config.yaml any more")
        paused = self.health.paused_until(channel.name, at)
        if paused is not None:  # the provider is failing: wait without using an attempt
            return self._wait_for(message, at, paused, f"{channel.name} paused after {ChannelHealth.PAUSE_AFTER} "
                                                       f"failures in a row ({self.health.last_error(channel.name)})")
        to = channel.address(customer)
        if to is None:
            return Decision(Outcome.FAILED, Reason.NO_CONTACT, f"customer {message['customer_id']} has no "
                                                     f"{channel.contact} for channel {channel.name}")
        return Ready(Candidate(message, rule, customer, at), channel, to, context)

    def _render(self, r: Ready) -> str:
        body = self.templates.render(r.candidate.rule.template, r.context)
        style = self.sms.get(r.channel.name)
        if style is not None:
            body = style.finish(body, r.candidate.message["kind"])
        return body

    # the gate ----------------------------------------------------------------------------
    def _gate(self, txn, ready: list[Ready], decided: list, rules: RuleSet, virtual: bool):
        """In the batch's transaction: lock the customers, judge every ready message
        against their send ledger, give the ones let through their send slot on a paced
        channel and reserve them, and record every other decision.

        Returns the messages let through, and the cap suppressions that rest on a send of
        this batch (final only once that send succeeded; meanwhile they are `claimed`). On
        the virtual clock, messages due at or after a time a deferral in this batch moved
        another message to are left in the queue undecided: they must meet it in the same
        decision."""
        allowed: list[Ready] = []
        provisional: list[tuple[dict, datetime, Decision, set[int]]] = []
        first = min([r.candidate.at for r in ready] or [at for _, at, _ in decided])
        caps, cooldowns = self.gate.lookback(rules.rules)
        reserved: set[int] = set()
        latest = max((r.candidate.at for r in ready), default=None)
        # virtual clock: the earliest time a deferral of this batch moved a message to
        horizon = _horizon((d.retry_at for _, _, d in decided), latest) if virtual else None
        txn.read_ledger([r.candidate.message["customer_id"] for r in ready], first - caps,
                        {rule_id: first - cooldown for rule_id, cooldown in cooldowns.items()})
        schedules = self._schedules(txn, ready)
        by_candidate = {id(r.candidate): r for r in ready}
        for candidate in self.gate.order([r.candidate for r in ready]):
            message = candidate.message
            if horizon is not None and ceil_minute(candidate.at) >= horizon:
                continue  # still pending, untouched
            slot, decision, counted = self._judge(candidate, txn, schedules)
            if decision is None:
                r = by_candidate[id(candidate)]
                r.slot = slot
                allowed.append(r)
                reserved.add(message["id"])
                _reserve(txn, candidate, slot)
                continue
            depends_on = reserved.intersection(counted)
            if depends_on:
                provisional.append((message, candidate.at, decision, depends_on))
            else:
                decided.append((message, candidate.at, decision))
            if virtual and (moved := _horizon((decision.retry_at,), latest)) is not None:
                horizon = min(horizon or moved, moved)
        _record(txn, decided, allowed, provisional)
        return allowed, provisional

    def _judge(self, candidate: Candidate, txn, schedules: dict[str, Schedule]
               ) -> tuple[datetime | None, Decision | None, set[int]]:
        """One message against its customer's send ledger and its channel's schedule: its
        send slot, the decision that holds it (None: let through) and the sends that
        decision rests on. An unexpected error fails this message alone (engine_error)."""
        message = candidate.message
        try:
            hold: Hold | None = self.gate.check(candidate, txn.ledger.get(message["customer_id"], []))
            if hold is not None:
                return None, _held(hold), set(hold.counted)
            slot, paced = self._pace(candidate, schedules.get(message["channel"]))
            return slot, paced, set()
        except Exception as exc:  # noqa: BLE001 - one message's problem must not stop the queue
            log.exception("message {} of rule {}: unexpected error in the gate", message["id"], message["rule_id"])
            return None, Decision(Outcome.FAILED, Reason.ENGINE_ERROR, f"{type(exc).__name__}: {exc}"), set()

    # pacing ------------------------------------------------------------------------------
    def _schedules(self, txn, ready: list[Ready]) -> dict[str, Schedule]:
        """The send schedules of the batch's rate-limited channels, read under their locks."""
        out: dict[str, Schedule] = {}
        for name in sorted({r.candidate.message["channel"] for r in ready}):
            limits = self.gate.limits.channels.get(name)
            if limits is not None and limits.rate is not None:
                out[name] = Schedule(limits.rate, txn.schedule_end(name))
        return out

    def _pace(self, c: Candidate, schedule: Schedule | None) -> tuple[datetime, Decision | None]:
        """The send time of a message the gate let through: its decision time, or on a
        rate-limited channel its slot (the one it holds, else the next free one). A slot
        beyond PACE_AHEAD: the message waits for it, holding it (a `paced` wait, not a
        decision). A slot past its deadline: expired. A slot in the quiet hours or outside
        the rule's window (it is later than the decision time): deferred like any other."""
        at, message = c.at, c.message
        if schedule is None:
            return at, None
        held = message.get("slot_at")
        slot = max(held, at) if held is not None else schedule.next_slot(at)
        deadline = message["expires_at"] or message["due_at"] + self.gate.limits.max_deferral
        if slot > deadline:
            why = ("its expiry" if c.rule.expires
                   else f"the longest deferral ({format_duration(self.gate.limits.max_deferral)})")
            return slot, Decision(Outcome.EXPIRED, Reason.EXPIRED,
                                  f"channel {message['channel']} is booked at its rate "
                                  f"{schedule.rate.text}: its turn would be at "
                                  f"{slot.astimezone(self.tz):%Y-%m-%d %H:%M:%S}, past {why}")
        schedule.take(slot)
        if slot > at + PACE_AHEAD:
            return slot, Decision(Outcome.DEFERRED, PACED, f"waits for its turn at channel {message['channel']}'s rate "
                                                     f"{schedule.rate.text}: "
                                                     f"{slot.astimezone(self.tz):%Y-%m-%d %H:%M:%S}",
                                  retry_at=slot - PACE_AHEAD, logged=False, deadline=deadline, slot=slot)
        if slot > at:
            hold = self.gate.time_windows_at_slot(c, slot)
            if hold is not None:
                return slot, _held(hold)
        return slot, None

    # sending -----------------------------------------------------------------------------
    def _send(self, allowed: list[Ready], real: bool) -> tuple[list[dict], list[dict], list[int]]:
        """Render and send what the gate let through, each channel's messages in the order
        of their send slots. A message that cannot be rendered or sent fails and leaves the
        send ledger (it was not sent, so it counts against no cap). `real` (the daemon):
        each channel's messages go in their own thread, so a provider that hangs until its
        timeout (or a rate's wait for the next slot) does not hold up the other channels,
        and each send waits for its slot."""
        groups: dict[str, list[Ready]] = {}
        for r in allowed:
            groups.setdefault(r.channel.name, []).append(r)
        for group in groups.values():
            group.sort(key=lambda r: r.slot)
        if not real or len(groups) < 2 or self.senders is None:
            return self._send_each([r for group in groups.values() for r in group], real)
        updates, log_rows, unreserve = [], [], []
        for done in [self.senders.submit(self._send_each, group, real) for group in groups.values()]:
            u, rows, back = done.result()
            updates += u
            log_rows += rows
            unreserve += back
        return updates, log_rows, unreserve

    def _send_each(self, allowed: list[Ready], real: bool = False) -> tuple[list[dict], list[dict], list[int]]:
        updates, log_rows, unreserve = [], [], []
        for r in allowed:
            message, at = r.candidate.message, r.slot
            try:
                body = self._render(r)
            except TemplateError as exc:
                decision = Decision(Outcome.FAILED, Reason.TEMPLATE_ERROR, str(exc))
                unreserve.append(message["id"])
                updates.append(_update(message, at, decision.outcome, decision))
                log_rows.append(_log_row(message, at, decision))
                continue
            paused = self.health.pause_in_force(r.channel.name, at)
            if paused is not None:  # paused by a failure earlier in this batch: not an attempt
                decision = self._wait_for(message, at, paused, f"{r.channel.name} paused after repeated failures "
                                                               f"({self.health.last_error(r.channel.name)})")
                unreserve.append(message["id"])
                update = _update(message, at, _state_after(decision), decision)
                update["uncount"] = True
                updates.append(update)
                log_rows.append(_log_row(message, at, decision))
                continue
            if real and self.pace is not None:  # wait for the slot; the send is stamped when it happens
                limits = self.gate.limits.channels.get(r.channel.name)
                spacing = limits.rate.spacing if limits and limits.rate else None
                at = max(at, self.pace.wait(r.channel.name, at, spacing))
            outbound = Outbound(message["id"], f"msg-{message['id']}", r.channel.name, message["rule_id"],
                                message["kind"], message["customer_id"], message["order_id"], r.to, body,
                                at.astimezone(self.tz))  # shop time (an outbox is read by people too)
            try:
                r.channel.send(outbound)
                decision = Decision(Outcome.SENT, body=body)
                self.health.succeeded(r.channel.name)
            except SendError as exc:
                exc.reason = mask_contact(exc.reason)  # a provider's error may name the recipient
                decision = self._failed(message, at, r.channel.name, exc)
                unreserve.append(message["id"])
            except Exception as exc:  # noqa: BLE001 - a channel's bug or odd data: this message fails, visibly
                log.exception("channel {}: unexpected error sending message {}", r.channel.name, message["id"])
                decision = Decision(Outcome.FAILED, Reason.ENGINE_ERROR,
                                    f"{r.channel.name}: {type(exc).__name__}: {exc}")
                unreserve.append(message["id"])
            updates.append(_update(message, at, _state_after(decision), decision))
            log_rows.append(_log_row(message, at, decision))
        return updates, log_rows, unreserve

    def _failed(self, message: dict, at: datetime, channel: str, exc: SendError) -> Decision:
        """A send that failed: a transient failure is tried again after a backoff, up to
        the configured attempts; a permanent one, or the last attempt, fails. Failures of
        the channel (not of this recipient) count towards pausing it."""
        attempt = message["attempts"] + 1  # this one (counted when the gate let it go)
        if exc.permanent:
            return Decision(Outcome.FAILED, Reason.CHANNEL_ERROR, f"{channel}: {exc.reason} (permanent: not retried)")
        if exc.scope == "channel":
            self.health.failed(channel, exc.reason, at, self.retry.backoff)
        if attempt >= self.retry.attempts:
            return Decision(Outcome.FAILED, Reason.CHANNEL_ERROR, f"{channel}: {exc.reason} (attempt {attempt} of "
                                                       f"{self.retry.attempts}: giving up)")
        return self._wait_for(message, at, at + backoff(self.retry, attempt, message["id"]),
                              f"{channel}: {exc.reason} (attempt {attempt} of {self.retry.attempts})")

    def _wait_for(self, message: dict, at: datetime, retry_at: datetime, why: str) -> Decision:
        """Try again at `retry_at`, unless that passes the message's deadline (its expiry,
        or limits.max_deferral after its first due time): then it fails."""
        deadline = message["expires_at"] or message["due_at"] + self.gate.limits.max_deferral
        if retry_at > deadline:
            return Decision(Outcome.FAILED, Reason.CHANNEL_ERROR,
                            f"{why}; giving up: the next try would pass its deadline "
                            f"{deadline.astimezone(self.tz):%Y-%m-%d %H:%M}")
        return Decision(Outcome.DEFERRED, Reason.RETRY,
                        f"{why}; next try {retry_at.astimezone(self.tz):%Y-%m-%d %H:%M:%S}",
                        retry_at=retry_at, deadline=deadline)


def backoff(retry: RetryConfig, attempt: int, message_id: int) -> timedelta:
    """Exponential backoff after failed attempt number `attempt` (1, 2, ...): `backoff`,
    doubling, at most `max_backoff`; with a jitter of up to a quarter of it taken from the
    message id, so a burst of failures does not come back all at once, and a dry-run
    gives the same times every time."""
    delay = min(retry.max_backoff, retry.backoff * (2 ** (attempt - 1)))
    spread = ((message_id * 2654435761 + attempt * 40503) % 1000) / 1000  # 0 <= spread < 1
    return delay * (1 - spread / 4)


class ChannelHealth:
    """Consecutive transient failures per channel. After PAUSE_AFTER in a row, the
    channel is paused for the retry backoff: its messages wait without calling the
    provider (nor using attempts), and the other channels go on meanwhile."""

    PAUSE_AFTER = 5

    def __init__(self):
        self._failures: dict[str, int] = {}
        self._paused: dict[str, datetime] = {}
        self._pause: dict[str, timedelta] = {}
        self._probing: set[str] = set()
        self._errors: dict[str, str] = {}

    def failed(self, channel: str, reason: str, at: datetime, pause: timedelta) -> None:
        self._failures[channel] = self._failures.get(channel, 0) + 1
        self._errors[channel] = reason
        self._probing.discard(channel)
        if self._failures[channel] >= self.PAUSE_AFTER:
            self._paused[channel], self._pause[channel] = at + pause, pause
            log.warning("channel {} paused until {}: {} failures in a row ({})", channel, self._paused[channel],
                        self._failures[channel], reason)

    def succeeded(self, channel: str) -> None:
        self._failures.pop(channel, None)
        self._paused.pop(channel, None)
        self._probing.discard(channel)

    def paused_until(self, channel: str, at: datetime) -> datetime | None:
        """None: send. Otherwise wait until then. When a pause is over, one message goes
        as a probe; the others wait for its answer (a failure pauses the channel again)."""
        until = self._paused.get(channel)
        if until is None:
            return None
        if at < until:
            return until
        if channel in self._probing:
            return at + self._pause[channel]
        self._probing.add(channel)
        self._failures[channel] = self.PAUSE_AFTER - 1  # one more failure pauses it again
        return None

    def pause_in_force(self, channel: str, at: datetime) -> datetime | None:
        """The end of a pause that holds at `at` (one that began during this batch), else None."""
        until = self._paused.get(channel)
        return until if until is not None and at < until else None

    def last_error(self, channel: str) -> str:
        return self._errors.get(channel, "")


def _held(hold: Hold) -> Decision:
    return Decision(hold.outcome, hold.reason, hold.detail, retry_at=hold.retry_at, deadline=hold.deadline)


def _reserve(txn, candidate: Candidate, slot: datetime) -> None:
    """A send let through enters the customer's ledger (staff alerts count for no cap)."""
    if candidate.rule.to != "staff":
        row = ledger_row(candidate, slot)
        txn.ledger.setdefault(candidate.message["customer_id"], []).append(row)
        txn.reservations.append(row)


def _horizon(times, latest: datetime | None) -> datetime | None:
    """Virtual clock: the earliest minute a deferral moved a message to, among `times`
    (None: none) at or before the batch's latest decision time."""
    if latest is None:
        return None
    return min((ceil_minute(t) for t in times if t is not None and t <= latest), default=None)


def _record(txn, decided: list, allowed: list[Ready], provisional: list) -> None:
    """The batch's decisions as message updates and decision-log rows."""
    for message, at, decision in decided:
        txn.updates.append(_update(message, at, _state_after(decision), decision))
        if decision.logged:
            txn.log.append(_log_row(message, at, decision))
    for r in allowed:
        txn.updates.append(_update(r.candidate.message, r.slot, State.SENDING, Decision(State.SENDING, slot=r.slot)))
    for message, at, _, _ in provisional:
        txn.updates.append(_update(message, at, State.CLAIMED, Decision(State.CLAIMED)))


def _update(message: dict, at: datetime, state: str, decision: Decision) -> dict:
    return {"_id": message["id"], "state": state, "reason": decision.reason, "detail": decision.detail,
            "due_at": decision.retry_at or message["due_at"], "expires_at": decision.deadline or message["expires_at"],
            "updated_at": at, "slot_at": decision.slot}


def _state_after(decision: Decision) -> str:
    """A deferred message waits again (pending); any other outcome is its final state."""
    return State.PENDING if decision.outcome == Outcome.DEFERRED else decision.outcome


def _log_row(message: dict, at: datetime, decision: Decision) -> LogRow:
    return log_row(message_id=message["id"], time=at, rule_id=message["rule_id"], customer_id=message["customer_id"],
                   order_id=message["order_id"], channel=message["channel"], kind=message["kind"],
                   outcome=decision.outcome, reason=decision.reason, detail=decision.detail, body=decision.body)


def _event_view(event: dict | None, message: dict, rule: Rule) -> dict[str, Any]:
    if event is None:  # a sweep's message (or an event no longer stored)
        return {"id": message["event_id"], "type": rule.event_label, "time": message["due_at"]}
    return {"id": event["id"], "type": event["type"], "time": event["time"]}


def _unless_detail(source: str, order: dict | None) -> str:
    if order and order.get("status"):
        return f"order {order['id']} is {order['status']} now ({source})"
    return f"true at send time: {source}"


def _late(delta: timedelta) -> str:
    """How late, for people: 45 min, 3 h 20 min, 21 d 4 h."""
    minutes = int(delta.total_seconds() // 60)
    if minutes >= 2 * 1440:
        return f"{minutes // 1440} d {minutes % 1440 // 60} h"
    if minutes >= 120:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes} min"
