"""The UCI example (examples/uci/) on real data: a year of a UK gift shop's invoices,
converted to canonical events and replayed through the real dry-run, sends exactly what
an independent SQL computation over the raw CSV says the three rules mean.

The SQL side does not reuse the converter's aggregation: the raw CSV lines go into
SQLite as the text they are, and invoices, skips, local time -> UTC (the UK's DST rule,
written in SQL), idle spells, first orders and cumulative spend are all computed in
SQL. It encodes the product's documented semantics:
- an order's time is its earliest event: here the invoice's earliest line;
- a due time is rounded up to the whole minute, and a message due at a moment is decided
  on the state before the events of that same moment (engine/dryrun.py: "a batch is cut
  before any event whose customer has a message that could be due by then"; the
  daemon-like stepper of test_dryrun dispatches a due time before an event at that time),
  so an order exactly at the 30- or 90-day moment does not cancel the letter;
- winback-90d: once per idle spell, i.e. per distinct order time L of a customer, at
  L + 90 x 24 h, unless the customer ordered again before that moment;
- honeymoon-30d: at the customer's first paid order + 30 x 24 h; cancelled when a second
  paid order (one in the same minute included) came before;
- tier-gold: the paid order that takes the customer's spend, all paid orders so far,
  from below the Gold threshold to at least it (in exact pennies);
- nothing after `until` happens: later events are not fed, later moments not reached."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import sqlite3
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.app import load_project
from engine.dryrun.replay import run_dry
from tests.conftest import ROOT

UCI = ROOT / "examples" / "uci"
CSV_NAME = Path("realdata") / "uci_online_retail" / "online_retail_II_year2009-2010_raw.csv.gz"
LONDON = ZoneInfo("Europe/London")
SAMPLE = 10  # customers whose id is a multiple of 10: about 420 customers, 1,900 orders
UNTILS = {
    # mid-data, in BST: later orders are cut off, spells and honeymoons still pending
    "2010-07-01": datetime(2010, 7, 1, 12, 0, tzinfo=LONDON),
    # the dry-run's default for the data: last order 2010-12-09 20:01 + 90 d + 1 d
    "2011-03-10": datetime(2011, 3, 10, 20, 1, tzinfo=timezone.utc),
}
RULES = ("winback-90d", "honeymoon-30d", "tier-gold")


def _converter():
    """examples/uci/make_events.py as a module (examples/ is not a package)."""
    name = "uci_make_events"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, UCI / "make_events.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


def _project():
    return load_project(UCI / "config.yaml", UCI / "rules", UCI / "templates")


def _gold_pence(project) -> int:
    gold = next(t for t in project.config.profile.tiers if t.name == "Gold")
    assert gold.min_orders == 0
    return round(gold.min_spent * 100)


# the SQL side ----------------------------------------------------------------------------
LOCAL_TO_UTC = """
    CAST(strftime('%s', {t}) AS INTEGER) - CASE
        WHEN {t} >= date(substr({t}, 1, 4) || '-03-25', 'weekday 0') || ' 02:00:00'
         AND {t} <  date(substr({t}, 1, 4) || '-10-25', 'weekday 0') || ' 02:00:00'
        THEN 3600 ELSE 0 END"""  # BST: last Sunday of March 01:00 UTC .. last Sunday of October 01:00 UTC


def load_raw_lines(path: Path) -> sqlite3.Connection:
    """The CSV's lines, every column as the text it is in the file."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE lines (invoice TEXT, stock_code TEXT, description TEXT, quantity TEXT, "
                 "invoice_date TEXT, price TEXT, customer_id TEXT, country TEXT)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        conn.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?, ?)", reader)
    return conn


