"""Retries: a transient channel failure (timeout, 5xx, provider rate limit) is tried again
with exponential backoff and jitter up to `dispatch.retry.attempts`, then fails with the
provider's error; a permanent failure is not retried; a provider that keeps failing is
paused so it does not hold up the other channels. Every attempt of a message carries the
same idempotency key. On SQLite and PostgreSQL, as the daemon runs it (the clock walks
to each due time)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from engine.app import Engine, load_project
from engine.channels import Channel, Outbound, SendError
from engine.clock import VirtualClock
from engine.config.loader import RetryConfig
from engine.delivery.dispatch import ChannelHealth, backoff
from engine.intake.events import parse_event

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 11, 10, 0, tzinfo=SHANGHAI)


class ScriptedChannel(Channel):
    """A provider that answers each send from a script: 'ok', 'transient' or 'permanent'
    (then 'ok' once the script runs out). Records every attempt."""

    type_name = "scripted"

    def __init__(self, name, options, base_dir, script=()):
        super().__init__(name, options, base_dir)
        self.script = list(script)
        self.attempts: list[tuple[str, datetime]] = []  # (idempotency key, time)
        self.delivered: list[Outbound] = []

    def send(self, message: Outbound) -> None:
        self.attempts.append((message.idempotency_key, message.time))
        answer = self.script.pop(0) if self.script else "ok"
        if answer == "transient":
            raise SendError("HTTP 503 from provider")
        if answer == "permanent":
            raise SendError("isv.MOBILE_NUMBER_ILLEGAL: invalid number", permanent=True)
        self.delivered.append(message)


def build(tmp_path: Path, store, scripts: dict[str, list[str]], retry: dict) -> Engine:
    (tmp_path / "rules").mkdir()
    (tmp_path / "templates").mkdir()
    config = {"timezone": "Asia/Shanghai", "shop": {"name": "山野户外"},
              "channels": {"sms": {"type": "recording", "contact": "phone"},
                           "email": {"type": "recording", "contact": "email"}},
              "limits": {"marketing": {"per_customer": [], "quiet_hours": None},
                         "service": {"per_customer": ["6/1d"], "quiet_hours": None}},
              "dispatch": {"retry": retry}}
    rules = {"rules": [
        {"id": "shipping-sms", "kind": "service", "when": "order.shipped", "channel": "sms", "template": "t.j2"},
        {"id": "shipping-email", "kind": "service", "when": "order.shipped", "channel": "email", "template": "t.j2"},
    ]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (tmp_path / "rules" / "r.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    (tmp_path / "templates" / "t.j2").write_text("订单{{ order.id }}已发货", encoding="utf-8")
    project = load_project(tmp_path / "config.yaml", tmp_path / "rules", tmp_path / "templates")
    assert [str(p) for p in project.problems] == []
    channels = {name: ScriptedChannel(name, {"contact": c.options["contact"]}, tmp_path, scripts.get(name, ()))
                for name, c in project.config.channels.items()}
    return Engine(project, store, channels, VirtualClock(T0))


def shipped(engine: Engine, n: int = 1) -> None:
    events = [{"id": f"e{i}", "type": "order.shipped", "time": T0.isoformat(),
               "customer": {"id": f"c-{i}", "phone": "13800000000", "email": f"c{i}@example.com"},
               "order": {"id": f"o-{i}"}} for i in range(n)]
    engine.ingest([parse_event(e, SHANGHAI) for e in events])


def run_until(engine: Engine, until: datetime) -> None:
    """The daemon: the clock walks to each due time and dispatches there."""
    engine.clock.set(T0)
    engine.dispatch()
    for _ in range(1000):
        due = engine.store.next_due_at()
        if due is None or due > until:
            return
        engine.clock.set(max(due, engine.clock.now()))
        engine.dispatch()
    raise AssertionError("did not settle")


def log(engine: Engine, rule: str = "shipping-sms") -> list[tuple]:
    rows = [r for r in engine.store.rows("message_log") if r["rule_id"] == rule]
    return [(r["time"].astimezone(SHANGHAI).strftime("%H:%M:%S"), r["outcome"], r["reason"], r["detail"]) for r in rows]


def test_a_transient_failure_is_retried_with_backoff_and_the_same_idempotency_key(tmp_path, store):
    engine = build(tmp_path, store, {"sms": ["transient", "transient"]}, {"attempts": 5, "backoff": "30s"})
    shipped(engine)

    run_until(engine, T0 + timedelta(hours=1))

    sms = engine.channels["sms"]
    first, second = (backoff(RetryConfig(5, timedelta(seconds=30)), n, 1) for n in (1, 2))
    assert timedelta(seconds=22.5) < first <= timedelta(seconds=30)  # 30 s, less up to a quarter of jitter
    assert timedelta(seconds=45) < second <= timedelta(seconds=60)
    t1, t2 = T0 + first, T0 + first + second
    assert log(engine) == [
        ("10:00:00", "deferred", "retry", f"sms: HTTP 503 from provider (attempt 1 of 5); next try {t1:%Y-%m-%d %H:%M:%S}"),
        (f"{t1:%H:%M:%S}", "deferred", "retry",
         f"sms: HTTP 503 from provider (attempt 2 of 5); next try {t2:%Y-%m-%d %H:%M:%S}"),
        (f"{t2:%H:%M:%S}", "sent", None, None),
    ]
    assert [key for key, _ in sms.attempts] == ["msg-1"] * 3
    assert len(sms.delivered) == 1
    row = engine.store.rows("messages", rule_id="shipping-sms")[0]
    assert (row["state"], row["attempts"]) == ("sent", 3)
    assert len(engine.store.rows("sends", order_by="message_id")) == 2  # the ledger holds the one sms send (and the email)


def test_a_permanent_failure_is_not_retried(tmp_path, store):
    engine = build(tmp_path, store, {"sms": ["permanent"]}, {"attempts": 5})
    shipped(engine)

    run_until(engine, T0 + timedelta(hours=1))

    assert log(engine) == [("10:00:00", "failed", "channel_error",
                            "sms: isv.MOBILE_NUMBER_ILLEGAL: invalid number (permanent: not retried)")]
    assert len(engine.channels["sms"].attempts) == 1


def test_the_last_attempt_fails_with_the_providers_error_and_frees_the_cap(tmp_path, store):
    engine = build(tmp_path, store, {"sms": ["transient"] * 3}, {"attempts": 3, "backoff": "1m", "max_backoff": "90s"})
    shipped(engine)

    run_until(engine, T0 + timedelta(hours=1))

    outcomes = log(engine)
    assert [(o, r) for _, o, r, _ in outcomes] == [("deferred", "retry"), ("deferred", "retry"),
                                                    ("failed", "channel_error")]
    assert outcomes[-1][3] == "sms: HTTP 503 from provider (attempt 3 of 3: giving up)"
    assert len(engine.channels["sms"].attempts) == 3
    assert [s["rule_id"] for s in engine.store.rows("sends", order_by="message_id")] == ["shipping-email"]  # the failed one holds no cap


def test_backoff_doubles_up_to_the_maximum_with_a_jitter_of_at_most_a_quarter():
    retry = RetryConfig(10, timedelta(seconds=30), timedelta(minutes=5))
    for message_id in (1, 2, 77, 12345):
        delays = [backoff(retry, n, message_id) for n in range(1, 8)]
        nominal = [min(timedelta(minutes=5), timedelta(seconds=30) * 2 ** (n - 1)) for n in range(1, 8)]
        assert all(0.75 * d0 < d <= d0 for d, d0 in zip(delays, nominal)), delays
        assert delays == [backoff(retry, n, message_id) for n in range(1, 8)]  # the same every time
    spread = {backoff(retry, 1, m) for m in range(50)}
    assert len(spread) > 25  # a burst of failures does not come back all at once


def test_a_failing_provider_is_paused_and_the_other_channel_goes_on(tmp_path, store):
    engine = build(tmp_path, store, {"sms": ["transient"] * 50}, {"attempts": 5, "backoff": "1m"})
    shipped(engine, 8)

    engine.clock.set(T0)
    report = engine.dispatch()

    sms, email = engine.channels["sms"], engine.channels["email"]
    assert len(email.delivered) == 8  # every email went, in the same pass
    assert len(sms.attempts) == ChannelHealth.PAUSE_AFTER  # then the sms provider was left alone
    details = [d for _, outcome, reason, d in log(engine) if reason == "retry"]
    assert len(details) == 8
    assert sum("paused after repeated failures" in d for d in details) == 8 - ChannelHealth.PAUSE_AFTER
    assert report.by_outcome == {"sent": 8, "deferred": 8}
    # after the pause one probe goes; it fails again, so the channel pauses again at once
    engine.clock.set(T0 + timedelta(minutes=1, seconds=1))
    engine.dispatch()
    assert len(sms.attempts) == ChannelHealth.PAUSE_AFTER + 1


def test_waiting_out_a_pause_uses_no_attempt(tmp_path, store):
    engine = build(tmp_path, store, {"sms": ["transient"] * 100}, {"attempts": 3, "backoff": "1m"})
    shipped(engine, 8)

    run_until(engine, T0 + timedelta(hours=2))

    calls: dict[str, int] = {}
    for key, _ in engine.channels["sms"].attempts:
        calls[key] = calls.get(key, 0) + 1
    rows = engine.store.rows("messages", rule_id="shipping-sms")
    assert {m["state"] for m in rows} == {"failed"}
    assert all(m["attempts"] == calls[f"msg-{m['id']}"] == 3 for m in rows)  # three real tries each, no fewer
    finals = [d for _, outcome, _, d in log(engine) if outcome == "failed"]
    assert len(finals) == 8 and all(d.endswith("(attempt 3 of 3: giving up)") for d in finals)


def test_a_retry_past_the_messages_deadline_fails_instead(tmp_path, store):
    engine = build(tmp_path, store, {"sms": ["transient"] * 10}, {"attempts": 5, "backoff": "10m"})
    engine.project.config.limits.max_deferral = timedelta(minutes=5)
    engine.swap(engine.project)
    shipped(engine)

    run_until(engine, T0 + timedelta(hours=2))

    assert log(engine) == [("10:00:00", "failed", "channel_error",
                            "sms: HTTP 503 from provider (attempt 1 of 5); giving up: the next try would pass its "
                            "deadline 2026-11-11 10:05")]


class CrashingChannel(ScriptedChannel):
    def send(self, message: Outbound) -> None:
        if message.customer_id == "c-1":
            raise ValueError("a bug in a channel")
        super().send(message)


def test_an_unexpected_error_fails_that_message_and_the_batch_goes_on(tmp_path, store):
    engine = build(tmp_path, store, {}, {"attempts": 5})
    engine.channels["sms"] = CrashingChannel("sms", {"contact": "phone"}, tmp_path)
    engine.swap(engine.project)
    shipped(engine, 3)

    run_until(engine, T0 + timedelta(hours=1))

    states = {m["customer_id"]: (m["state"], m["reason"]) for m in engine.store.rows("messages", rule_id="shipping-sms")}
    assert states == {"c-0": ("sent", None), "c-1": ("failed", "engine_error"), "c-2": ("sent", None)}
    assert [d for _, o, _, d in log(engine) if o == "failed"] == ["sms: ValueError: a bug in a channel"]


class HangingChannel(ScriptedChannel):
    """A provider that does not answer until the other channel has delivered everything
    (or 10 s pass): with sends in one thread, the other channel would wait behind it."""

    def __init__(self, name, options, base_dir, other_done):
        super().__init__(name, options, base_dir)
        self.other_done = other_done
        self.waited_in_vain = 0

    def send(self, message: Outbound) -> None:
        if not self.other_done.wait(timeout=10):
            self.waited_in_vain += 1
        raise SendError("no answer within the timeout")


class SignallingChannel(ScriptedChannel):
    def __init__(self, name, options, base_dir, expected, done):
        super().__init__(name, options, base_dir)
        self.expected, self.done = expected, done

    def send(self, message: Outbound) -> None:
        super().send(message)
        if len(self.delivered) == self.expected:
            self.done.set()


def test_a_hanging_provider_does_not_hold_up_the_other_channel(tmp_path, store):
    import threading

    engine = build(tmp_path, store, {}, {"attempts": 5})
    done = threading.Event()
    engine.channels["sms"] = HangingChannel("sms", {"contact": "phone"}, tmp_path, done)
    engine.channels["email"] = SignallingChannel("email", {"contact": "email"}, tmp_path, 3, done)
    engine.swap(engine.project)
    shipped(engine, 3)

    engine.clock.set(T0)
    report = engine.dispatch()

    assert len(engine.channels["email"].delivered) == 3
    assert engine.channels["sms"].waited_in_vain == 0  # the emails went while the sms provider hung
    assert report.by_outcome == {"sent": 3, "deferred": 3}
