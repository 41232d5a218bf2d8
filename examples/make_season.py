"""Generate examples/season_2026.jsonl: eight months of a small outdoor shop (March to
Double 11, 2026), so that the lifecycle and calendar rules have something to do.

Deterministic (fixed seed). Run: python examples/make_season.py
What is in it, and which shipped rule it feeds:
- one-off buyers from March to October: honeymoon (30 days after the first order),
  then win-back at 60, 90 and 180 idle days (one letter each, a new order resets);
- regulars and big spenders: member tier upgrades (银卡 at ¥500, 金卡 at ¥2000) and the
  gold member day on the 8th of each month;
- sleeping bags bought without a sleeping pad: the cross-sell two days after signing
  (a few buy the pad before it goes: cancelled);
- birthdays on the customer profile: the birthday coupon three days before;
- good, neutral and bad reviews: the high_quality segment behind the Mid-Autumn
  greeting (2026-09-25) and the 180-day letter;
- a welcome coupon after the first order, expiring in 14 days (reminder 24 h before
  unless used), and the Double 11 coupon D11-50 issued on 11-01 (reminder on 11-10 at
  10:00 to those who have not used it);
- orders on the morning of 11-11: those customers are left out of the 14:00 push;
- two unsubscribes (one from SMS only) and one customer without a phone number."""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the same shop as make_double11.py
from make_double11 import CARRIERS, GIVEN, PRODUCTS, SURNAMES, iso  # noqa: E402

TZ = timezone(timedelta(hours=8))
START = datetime(2026, 3, 1, 9, 0, tzinfo=TZ)
DOUBLE11 = datetime(2026, 11, 11, 0, 0, tzinfo=TZ)
OUT = Path(__file__).with_name("season_2026.jsonl")

PAD = PRODUCTS[5]
# archetype -> (share of customers, how many orders)
ARCHETYPES = [("one_off", 0.45, (1, 1)), ("regular", 0.30, (2, 4)), ("big_spender", 0.10, (4, 8)),
              ("newcomer", 0.15, (1, 1))]


