"""The command line as a marketer and an operator use it: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from tests.conftest import ROOT
from tests.helpers import created, event, jsonl

EXAMPLE = ROOT / "examples" / "double11_week.jsonl"
_EXAMPLE_LINES = EXAMPLE.read_text(encoding="utf-8").splitlines()
# The example holds two deliberately bad lines and one replayed event (see make_double11.py).
BROKEN_LINE = next(i for i, line in enumerate(_EXAMPLE_LINES, 1) if '"evt-broken"' in line)
TRUNCATED_LINE = next(i for i, line in enumerate(_EXAMPLE_LINES, 1) if '"evt-truncated"' in line)
EXAMPLE_EVENTS = len({json.loads(line)["id"] for i, line in enumerate(_EXAMPLE_LINES, 1)
                      if i not in (BROKEN_LINE, TRUNCATED_LINE)})


# What ships, counted from the files themselves (check's summary must agree with them).
SHIPPED_RULES = sum(len((yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("rules") or [])
                    for p in (ROOT / "rules").glob("*.yaml"))
SHIPPED_TEMPLATES = len(list((ROOT / "templates").glob("*.j2")))
AFTER_SALE_RULES = len(yaml.safe_load((ROOT / "rules" / "after_sale.yaml").read_text(encoding="utf-8"))["rules"])


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_check_passes_on_the_shipped_rules():
    result = run("check")
    assert result.exit_code == 0
    assert SHIPPED_RULES >= 20
    assert result.stdout == f"OK: {SHIPPED_RULES} rules, {SHIPPED_TEMPLATES} templates, 3 channels; 0 warning(s)\n"


def test_check_reports_every_error_with_file_line_key_and_fix(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    (workdir / "rules" / "after_sale.yaml").write_text(
        "rules:\n"
        "  - id: thanks\n"
        "    when: order.signed\n"
        "    chanel: sms\n"
        "    template: signed_care.sms.j2\n", encoding="utf-8")
    (workdir / "rules" / "more.yaml").write_text(
        "rules:\n"
        "  - id: late\n"
        "    when: order.shiped\n"
        "    wait: 3 days\n"
        "    channel: sms\n"
        "    template: signed_care.sms.j2\n", encoding="utf-8")
    result = run("check", "--config", str(workdir / "config.yaml"))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "rules/after_sale.yaml:2: rules[0]: missing required key 'channel' (for example: channel: sms)",
        "rules/after_sale.yaml:4: rules[0].chanel: unknown key 'chanel'; did you mean 'channel'?",
        "rules/more.yaml:3: rules[0].when: warning: unknown event type 'order.shiped'; did you mean "
        "'order.shipped'? (custom types are allowed; ignore this if it is one)",
        "rules/more.yaml:4: rules[0].wait: bad duration '3 days'; write a number and a unit: 30s, 30m, 2h, 3d, "
        "1w (or combined, like 1d12h)",
        # after_sale.yaml replaced by one broken rule, more.yaml's rule broken: the rest are fine
        f"3 error(s), 1 warning(s) in 2 file(s); {SHIPPED_RULES - AFTER_SALE_RULES} rule(s) are fine",
    ]


def test_check_warnings_alone_exit_zero(workdir):
    (workdir / "rules" / "custom.yaml").write_text(
        "rules:\n  - id: vip-welcome\n    when: member.joined\n    channel: sms\n"
        "    template: signed_care.sms.j2\n", encoding="utf-8")
    result = run("check", "--config", str(workdir / "config.yaml"))
    assert result.exit_code == 0
    assert "warning: unknown event type 'member.joined'" in result.stdout
    assert result.stdout.endswith(f"OK: {SHIPPED_RULES + 1} rules, {SHIPPED_TEMPLATES} templates, 3 channels; "
                                  "1 warning(s)\n")


def test_check_on_a_missing_folder_is_bad_usage(tmp_path):
    result = run("check", "--rules", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "--rules" in result.stderr and "folder not found" in result.stderr


def test_config_errors_stop_every_command(workdir):
    cfg = workdir / "config.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("timezone: Asia/Shanghai", "timezone: Asia/Shangai"),
                   encoding="utf-8")
    result = run("dry-run", "--events", str(EXAMPLE), "--config", str(cfg))
    assert result.exit_code == 1
    line = next(n for n, text in enumerate(cfg.read_text(encoding="utf-8").splitlines(), 1)
                if text.startswith("timezone:"))
    assert f"{cfg}:{line}: timezone: unknown time zone 'Asia/Shangai'" in result.stderr
    assert result.stdout == ""


def test_a_postgresql_database_without_its_driver_is_one_clear_line(workdir):
    """The PostgreSQL driver is the optional extra `.[postgresql]`: an install without it,
    configured for PostgreSQL, says how to install it instead of a ModuleNotFoundError."""
    cfg = workdir / "config.yaml"
    text = cfg.read_text(encoding="utf-8")
    start = next(line for line in text.splitlines() if line.startswith("database:"))
    cfg.write_text(text.replace(start, "database: postgresql+psycopg://engine@127.0.0.1:5432/engine"), encoding="utf-8")
    events = workdir / "events.jsonl"
    events.write_text(jsonl([created("evt-1")]), encoding="utf-8")
    # psycopg made unimportable in the child, as on an install without the extra
    without_driver = "import sys; sys.modules['psycopg'] = None; from engine.cli import main; main()"

    def cli(*args):
        return subprocess.run([sys.executable, "-c", without_driver, *args], cwd=workdir, capture_output=True,
                              text=True, timeout=60)

    hint = "the postgresql database needs its driver (psycopg), which is not installed: pip install -e '.[postgresql]'"
    checked = cli("check", "--config", str(cfg))
    assert checked.returncode == 1, checked.stderr
    assert f"{cfg}: database: {hint}" in checked.stdout
    assert "1 error(s)" in checked.stdout
    ingested = cli("ingest", str(events), "--config", str(cfg))
    assert ingested.returncode == 1
    assert hint in ingested.stderr and "Traceback" not in ingested.stderr
    assert "postgresql+psycopg://engine@127.0.0.1:5432/engine" in ingested.stderr


# ---- files in another encoding ------------------------------------------------------------

def gbk(path) -> None:
    """Save a file as a Chinese Windows editor does: GBK (GB18030 for what GBK lacks)."""
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))


def test_a_template_saved_as_gbk_is_one_clear_line_in_check_and_dry_run(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    gbk(workdir / "templates" / "shipping_notice.sms.j2")
    expected = ("rules/order_service.yaml:24: rules[1].template: templates/shipping_notice.sms.j2: not UTF-8 text "
                "(it looks like GBK); save it as UTF-8")

    check = run("check")
    dry = run("dry-run", "--events", str(EXAMPLE))

    assert check.exit_code == 1
    assert check.stdout.splitlines()[0] == expected
    assert dry.exit_code == 1
    assert dry.stderr.splitlines()[0] == expected
    assert "Traceback" not in check.output + dry.output


@pytest.mark.parametrize("name", ["config.yaml", "rules/lifecycle.yaml"])
def test_a_yaml_file_saved_as_gbk_is_one_clear_line(workdir, monkeypatch, name):
    monkeypatch.chdir(workdir)
    gbk(workdir / name)

    result = run("check")

    assert result.exit_code == 1
    assert f"{name}: not UTF-8 text (it looks like GBK); save it as UTF-8" in result.output
    assert "Traceback" not in result.output


def test_a_utf8_byte_order_mark_is_accepted_everywhere(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    for path in [workdir / "config.yaml", workdir / "rules" / "lifecycle.yaml",
                 workdir / "templates" / "shipping_notice.sms.j2"]:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    result = run("check")

    assert (result.exit_code, result.stdout) == (0, f"OK: {SHIPPED_RULES} rules, {SHIPPED_TEMPLATES} templates, "
                                                    "3 channels; 0 warning(s)\n")


# ---- dry-run ----------------------------------------------------------------------------

def dry_json(*args, input=None):
    result = run("dry-run", *args, "--json", input=input)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result


def test_dry_run_json_records_have_the_documented_fields():
    records, result = dry_json("--events", str(EXAMPLE))
    assert records, "the example must produce decisions"
    fields = {"time", "rule", "rule_name", "customer", "order", "channel", "kind", "outcome", "reason",
              "detail", "body", "segments"}
    for rec in records:
        assert set(rec) == fields
        assert rec["time"].endswith("+08:00")
        assert rec["outcome"] in {"sent", "deferred", "cancelled", "suppressed", "expired", "failed"}
        if rec["outcome"] == "sent":
            assert rec["reason"] is None and rec["body"]
            sms = rec["channel"] == "sms"
            assert rec["segments"] == ((1 if len(rec["body"]) <= 70 else -(-len(rec["body"]) // 67)) if sms else None)
        else:
            assert rec["reason"] and rec["body"] is None and rec["detail"] and rec["segments"] is None
    deferred = [r for r in records if r["outcome"] == "deferred"]
    assert deferred and all("deferred to 20" in r["detail"] for r in deferred)
    times = [r["time"] for r in records]
    assert times == sorted(times)


def test_dry_run_reports_rejected_lines_on_stderr_and_goes_on():
    records, result = dry_json("--events", str(EXAMPLE))
    assert (f"{EXAMPLE}:{BROKEN_LINE}: rejected: order: is required for order.* events (an object with an id)"
            in result.stderr)
    assert f"{EXAMPLE}:{TRUNCATED_LINE}: rejected: not valid JSON" in result.stderr
    assert "summary:" in result.stderr
    assert f"dry-run: {EXAMPLE_EVENTS} events (1 repeated ids ignored, 2 lines rejected)" in result.stderr


def test_payment_reminder_is_cancelled_by_a_payment_and_sent_otherwise():
    events = [created("e1", 0, "c-1", "o-1"), event("e2", "order.paid", 10, "c-1", "o-1"),
              created("e3", 0, "c-2", "o-2")]
    records, _ = dry_json("--events", "-", input=jsonl(events))
    reminders = {r["order"]: r for r in records if r["rule"] == "payment-reminder"}
    assert reminders["o-1"]["outcome"] == "cancelled"
    assert reminders["o-1"]["reason"] == "unless"
    assert reminders["o-1"]["time"] == "2026-11-11T10:30:00+08:00"
    assert reminders["o-2"]["outcome"] == "sent"
    assert reminders["o-2"]["body"] == "【山野户外】王小明，您拍下的羽绒睡袋还未付款，库存有限，付款后我们会尽快为您发货哦~"


def test_until_stops_the_virtual_clock():
    events = [created("e1", 0, "c-1", "o-1")]
    records, _ = dry_json("--events", "-", "--until", "2026-11-11T10:29", input=jsonl(events))
    assert records == []
    records, _ = dry_json("--events", "-", "--until", "2026-11-11T02:30:00Z", input=jsonl(events))
    assert [r["rule"] for r in records] == ["payment-reminder"]


def test_dry_run_text_timeline_and_summary():
    result = run("dry-run", "--events", "-", input=jsonl([created("e1", 0, "c-1", "o-1")]))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == ("2026-11-11 10:30  c-1  payment-reminder  sms  sent       "
                        "【山野户外】王小明，您拍下的羽绒睡袋还未付款，库存有限，付款后我们会尽快为您发货哦~")
    assert "summary:" in lines
    row = next(line for line in lines if line.startswith("payment-reminder"))
    assert row.split()[:7] == ["payment-reminder", "1", "0", "0", "0", "0", "0"]


@pytest.mark.parametrize("args, code, message", [
    (["--events", "missing.jsonl"], 2, "cannot read missing.jsonl"),
    (["--events", str(EXAMPLE), "--until", "next tuesday"], 2, "Invalid value for --until: 'next tuesday' is not an ISO 8601 time"),
    ([], 2, "Missing option '--events'"),
    (["--events", str(EXAMPLE), "--until", "2026-01-01"], 2,
     f"Invalid value for --until: 2026-01-01 00:00:00+08:00 is before the first event of {EXAMPLE} "
     "(2026-11-08 16:20:00+08:00): nothing to replay; leave --until out, or give a later time"),
], ids=["unreadable-file", "bad-until", "no-events", "until-before-the-first-event"])
def test_dry_run_bad_usage_exits_2(args, code, message):
    result = run("dry-run", *args)
    assert result.exit_code == code
    assert message in result.stderr


def test_dry_run_with_rule_errors_runs_nothing(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    (workdir / "rules" / "bad.yaml").write_text(
        "rules:\n  - id: x\n    when: order.paid\n    channel: smss\n    template: signed_care.sms.j2\n",
        encoding="utf-8")
    result = run("dry-run", "--events", str(EXAMPLE), "--config", str(workdir / "config.yaml"), "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert ("rules/bad.yaml:4: rules[0].channel: unknown channel 'smss'; channels in config.yaml: "
            "email, sms, staff; did you mean 'sms'?") in result.stderr


def test_dry_run_never_touches_the_configured_database(workdir):
    cfg = workdir / "config.yaml"
    assert "sqlite:///var/engine.db" in cfg.read_text(encoding="utf-8")
    result = run("dry-run", "--events", str(EXAMPLE), "--config", str(cfg))
    assert result.exit_code == 0
    assert not (workdir / "var").exists()


def test_dry_run_rules_option_uses_only_that_folder(workdir, tmp_path):
    only = tmp_path / "only"
    only.mkdir()
    (workdir / "rules" / "order_service.yaml").rename(only / "order_service.yaml")
    records, _ = dry_json("--events", str(EXAMPLE), "--rules", str(only))
    assert {r["rule"] for r in records} == {"payment-reminder", "shipping-notice", "out-for-delivery", "signed-care"}


# ---- ingest -----------------------------------------------------------------------------

def test_ingest_is_idempotent_and_keeps_rejected_lines(workdir):
    cfg = str(workdir / "config.yaml")
    first = run("ingest", str(EXAMPLE), "--config", cfg)
    assert first.exit_code == 3
    assert f"{EXAMPLE}:{BROKEN_LINE}: rejected: order: is required for order.* events" in first.stderr
    assert f"{EXAMPLE_EVENTS} events stored, 1 already stored (ignored), 2 rejected" in first.stdout
    second = run("ingest", str(EXAMPLE), "--config", cfg)
    assert (f"0 events stored, {EXAMPLE_EVENTS + 1} already stored (ignored), 2 rejected; 0 messages scheduled"
            in second.stdout)
    import sqlite3
    with sqlite3.connect(workdir / "var" / "engine.db") as conn:
        assert conn.execute("select count(*) from events").fetchone()[0] == EXAMPLE_EVENTS
        rows = conn.execute("select line, reason from rejected_events order by id").fetchall()
    assert rows[:2] == [(BROKEN_LINE, "order: is required for order.* events (an object with an id)"),
                        (TRUNCATED_LINE, "not valid JSON: Expecting value at column 58")]


def test_run_py_is_the_entry_point():
    out = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("check", "dry-run", "ingest", "daemon"):
        assert command in out.stdout


def test_check_warns_when_an_sms_template_is_longer_than_the_channel_allows(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    (workdir / "templates" / "review_request.sms.j2").write_text(
        "{{ customer.name }}，" + "感谢您选择我们的店铺，" * 14 + "\n", encoding="utf-8")
    result = run("check")
    assert result.exit_code == 0  # a warning, not an error
    assert ("rules/after_sale.yaml:3: rules[0].template: warning: review_request.sms.j2 renders to 3 SMS "
            "segments (168 characters with signature and unsubscribe suffix) for sample data; channel sms "
            "allows 2: shorten the text") in result.stdout.splitlines()


def test_every_command_runs_with_the_engines_garbage_collector_setting(monkeypatch):
    import gc

    from engine import gcsetting

    monkeypatch.setattr(gc, "get_threshold", lambda: (700, 10, 10))
    chosen = []
    monkeypatch.setattr(gc, "set_threshold", lambda *t: chosen.append(t))

    result = CliRunner().invoke(main, ["check"])

    assert result.exit_code == 0, result.output
    assert chosen == [(gcsetting.YOUNG_THRESHOLD, 10, 10)]


def test_daemon_help_says_it_serves_the_http_api_and_needs_a_token():
    result = run("daemon", "--help")

    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "HTTP API (POST /events on 127.0.0.1:8787 by default" in text
    assert "ENGINE_TOKEN (a bearer token) or ENGINE_HMAC_SECRET is set in the environment" in text
    assert "ENGINE_TOKEN=s3cret python run.py daemon --config config.yaml" in text
