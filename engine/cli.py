"""The command line: a thin shell over the engine. Only this module prints.

Exit codes (all commands): 0 success; 1 rule or config errors; 2 bad usage or an
unreadable file; 3 (ingest) ran, but some lines were rejected (kept in the database)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click

from engine import gcsetting
from engine.app import Engine, Project, build_channels, load_project
from engine.clock import SystemClock
from engine.daemon import logs
from engine.errors import ConfigError, DriverMissing, EventError, Problem
from engine.intake.events import parse_time
from engine.outcomes import Outcome, State
from engine.store import Store
from engine.store.store import driver_problem

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXIT_ERRORS, EXIT_USAGE, EXIT_REJECTED = 1, 2, 3


def _default_config() -> Path:
    here = Path("config.yaml")
    return here if here.is_file() else PROJECT_ROOT / "config.yaml"


def project_options(func):
    func = click.option("--templates", "templates_dir", type=click.Path(path_type=Path, file_okay=False),
                        help="Templates folder [default: templates/ beside the config file].")(func)
    func = click.option("--rules", "rules_dir", type=click.Path(path_type=Path, file_okay=False),
                        help="Rules folder [default: rules/ beside the config file].")(func)
    func = click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                        help="config.yaml [default: ./config.yaml, else the project's].")(func)
    return func


def _load(config_path: Path | None, rules_dir: Path | None, templates_dir: Path | None) -> Project:
    config_path = config_path or _default_config()
    if not config_path.is_file():
        raise click.UsageError(f"config file not found: {config_path}")
    base = config_path.resolve().parent
    for label, folder, default in (("--rules", rules_dir, base / "rules"),
                                   ("--templates", templates_dir, base / "templates")):
        if folder is not None and not folder.is_dir():
            raise click.UsageError(f"{label} {folder}: folder not found")
        if folder is None and not default.is_dir():
            raise click.UsageError(f"no {default.name}/ folder beside {config_path}; pass {label} DIR")
    try:
        return load_project(config_path, rules_dir or base / "rules", templates_dir or base / "templates",
                            today=SystemClock().now().date())
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"config has {len(exc.problems)} error(s); nothing was run", err=True)
        sys.exit(EXIT_ERRORS)


def _open_store(url: str) -> Store:
    try:
        return Store(url)
    except DriverMissing as exc:
        click.echo(f"database {_safe_url(url)}: {exc}", err=True)
        sys.exit(EXIT_ERRORS)


def _print_problems(project: Project, stream_err: bool = True) -> None:
    for problem in sorted(project.problems, key=lambda p: (p.file, p.line or 0)):
        click.echo(str(problem), err=stream_err)


def _read_lines(source: str) -> list[tuple[int, bytes]]:
    """(line number, raw bytes) for a file or '-' (stdin); exit 2 when unreadable.
    Decoding is per line, so one line in another encoding is rejected alone."""
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        click.echo(f"cannot read {source}: {exc.strerror}", err=True)
        sys.exit(EXIT_USAGE)
    return list(enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="returning-customer-engine", message="%(version)s")
def main() -> None:
    """Returning-customer automation engine: order events -> YAML rules -> timed messages.

    \b
    Try it:
      python run.py check
      python run.py dry-run --events examples/double11_week.jsonl
    Exit codes: 0 ok; 1 rule or config errors; 2 bad usage or unreadable file;
    3 (ingest) some lines rejected.
    """
    gcsetting.tune()


@main.command()
@project_options
def check(config_path, rules_dir, templates_dir) -> None:
    """Validate config, rules and templates; report every problem.

    Each problem names file, line, key and the fix. Exits 1 when there are errors,
    0 when all is well (warnings alone do not fail).

    \b
    Example:
      python run.py check --rules rules/ --templates templates/
    """
    logs.setup("WARNING")
    project = _load(config_path, rules_dir, templates_dir)
    _print_problems(project, stream_err=False)
    errors, warnings = len(project.errors), len(project.rules.warnings)
    files = len({p.file for p in project.problems})
    missing = driver_problem(project.config.database)
    if missing:  # the config is valid, but this install cannot open its database
        click.echo(str(Problem(str(project.sources[0] or "config.yaml"), None, "database", missing)))
        errors, files = errors + 1, files + 1
    if errors:
        click.echo(f"{errors} error(s), {warnings} warning(s) in {files} file(s); "
                   f"{len(project.rules.rules)} rule(s) are fine")
        sys.exit(EXIT_ERRORS)
    click.echo(f"OK: {len(project.rules.rules)} rules, {len(project.templates.names())} templates, "
               f"{len(project.config.channels)} channels; {warnings} warning(s)")


def _parse_until(value: str | None, project: Project) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, project.config.timezone, "--until")
    except EventError as exc:
        raise click.BadParameter(exc.reason, param_hint="--until") from None


def _failing(specs: tuple[str, ...], project: Project) -> dict[str, float]:
    out = {}
    for spec in specs:
        name, _, share = spec.partition(":")
        if name not in project.config.channels:
            raise click.BadParameter(f"no channel {name!r} in config.yaml; channels: "
                                     f"{', '.join(project.config.channels)}", param_hint="--fail-channel")
        try:
            rate = float(share) if share else 1.0
        except ValueError:
            rate = -1.0
        if not 0 < rate <= 1:
            raise click.BadParameter(f"{spec!r}: the share must be a number above 0 and at most 1, such as sms:0.3",
                                     param_hint="--fail-channel")
        out[name] = rate
    return out


@main.command("dry-run")
@click.option("--events", "events_file", required=True, metavar="FILE",
              help="Canonical events, one JSON object per line ('-' for stdin).")
@project_options
@click.option("--until", metavar="TIME",
              help="Stop the virtual clock here (ISO 8601; without offset: shop time). "
                   "[default: last event + longest wait/expires + 1 day]")
@click.option("--json", "as_json", is_flag=True,
              help="stdout: one JSON decision record per line; summary to stderr.")
@click.option("--fail-channel", "fail_channels", multiple=True, metavar="NAME[:SHARE]",
              help="Simulate a failing provider on channel NAME: every attempt fails, or SHARE of them "
                   "(such as sms:0.3); retries and final failures show in the decisions. Repeatable.")
def dry_run(events_file, config_path, rules_dir, templates_dir, until, as_json, fail_channels) -> None:
    """Show what the rules would send for a file of events, on a virtual clock.

    Runs the real engine on a throwaway database; never touches the configured one.
    Exits 0 when it ran, 1 on rule or config errors (nothing runs), 2 on bad usage or
    an unreadable file. Malformed event lines are reported on stderr and skipped.

    \b
    Example:
      python run.py dry-run --events examples/double11_week.jsonl --until 2026-11-20
      python run.py dry-run --events examples/double11_week.jsonl --json | jq .outcome
      python run.py dry-run --events examples/double11_week.jsonl --fail-channel sms:0.5
    """
    from engine.dryrun import report
    from engine.dryrun.replay import UntilBeforeEvents, run_dry
    from engine.rules.sms import sms_channels

    logs.setup("WARNING")
    project = _load(config_path, rules_dir, templates_dir)
    if project.errors:
        _print_problems(project)
        click.echo(f"{len(project.errors)} rule error(s); fix them (see `python run.py check`). Nothing was run.",
                   err=True)
        sys.exit(EXIT_ERRORS)
    stop = _parse_until(until, project)
    failing = _failing(fail_channels, project)
    try:
        result = run_dry(project, _read_lines(events_file), stop, failing=failing)
    except UntilBeforeEvents as exc:
        tz = project.config.timezone
        raise click.BadParameter(f"{exc.until.astimezone(tz).isoformat(sep=' ')} is before the first event of "
                                 f"{events_file} ({exc.first.astimezone(tz).isoformat(sep=' ')}): nothing to "
                                 "replay; leave --until out, or give a later time", param_hint="--until") from None
    for rejected in result.rejected:
        click.echo(f"{events_file}:{rejected.line}: rejected: {rejected.reason}", err=True)
    tz = project.config.timezone
    sms = sms_channels(project.config)
    if as_json:
        for decision in result.decisions:
            click.echo(json.dumps(report.record(decision, project.rules, tz, sms), ensure_ascii=False))
    else:
        for line in report.timeline(result.decisions, tz, sms_channels=sms):
            click.echo(line)
        click.echo("")
    span = (f"{result.start.astimezone(tz):%Y-%m-%d %H:%M} .. {result.until.astimezone(tz):%Y-%m-%d %H:%M}"
            if result.start and result.until else "nothing to run")
    head = (f"dry-run: {result.events - result.duplicates} events ({result.duplicates} repeated ids ignored, "
            f"{len(result.rejected)} lines rejected), virtual clock {span} {tz.key}")
    for line in [head, *report.summary(result.decisions, project.rules)]:
        click.echo(line, err=as_json)


@main.command()
@click.argument("source", metavar="FILE")
@project_options
def ingest(source, config_path, rules_dir, templates_dir) -> None:
    """Load canonical events from a JSON-lines FILE ('-' for stdin) into the database.

    Idempotent on event id: loading a file twice schedules nothing twice. A malformed
    line is reported with its line number and reason and kept in the rejected_events
    table; the rest still load (exit 3 when any line was rejected). Broken rules are
    reported and left out; the others run.

    \b
    Example:
      python run.py ingest examples/double11_week.jsonl
      cat new_orders.jsonl | python run.py ingest -
    """
    from engine.intake.events import AHEAD, Rejected, read_events, rejected_later

    project = _load(config_path, rules_dir, templates_dir)
    logs.setup(project.config.log_level, tz=project.config.timezone)
    _print_problems(project)
    lines = _read_lines(source)
    clock = SystemClock()
    events, rejected = read_events(lines, project, latest=clock.now() + AHEAD)
    store = _open_store(project.config.database)
    try:
        now = clock.now()
        store.reject([{"source": source, "line": r.line, "raw": r.raw, "reason": r.reason, "received_at": now}
                      for r in rejected])
        engine = Engine(project, store, {}, clock)
        try:
            result = engine.ingest(events)
            store.reject(rejected_later(result.rejected, source, now))
        finally:
            engine.close()
    finally:
        store.close()
    rejected += [Rejected(event.line, reason, "") for event, reason in result.rejected]
    for r in sorted(rejected, key=lambda r: r.line or 0):
        click.echo(f"{source}:{r.line}: rejected: {r.reason}", err=True)
    click.echo(f"{source}: {result.accepted} events stored, {result.duplicates} already stored (ignored), "
               f"{len(rejected)} rejected; {len(result.scheduled)} messages scheduled, "
               f"{result.suppressed} held back as duplicates")
    if rejected:
        sys.exit(EXIT_REJECTED)


@main.command()
@click.argument("name")
@click.option("--sample", default=10, show_default=True, help="how many matching customers to list")
@project_options
def segment(name, sample, config_path, rules_dir, templates_dir) -> None:
    """Print the size of the segment NAME (config.yaml or rules/*.yaml `segments:`) in the database,
    and a sample of its customers (phone numbers masked).

    \b
    Example:
      python run.py segment high_quality
    """
    from engine.contacts import mask_phone
    from engine.errors import ExpressionError
    from engine.rules.context import build_context

    project = _load(config_path, rules_dir, templates_dir)
    logs.setup("WARNING")
    config = project.config
    if name not in project.templates.segments:
        known = ", ".join(project.templates.segments) or "(none)"
        click.echo(f"unknown segment {name!r}; segments defined (config.yaml, rules files): {known}", err=True)
        sys.exit(EXIT_USAGE)
    evaluate = project.templates.segments[name]
    store = _open_store(config.database)
    now = SystemClock().now()
    total = members = 0
    shown: list[dict] = []
    try:
        for page in store.customer_pages():
            for customer in page:
                total += 1
                context = build_context(customer, None, {"id": None, "type": "segment", "time": now}, {},
                                        config.shop, now, config.timezone, config.profile)
                try:
                    inside = bool(evaluate(context))
                except ExpressionError as exc:
                    click.echo(f"segment {name}: {exc} (customer {customer['id']})", err=True)
                    sys.exit(EXIT_ERRORS)
                if inside:
                    members += 1
                    if len(shown) < sample:
                        shown.append(customer)
    finally:
        store.close()
    share = f" ({members / total:.1%})" if total else ""
    click.echo(f"segment {name}: {members} of {total} customers{share}")
    click.echo(f"  {project.templates.segment_sources[name]}   ({project.templates.segment_places.get(name, '')})")
    for customer in shown:
        click.echo(f"  {customer['id']}  {customer.get('name') or '-'}  {mask_phone(customer.get('phone') or '')}")


@main.command()
@project_options
def daemon(config_path, rules_dir, templates_dir) -> None:
    """Run the engine: take events, send due messages through the configured channels.

    Uses the database in config.yaml (SQLite by default). Events come in over its HTTP
    API (POST /events on 127.0.0.1:8787 by default, config.yaml `http:`), which accepts
    them once ENGINE_TOKEN (a bearer token) or ENGINE_HMAC_SECRET is set in the
    environment; or with `python run.py ingest FILE` from another terminal or a cron
    job. GET /healthz and GET /metrics tell how it is doing. Rules, templates and
    config.yaml are reloaded when they change (a broken file is refused; the last good
    version keeps running). Broken rules are reported and left out; the others run.
    Stop with Ctrl-C or SIGTERM: requests and the dispatch pass in flight finish first.

    \b
    Example:
      ENGINE_TOKEN=s3cret python run.py daemon --config config.yaml
    """
    from engine.daemon.http import Credentials
    from engine.daemon.reload import Reloader
    from engine.daemon.server import ListenError
    from engine.daemon.ticker import Daemon

    project = _load(config_path, rules_dir, templates_dir)
    logs.setup(project.config.log_level, tz=project.config.timezone, **project.config.log_options)
    from loguru import logger
    log = logger.bind(component="daemon")
    for problem in project.problems:
        (log.error if problem.severity == "error" else log.warning)("{}", problem)
    if project.errors:
        log.error("{} rule(s) disabled because of errors; the other {} run",
                  len({p.rule_id for p in project.errors}), len(project.rules.rules))
    store = _open_store(project.config.database)
    engine = Engine(project, store, build_channels(project.config), SystemClock())
    log.info("database {}; {} rules loaded; channels: {}", _safe_url(project.config.database),
             len(project.rules.rules), ", ".join(f"{n} ({c.type})" for n, c in project.config.channels.items()))
    try:
        daemon = Daemon(engine, reloader=Reloader(engine, *project.sources))
    except ListenError as exc:
        log.error("{}", exc)
        engine.close()
        sys.exit(EXIT_ERRORS)
    http = project.config.http
    if http.enabled and not Credentials(http).configured:
        log.warning("the HTTP intake refuses events until {} (bearer token) or {} (HMAC secret) is set in the "
                    "environment", http.token_env, http.hmac_env)
    daemon.run()


@main.command()
@click.option("--next", "next_count", default=10, show_default=True, help="how many of the next due messages to list")
@project_options
def status(next_count, config_path, rules_dir, templates_dir) -> None:
    """Show the queue by rule and state, the next due messages, the failures of the
    last 24 hours, and the daemon's state with its last reload of the rules.

    Reads the database in config.yaml; works whether the daemon runs or not.

    \b
    Example:
      python run.py status --config config.yaml
    """

    project = _load(config_path, rules_dir, templates_dir)
    logs.setup("WARNING")
    config, tz = project.config, project.config.timezone
    now = SystemClock().now()
    store = _open_store(config.database)
    try:
        depth = store.queue_depth()
        upcoming = store.next_due(next_count)
        failures = store.recent_log(Outcome.FAILED, now - timedelta(days=1))
        state = store.daemon_state()
        phones = {c["id"]: c.get("phone") for c in store.customers_by_id(m["customer_id"] for m in upcoming).values()}
    finally:
        store.close()

    def when(t) -> str:  # shop time, with its offset: 2026-11-11 10:00:05+08:00
        return t.astimezone(tz).isoformat(sep=" ", timespec="seconds")

    _daemon_lines(state, when)
    rules = project.rules
    click.echo(f"rules on disk: {len(rules.rules)} ({sum(r.enabled for r in rules.rules)} enabled), "
               f"{len(project.errors)} error(s)" + ("; run `run.py check`" if project.errors else ""))
    click.echo("")
    states = (State.PENDING, State.CLAIMED, State.SENDING)
    by_rule: dict[str, dict[str, int]] = {}
    for (rule_id, st), n in depth.items():
        by_rule.setdefault(rule_id, {})[st] = n
    click.echo(f"queue: {sum(depth.values())} messages waiting or in flight")
    if by_rule:
        click.echo(f"  {'rule':<28}" + "".join(f"{st:>10}" for st in states))
        for rule_id in sorted(by_rule):
            click.echo(f"  {rule_id:<28}" + "".join(f"{by_rule[rule_id].get(st, 0):>10}" for st in states))
    click.echo("")
    _upcoming_lines(upcoming, phones, now, when)
    click.echo("")
    click.echo(f"failures in the last 24 hours (latest {len(failures)}):")
    for f in failures:
        click.echo(f"  {when(f['time'])}  {f['rule_id']:<24} {f['customer_id']}  {f['reason']}: {f['detail']}")


def _daemon_lines(state: dict, when) -> None:
    """status: the daemon, its last reload and its health."""
    daemon = state.get("daemon")
    if daemon:
        since = datetime.fromisoformat(daemon["started_at"]) if daemon.get("started_at") else daemon["updated_at"]
        click.echo(f"daemon: {daemon['state']} (pid {daemon['pid']}, since {when(since)}"
                   f"{', HTTP ' + daemon['http'] if daemon.get('http') else ''})")
    else:
        click.echo("daemon: never started on this database")
    reload = state.get("last_reload")
    if reload:
        verdict = "ok" if reload["ok"] else f"REFUSED, {len(reload['errors'])} error(s); the last good version runs"
        click.echo(f"last reload: {when(reload['updated_at'])} {verdict}")
    if not daemon or daemon["state"] != "running":
        return
    errors, failing = daemon.get("rule_errors") or [], daemon.get("failing") or []
    if errors:
        click.echo(f"health: degraded: the rules running differ from the files on disk, {len(errors)} error(s):")
        for error in errors:
            click.echo(f"  {error}")
    if failing:
        click.echo("health: degraded: " + "; ".join(failing))
    if not errors and not failing:
        click.echo("health: ok")


def _upcoming_lines(upcoming: list[dict], phones: dict, now: datetime, when) -> None:
    """status: the next due messages, phones masked."""
    from engine.contacts import mask_phone

    click.echo(f"next due ({len(upcoming)}):")
    for m in upcoming:
        phone = f" ({mask_phone(phones[m['customer_id']])})" if phones.get(m["customer_id"]) else ""
        late = " LATE" if m["due_at"] < now - timedelta(minutes=1) else ""
        why = f" after {m['reason']}" if m["reason"] else ""
        click.echo(f"  {when(m['due_at'])}{late}  {m['rule_id']:<24} {m['channel']:<8} {m['customer_id']}{phone}{why}")

@main.command()
@click.argument("which", type=click.Choice(["rules", "config"]), default="rules")
def schema(which) -> None:
    """Print the JSON Schema of rules files, or of config.yaml (the project ships them as
    rules.schema.json and config.schema.json, for editors: see README "Editor support").

    \b
    Example:
      python run.py schema > rules.schema.json
      python run.py schema config > config.schema.json
    """
    if which == "config":
        from engine.config.schema import render_json_schema
    else:
        from engine.rules.schema import render_json_schema

    click.echo(render_json_schema(), nl=False)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
