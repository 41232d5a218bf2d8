"""Generate a Double-11-like stream of canonical events for the benchmark.

Deterministic (fixed seed): the same flags always give the same file, byte for byte.

    python bench/generate.py                              # 100k customers, ~1M events
    python bench/generate.py --customers 1000 --events 10000 --out bench/out/events-10k.jsonl

Shape of the stream (times in Asia/Shanghai, +08:00):
- orders are created over 2026-11-01 .. 11-14: a pre-sale phase (11-01 .. 11-10, busy
  evenings), the Double-11 peak (about 45% of all orders in the first three hours of
  11-11, decaying from midnight), the rest of 11-11, and a tail of three days;
- each order: order.created (full customer profile on the customer's first event,
  amount and items) → order.paid (88%; most within minutes, a tail up to a day, some
  after the 30-minute payment reminder) or, unpaid, order.closed (buyer cancels within
  two hours, or the platform closes it after 24 h) → order.shipped (Double-11 backlog:
  hours to days; carrier and tracking number) → order.signed (1-4 days later; 2% of
  parcels never signed within the stream) → order.reviewed (35% of signed orders, days
  later; good 88% / neutral 7% / bad 5%);
- 3% of customers have no phone number (the SMS channel reports `no_contact`), 15%
  have an e-mail address; orders per customer are skewed (most buy once or twice).

Lines are written in time order (the order a live feed delivers them), one JSON object
per line. Events per order average about 4.0, so --events / 4.0 orders are spread over
--customers customers.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

TZ = timezone(timedelta(hours=8))
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out" / "events.jsonl"
EVENTS_PER_ORDER = 4.03  # measured mean of the lifecycle below (used to size the order count)

PRESALE_START = datetime(2026, 11, 1, tzinfo=TZ)
PEAK = datetime(2026, 11, 11, tzinfo=TZ)
TAIL_END = datetime(2026, 11, 15, tzinfo=TZ)

SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = ["小明", "丽", "伟", "芳", "静", "强", "磊", "洋", "敏", "军", "婷", "杰", "娜", "涛", "超", "秀英", "桂兰",
         "建华", "晓东", "佳怡", "子涵", "浩然", "雨桐", "思远"]
PRODUCTS = [
    ("SB-01", "羽绒睡袋", "outdoor", 399.0), ("TN-02", "双人帐篷", "outdoor", 699.0),
    ("JK-03", "冲锋衣", "apparel", 459.0), ("BT-04", "登山鞋", "shoes", 529.0),
    ("LP-05", "头灯", "gear", 89.0), ("CP-06", "防潮垫", "outdoor", 59.0),
    ("MG-07", "钛水杯", "gear", 129.0), ("SK-08", "速干袜", "apparel", 15.0),
    ("GL-09", "抓绒手套", "apparel", 39.0), ("TP-10", "登山杖", "gear", 169.0),
    ("BP-11", "40L背包", "outdoor", 349.0), ("HT-12", "遮阳帽", "apparel", 19.9),
]
CARRIERS = [("顺丰速运", "SF"), ("中通快递", "ZT"), ("圆通速递", "YT"), ("韵达快递", "YD"), ("京东物流", "JD")]
REVIEWS = {"good": ["很好用，发货快", "质量不错，包装很好", "第二次买了，放心", "物超所值"],
           "neutral": ["一般般", "还行吧，物流有点慢"],
           "bad": ["拉链坏了，客服不回复", "和描述不符", "等了一周才到"]}


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


class Generator:
    def __init__(self, customers: int, events: int, seed: int):
        self.rng = random.Random(seed)
        self.n_customers = customers
        self.n_orders = max(1, round(events / EVENTS_PER_ORDER))
        self.out: list[tuple[float, int, str]] = []  # (epoch seconds, sequence, line)
        self.seq = 0

    # ---- customers ------------------------------------------------------------------
    def customer(self, index: int) -> dict:
        rng = random.Random(index * 7919 + 17)  # profile depends only on the index
        cust = {"id": f"c-{index + 1:06d}", "name": rng.choice(SURNAMES) + rng.choice(GIVEN)}
        if rng.random() >= 0.03:
            cust["phone"] = f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}"
        if rng.random() < 0.15:
            cust["email"] = f"buyer{index + 1}@example.com"
        if rng.random() < 0.10:
            cust["tags"] = ["vip"]
        return cust

    def owner_of_orders(self) -> list[int]:
        """Customer index of every order: each customer at least one, the rest skewed."""
        owners = list(range(min(self.n_customers, self.n_orders)))
        extra = self.n_orders - len(owners)
        rng = self.rng
        for _ in range(extra):  # a Pareto-ish pick: a few loyal customers buy often
            owners.append(min(self.n_customers - 1, int(self.n_customers * (rng.random() ** 1.3))))
        rng.shuffle(owners)
        return owners

    # ---- time shape -----------------------------------------------------------------
    def created_at(self) -> datetime:
        rng = self.rng
        r = rng.random()
        if r < 0.45:  # the Double-11 peak: decaying from midnight (mean 30 min), within three hours
            minutes = min(-30.0 * math.log(1.0 - rng.random()), 179.9)
            return PEAK + timedelta(minutes=minutes)
        if r < 0.70:  # the rest of 11-11, busier in the evening
            return PEAK + timedelta(hours=2 + 22 * (rng.random() ** 0.7))
        if r < 0.90:  # pre-sale, 11-01 .. 11-10, with busy evenings
            day = rng.randrange(10)
            hour = rng.choice([9, 10, 11, 12, 13, 14, 15, 16, 19, 20, 20, 21, 21, 21, 22, 22, 23])
            return PRESALE_START + timedelta(days=day, hours=hour, seconds=rng.randrange(3600))
        return PEAK + timedelta(days=1, seconds=rng.randrange(3 * 86400))  # tail 11-12 .. 11-14

    def lognormal(self, median_s: float, sigma: float, low: float, high: float) -> timedelta:
        value = median_s * math.exp(sigma * self.rng.gauss(0.0, 1.0))
        return timedelta(seconds=min(max(value, low), high))

    # ---- events ---------------------------------------------------------------------
    def emit(self, etype: str, t: datetime, cust: dict, order: dict, data: dict | None = None) -> None:
        self.seq += 1
        event = {"id": f"e-{self.seq:08d}", "type": etype, "time": iso(t), "customer": cust, "order": order}
        if data:
            event["data"] = data
        self.out.append((t.timestamp(), self.seq, json.dumps(event, ensure_ascii=False)))

    def order(self, number: int, owner: int, t0: datetime, first: bool) -> None:
        """One order's lifecycle; `first`: the customer's earliest order carries the profile."""
        rng = self.rng
        full = self.customer(owner)
        ref = {"id": full["id"]}
        lines = rng.choice([1, 1, 1, 2])
        items = []
        for _ in range(lines):
            sku, name, cat, price = rng.choice(PRODUCTS)
            qty = rng.choice([1, 1, 1, 2])
            items.append({"sku": sku, "name": name, "category": cat, "qty": qty, "price": price})
        amount = round(sum(i["price"] * i["qty"] for i in items), 2)
        oid = f"o-{number:07d}"
        self.emit("order.created", t0, full if first else ref, {"id": oid, "amount": amount, "items": items})
        oref = {"id": oid}
        if rng.random() < 0.12:  # never paid
            if rng.random() < 0.3:  # the buyer cancels
                self.emit("order.closed", t0 + self.lognormal(1200, 0.8, 60, 7200), ref, oref,
                          {"reason": "buyer_cancelled"})
            else:  # the platform closes it
                self.emit("order.closed", t0 + timedelta(hours=24), ref, oref, {"reason": "timeout"})
            return
        # most pay within minutes; ~15% after the 30-minute reminder is due
        t_paid = t0 + self.lognormal(240, 1.6, 5, 86000)
        self.emit("order.paid", t_paid, ref, oref)
        t_ship = t_paid + self.lognormal(30 * 3600, 0.6, 2 * 3600, 6 * 86400)
        carrier, prefix = rng.choice(CARRIERS)
        self.emit("order.shipped", t_ship, ref, oref,
                  {"carrier": carrier, "tracking_no": f"{prefix}{rng.randrange(10**11, 10**12)}"})
        if rng.random() < 0.02:  # lost in the Double-11 backlog: never signed within the stream
            return
        t_sign = t_ship + self.lognormal(48 * 3600, 0.35, 20 * 3600, 5 * 86400)
        self.emit("order.signed", t_sign, ref, oref)
        if rng.random() < 0.35:
            r = rng.random()
            rating = "good" if r < 0.88 else "neutral" if r < 0.95 else "bad"
            t_review = t_sign + self.lognormal(2.5 * 86400, 0.7, 3600, 15 * 86400)
            self.emit("order.reviewed", t_review, ref, oref, {"rating": rating, "text": rng.choice(REVIEWS[rating])})

    def run(self) -> list[str]:
        planned = [(owner, self.created_at()) for owner in self.owner_of_orders()]
        earliest: dict[int, int] = {}
        for number, (owner, t0) in enumerate(planned, start=1):
            if owner not in earliest or t0 < planned[earliest[owner] - 1][1]:
                earliest[owner] = number
        for number, (owner, t0) in enumerate(planned, start=1):
            self.order(number, owner, t0, earliest[owner] == number)
        self.out.sort(key=lambda item: (item[0], item[1]))
        return [line for _, _, line in self.out]


def generate(customers: int, events: int, out: Path, seed: int = 1111) -> dict:
    """Write the stream to `out`; return a summary (lines, orders, span)."""
    gen = Generator(customers, events, seed)
    lines = gen.run()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")
    first = json.loads(lines[0])["time"] if lines else None
    last = json.loads(lines[-1])["time"] if lines else None
    return {"path": str(out), "events": len(lines), "orders": gen.n_orders, "customers": customers,
            "first": first, "last": last, "seed": seed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python bench/generate.py --customers 1000 --events 10000 "
                                            "--out bench/out/events-10k.jsonl")
    parser.add_argument("--customers", type=int, default=100_000, help="number of customers [100000]")
    parser.add_argument("--events", type=int, default=1_000_000, help="approximate number of events [1000000]")
    parser.add_argument("--seed", type=int, default=1111, help="random seed [1111]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file [{DEFAULT_OUT}]")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.events < 1:
        parser.error("--customers and --events must be positive")
    started = time.perf_counter()
    summary = generate(args.customers, args.events, args.out, args.seed)
    print(f"wrote {summary['events']} events ({summary['orders']} orders, {summary['customers']} customers, "
          f"{summary['first']} .. {summary['last']}) to {summary['path']} in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
