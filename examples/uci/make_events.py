"""Convert the UCI "Online Retail II" invoice lines (sheet Year 2009-2010) into
canonical events, to run the engine's rules on a real shop's order history.

Data: Chen, D. (2012). Online Retail II. UCI Machine Learning Repository, CC BY 4.0.
A UK online gift shop, Dec 2009 - Dec 2010, 525,461 invoice lines with the columns
Invoice, StockCode, Description, Quantity, InvoiceDate, Price, Customer ID, Country.
The file lives outside the repository (../shared/realdata/, see SOURCES.md there);
only this script and the rules that read its output are kept here.

What is mapped. One invoice = one order, with two events at the invoice's time:
`order.created` (the whole order) and `order.paid` (ids and amount). The data has no
payment step, and an online shop's invoice is written when the order is paid, so both
happen at once; `order.paid` is what makes the invoice count for the customer's profile
(customer.orders, customer.spent, customer.tier).
- time: the InvoiceDate, the shop's local time, written with its Europe/London offset
  (GMT or BST) so the file means the same whatever config reads it. 41 invoices have lines
  in two consecutive minutes; the order's time is the earliest.
- order.id: the invoice number; order.amount: the sum of Quantity x Price over all the
  invoice's lines, the non-product ones included (POST postage, M manual, C2 carriage,
  BANK CHARGES, ...: they are what the customer paid), computed exactly (14 lines have
  prices in tenths of a penny) and rounded to pennies.
- order.items: [{sku: StockCode, name: Description (stripped), qty, price}], the first
  MAX_ITEMS lines in file order only (some invoices have hundreds of lines; the rules
  here do not read items, and a full list would make events of tens of kilobytes);
  order.item_lines holds the invoice's real number of lines.
- customer: {id: "uci-<Customer ID>", country: Country}. The data holds no names or
  addresses, so the example's email channel is addressed by customer id.
- event ids: "uci-<invoice>-created" / "uci-<invoice>-paid": unique and the same on
  every run. Events are written in time order (ties: by invoice number, created first).

What is skipped, one reason per invoice, checked in this order:
- `cancellation`: invoice numbers starting with 'C' (10,206 lines). They cancel (part
  of) earlier invoices, but not as whole orders: the cancelled lines name no original
  invoice, so they cannot be turned into order.refunded events of a known order. The
  invoices they cancel stay counted as paid orders (customer.spent is the gross spend).
- `adjustment`: invoice numbers starting with 'A' ("Adjust bad debt", 3 lines): book-
  keeping, no customer.
- `no_customer`: no Customer ID (107,927 lines): no one to write to, no profile to
  build, and no way to tell two such buyers apart.
- `not_positive`: a customer's invoice totalling zero or less: nothing was bought (in
  this file: two invoices of a test product at price 0).

Run: python examples/uci/make_events.py [--csv FILE] [--out FILE] [--sample N]
--sample N keeps the customers whose id is a multiple of N (all their invoices, so
their history is complete) and, of the invoices without a customer, those whose number
is a multiple of N: a deterministic, smaller replica for tests."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Iterable, Iterator
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]  # the repository
DEFAULT_CSV = ROOT.parent / "shared" / "realdata" / "uci_online_retail" / "online_retail_II_year2009-2010_raw.csv.gz"
DEFAULT_OUT = Path(__file__).with_name("events.jsonl")
TZ = ZoneInfo("Europe/London")  # the shop's time zone (examples/uci/config.yaml)
MAX_ITEMS = 10
COLUMNS = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]
SKIP_REASONS = ("cancellation", "adjustment", "no_customer", "not_positive")


@dataclass
class Invoice:
    """One invoice, aggregated over its lines; `skip` is None for an order."""

    number: str
    time: datetime  # local time of its earliest line, aware (Europe/London)
    customer: int | None
    country: str
    total: Decimal = Decimal(0)
    lines: int = 0
    items: list[dict] = field(default_factory=list)
    skip: str | None = None

    @property
    def amount(self) -> float:
        return float(round(self.total, 2))

    @property
    def customer_id(self) -> str:
        return f"uci-{self.customer}"


def open_csv(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8", newline="") if path.suffix == ".gz" else \
        open(path, encoding="utf-8", newline="")


def customer_number(raw: str) -> int | None:
    """'13085' (or '13085.0', as a spreadsheet export writes it) -> 13085; '' -> None."""
    raw = raw.strip()
    return int(float(raw)) if raw else None


def local_time(raw: str) -> datetime:
    """'2009-12-01 07:45:00' in the shop's time zone. A time in the hour the clocks go back
    is read as the first of the two (BST), one in the skipped hour as GMT, as zoneinfo
    does; no line of the 2009-2010 file falls in either."""
    return datetime.fromisoformat(raw).replace(tzinfo=TZ)


def _sampled(number: str, customer: int | None, sample: int | None) -> bool:
    if sample is None:
        return True
    if customer is not None:
        return customer % sample == 0
    digits = "".join(ch for ch in number if ch.isdigit())
    return int(digits or 0) % sample == 0


def _skip_reason(invoice: Invoice) -> str | None:
    if invoice.number.startswith("C"):
        return "cancellation"
    if invoice.number.startswith("A"):
        return "adjustment"
    if invoice.customer is None:
        return "no_customer"
    if invoice.total <= 0:
        return "not_positive"
    return None


def read_invoices(path: Path, sample: int | None = None) -> list[Invoice]:
    """Every invoice of the file (of the sample), skipped ones included with their
    reason, in time order. Lines are streamed; only one aggregate per invoice is kept
    (an invoice's lines are not always adjacent in the file)."""
    invoices: dict[str, Invoice] = {}
    with open_csv(path) as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != COLUMNS:
            raise ValueError(f"{path}: unexpected columns {header}; expected {COLUMNS}")
        for number, sku, description, quantity, when, price, customer_raw, country in reader:
            customer = customer_number(customer_raw)
            if not _sampled(number, customer, sample):
                continue
            t = local_time(when)
            invoice = invoices.get(number)
            if invoice is None:
                invoice = invoices[number] = Invoice(number, t, customer, country)
            invoice.time = min(invoice.time, t)
            qty, unit = int(quantity), Decimal(price)
            invoice.total += qty * unit
            invoice.lines += 1
            if len(invoice.items) < MAX_ITEMS:
                invoice.items.append({"sku": sku, "name": description.strip(), "qty": qty, "price": float(unit)})
    out = list(invoices.values())
    for invoice in out:
        invoice.skip = _skip_reason(invoice)
    out.sort(key=lambda i: (i.time.timestamp(), i.number))
    return out


def to_events(invoices: Iterable[Invoice]) -> Iterator[dict]:
    """order.created and order.paid for each invoice that is an order, in time order."""
    for invoice in invoices:
        if invoice.skip is not None:
            continue
        when = invoice.time.isoformat()
        customer = invoice.customer_id
        yield {"id": f"uci-{invoice.number}-created", "type": "order.created", "time": when,
               "customer": {"id": customer, "country": invoice.country},
               "order": {"id": invoice.number, "amount": invoice.amount, "items": invoice.items,
                         "item_lines": invoice.lines}}
        yield {"id": f"uci-{invoice.number}-paid", "type": "order.paid", "time": when,
               "customer": {"id": customer}, "order": {"id": invoice.number, "amount": invoice.amount}}


def write_events(invoices: list[Invoice], out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as f:
        for event in to_events(invoices):
            f.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


def summary(invoices: list[Invoice]) -> dict:
    """What the conversion kept and skipped, for the command's report."""
    orders = [i for i in invoices if i.skip is None]
    skipped = Counter(i.skip for i in invoices if i.skip is not None)
    return {"invoices": len(invoices), "orders": len(orders), "customers": len({i.customer for i in orders}),
            "skipped": {reason: skipped.get(reason, 0) for reason in SKIP_REASONS},
            "first": orders[0].time.isoformat() if orders else None,
            "last": orders[-1].time.isoformat() if orders else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Example:\n  python examples/uci/make_events.py --sample 10 "
                                            "--out /tmp/uci-sample.jsonl")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV,
                        help="the raw CSV (.csv or .csv.gz) [default: ../shared/realdata/uci_online_retail/...]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="events file to write [default: examples/uci/events.jsonl, git-ignored]")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="keep only customers whose id is a multiple of N (deterministic sample)")
    args = parser.parse_args(argv)
    if args.sample is not None and args.sample < 1:
        parser.error("--sample must be a positive whole number")
    if not args.csv.is_file():
        print(f"cannot read {args.csv}: no such file (the data lives in ../shared/realdata/)", file=sys.stderr)
        return 2
    began = time.perf_counter()
    invoices = read_invoices(args.csv, args.sample)
    events = write_events(invoices, args.out)
    info = summary(invoices)
    skipped = ", ".join(f"{reason} {n}" for reason, n in info["skipped"].items())
    print(f"{args.out}: {events} events from {info['orders']} orders of {info['customers']} customers, "
          f"{info['first']} .. {info['last']}; {info['invoices']} invoices read, skipped: {skipped} "
          f"({time.perf_counter() - began:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