def build_invoices(conn: sqlite3.Connection, sample: int | None) -> None:
    """invoices: one row per invoice of the sample, with its skip reason (NULL for an
    order), its time (epoch seconds, UTC) and its total in exact tenths of a penny."""
    n = int(sample or 1)
    conn.executescript(f"""
        DROP TABLE IF EXISTS invoices;
        CREATE TABLE invoices AS
        WITH grouped AS (
            SELECT invoice,
                   MIN(invoice_date) AS local_time,
                   MAX(customer_id) AS customer_id,
                   SUM(CAST(quantity AS INTEGER) * CAST(ROUND(CAST(price AS REAL) * 1000) AS INTEGER)) AS milli
            FROM lines
            WHERE (customer_id <> '' AND CAST(customer_id AS INTEGER) % {n} = 0)
               OR (customer_id = '' AND CAST(ltrim(invoice, 'CA') AS INTEGER) % {n} = 0)
            GROUP BY invoice)
        SELECT invoice,
               CASE WHEN customer_id = '' THEN NULL ELSE 'uci-' || CAST(customer_id AS INTEGER) END AS customer,
               local_time,
               {LOCAL_TO_UTC.format(t="local_time")} AS t,
               milli,
               (milli + 5) / 10 AS pence,
               CASE WHEN invoice LIKE 'C%' THEN 'cancellation'
                    WHEN invoice LIKE 'A%' THEN 'adjustment'
                    WHEN customer_id = '' THEN 'no_customer'
                    WHEN milli <= 0 THEN 'not_positive' END AS skip
        FROM grouped;
    """)


def sql_expected(conn: sqlite3.Connection, until: datetime, gold_pence: int) -> Counter:
    """(rule, outcome, customer, epoch of the decision) of every decision the three
    rules must make by `until`: every send, and the honeymoon letters cancelled."""
    params = {"until": int(until.timestamp()), "gold": gold_pence, "d30": 30 * 86400, "d90": 90 * 86400}
    winback = """
        WITH seen AS (SELECT DISTINCT customer, t FROM invoices WHERE skip IS NULL AND t <= :until),
             spells AS (SELECT customer, t, LEAD(t) OVER (PARTITION BY customer ORDER BY t) AS next_t FROM seen),
             moments AS (SELECT customer, (t + :d90 + 59) / 60 * 60 AS moment, next_t FROM spells)
        SELECT 'winback-90d', 'sent', customer, moment FROM moments
        WHERE moment <= :until AND (next_t IS NULL OR next_t >= moment)"""
    honeymoon = """
        WITH seen AS (SELECT customer, t, invoice FROM invoices WHERE skip IS NULL AND t <= :until),
             ranked AS (SELECT customer, t,
                               ROW_NUMBER() OVER (PARTITION BY customer ORDER BY t, invoice) AS n,
                               LEAD(t) OVER (PARTITION BY customer ORDER BY t, invoice) AS second_t FROM seen),
             firsts AS (SELECT customer, (t + :d30 + 59) / 60 * 60 AS due, second_t FROM ranked WHERE n = 1)
        SELECT 'honeymoon-30d', CASE WHEN second_t IS NULL OR second_t >= due THEN 'sent' ELSE 'cancelled' END,
               customer, due FROM firsts
        WHERE due <= :until"""
    gold = """
        WITH seen AS (SELECT customer, t, invoice, pence FROM invoices WHERE skip IS NULL AND t <= :until),
             running AS (SELECT customer, t, pence,
                                SUM(pence) OVER (PARTITION BY customer ORDER BY t, invoice
                                                 ROWS UNBOUNDED PRECEDING) AS spent FROM seen)
        SELECT 'tier-gold', 'sent', customer, t FROM running WHERE spent >= :gold AND spent - pence < :gold"""
    out: Counter = Counter()
    for query in (winback, honeymoon, gold):
        out.update(tuple(row) for row in conn.execute(query, params))
    return out


# the engine side -------------------------------------------------------------------------
def engine_decisions(decisions: list[dict]) -> Counter:
    """The dry-run's decisions in the form of sql_expected (winback cancellations left out:
    whether an order in the last hour before the moment cancels a letter already queued
    or prevents it from being queued depends on when the sweep ran, not on the rule)."""
    out: Counter = Counter()
    for d in decisions:
        if d["outcome"] == "cancelled" and d["rule_id"] == "winback-90d":
            continue
        out[(d["rule_id"], d["outcome"], d["customer_id"], int(d["time"].timestamp()))] += 1
    return out


