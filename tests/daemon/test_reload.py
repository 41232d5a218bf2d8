"""Hot reload: a change to config.yaml, rules/ or templates/ is validated like `check`
and swapped in whole; a broken file leaves the last good version running; a removed
rule's pending messages are cancelled with `rule_removed`. On a copy of the shipped
project, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta

import pytest

from engine.app import Engine, load_project
from engine.daemon.reload import Reloader
from engine.daemon.ticker import Daemon
from engine.intake.events import parse_event
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


def test_a_template_change_is_reported_by_name(running, workdir):
    engine, reloader = running
    template = workdir / "templates" / "shipping_notice.sms.j2"
    template.write_text(template.read_text(encoding="utf-8").replace("请留意查收", "请注意查收"), encoding="utf-8")
    (workdir / "templates" / "new_note.sms.j2").write_text("{{ shop.signature }}您好", encoding="utf-8")

    result = reloader.reload()

    assert (result.ok, result.changed, result.templates) == (True, [], ["new_note.sms.j2", "shipping_notice.sms.j2"])
    assert reloader.reload().templates == []  # nothing changed since


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


def test_health_is_degraded_while_the_running_rules_differ_from_the_files_and_ok_once_fixed(running, workdir,
                                                                                           request):
    engine, reloader = running
    daemon = Daemon(engine, http=False, reloader=reloader)
    daemon.scheduler.start(paused=True)  # running, as in the daemon (health reports a stopped scheduler)
    request.addfinalizer(daemon.scheduler.shutdown)
    path = workdir / "rules" / "order_service.yaml"
    good = path.read_text(encoding="utf-8")
    assert (daemon.health()["status"], daemon.health()["rule_errors"]) == ("ok", [])
    assert "engine_rule_errors 0.0" in daemon.metrics.render()[0].decode()

    path.write_text(good.replace("    wait: 30m\n", "    wait: half an hour\n", 1), encoding="utf-8")
    refused = reloader.reload()
    health = daemon.health()
    metrics = daemon.metrics.render()[0].decode()
    path.write_text(good, encoding="utf-8")
    fixed = reloader.reload()

    assert refused.ok is False
    assert health["status"] == "degraded"
    assert health["rule_errors"] == refused.errors and health["rule_errors"][0].startswith(f"{path}:10: rules[0].wait:")
    assert health["database"] == "ok"
    assert "engine_rule_errors 1.0" in metrics
    assert fixed.ok is True
    assert (daemon.health()["status"], daemon.health()["rule_errors"]) == ("ok", [])
    assert engine.store.daemon_state()["daemon"]["rule_errors"] == []


def test_health_is_degraded_when_rules_were_left_out_at_start(workdir, store, clock, request):
    path = workdir / "rules" / "extra.yaml"
    path.write_text(EXTRA_RULE.replace("channel: sms", "channel: smss"), encoding="utf-8")
    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")
    engine = Engine(project, store, recording_channels(project), clock)
    daemon = Daemon(engine, http=False, reloader=Reloader(engine, *project.sources))
    daemon.scheduler.start(paused=True)
    request.addfinalizer(daemon.scheduler.shutdown)

    health = daemon.health()

    assert health["status"] == "degraded"
    assert [e.split(": ", 1)[0] for e in health["rule_errors"]] == [f"{path}:5"]  # the channel: line
    assert "unknown channel 'smss'" in health["rule_errors"][0]
    assert "order-thanks" not in {r.id for r in engine.project.rules.rules}


class Watching:
    """The reloader's watchers running in the background, and a way to wait for the
    reload a change leads to (a change may lead to more than one: a folder renamed away
    is reported when the event comes and when the watcher finds it gone)."""

    def __init__(self, reloader):
        self.reloader = reloader
        self.stop = threading.Event()
        self.threads = reloader.watch(self.stop)
        time.sleep(0.5)  # the watchers are set up

    def until(self, what: str, ok: bool, says: str = "", timeout: float = 20):
        """Wait for a reload after now that is ok (or refused, with `says` in an error)."""
        before = self.reloader.last
        deadline = time.monotonic() + timeout
        while True:
            last = self.reloader.last
            if last is not before and last.ok is ok and (ok or any(says in e for e in last.errors)):
                return last
            assert time.monotonic() < deadline, f"no {'accepted' if ok else 'refused'} reload within " \
                                                f"{timeout:.0f} s of {what}; the last: {last}"
            time.sleep(0.02)

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def test_the_watcher_survives_every_kind_of_bad_change_and_a_fix_reloads(running, workdir):
    engine, reloader = running
    watching = Watching(reloader)
    template = workdir / "templates" / "shipping_notice.sms.j2"
    good_template = template.read_text(encoding="utf-8")
    rules = workdir / "rules" / "order_service.yaml"
    good_rules = rules.read_text(encoding="utf-8")
    try:
        template.write_bytes(good_template.encode("gbk"))  # a Chinese Windows editor's save
        gbk = watching.until("a template saved as GBK", False, "not UTF-8")
        template.write_bytes(b"\xef\xbb\xbf" + good_template.replace("请留意查收", "请注意查收").encode("utf-8"))
        watching.until("the template saved as UTF-8 with a byte order mark", True)

        rules.write_text(good_rules[:len(good_rules) // 2].rsplit("\n", 3)[0] + "\n    when: [order.", encoding="utf-8")
        half = watching.until("a half-written rules file", False, "YAML syntax error")
        rules.write_text(good_rules, encoding="utf-8")
        watching.until("the rules file written whole", True)

        (workdir / "rules" / "broken.yaml").mkdir()  # a name it cannot read as a file
        unreadable = watching.until("an unreadable rules file", False, "broken.yaml")
        (workdir / "rules" / "broken.yaml").rmdir()
        watching.until("the unreadable file gone", True)

        (workdir / "templates").rename(workdir / "templates-old")
        watching.until("the templates folder renamed away", False, "not found")
        (workdir / "templates-old").rename(workdir / "templates")
        watching.until("the templates folder back", True)

        saved = {p.name: p.read_bytes() for p in (workdir / "rules").iterdir()}
        shutil.rmtree(workdir / "rules")
        removed = watching.until("the rules folder removed", False, "rules folder not found")
        staging = workdir / "rules-new"
        staging.mkdir()
        for name, data in saved.items():
            (staging / name).write_bytes(data)
        staging.rename(workdir / "rules")  # back in one step
        watching.until("the rules folder back", True)
        (workdir / "rules" / "extra.yaml").write_text(EXTRA_RULE, encoding="utf-8")
        extra = watching.until("a new rules file after all that", True)
    finally:
        watching.close()

    assert gbk.errors == [f"{rules}:24: rules[1].template: {template}: not UTF-8 text (it looks like GBK); "
                          "save it as UTF-8"]
    assert half.errors[0].startswith(f"{rules}:")
    assert unreadable.errors == [f"{workdir / 'rules' / 'broken.yaml'}: cannot read: Is a directory"]
    assert removed.errors == [f"{workdir / 'rules'}: rules folder not found; pass --rules DIR"]
    assert extra.added == ["order-thanks"]
    assert len(engine.project.rules.rules) == 23
    assert all(thread.is_alive() is False for thread in watching.threads)  # stopped when asked, not before


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
