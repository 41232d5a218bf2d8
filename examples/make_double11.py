"""Generate examples/double11_week.jsonl: a Double-11 week of a small outdoor shop.

Deterministic (fixed seed). Run: python examples/make_double11.py
It covers what the shipped rules react to: unpaid orders (payment reminders), orders
paid before the reminder is due (cancelled), shipping, delivery, signing, reviews
(good, neutral, bad), a refund, a stuck parcel, a carrier-reported exception, a customer
without a phone number, a replayed event, a shipped event arriving after the signed
one, two unsubscribes, and malformed lines."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

TZ = timezone(timedelta(hours=8))
START = datetime(2026, 11, 8, 9, 0, tzinfo=TZ)
OUT = Path(__file__).with_name("double11_week.jsonl")

SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高"
GIVEN = ["小明", "丽", "伟", "芳", "静", "强", "磊", "洋", "敏", "军", "婷", "杰", "娜", "涛", "超"]
PRODUCTS = [
    ("SB-01", "羽绒睡袋", "outdoor", 399.0), ("TN-02", "双人帐篷", "outdoor", 699.0),
    ("JK-03", "冲锋衣", "apparel", 459.0), ("BT-04", "登山鞋", "shoes", 529.0),
    ("LP-05", "头灯", "gear", 89.0), ("CP-06", "防潮垫", "outdoor", 59.0),
    ("MG-07", "钛水杯", "gear", 129.0), ("SK-08", "速干袜", "apparel", 15.0),
]
CARRIERS = ["顺丰速运", "中通快递", "圆通速递", "韵达快递", "京东物流"]


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def main() -> None:
    rng = random.Random(1111)
    lines: list[tuple[datetime, str]] = []
    seq = 0

    def emit(etype, t, cust, order=None, data=None, full=False, arrives=None):
        nonlocal seq
        seq += 1
        c = dict(cust) if full else {"id": cust["id"]}
        event = {"id": f"evt-{seq:05d}", "type": etype, "time": iso(t), "customer": c}
        if order is not None:
            event["order"] = order
        if data:
            event["data"] = data
        lines.append((arrives or t, json.dumps(event, ensure_ascii=False)))
        return event

    customers = []
    for i in range(60):
        cust = {"id": f"c-{i + 1:03d}", "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
                "phone": f"13{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}"}
        if i % 7 == 0:
            cust["email"] = f"buyer{i + 1}@example.com"
        if i == 13:
            del cust["phone"]  # no phone on file → no_contact
        customers.append(cust)

    order_no = 0
    for cust in customers:
        for _ in range(rng.choice([1, 1, 1, 2])):
            order_no += 1
            # Double 11 peak: a third of the orders in the first hour of 11-11
            if rng.random() < 0.35:
                t0 = datetime(2026, 11, 11, 0, rng.randint(0, 59), rng.randint(0, 59), tzinfo=TZ)
            else:
                t0 = START + timedelta(minutes=rng.randint(0, 5 * 24 * 60))
            sku, name, cat, price = rng.choice(PRODUCTS)
            qty = rng.choice([1, 1, 2])
            order = {"id": f"o-{order_no:04d}", "amount": round(price * qty, 2),
                     "items": [{"sku": sku, "name": name, "category": cat, "qty": qty, "price": price}]}
            emit("order.created", t0, cust, order, full=True)
            fate = rng.random()
            if fate < 0.12:  # never paid: reminder sent, then closed after 48 h
                emit("order.closed", t0 + timedelta(hours=48), cust, {"id": order["id"]})
                continue
            if fate < 0.22:  # paid late: the reminder goes first, then the payment
                t_paid = t0 + timedelta(minutes=rng.randint(45, 600))
            else:  # paid before the 30-minute reminder is due → reminder cancelled
                t_paid = t0 + timedelta(minutes=rng.randint(1, 25))
            emit("order.paid", t_paid, cust, {"id": order["id"]})
            t_ship = t_paid + timedelta(hours=rng.randint(4, 30))
            carrier = rng.choice(CARRIERS)
            ship_data = {"carrier": carrier, "tracking_no": f"SF{rng.randint(10**11, 10**12 - 1)}"}
            if order_no % 29 == 0:  # stuck parcel: shipped, never signed → staff alert after 72 h
                emit("order.shipped", t_ship, cust, {"id": order["id"]}, ship_data)
                continue
            if order_no % 31 == 0:  # carrier-reported exception
                emit("order.shipped", t_ship, cust, {"id": order["id"]}, ship_data)
                emit("order.logistics_exception", t_ship + timedelta(hours=20), cust, {"id": order["id"]},
                     {"description": "包裹破损，快递员已登记"})
                continue
            t_out = t_ship + timedelta(hours=rng.randint(24, 60))
            t_sign = t_out + timedelta(hours=rng.randint(1, 6))
            if order_no % 17 == 0:  # the shipped event arrives (is written) after the signed one
                emit("order.signed", t_sign, cust, {"id": order["id"]})
                emit("order.shipped", t_ship, cust, {"id": order["id"]}, ship_data,
                     arrives=t_sign + timedelta(minutes=5))
            else:
                emit("order.shipped", t_ship, cust, {"id": order["id"]}, ship_data)
                emit("order.out_for_delivery", t_out, cust, {"id": order["id"]})
                emit("order.signed", t_sign, cust, {"id": order["id"]})
            if order_no % 11 == 0:  # refund after signing: no review request
                emit("order.refund_requested", t_sign + timedelta(hours=30), cust, {"id": order["id"]},
                     {"reason": "尺码不合适"})
                continue
            r = rng.random()
            if r < 0.45:
                rating, text = "good", "很好用，发货快"
            elif r < 0.52:
                rating, text = "bad", "拉链坏了，客服不回复"
            elif r < 0.58:
                rating, text = "neutral", "一般般"
            else:
                continue  # never reviewed → review request 3 days after signing
            emit("order.reviewed", t_sign + timedelta(hours=rng.randint(10, 60)), cust, {"id": order["id"]},
                 {"rating": rating, "text": text})

    # Two customers opt out of marketing: one from SMS only, one from everything
    emit("customer.unsubscribed", datetime(2026, 11, 12, 20, 15, tzinfo=TZ), customers[8], data={"channel": "sms"})
    emit("customer.unsubscribed", datetime(2026, 11, 13, 9, 40, tzinfo=TZ), customers[9])

    # Write in arrival order (by time, but a few shipped events arrive after the signed one).
    lines.sort(key=lambda item: item[0])
    body = [text for _, text in lines]
    body.insert(len(body) // 3, body[len(body) // 4])  # a replayed event (same id): ignored
    body.insert(len(body) // 2, '{"id": "evt-broken", "type": "order.paid", "time": "2026-11-11T00:07:00+08:00", '
                                '"customer": {"id": "c-007"}}')  # order.* without order.id: rejected
    body.insert(len(body) // 2 + 5, '{"id": "evt-truncated", "type": "order.created", "time": ')  # cut-off line
    OUT.write_text("\n".join(body) + "\n", encoding="utf-8")
    print(f"wrote {len(body)} lines to {OUT}")


if __name__ == "__main__":
    main()
