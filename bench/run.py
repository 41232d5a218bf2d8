"""Benchmark the engine with the shipped config.yaml, rules/ and templates/ (channels
bound to files under bench/out/), through its Python API. See bench/README.md.

    python bench/run.py                                   # everything, full size (long)
    python bench/run.py --events 10000 --customers 1000   # everything, small
    python bench/run.py --parts ingest,dispatch --db sqlite
    python bench/run.py --parts naive --naive-jobs 10000
    python bench/run.py --parts paced --paced-jobs 3000

Parts: ingest (ingest + match + enqueue), dispatch (needs ingest on the same database,
in the same run), dryrun (subprocess `run.py dry-run --json`, wall time and peak
memory), naive (APScheduler one-job-per-message vs. the engine, same burst, no channel
rate: the naive scheduler has none), burst (only the engine's side of that), paced (a
burst behind the shipped sms rate, 50/s: all sent, in N / rate, never more than the rate
in a second)
Figures go to stdout as a table and to bench/out/results.json (merged with what an
earlier run wrote there, part by part, unless --fresh)."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (puts the project root on sys.path)
import generate  # noqa: E402
import parts  # noqa: E402

PARTS = ("ingest", "dispatch", "dryrun", "naive", "burst", "paced")
TARGETS = {  # from issue 2, "Benchmark"
    "ingest_sqlite": 20_000,  # events/s
    "dispatch": 10_000,  # messages/s
    "naive_ratio": 50,  # x faster scheduling than the naive store, zero lost
    "dryrun_seconds": 90,
    "dryrun_mib": 1024,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def events_file(args) -> Path:
    if args.events_file:
        return args.events_file
    path = common.OUT / f"events-{args.customers}c-{args.events}e.jsonl"
    if not path.exists():
        log(f"generating {path.name} ...")
        summary = generate.generate(args.customers, args.events, path, args.seed)
        log(f"  {summary['events']:,} events, {summary['orders']:,} orders, {summary['first']} .. {summary['last']}")
    return path


def run_database(db: str, project, events, args, results: dict) -> None:
    want = set(args.parts)
    limit = args.pg_events if db == "postgresql" and args.pg_events else None
    subset = events[:limit] if limit else events
    outbox = common.OUT / f"outbox-{db}"

    def measure(url: str) -> None:
        log(f"{db}: ingest of {len(subset):,} events")
        engine, figures = parts.ingest(project, subset, url, outbox, log)
        section = {"url": url.split("@")[-1], "ingest": figures}
        log(f"{db}: ingest {figures['events_per_s']:,} events/s ({figures['messages_scheduled']:,} messages "
            f"scheduled in {figures['seconds']} s)")
        if "dispatch" in want:
            log(f"{db}: dispatch of {figures['messages_scheduled']:,} messages to files in {outbox}")
            section["dispatch"] = parts.dispatch(engine, project, subset, outbox)
            d = section["dispatch"]
            log(f"{db}: dispatch {d['messages_per_s']:,} messages/s ({d['handled']:,} in {d['seconds']} s: "
                f"{d['by_outcome']})")
        engine.close()
        results[db] = section

    if db == "sqlite":
        measure(common.sqlite_url(common.OUT / "bench-sqlite.db"))
    else:
        if common.pg_version(args.pg_admin_url) is None:
            log(f"postgresql: server not reachable at {args.pg_admin_url}; skipped")
            return
        with common.pg_database(args.pg_admin_url, common.PG_BENCH_DB, keep=args.keep_db) as url:
            measure(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the generated stream [1000000]")
    parser.add_argument("--customers", type=int, default=100_000, help="customers in the generated stream [100000]")
    parser.add_argument("--seed", type=int, default=1111, help="generator seed [1111]")
    parser.add_argument("--events-file", type=Path, help="use this JSON-lines file instead of generating one")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} [all]")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both",
                        help="database(s) for ingest and dispatch [both]")
    parser.add_argument("--pg-events", type=int, default=0,
                        help="PostgreSQL: only the first N events of the stream (0 = all) [0]")
    parser.add_argument("--pg-admin-url", default=common.PG_ADMIN_URL,
                        help=f"server where the scratch database {common.PG_BENCH_DB} is created and dropped "
                             f"[{common.PG_ADMIN_URL}]")
    parser.add_argument("--keep-db", action="store_true", help="keep the PostgreSQL scratch database")
    parser.add_argument("--dryrun-timeout", type=float, default=1800.0,
                        help="kill the dry-run subprocess after this many seconds [1800]")
    parser.add_argument("--naive-jobs", type=int, default=100_000, help="messages in the naive burst [100000]")
    parser.add_argument("--naive-window", type=float, default=60.0,
                        help="seconds over which the burst's due times are spread [60]")
    parser.add_argument("--naive-timeout", type=float, default=900.0,
                        help="stop waiting this many seconds after the burst window [900]")
    parser.add_argument("--burst-rate", default="off",
                        help="the engine's sms rate in the naive comparison: off, config, or like 2000/s [off]")
    parser.add_argument("--paced-jobs", type=int, default=6000,
                        help="messages in the paced burst, all due within 10 s, behind the shipped sms rate [6000]")
    parser.add_argument("--workdir", type=Path, default=common.OUT,
                        help="where databases, outboxes, generated streams and results go; give each "
                             "concurrent run its own (files of the same name are replaced) [bench/out]")
    parser.add_argument("--results", type=Path, help="[WORKDIR/results.json]")
    parser.add_argument("--fresh", action="store_true", help="do not merge with an existing results file")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if "dispatch" in args.parts and "ingest" not in args.parts:
        args.parts.append("ingest")  # dispatch works off what ingest scheduled

    common.OUT = parts.OUT = args.workdir.resolve()
    args.results = args.results or common.OUT / "results.json"
    common.quiet()
    common.OUT.mkdir(parents=True, exist_ok=True)
    results = {} if args.fresh or not args.results.exists() else json.loads(args.results.read_text())
    results["machine"] = common.machine()
    results["machine"]["git_head"] = common.git_head()
    project = common.shipped_project()

    if {"ingest", "dryrun"} & set(args.parts):
        path = events_file(args)
        results["stream"] = {"file": str(path.relative_to(common.ROOT) if path.is_relative_to(common.ROOT) else path),
                             "lines": common.count_lines(path), "customers": args.customers,
                             "seed": args.seed}
    if "ingest" in args.parts:
        log(f"parsing {path.name} ...")
        events, figures = parts.parse(project, path)
        results["parse"] = figures
        log(f"parse: {figures['events_per_s']:,} events/s ({figures['events']:,} events, "
            f"{figures['rejected']} rejected)")
        for db in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
            run_database(db, project, events, args, results)
            save(args.results, results)
            gc.collect()
        del events
        gc.collect()
    if "dryrun" in args.parts:
        log("dry-run of the whole stream ...")
        results["dryrun"] = parts.dry_run(path, args.dryrun_timeout, log)
        d = results["dryrun"]
        log(f"dry-run: {d['seconds']} s, peak {d['peak_rss_mib']} MiB, exit {d['exit_code']}"
            + (" (killed: timed out)" if d["timed_out"] else ""))
        save(args.results, results)
    if "naive" in args.parts:
        import naive

        n, window = args.naive_jobs, args.naive_window
        log(f"engine: burst of {n:,} delayed messages due over {window:.0f} s")
        eng = parts.engine_burst(common.shipped_project(), n, window, args.naive_timeout,
                                 common.OUT / "burst-engine.db", common.OUT / "outbox-burst", log, args.burst_rate)
        log(f"engine: {eng['schedule_rate']:,} messages/s scheduled, {eng['sent']:,} sent, {eng['lost']} lost")
        nv = naive.run(common.OUT / "burst-naive.db", n, window, args.naive_timeout, log)
        log(f"naive: {nv['add_rate']:,} jobs/s added; {nv['executed']:,} ran, {nv['missed']:,} missed")
        results["naive"] = {"engine": eng, "apscheduler": nv,
                            "schedule_speedup": round(eng["schedule_rate"] / nv["add_rate"], 1)}
    if "burst" in args.parts and "naive" not in args.parts:
        n, window = args.naive_jobs, args.naive_window
        log(f"engine: burst of {n:,} delayed messages due over {window:.0f} s")
        results["burst"] = parts.engine_burst(common.shipped_project(), n, window, args.naive_timeout,
                                              common.OUT / "burst-engine.db", common.OUT / "outbox-burst", log,
                                              args.burst_rate)
        b = results["burst"]
        log(f"engine: {b['sent']:,} sent, {b['lost']} lost; lateness {b['lateness_s']}")
        save(args.results, results)
    if "paced" in args.parts:
        n = args.paced_jobs
        log(f"engine: burst of {n:,} messages due within 10 s behind the shipped sms rate")
        results["paced"] = parts.engine_burst(common.shipped_project(), n, 10.0, args.naive_timeout + n / 10,
                                              common.OUT / "burst-paced.db", common.OUT / "outbox-paced", log,
                                              "config")
        p = results["paced"]
        log(f"engine: {p['sent']:,} sent, {p['lost']} lost in {p['send_span_s']} s; at most "
            f"{p['most_sent_in_one_second']} in one second (rate {p['sms_rate']})")
        save(args.results, results)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save(args.results, results)
    print(table(results))
    log(f"results written to {args.results}")
    if "naive" in args.parts and results["naive"]["apscheduler"]["timed_out"]:
        import os

        sys.stdout.flush()
        os._exit(0)  # the naive scheduler's thread is still working off its backlog: do not wait for it
    return 0


def save(path: Path, results: dict) -> None:
    """Written after every part, so a long run stopped half-way keeps what it measured."""
    path.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def table(results: dict) -> str:
    """The figures against the targets, one row each."""
    rows: list[tuple[str, str, str, str]] = []

    def add(name, value, target="", met=None):
        rows.append((name, value, target, "" if met is None else ("met" if met else "NOT met")))

    if "parse" in results:
        add("parse + validate (events/s)", f"{results['parse']['events_per_s']:,}")
    for db in ("sqlite", "postgresql"):
        section = results.get(db)
        if not section:
            continue
        ing = section["ingest"]
        target = TARGETS["ingest_sqlite"] if db == "sqlite" else None
        add(f"{db}: ingest+match+enqueue (events/s, {ing['events']:,} events)", f"{ing['events_per_s']:,}",
            f">= {target:,}" if target else "", ing["events_per_s"] >= target if target else None)
        add(f"{db}: messages scheduled by ingest (messages/s)", f"{ing['messages_per_s']:,}")
        if "dispatch" in section:
            d = section["dispatch"]
            add(f"{db}: dispatch, all outcomes (messages/s, {d['handled']:,} messages)", f"{d['messages_per_s']:,}",
                f">= {TARGETS['dispatch']:,}", d["messages_per_s"] >= TARGETS["dispatch"])
            add(f"{db}: dispatch, sent to file (messages/s)", f"{d['sent_per_s']:,}")
    if "dryrun" in results:
        d = results["dryrun"]
        add("dry-run of the whole stream (s)", (">" if d.get("timed_out") else "") + f"{d['seconds']}",
            f"< {TARGETS['dryrun_seconds']}",
            d["seconds"] < TARGETS["dryrun_seconds"] and d["exit_code"] == 0 and not d.get("timed_out"))
        add("dry-run peak memory (MiB)", (">=" if d.get("timed_out") else "") + f"{d['peak_rss_mib']:,}",
            f"< {TARGETS['dryrun_mib']:,}",
            d["peak_rss_mib"] < TARGETS["dryrun_mib"])
    if "naive" in results:
        e, n = results["naive"]["engine"], results["naive"]["apscheduler"]
        add(f"naive APScheduler: jobs added/s ({n['jobs']:,} jobs)", f"{n['add_rate']:,}")
        add(f"naive APScheduler: ran / missed / not run (burst over {n['window_s']:.0f} s)",
            f"{n['executed']:,} / {n['missed']:,} / {n['not_processed']:,}")
        add("engine: delayed messages scheduled/s", f"{e['schedule_rate']:,}")
        add("engine: sent / lost (same burst, real time)", f"{e['sent']:,} / {e['lost']:,}")
        if e.get("lateness_s"):
            add("engine: lateness of that burst p50 / p99 (s)", f"{e['lateness_s']['p50']} / {e['lateness_s']['p99']}")
        add("scheduling speed-up, engine vs naive", f"{results['naive']['schedule_speedup']}x",
            f">= {TARGETS['naive_ratio']}x, 0 lost",
            results["naive"]["schedule_speedup"] >= TARGETS["naive_ratio"] and e["lost"] == 0)
    if "burst" in results:
        b = results["burst"]
        add(f"engine: sent / lost ({b['jobs']:,} due over {b['window_s']:.0f} s, real time)",
            f"{b['sent']:,} / {b['lost']:,}", "0 lost", b["lost"] == 0)
        if b.get("lateness_s"):
            add("engine: lateness of that burst p50 / p99 (s)", f"{b['lateness_s']['p50']} / {b['lateness_s']['p99']}")
    if "paced" in results:
        p = results["paced"]
        add(f"paced burst: sent / lost ({p['jobs']:,} due within {p['window_s']:.0f} s, rate {p['sms_rate']})",
            f"{p['sent']:,} / {p['lost']:,}", "0 lost", p["lost"] == 0)
        count, per = p["sms_rate"].split("/") if p["sms_rate"] else ("0", "s")
        expected = p["jobs"] / int(count) if per == "s" else None
        add("paced burst: first to last send (s)", f"{p['send_span_s']}",
            f"about {expected:.0f}" if expected else "")
        add("paced burst: most sent in any one second", f"{p['most_sent_in_one_second']}",
            f"<= {count}" if per == "s" else "", p["most_sent_in_one_second"] <= int(count) if per == "s" else None)
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "target", "")]) for i in range(4)]
    lines = [f"{'figure':<{widths[0]}}  {'value':>{widths[1]}}  {'target':<{widths[2]}}  ",
             "-" * (sum(widths) + 6)]
    lines += [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows]
    m = results.get("machine", {})
    lines.append(f"machine: {m.get('nproc')} x {m.get('cpu')}, {m.get('ram_gib')} GiB, Python {m.get('python')}, "
                 f"SQLite {m.get('sqlite')}, PostgreSQL {m.get('postgresql')}, {m.get('date')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
