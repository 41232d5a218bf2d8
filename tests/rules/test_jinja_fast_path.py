"""The expression fast path (engine/rules/templates.py) uses three Jinja internals:
TemplateExpression._template, Template.root_render_func and a jinja2.runtime.Context
built once per decision. It is kept because it is ~3x faster per expression
(bench/jinja_fast_path.py: 3.5 µs against 10.2 µs through the public API), and Jinja is
bounded to 3.1 in pyproject. These tests pin it to the public API's behaviour: on a
Jinja where the internals change, they fail before a rule decides differently."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib.metadata import version
from zoneinfo import ZoneInfo

import jinja2
import pytest

from engine.errors import ExpressionError
from engine.intake.state import new_customer
from engine.rules.context import build_context
from engine.rules.templates import Scope, Templates

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)

EXPRESSIONS = [
    "order.amount >= 199",
    "order.amount * 2 + 1",
    "order.status != 'created'",
    "order.status in ['paid', 'shipped']",
    "customer.orders >= 2 and not customer.ordered_today",
    "'VIP' in customer.tags",
    "customer.name ~ '，您好'",
    "customer.tags | length",
    "customer.tags | join('/')",
    "order.items[0].name",
    "order.items | map(attribute='qty') | sum",
    "event.type == 'order.paid'",
    "now > event.time",
    "now + duration('30m')",
    "datetime('2026-11-11T10:00')",
    "shop.name",
    "data.carrier | default('顺丰')",
    "order.rating is defined",
    "customer.birthday is none",
    "segment('vip')",
]


@pytest.fixture
def templates() -> Templates:
    t = Templates(None, TZ, {"name": "山野户外"})
    t.define_segments({"vip": "'VIP' in customer.tags"})
    return t


def _scope() -> Scope:
    customer = new_customer("c-1")
    customer.update({"name": "王小明", "tags": ["VIP", "户外"], "order_count": 3})
    order = {"id": "o-1", "status": "paid", "amount": 299.0, "attrs": {},
             "items": [{"name": "羽绒睡袋", "qty": 2, "price": 149.5}, {"name": "头灯", "qty": 1, "price": 0.0}]}
    return build_context(customer, order, {"id": "e-1", "type": "order.paid", "time": NOW}, {}, {"name": "山野户外"},
                         NOW, TZ)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_the_fast_path_gives_what_the_public_api_gives(templates, source):
    fast = templates.compile_expression(source)
    public = templates.env.compile_expression(source, undefined_to_none=False)
    scope = _scope()

    expected = public(**scope)
    assert not isinstance(expected, jinja2.Undefined)
    assert fast(scope) == expected  # on the shared runtime context
    assert fast(dict(scope)) == expected  # and on a plain dict


def test_a_shared_context_gives_each_expression_its_own_result(templates):
    """One runtime context serves every expression of a decision: results do not leak."""
    scope = _scope()
    compiled = [templates.compile_expression(s) for s in EXPRESSIONS]
    first = [f(scope) for f in compiled]
    again = [f(scope) for f in reversed(compiled)][::-1]
    separate = [f(dict(scope)) for f in compiled]
    assert first == again == separate


def test_a_value_that_is_not_there_fails_by_name_where_the_public_api_returns_undefined(templates):
    scope = _scope()
    public = templates.env.compile_expression("order.rating", undefined_to_none=False)
    assert isinstance(public(**scope), jinja2.Undefined)
    with pytest.raises(ExpressionError, match="order.rating"):
        templates.compile_expression("order.rating")(scope)


def test_jinja_is_the_minor_version_the_fast_path_was_measured_on():
    assert version("Jinja2").startswith("3.1."), "re-run bench/jinja_fast_path.py and these tests, then widen the pin"
