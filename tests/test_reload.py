"""Hot reload: a change to config.yaml, rules/ or templates/ is validated like `check`
and swapped in whole; a broken file leaves the last good version running; a removed
rule's pending messages are cancelled with `rule_removed`. On a copy of the shipped
project, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from engine.app import Engine, load_project
from engine.daemon import Daemon
from engine.events import parse_event
from engine.reload import Reloader
from tests.conftest import recording_channels
from tests.helpers import T0, created

EXTRA_RULE = """\
rules:
  - id: order-thanks
    kind: service
    when: order.created
    channel: sms
    template: payment_reminder.sms.j2
    once_per: order
"""


@pytest.fixture
def running(workdir, store, clock):
    """An engine on a copy of the shipped project, and its reloader."""
    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")
    engine = Engine(project, store, recording_channels(project), clock)
    clock.set(T0)
    yield engine, Reloader(engine, workdir / "config.yaml", workdir / "rules", workdir / "templates")
    for channel in engine.channels.values():
        channel.close()


def ingest(engine, *raw):
    return engine.ingest([parse_event(r, engine.project.config.timezone) for r in raw])


def pending_rules(engine) -> list[str]:
    return sorted(m["rule_id"] for m in engine.store.rows("messages", state="pending"))


def test_a_new_rule_is_swapped_in_and_the_next_event_uses_it(running, workdir):
    engine, reloader = running
    (workdir / "rules" / "extra.yaml").write_text(EXTRA_RULE, encoding="utf-8")

    result = reloader.reload()

    assert (result.ok, result.added, result.removed, result.errors) == (True, ["order-thanks"], [], [])
    ingest(engine, created("e-1"))
    assert pending_rules(engine) == ["order-thanks", "payment-reminder"]


def test_a_broken_rules_file_is_refused_and_the_last_good_version_keeps_running(running, workdir):
    engine, reloader = running
    before = engine.project
    path = workdir / "rules" / "order_service.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    wait: 30m\n", "    wait: half an hour\n", 1),
                    encoding="utf-8")

    result = reloader.reload()

    assert result.ok is False
    assert len(result.errors) == 1
    assert result.errors[0].startswith(f"{path}:10: rules[0].wait:")  # file, line, key
    assert engine.project is before
    ingest(engine, created("e-1"))
    assert pending_rules(engine) == ["payment-reminder"]  # still scheduled, 30 minutes after


def test_a_broken_config_is_refused_too(running, workdir):
    engine, reloader = running
    before = engine.project
    config = workdir / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("timezone: Asia/Shanghai", "timezone: Mars/Olympus"),
                      encoding="utf-8")

    result = reloader.reload()

    assert result.ok is False
    assert any("timezone: unknown time zone 'Mars/Olympus'" in e for e in result.errors)
    assert engine.project is before


@pytest.mark.parametrize("how", ["removed", "disabled"])
def test_a_rule_that_is_gone_schedules_nothing_more_and_its_pending_messages_are_cancelled(running, workdir, how):
    engine, reloader = running
    ingest(engine, created("e-1"), created("e-2", 1, customer="c-2", order="o-2"))
    assert pending_rules(engine) == ["payment-reminder", "payment-reminder"]
    path = workdir / "rules" / "order_service.yaml"
    text = path.read_text(encoding="utf-8")
    if how == "removed":
        start = text.index("  - id: payment-reminder")
        text = text[:start] + text[text.index("  - id:", start + 5):]
    else:
        text = text.replace("    kind: service\n", "    enabled: false\n    kind: service\n", 1)
    path.write_text(text, encoding="utf-8")

    result = reloader.reload()

    assert (result.ok, result.removed, result.cancelled) == (True, ["payment-reminder"], 2)
    rows = engine.store.rows("messages")
    assert {(m["state"], m["reason"]) for m in rows} == {("cancelled", "rule_removed")}
    detail = ("rule payment-reminder was removed from the rules in a reload" if how == "removed"
              else "rule payment-reminder was disabled (enabled: false) in a reload")
    assert [(r["customer_id"], r["outcome"], r["reason"], r["detail"]) for r in engine.store.rows("message_log")] == [
        ("c-1", "cancelled", "rule_removed", detail), ("c-2", "cancelled", "rule_removed", detail)]
    ingest(engine, created("e-3", 2, customer="c-3", order="o-3"))
    engine.clock.set(T0 + timedelta(hours=2))
    assert engine.dispatch().handled == 0
    assert engine.channels["sms"].sent == []


def test_a_template_change_is_used_by_the_next_message(running, workdir):
    engine, reloader = running
    ingest(engine, created("e-1"))
    (workdir / "templates" / "payment_reminder.sms.j2").write_text("{{ customer.name }}，订单还差一步付款哦", encoding="utf-8")

    assert reloader.reload().ok
    engine.clock.set(T0 + timedelta(minutes=31))
    engine.dispatch()

    assert [m.body for m in engine.channels["sms"].sent] == ["【山野户外】王小明，订单还差一步付款哦"]


def test_settings_that_need_a_restart_keep_their_running_values(running, workdir):
    engine, reloader = running
    config = workdir / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("database: sqlite:///var/engine.db", "database: sqlite:///var/other.db")
                      + '\nhttp:\n  listen: "127.0.0.1:9999"\n', encoding="utf-8")
    database = engine.project.config.database

    result = reloader.reload()

    assert (result.ok, result.restart_needed) == (True, ["database", "http"])
    assert engine.project.config.database == database
    assert engine.project.config.http.port == 8787


def test_the_watcher_reloads_when_a_file_changes_and_healthz_shows_the_result(running, workdir):
    engine, reloader = running
    daemon = Daemon(engine, http=False, reloader=reloader)
    stop = threading.Event()
    reloader.watch(stop)
    try:
        time.sleep(0.5)  # the watchers are set up
        (workdir / "rules" / "extra.yaml").write_text(EXTRA_RULE, encoding="utf-8")
        deadline = time.monotonic() + 20
        while reloader.last is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reloader.last is not None, "no reload within 20 s of the change"
        assert reloader.last.added == ["order-thanks"]

        (workdir / "rules" / "extra.yaml").write_text("rules:\n  - id: broken\n    when: order.created\n",
                                                      encoding="utf-8")
        deadline = time.monotonic() + 20
        while reloader.last.ok and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()

    health = daemon.health()
    assert health["last_reload"]["ok"] is False
    assert health["last_reload"]["errors"] and "extra.yaml" in health["last_reload"]["errors"][0]
    assert "order-thanks" in {r.id for r in engine.project.rules.rules}  # the last good version runs


def test_a_rule_on_a_channel_the_running_daemon_lacks_is_refused(running, workdir):
    engine, reloader = running
    config = workdir / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "channels:\n", "channels:\n  wechat: {type: log}\n", 1), encoding="utf-8")
    (workdir / "rules" / "extra.yaml").write_text(EXTRA_RULE.replace("channel: sms", "channel: wechat"),
                                                  encoding="utf-8")

    result = reloader.reload()

    assert result.ok is False
    assert result.errors == ["rule order-thanks sends on channel 'wechat', which the running daemon does not have; "
                             "restart it to add channels"]
    assert "order-thanks" not in {r.id for r in engine.project.rules.rules}
