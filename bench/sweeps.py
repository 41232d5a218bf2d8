"""Benchmark the calendar sweeps over a large customer table (issue 4: 5,000,000
customers; target under 0.5 s for an indexed daily sweep that selects ~1/365 of them and
enqueues their messages). See bench/README.md.

    python bench/sweeps.py --customers 5000000 --db sqlite
    python bench/sweeps.py --customers 5000000 --db postgresql
    python bench/sweeps.py --customers 200000 --broadcast      # also the broadcast sweep
    python bench/sweeps.py --db sqlite --keep DIR --reuse      # again on the file a run left in DIR

The customer table is written directly (a bulk load, not events: ingesting 5M customers'
orders would be a different benchmark): last order times spread evenly over the year
before the sweep day and a birthday for 98% of the customers (so that a daily sweep
selects ~1/365 of them, as the target says), order counts and spend.
Then, per kind, the sweep covering one whole day (as after a day of downtime, the
longest catch-up a daily check sees) is run through the engine's Sweeper on three
different days, and the bare indexed query is timed alone for comparison:
- idle: `when: {idle: 90d}`, customers whose last order fell in one day 90 days ago;
- birthday: `when: {birthday: -3d, at: "10:00"}`, the birthday_md index;
- broadcast (with --broadcast): `when: {date: ..}` with `if: customer.rfm.frequency >= 3`,
  every customer read a page at a time and the condition evaluated in Python."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (puts the project root on sys.path)
from sqlalchemy import text  # noqa: E402

from engine.rules.loader import load_rules  # noqa: E402
from engine.rules.templates import Templates  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.tables import encode_time  # noqa: E402
from engine.triggers.sweeps import AHEAD, Sweeper  # noqa: E402

DAY = timedelta(days=1)
SWEEP_DAY = datetime(2026, 11, 20, 0, 30, tzinfo=timezone.utc)  # 08:30 in Shanghai
RULES = """\
rules:
  - id: winback-90d
    when: {{idle: 90d}}
    channel: sms
    template: winback_90d.sms.j2
  - id: birthday-coupon
    when: {{birthday: -3d, at: "10:00"}}
    channel: sms
    template: birthday.sms.j2
  - id: broadcast
    when: {{date: "{date}", at: "09:00"}}
    if: "customer.rfm.frequency >= 3"
    channel: sms
    template: member_day.sms.j2
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_customers(store: Store, count: int, seed: int, end: datetime) -> float:
    """Bulk-write `count` customers; returns seconds."""
    rng = random.Random(seed)
    span = int(timedelta(days=365).total_seconds())  # a daily idle sweep then selects ~1/365
    dialect = store.dialect
    began = time.perf_counter()

    def rows(start: int, stop: int):
        for i in range(start, stop):
            last = end - timedelta(seconds=rng.randrange(span))
            orders = 1 + int(rng.expovariate(0.5))
            birthday = None
            if rng.random() < 0.98:  # nearly everyone: a daily birthday sweep selects ~1/365
                birthday = f"{rng.randint(1960, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            yield (f"c{i:08d}", f"顾客{i}", f"13{i:09d}", birthday, "[]", "{}", "[]",
                   encode_time(last - timedelta(days=400), dialect), encode_time(last, dialect),
                   orders, round(orders * rng.uniform(30, 400), 2),
                   encode_time(last - timedelta(days=30 * (orders - 1)), dialect), encode_time(last, dialect),
                   birthday[5:] if birthday else None, json.dumps({"skus": ["SB-01"]}))

    columns = ("id, name, phone, birthday, tags, attrs, opted_out, first_seen_at, updated_at, order_count, spent, "
               "first_order_at, last_order_at, birthday_md, stats")
    chunk = 100_000
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if dialect == "postgresql":
            for start in range(0, count, chunk):
                with cursor.copy(f"COPY customers ({columns}) FROM STDIN") as copy:
                    for row in rows(start, min(count, start + chunk)):
                        copy.write_row(row)
                raw.commit()
                log(f"  {min(count, start + chunk):,} customers")
        else:
            marks = ", ".join("?" * 15)
            for start in range(0, count, chunk):
                cursor.executemany(f"INSERT INTO customers ({columns}) VALUES ({marks})",
                                   rows(start, min(count, start + chunk)))
                raw.commit()
                if (start // chunk) % 10 == 9:
                    log(f"  {min(count, start + chunk):,} customers")
        if dialect == "postgresql":
            # the steady state of a live table, which autovacuum keeps: statistics and the
            # visibility map (without it an index-only scan still reads every row's page)
            raw.commit()
            driver = raw.driver_connection
            driver.autocommit = True
            driver.execute("VACUUM ANALYZE customers")
            driver.autocommit = False
        else:
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - began


def set_swept(store: Store, until: dict[str, datetime], now: datetime) -> None:
    for rule_id, value in until.items():
        store.write_sweep(rule_id, value, now, [], [], 0.0)


def bare_idle_query(store: Store, lo: datetime, hi: datetime) -> tuple[int, float]:
    p = ":lo", ":hi"
    began = time.perf_counter()
    with store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id, last_order_at FROM customers WHERE last_order_at > {p[0]} "
                                 f"AND last_order_at <= {p[1]}"),
                            {"lo": encode_time(lo, store.dialect), "hi": encode_time(hi, store.dialect)}).fetchall()
    return len(rows), time.perf_counter() - began