def main() -> None:
    rng = random.Random(2026)
    lines: list[tuple[datetime, str]] = []
    seq = 0

    def emit(etype, t, cust, order=None, data=None, full=False):
        nonlocal seq
        seq += 1
        c = dict(cust) if full else {"id": cust["id"]}
        event = {"id": f"ev-{seq:05d}", "type": etype, "time": iso(t), "customer": c}
        if order is not None:
            event["order"] = order
        if data:
            event["data"] = data
        lines.append((t, json.dumps(event, ensure_ascii=False)))

    customers = []
    for i in range(150):
        cust = {"id": f"s-{i + 1:03d}", "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
                "phone": f"13{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}"}
        if rng.random() < 0.6:
            cust["birthday"] = f"{rng.randint(1970, 2003)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if i == 20:
            del cust["phone"]  # no phone on file: its SMS fail visibly as no_contact
        r, acc = rng.random(), 0.0
        for name, share, counts in ARCHETYPES:
            acc += share
            if r < acc:
                cust["_kind"], cust["_orders"] = name, rng.randint(*counts)
                break
        else:
            cust["_kind"], cust["_orders"] = "one_off", 1
        customers.append(cust)

    order_no = 0
    coupon_no = 0
    for cust in customers:
        profile = {k: v for k, v in cust.items() if not k.startswith("_")}
        if cust["_kind"] == "newcomer":
            times = [datetime(2026, 10, 20, 9, tzinfo=TZ) + timedelta(minutes=rng.randint(0, 21 * 24 * 60))]
        elif cust["_kind"] == "one_off":
            times = [START + timedelta(minutes=rng.randint(0, 200 * 24 * 60))]
        else:
            times = sorted(START + timedelta(minutes=rng.randint(0, 250 * 24 * 60)) for _ in range(cust["_orders"]))
        if cust["_kind"] in ("regular", "big_spender") and rng.random() < 0.3:
            times.append(DOUBLE11 + timedelta(hours=rng.randint(0, 11), minutes=rng.randint(0, 59)))  # 11-11 morning
        first_paid = None
        for n, t0 in enumerate(times):
            if t0 >= datetime(2026, 11, 12, 12, tzinfo=TZ):
                continue
            order_no += 1
            picks = [rng.choice(PRODUCTS[:5] if cust["_kind"] == "big_spender" else PRODUCTS)]
            if rng.random() < 0.25:
                picks.append(rng.choice(PRODUCTS))
            if order_no % 5 == 0:
                picks = [PRODUCTS[0]]  # a sleeping bag alone: the cross-sell's audience
            items, seen = [], set()
            for sku, name, cat, price in picks:
                if sku in seen:
                    continue
                seen.add(sku)
                qty = 2 if cust["_kind"] == "big_spender" and rng.random() < 0.4 else 1
                items.append({"sku": sku, "name": name, "category": cat, "qty": qty, "price": price})
            order = {"id": f"so-{order_no:04d}", "amount": round(sum(i["price"] * i["qty"] for i in items), 2),
                     "items": items}
            emit("order.created", t0, profile, order, full=(n == 0))
            if rng.random() < 0.08:  # never paid: closed after 24 h
                emit("order.closed", t0 + timedelta(hours=24), cust, {"id": order["id"]})
                continue
            t_paid = t0 + timedelta(minutes=rng.randint(1, 25))
            emit("order.paid", t_paid, cust, {"id": order["id"]})
            if first_paid is None:
                first_paid = t_paid
                if rng.random() < 0.7:  # welcome coupon, 14 days
                    coupon_no += 1
                    expires = (t_paid + timedelta(days=14)).replace(hour=23, minute=59, second=59)
                    data = {"coupon_id": f"WELCOME-{coupon_no:03d}", "name": "满200减20券",
                            "expires_at": iso(expires)}
                    emit("coupon.issued", t_paid + timedelta(minutes=2), cust, data=data)
                    if rng.random() < 0.4:
                        emit("coupon.used", t_paid + timedelta(days=rng.randint(2, 12)), cust,
                             data={"coupon_id": data["coupon_id"]})
            t_ship = t_paid + timedelta(hours=rng.randint(4, 30))
            emit("order.shipped", t_ship, cust, {"id": order["id"]},
                 {"carrier": rng.choice(CARRIERS), "tracking_no": f"SF{rng.randint(10**11, 10**12 - 1)}"})
            t_sign = t_ship + timedelta(hours=rng.randint(26, 70))
            emit("order.out_for_delivery", t_sign - timedelta(hours=rng.randint(1, 5)), cust, {"id": order["id"]})
            emit("order.signed", t_sign, cust, {"id": order["id"]})
            if items[0]["sku"] == "SB-01" and len(items) == 1 and order_no % 3 == 0:
                # buys the pad the next day, before the cross-sell (2 days after signing) goes
                order_no += 1
                pad = {"sku": PAD[0], "name": PAD[1], "category": PAD[2], "qty": 1, "price": PAD[3]}
                pad_order = {"id": f"so-{order_no:04d}", "amount": PAD[3], "items": [pad]}
                emit("order.created", t_sign + timedelta(hours=20), cust, pad_order)
                emit("order.paid", t_sign + timedelta(hours=20, minutes=3), cust, {"id": pad_order["id"]})
            r = rng.random()
            if r < 0.5:
                emit("order.reviewed", t_sign + timedelta(hours=rng.randint(10, 60)), cust, {"id": order["id"]},
                     {"rating": "good", "text": "很好用，发货快"})
            elif r < 0.58:
                emit("order.reviewed", t_sign + timedelta(hours=rng.randint(10, 60)), cust, {"id": order["id"]},
                     {"rating": rng.choice(["bad", "neutral"]), "text": "一般，做工有瑕疵"})

    # The Double 11 coupon for regulars and big spenders who bought before November
    for cust in customers:
        if cust["_kind"] in ("regular", "big_spender") and rng.random() < 0.7:
            data = {"coupon_id": "D11-50", "name": "双11满300减50券", "expires_at": "2026-11-11T23:59:59"}
            emit("coupon.issued", datetime(2026, 11, 1, 10, 0, tzinfo=TZ), cust, data=data)
            if rng.random() < 0.3:
                emit("coupon.used", DOUBLE11 + timedelta(minutes=rng.randint(1, 600)), cust,
                     data={"coupon_id": "D11-50"})

    # Opt-outs: one from SMS only (in July), one from all marketing (in September)
    emit("customer.unsubscribed", datetime(2026, 7, 3, 20, 15, tzinfo=TZ), customers[3], data={"channel": "sms"})
    emit("customer.unsubscribed", datetime(2026, 9, 1, 9, 40, tzinfo=TZ), customers[4])

    lines.sort(key=lambda item: item[0])
    OUT.write_text("\n".join(text for _, text in lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} events to {OUT}")


if __name__ == "__main__":
    main()
