"""What the expression fast path in engine/rules/templates.py buys, against Jinja's
public API. Run by hand:  .venv/bin/python bench/jinja_fast_path.py

The fast path touches three Jinja internals (pinned by tests/rules/test_jinja_fast_path.py,
Jinja bounded to 3.1 in pyproject): TemplateExpression._template, Template.root_render_func
and jinja2.runtime.Context built once per decision and shared by all of its expressions.
The public way is `env.compile_expression(source)(**context)`, which builds a new context
(copying the globals and the names) for every expression."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.intake.state import new_customer  # noqa: E402
from engine.rules.context import build_context  # noqa: E402
from engine.rules.templates import Templates  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)
# what the shipped rules ask at a decision: an `if:` and an `unless:` or two
EXPRESSIONS = ["order.amount >= 199", "order.status != 'created'",
               "customer.orders >= 2 and not customer.ordered_today", "'VIP' in customer.tags"]
ROUNDS = 20_000


def contexts():
    customer = new_customer("c-1")
    customer.update({"name": "王小明", "phone": "13800000000", "tags": ["VIP"], "order_count": 3})
    order = {"id": "o-1", "status": "paid", "amount": 299.0, "items": [], "attrs": {}}
    return customer, order


def main() -> None:
    templates = Templates(None, TZ, {"name": "山野户外"})
    fast = [templates.compile_expression(s) for s in EXPRESSIONS]
    public = [templates.env.compile_expression(s, undefined_to_none=False) for s in EXPRESSIONS]
    customer, order = contexts()
    event = {"id": "e-1", "type": "order.paid", "time": NOW}

    def run_fast():
        scope = build_context(customer, order, event, {}, {}, NOW, TZ)
        return [f(scope) for f in fast]

    def run_public():
        scope = build_context(customer, order, event, {}, {}, NOW, TZ)
        return [bool(e(**scope)) for e in public]

    assert [bool(v) for v in run_fast()] == run_public()
    for name, fn in (("fast path (shared runtime context)", run_fast), ("public API (compile_expression)", run_public)):
        fn()
        began = time.perf_counter()
        for _ in range(ROUNDS):
            fn()
        seconds = time.perf_counter() - began
        per = seconds / ROUNDS / len(EXPRESSIONS) * 1e6
        print(f"{name:38} {per:6.2f} µs per expression ({ROUNDS:,} decisions x {len(EXPRESSIONS)} expressions, "
              f"context included)")


if __name__ == "__main__":
    main()