def per_rule(decisions: Counter) -> dict[str, int]:
    counts = Counter()
    for (rule, outcome, _, _), n in decisions.items():
        counts[f"{rule} {outcome}"] += n
    return dict(sorted(counts.items()))


def dry_run(events: Path, until: datetime):
    lines = list(enumerate(events.read_text(encoding="utf-8").splitlines(), start=1))
    return run_dry(_project(), lines, until=until)


# the real data, computed once per session ------------------------------------------------
class _Sample:
    """The sample's invoices (converter), events file, raw-line database and dry-runs,
    each made on first use."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._invoices = self._conn = self._events = None
        self._runs: dict[datetime, object] = {}

    def invoices(self, csv_path: Path) -> list:
        if self._invoices is None:
            self._invoices = _converter().read_invoices(csv_path, SAMPLE)
        return self._invoices

    def events(self, csv_path: Path) -> Path:
        if self._events is None:
            self._events = self.folder / "events.jsonl"
            _converter().write_events(self.invoices(csv_path), self._events)
        return self._events

    def sql(self, csv_path: Path) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = load_raw_lines(csv_path)
            build_invoices(self._conn, SAMPLE)
        return self._conn

    def run(self, csv_path: Path, until: datetime):
        if until not in self._runs:
            self._runs[until] = dry_run(self.events(csv_path), until)
        return self._runs[until]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return _Sample(tmp_path_factory.mktemp("uci"))


@pytest.fixture
def csv_path(shared_dir):
    return shared_dir / CSV_NAME


def test_the_example_rules_check_clean():
    project = _project()
    assert [str(p) for p in project.problems] == []
    assert [r.id for r in project.rules.rules] == list(RULES)


@pytest.mark.parametrize("until", list(UNTILS.values()), ids=list(UNTILS))
def test_dry_run_sends_what_sql_over_the_raw_lines_says(sample, csv_path, until):
    result = sample.run(csv_path, until)
    got = engine_decisions(result.decisions)
    want = sql_expected(sample.sql(csv_path), until, _gold_pence(_project()))
    assert per_rule(got) == per_rule(want)
    assert sorted(got - want) == [] and sorted(want - got) == []
    assert {d["outcome"] for d in result.decisions} <= {"sent", "cancelled"}  # no failures, no limits
    assert all(per_rule(want).get(f"{rule} sent", 0) >= 20 for rule in RULES)  # the sample exercises each rule


def test_converter_skips_what_its_docstring_says(sample, csv_path):
    invoices = sample.invoices(csv_path)
    conn = sample.sql(csv_path)
    got = Counter(i.skip or "order" for i in invoices)
    want = Counter(dict(conn.execute("SELECT COALESCE(skip, 'order'), COUNT(*) FROM invoices GROUP BY 1")))
    assert got == want
    assert got["cancellation"] > 0 and got["no_customer"] > 0
    assert set(got) <= {"order", *_converter().SKIP_REASONS}


def test_events_are_the_orders_sql_finds(sample, csv_path):
    events = [json.loads(line) for line in sample.events(csv_path).read_text(encoding="utf-8").splitlines()]
    created = {e["order"]["id"]: e for e in events if e["type"] == "order.created"}
    paid = {e["order"]["id"]: e for e in events if e["type"] == "order.paid"}
    got = {order: (e["customer"]["id"], round(e["order"]["amount"] * 100),
                   int(datetime.fromisoformat(e["time"]).timestamp())) for order, e in created.items()}
    want = {invoice: (customer, pence, t) for invoice, customer, pence, t in
            sample.sql(csv_path).execute("SELECT invoice, customer, pence, t FROM invoices WHERE skip IS NULL")}
    assert got == want
    assert set(paid) == set(created) and all(paid[o]["time"] == created[o]["time"] for o in paid)
    assert len({e["id"] for e in events}) == len(events) == 2 * len(want)
    times = [datetime.fromisoformat(e["time"]) for e in events]
    assert times == sorted(times)


# the edge cases, on a small hand-made file in the same format -----------------------------
def _csv(path: Path, rows: list[tuple]) -> Path:
    """rows: (invoice, sku, description, quantity, local time, price, customer id, country)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(_converter().COLUMNS)
        writer.writerows(rows)
    return path