def run(db: str, count: int, seed: int, broadcast: bool, keep: Path | None, reuse: bool = False) -> dict:
    result = {"db": db, "customers": count}
    with tempfile.TemporaryDirectory(prefix="sweeps-bench-") as tmp:
        tmp = Path(tmp)
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        (rules_dir / "bench.yaml").write_text(RULES.format(date=SWEEP_DAY.strftime("%m-%d")), encoding="utf-8")
        project = common.shipped_project()
        templates = Templates(common.ROOT / "templates", project.config.timezone, project.config.shop)
        ruleset = load_rules(rules_dir, templates, project.config.channels.keys())
        assert not ruleset.errors, ruleset.errors
        if db == "postgresql":
            context = common.pg_database()
            url = context.__enter__()
        else:
            path = (keep or tmp) / f"sweeps-{count}.db"
            reusing = reuse and path.exists()
            url, context = (f"sqlite:///{path}" if reusing else common.sqlite_url(path)), None
        try:
            if db == "sqlite" and reusing:
                log(f"{db}: reusing {path} (its customers; earlier messages and sweeps deleted) ...")
                store = Store(url)  # brings the schema and indexes up to date
                with store.engine.begin() as conn:
                    conn.exec_driver_sql("DELETE FROM messages")
                    conn.exec_driver_sql("DELETE FROM sweeps")
                    conn.exec_driver_sql("ANALYZE")
            else:
                store = Store(url)
                log(f"{db}: loading {count:,} customers ...")
                result["load_seconds"] = round(load_customers(store, count, seed, SWEEP_DAY), 1)
                log(f"  loaded in {result['load_seconds']} s")
            sweeper = Sweeper(store, lambda: ruleset, project.config.timezone, project.config.shop,
                              project.config.profile)
            everyone = ("winback-90d", "birthday-coupon", "broadcast")
            for kind in ("winback-90d", "birthday-coupon"):
                seconds, enqueued, bare = [], [], []
                for rep in range(3):
                    now = SWEEP_DAY - rep * DAY
                    end = now + AHEAD
                    # this rule looks back one whole day; the others are up to date
                    set_swept(store, {r: (end - DAY if r == kind else end) for r in everyone}, now)
                    if kind == "winback-90d":
                        n, t = bare_idle_query(store, end - DAY - timedelta(days=90), end - timedelta(days=90))
                        bare.append(t)
                    began = time.perf_counter()
                    report = sweeper.run(now)
                    seconds.append(time.perf_counter() - began)
                    enqueued.append(report.enqueued.get(kind, 0))
                result[kind] = {"seconds_median": round(statistics.median(seconds), 3),
                                "seconds": [round(s, 3) for s in seconds], "enqueued": enqueued,
                                "share": round(statistics.mean(enqueued) / count, 5)}
                if bare:
                    result[kind]["bare_query_seconds_median"] = round(statistics.median(bare), 3)
                log(f"  {kind}: {result[kind]}")
            if broadcast:
                now = SWEEP_DAY
                end = now + AHEAD
                set_swept(store, {r: (SWEEP_DAY - timedelta(hours=2) if r == "broadcast" else end)
                                  for r in everyone}, now)
                began = time.perf_counter()
                report = sweeper.run(now)
                seconds = time.perf_counter() - began
                result["broadcast"] = {"seconds": round(seconds, 2), "enqueued": report.enqueued.get("broadcast", 0),
                                       "customers_per_second": round(count / seconds)}
                log(f"  broadcast: {result['broadcast']}")
            store.close()
        finally:
            if context is not None:
                context.__exit__(None, None, None)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5_000_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--broadcast", action="store_true", help="also time the broadcast sweep (every customer)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="folder for the SQLite file (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: use the SQLite file an earlier run left there instead of loading again")
    args = parser.parse_args(argv)
    common.quiet()
    results = {"machine": common.machine(), "git": common.git_head(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": []}
    for db in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
        results["runs"].append(run(db, args.customers, args.seed, args.broadcast, args.keep, args.reuse))
    common.OUT.mkdir(exist_ok=True)
    out = common.OUT / f"sweeps-{args.customers}.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(results["runs"], indent=2))
    log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
