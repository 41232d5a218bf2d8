"""The anti-spam gate: the one step between claiming a due message and sending it.

For each message it answers allow, or hold with an outcome and a reason a marketer
understands: suppressed (unsubscribed, cooldown, cap), deferred (quiet_hours, window,
cap with `on_limit: defer`) with the new time, or expired when a deferral would pass the
message's expiry. (A channel's `rate` is not a hold: it is the channel's send schedule,
engine/pacing.py.) It runs inside the store's gate transaction, against
the send ledger of the customers concerned, so two dispatchers can never both pass a
cap of one. Service messages count only against the service caps; staff alerts against
nothing. The daemon and the dry-run call it identically."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from engine.clock import ceil_minute
from engine.config.limits import Cap, Limits
from engine.delivery.windows import allowed_at, next_allowed
from engine.durations import format_duration
from engine.outcomes import Outcome, Reason
from engine.rules.model import Rule


@dataclass(frozen=True)
class Hold:
    outcome: Outcome  # suppressed | deferred | expired
    reason: Reason
    detail: str
    retry_at: datetime | None = None  # for deferred: the new due time
    counted: tuple[int, ...] = ()  # for cap: the messages whose sends count against it
    deadline: datetime | None = None  # for deferred: the latest time it may still go


@dataclass
class Candidate:
    message: dict[str, Any]
    rule: Rule
    customer: dict[str, Any]
    at: datetime  # when the decision is made


class Gate:
    def __init__(self, limits: Limits, tz: ZoneInfo):
        self.limits = limits
        self.tz = tz
        self._found: dict[tuple, tuple[datetime, datetime]] = {}  # see _next_allowed

    def lookback(self, rules) -> tuple[timedelta, dict[str, timedelta]]:
        """How far back the ledger must be read: every send within the longest cap
        window, and a rule's own sends within its cooldown where that is longer (a 90-day
        cooldown needs 90 days of that rule's sends, not of every send)."""
        caps = self.limits.lookback()
        return caps, {r.id: r.cooldown for r in rules if r.cooldown and r.cooldown > caps}

    @staticmethod
    def order(candidates: list[Candidate]) -> list[Candidate]:
        """A customer's messages due in the same minute: higher priority first, then earlier."""
        return sorted(candidates, key=lambda c: (c.message["due_at"].replace(second=0, microsecond=0),
                                                 -c.rule.priority, c.message["due_at"], c.message["id"]))

    def time_windows(self, c: Candidate) -> Hold | None:
        """Quiet hours and the rule's send window, asked first: a message that may not go
        at this time is deferred before anything else is judged (its `unless`, the
        customer's opt-outs, the caps), since all of those are judged again when it goes."""
        return self._time_windows(c, c.rule.to == "staff")

    def time_windows_at_slot(self, c: Candidate, slot: datetime) -> Hold | None:
        """For a message let through at c.at whose send slot on a paced channel is later
        (by at most engine.pacing.PACE_AHEAD): whether the slot too is inside the allowed
        hours (a slot past the start of the quiet hours defers it, like any other)."""
        return self._time_windows(Candidate(c.message, c.rule, c.customer, slot), c.rule.to == "staff")

    def check(self, c: Candidate, ledger: list[dict]) -> Hold | None:
        """Decide one message that `time_windows` let through; the caller records an
        allowed one in the ledger. Staff alerts obey only their rule's own cooldown (and
        window)."""
        kind, channel = c.message["kind"], c.message["channel"]
        staff = c.rule.to == "staff"
        if kind == "marketing" and not staff:
            opted = c.customer.get("opted_out") or []
            if "*" in opted or channel in opted:
                which = "all marketing" if "*" in opted else f"marketing on {channel}"
                return Hold(Outcome.SUPPRESSED, Reason.UNSUBSCRIBED,
                            f"customer {c.customer['id']} unsubscribed from {which}")
        if c.rule.cooldown:
            last = [s for s in ledger if s["rule_id"] == c.rule.id and s["time"] > c.at - c.rule.cooldown]
            if last:
                return Hold(Outcome.SUPPRESSED, Reason.COOLDOWN,
                            f"cooldown {c.rule.raw.get('cooldown')}: {c.rule.id} was sent "
                            f"to this customer {self._when(last[-1]['time'])}")
        if staff:
            return None
        return self._caps(c, ledger)

    # quiet hours and send windows --------------------------------------------------------
    def _time_windows(self, c: Candidate, staff: bool = False) -> Hold | None:
        quiet = None if staff else self.limits.for_kind(c.message["kind"]).quiet_hours
        blocked = [quiet] if quiet else []
        tz = self._customer_tz(c.customer)
        local = c.at.astimezone(tz)
        if allowed_at(local, blocked, c.rule.window):
            return None
        reason, label = ((Reason.QUIET_HOURS, f"quiet hours {quiet}") if quiet and quiet.contains(local.time())
                         else (Reason.WINDOW, f"send window {c.rule.window}"))
        retry = self._next_allowed(c.at, tz, quiet, c.rule.window)
        if retry is None:
            return Hold(Outcome.SUPPRESSED, Reason.WINDOW,
                        f"send window {c.rule.window} lies wholly inside quiet hours {quiet}")
        return self._defer(c, reason, f"{label} ({tz.key})", retry, tz)

    def _next_allowed(self, at: datetime, tz: ZoneInfo, quiet, window) -> datetime | None:
        """next_allowed, remembering the last answer per zone and windows: when the first
        allowed moment after `a` is `r`, it is also the first after any time in [a, r]
        (a night's deferred messages all find 09:00 without searching again)."""
        key = (tz.key, quiet, window)
        known = self._found.get(key)
        if known is not None and known[0] <= at <= known[1]:
            return known[1]
        retry = next_allowed(at, tz, [quiet] if quiet else [], window)
        if retry is not None:
            self._found[key] = (at, retry)
        return retry

    def _customer_tz(self, customer: dict) -> ZoneInfo:
        name = customer.get("timezone")
        if name:
            try:
                return ZoneInfo(name)
            except Exception:  # noqa: BLE001 - an unknown zone falls back to the shop's
                return self.tz
        return self.tz

    # frequency caps ----------------------------------------------------------------------
    def _caps(self, c: Candidate, ledger: list[dict]) -> Hold | None:
        kind, channel = c.message["kind"], c.message["channel"]
        checks: list[tuple[str, Cap, list[dict]]] = []
        same_kind = [s for s in ledger if s["kind"] == kind]
        for cap in self.limits.for_kind(kind).per_customer:
            checks.append((f"{kind} cap {cap}", cap, same_kind))
        channel_limits = self.limits.channels.get(channel)
        if kind == "marketing" and channel_limits:
            on_channel = [s for s in same_kind if s["channel"] == channel]
            for cap in channel_limits.per_customer:
                checks.append((f"{channel} marketing cap {cap}", cap, on_channel))
        for label, cap, sent in checks:
            counted = [s for s in sent if s["time"] > c.at - cap.window]
            if len(counted) < cap.count:
                continue
            listed = ", ".join(f"{self._when(s['time'])} ({s['rule_id']})" for s in counted[-3:])
            more = f" and {len(counted) - 3} more" if len(counted) > 3 else ""
            what = f"{label} reached: sent {listed}{more}"
            ids = tuple(s["message_id"] for s in counted)
            if c.rule.on_limit != "defer":
                return Hold(Outcome.SUPPRESSED, Reason.CAP, what, counted=ids)
            frees = counted[len(counted) - cap.count]["time"] + cap.window
            hold = self._defer(c, Reason.CAP, what, ceil_minute(frees))
            return Hold(hold.outcome, hold.reason, hold.detail, hold.retry_at, counted=ids, deadline=hold.deadline)
        return None

    # ---------------------------------------------------------------------------------------
    def _defer(self, c: Candidate, reason: str, what: str, retry: datetime, tz: ZoneInfo | None = None) -> Hold:
        """Defer to `retry`, unless that passes the message's deadline: its expiry, or for
        a message without one, limits.max_deferral after its first due time (the
        deadline is then kept with the message, so repeated deferrals cannot extend it)."""
        message = c.message
        deadline = message["expires_at"] or message["due_at"] + self.limits.max_deferral
        if retry > deadline:
            why = ("its expiry" if c.rule.expires else f"the longest deferral ({_span(self.limits.max_deferral)})")
            return Hold(Outcome.EXPIRED, Reason.EXPIRED,
                        f"{what}; it could go only at {self._when(retry, tz)}, past {why}")
        return Hold(Outcome.DEFERRED, reason, f"{what}; deferred to {self._when(retry, tz)}", retry_at=retry,
                    deadline=deadline)

    def _when(self, t: datetime, tz: ZoneInfo | None = None) -> str:
        shown = t.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
        if tz is not None and tz.key != self.tz.key:
            shown += f" ({t.astimezone(tz):%H:%M} in {tz.key})"
        return shown


def _span(delta: timedelta) -> str:
    return format_duration(delta)


def ledger_row(c: Candidate, sent_at: datetime | None = None) -> dict[str, Any]:
    """The send ledger's row for a message let through, sent at `sent_at` (its slot on a
    paced channel; by default its decision time)."""
    m = c.message
    return {"message_id": m["id"], "customer_id": m["customer_id"], "rule_id": m["rule_id"],
            "channel": m["channel"], "kind": m["kind"], "time": (sent_at or c.at).astimezone(timezone.utc)}