UK = "United Kingdom"
EDGE_ROWS = [
    # 10001: two first orders in the same minute (one spell; the second cancels the
    # honeymoon); its 90 days cross the start of BST: the letter goes at 11:00 local
    ("700001", "85048", "GLASS BALL", 2, "2010-01-04 10:00:00", 5.0, 10001, UK),
    ("700002", "22041", "RECORD FRAME", 1, "2010-01-04 10:00:00", 20.0, 10001, UK),
    ("C700012", "22041", "RECORD FRAME", -1, "2010-01-05 10:00:00", 20.0, 10001, UK),  # cancellation
    # 10002: the second order exactly at the 30-day moment, the third exactly at the 90-day
    # moment of the second (10:00 BST = 09:00 UTC): neither cancels its letter
    ("700003", "21232", "TRINKET BOX", 40, "2010-02-01 09:00:00", 1.25, 10002, UK),
    ("700004", "21232", "TRINKET BOX", 40, "2010-03-03 09:00:00", 1.25, 10002, UK),
    ("700005", "84879", "BIRD ORNAMENT", 10, "2010-06-01 10:00:00", 0.195, 10002, UK),  # a price in tenths of pence
    ("700005", "POST", "POSTAGE", 1, "2010-06-01 10:00:00", 18.0, 10002, UK),
    # 10003: the second order one minute before the 30-day moment, the third one minute
    # before the 90-day moment of the second: both cancel
    ("700006", "21232", "TRINKET BOX", 24, "2010-02-01 12:00:00", 1.25, 10003, UK),
    ("700007", "21232", "TRINKET BOX", 24, "2010-03-03 11:59:00", 1.25, 10003, UK),
    ("700008", "21232", "TRINKET BOX", 24, "2010-06-01 12:58:00", 1.25, 10003, UK),
    # 10005: the first order alone reaches Gold; its lines are a minute apart and not
    # adjacent in the file (the order's time is the earliest line)
    ("700009", "22423", "CAKESTAND", 1, "2010-05-10 14:01:00", 750.0, 10005, UK),
    ("700013", "22423", "CAKESTAND", 5, "2010-05-10 14:00:00", 1.0, "", UK),  # no customer
    ("700009", "22423", "CAKESTAND", 1, "2010-05-10 14:00:00", 750.0, 10005, UK),
    ("A700014", "B", "Adjust bad debt", 1, "2010-05-11 14:00:00", 100.0, "", UK),  # adjustment
    ("700015", "TEST001", "This is a test product.", 5, "2010-05-12 14:00:00", 0.0, 10009, UK),  # nothing bought
    # 10006: two orders in the same minute take the spend to exactly 1000.00
    ("700010", "22423", "CAKESTAND", 1, "2010-09-01 10:00:00", 600.0, 10006, UK),
    ("700011", "22423", "CAKESTAND", 1, "2010-09-01 10:00:00", 400.0, 10006, UK),
    # 10007: moments after `until` (and an order after it); 10008: only after it
    ("700016", "21232", "TRINKET BOX", 24, "2010-12-15 10:00:00", 1.25, 10007, UK),
    ("700017", "21232", "TRINKET BOX", 24, "2011-01-05 10:00:00", 1.25, 10007, UK),
    ("700018", "21232", "TRINKET BOX", 24, "2011-01-10 10:00:00", 1.25, 10008, UK),
]
EDGE_UNTIL = datetime(2010, 12, 31, 0, 0, tzinfo=LONDON)
EDGE_EXPECTED = {  # (rule, outcome, customer, time in UTC), worked out by hand from the rows above
    ("winback-90d", "sent", "uci-10001", "2010-04-04T10:00"),
    ("winback-90d", "sent", "uci-10002", "2010-06-01T09:00"),
    ("winback-90d", "sent", "uci-10002", "2010-08-30T09:00"),
    ("winback-90d", "sent", "uci-10003", "2010-08-30T11:58"),
    ("winback-90d", "sent", "uci-10005", "2010-08-08T13:00"),
    ("winback-90d", "sent", "uci-10006", "2010-11-30T09:00"),
    ("honeymoon-30d", "cancelled", "uci-10001", "2010-02-03T10:00"),
    ("honeymoon-30d", "sent", "uci-10002", "2010-03-03T09:00"),
    ("honeymoon-30d", "cancelled", "uci-10003", "2010-03-03T12:00"),
    ("honeymoon-30d", "sent", "uci-10005", "2010-06-09T13:00"),
    ("honeymoon-30d", "cancelled", "uci-10006", "2010-10-01T09:00"),
    ("tier-gold", "sent", "uci-10005", "2010-05-10T13:00"),
    ("tier-gold", "sent", "uci-10006", "2010-09-01T09:00"),
}


def _readable(decisions: Counter) -> set[tuple]:
    return {(rule, outcome, customer, datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M"))
            for rule, outcome, customer, t in decisions}


def _edge_case(tmp_path: Path, rows: list[tuple], until: datetime) -> tuple[Counter, Counter, sqlite3.Connection]:
    raw = _csv(tmp_path / "edge.csv", rows)
    events = tmp_path / "edge.jsonl"
    assert _converter().main(["--csv", str(raw), "--out", str(events)]) == 0
    conn = load_raw_lines(raw)
    build_invoices(conn, None)
    got = engine_decisions(dry_run(events, until).decisions)
    return got, sql_expected(conn, until, _gold_pence(_project())), conn


def test_edge_cases_the_sql_and_the_dry_run_agree_on(tmp_path):
    got, want, conn = _edge_case(tmp_path, EDGE_ROWS, EDGE_UNTIL)
    assert _readable(want) == EDGE_EXPECTED  # the SQL says what the semantics say
    assert got == want
    skips = dict(conn.execute("SELECT skip, COUNT(*) FROM invoices WHERE skip IS NOT NULL GROUP BY skip"))
    assert skips == {"cancellation": 1, "adjustment": 1, "no_customer": 1, "not_positive": 1}
    assert Counter(i.skip for i in _converter().read_invoices(tmp_path / "edge.csv") if i.skip) == skips


FLOAT_SPEND = {
    # £1,000.00 in three orders; as floats 477.39 + 321.94 + 200.67 = 999.9999999999999: never Gold
    "reaches-exactly": ([477.39, 321.94, 200.67], ["2010-06-01T09:00"]),
    # Gold at exactly £1,000.00; the next order's tier_before, (1000.0 + 24.07) - 24.07 =
    # 999.9999999999999, is Silver: a second "welcome to Gold"
    "already-exactly": ([600.0, 400.0, 24.07], ["2010-05-01T09:00"]),
}


@pytest.mark.parametrize("amounts, gold_at", list(FLOAT_SPEND.values()), ids=list(FLOAT_SPEND))
def test_a_spend_of_exactly_the_gold_threshold_is_gold(tmp_path, amounts, gold_at):
    rows = [(f"70010{i}", "22423", "CAKESTAND", 1, f"2010-0{4 + i}-01 10:00:00", amount, 10004, UK)
            for i, amount in enumerate(amounts)]
    got, want, _ = _edge_case(tmp_path, rows, datetime(2010, 6, 2, tzinfo=LONDON))
    assert sorted(t for rule, _, _, t in _readable(want) if rule == "tier-gold") == gold_at
    assert got == want
