"""Message templates and rule expressions: one sandboxed Jinja language for marketers.

Values are objects with attributes (`order.items[0].name`), a missing value fails the
message loudly instead of sending an empty name, and the filters sellers need (money,
dates in the shop's time zone, masked phone numbers) are built in."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.contacts import mask_phone
from engine.errors import ExpressionError, TemplateError
from engine.intake.events import parse_event
from engine.intake.state import apply_customer, apply_order, new_customer, new_order
from engine.rules.context import build_context
from engine.rules.templates import Record, Templates, sms_segments
from tests.conftest import ROOT
from tests.helpers import created, event

SHANGHAI = ZoneInfo("Asia/Shanghai")
SHOP = {"name": "山野户外旗舰店", "signature": "【山野户外】", "currency_symbol": "¥"}


@pytest.fixture
def templates(tmp_path) -> Templates:
    return Templates(tmp_path, SHANGHAI, SHOP)


@pytest.fixture
def render(templates, tmp_path):
    """Render template source the way a message is rendered (each source its own file)."""
    numbers = itertools.count(1)

    def render(source: str, **context) -> str:
        name = f"t{next(numbers)}.sms.j2"
        (tmp_path / name).write_text(source, encoding="utf-8")
        return templates.render(name, context)

    return render


def customer(**fields) -> Record:
    return Record({"id": "c-1", **fields}, "customer")


def order(**fields) -> Record:
    return Record({"id": "o-1", **fields}, "order")


ITEMS = [{"sku": "SB-01", "name": "羽绒睡袋", "qty": 1, "price": 199.0},
         {"sku": "TP-02", "name": "防潮垫", "qty": 2, "price": 59.0}]


# Attribute access ----------------------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    ("{{ order.items[0].name }}", "羽绒睡袋"),
    ("{{ order.items[1].qty }}", "2"),
    ("{{ order['items'][0]['sku'] }}", "SB-01"),
    ("{{ order.items | length }}", "2"),
    ("{% for item in order.items %}{{ item.name }}×{{ item.qty }} {% endfor %}", "羽绒睡袋×1 防潮垫×2"),
    ("{{ order.items | map(attribute='name') | join('、') }}", "羽绒睡袋、防潮垫"),
], ids=["first-item", "second-item-qty", "subscript", "length", "loop", "map-join"])
def test_order_items_are_the_items_not_the_dict_method(render, source, expected):
    assert render(source, order=order(items=ITEMS)) == expected


# Missing values -------------------------------------------------------------------------

@pytest.mark.parametrize("cust", [customer(name=None), customer()], ids=["null-name", "no-name-key"])
def test_a_missing_name_fails_the_message_instead_of_sending_it_empty(render, cust):
    with pytest.raises(TemplateError, match=r"customer\.name is missing \(add \| default\('\.\.\.'\) "
                                            r"or check 'is defined'\)$"):
        render("{{ shop.signature }}{{ customer.name }}，您好", customer=cust, shop=Record(SHOP, "shop"))


def test_template_error_names_the_template_and_the_reason(render, tmp_path):
    with pytest.raises(TemplateError) as caught:
        render("{{ customer.name }}", customer=customer())

    assert caught.value.template == "t1.sms.j2"
    assert caught.value.reason == "customer.name is missing (add | default('...') or check 'is defined')"
    assert str(caught.value) == ("template t1.sms.j2: customer.name is missing "
                                 "(add | default('...') or check 'is defined')")


def test_a_missing_nested_value_names_the_whole_path(render):
    with pytest.raises(TemplateError, match=r"data\.coupon is missing"):
        render("{{ data.coupon.code }}", data=Record({}, "data"))


def test_an_unknown_variable_lists_what_templates_can_use(render):
    with pytest.raises(TemplateError, match=r"coupon is not defined; available: customer, order, event, data, "
                                            r"shop, now$"):
        render("{{ coupon.code }}", customer=customer())


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ customer.name | default('亲') }}", "亲"),
    ("{{ customer.phone | default('') | mask_phone }}", ""),
    ("{{ '已填写' if customer.name is defined else '未填写' }}", "未填写"),
    ("{{ data.tracking_no | default('请在订单详情查看') }}", "请在订单详情查看"),
], ids=["default", "default-then-filter", "is-defined", "data-default"])
def test_default_and_is_defined_handle_missing_values(render, source, expected):
    assert render(source, customer=customer(name=None), data=Record({}, "data")) == expected


def test_an_order_value_on_a_customer_event_fails_loudly(render):
    with pytest.raises(TemplateError):
        render("{{ order.id }}", order=None)


def test_an_order_value_on_a_customer_event_names_order(render):
    with pytest.raises(TemplateError, match=r"order\.id is missing: this message has no order$"):
        render("{{ order.id }}", order=Record({}, "order"))


# Filters --------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    ("{{ 199 | money }}", "¥199.00"),
    ("{{ 1299.5 | money }}", "¥1,299.50"),
    ("{{ (0.1 + 0.2) | money }}", "¥0.30"),
    ("{{ 59 | money('US$') }}", "US$59.00"),
    ("{{ '88.8' | money }}", "¥88.80"),
], ids=["whole", "thousands", "rounded-sum", "other-symbol", "numeric-text"])
def test_money_filter(render, source, expected):
    assert render(source) == expected


def test_money_uses_the_shops_currency_symbol(tmp_path):
    (tmp_path / "price.j2").write_text("{{ 25 | money }}", encoding="utf-8")

    assert Templates(tmp_path, SHANGHAI, {"currency_symbol": "HK$"}).render("price.j2", {}) == "HK$25.00"
    assert Templates(tmp_path, SHANGHAI, {}).render("price.j2", {}) == "¥25.00"


UTC_2AM = datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("tz", "value", "fmt", "expected"), [
    ("Asia/Shanghai", UTC_2AM, None, "2026-11-11 10:00"),
    ("Asia/Shanghai", UTC_2AM, "%m月%d日 %H:%M", "11月11日 10:00"),
    ("Asia/Shanghai", "2026-11-11T02:00:00+00:00", None, "2026-11-11 10:00"),
    ("Asia/Shanghai", datetime(2026, 11, 11, 10, 0), None, "2026-11-11 10:00"),
    ("Asia/Shanghai", date(2026, 11, 11), "%Y年%m月%d日", "2026年11月11日"),
    ("America/New_York", UTC_2AM, None, "2026-11-10 21:00"),
    ("America/New_York", datetime(2026, 7, 1, 2, 0, tzinfo=timezone.utc), None, "2026-06-30 22:00"),
], ids=["utc-to-shanghai", "chinese-format", "iso-text", "naive-is-shop-time", "a-date", "new-york-winter",
        "new-york-summer-dst"])
def test_date_filter_shows_the_shops_local_time(tmp_path, tz, value, fmt, expected):
    source = "{{ when | date }}" if fmt is None else f"{{{{ when | date('{fmt}') }}}}"
    (tmp_path / "when.j2").write_text(source, encoding="utf-8")

    assert Templates(tmp_path, ZoneInfo(tz), {}).render("when.j2", {"when": value}) == expected


@pytest.mark.parametrize(("phone", "masked"), [
    ("13800000000", "138****0000"),
    (13800000000, "138****0000"),
    ("+8613912345678", "+86*******5678"),
    ("1234567", "1234567"),
    ("12345", "*****"),
    ("", ""),
    (None, ""),
], ids=["mobile", "mobile-as-number", "with-country-code", "seven-digits", "too-short", "empty", "none"])
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked


def test_mask_phone_filter_in_a_template(render):
    assert render("{{ customer.phone | mask_phone }}", customer=customer(phone="13800000000")) == "138****0000"


@pytest.mark.parametrize(("text", "segments"), [
    ("", 1),
    ("x" * 70, 1),
    ("x" * 71, 2),
    ("x" * 134, 2),
    ("x" * 135, 3),
    ("好" * 70, 1),
    ("好" * 71, 2),
    ("【山野户外】" + "好" * 64, 1),
    ("【山野户外】" + "好" * 65, 2),
], ids=["empty", "70", "71", "134", "135", "70-chinese", "71-chinese", "signature+64", "signature+65"])
def test_sms_segments_count_characters_not_bytes(text, segments):
    assert sms_segments(text) == segments


# Sandbox ----------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    "{{ customer.__class__ }}",
    "{{ customer._d }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ order.items.__len__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ [].append.__self__ }}",
], ids=["record-class", "record-internals", "str-mro", "dunder-method", "globals", "method-self"])
def test_sandbox_blocks_unsafe_access(render, source):
    with pytest.raises(TemplateError, match=r"not allowed: "):
        render(source, customer=customer(name="王小明"), order=order(items=ITEMS))


def test_sandbox_blocks_huge_ranges(render):
    with pytest.raises(TemplateError, match=r"Range too big"):
        render("{{ range(10**9) | list | length }}")


def test_sandbox_block_on_a_record_says_it_is_unsafe_not_missing(render):
    with pytest.raises(TemplateError) as caught:
        render("{{ customer.__class__ }}", customer=customer(name="王小明"))

    assert "unsafe" in caught.value.reason
    assert "is missing" not in caught.value.reason


# Expressions ------------------------------------------------------------------------------

def test_an_expression_compiles_once_and_evaluates_against_each_context(templates):
    big_order = templates.compile_expression("order.amount >= 50")

    assert big_order({"order": order(amount=199.0)}) is True
    assert big_order({"order": order(amount=20)}) is False


@pytest.mark.parametrize(("source", "reason"), [
    ("order.amount >", "unexpected 'end of template'"),
    ("amount >= 50", "unknown name 'amount'; expressions can use customer, order, event, data, now, shop"),
    ("coupon.code is defined", "unknown name 'coupon'; expressions can use customer, order, event, data, now, shop"),
], ids=["incomplete", "bare-field", "unknown-variable"])
def test_a_bad_expression_fails_when_compiled_not_when_run(templates, source, reason):
    with pytest.raises(ExpressionError) as caught:
        templates.compile_expression(source)

    assert caught.value.source == source
    assert caught.value.reason == reason


def test_a_single_equals_sign_suggests_double(templates):
    with pytest.raises(ExpressionError, match=r"=="):
        templates.compile_expression("order.status = 'paid'")


@pytest.mark.parametrize(("source", "expected"), [
    ("order.rating == 'bad'", False),
    ("order.rating != 'bad'", True),
    ("order.rating == none", True),
    ("not order.rating", True),
    ("order.rating in ['bad', 'neutral']", False),
    ("order.amount >= 20", False),
    ("order.amount < 20", False),
    ("not customer.birthday", True),
    ("customer.birthday is defined", False),
    ("'vip' in customer.nick", False),
], ids=["equal", "not-equal", "equal-none", "not", "in-list", "greater", "less", "not-birthday", "is-defined",
        "contains"])
def test_a_value_that_is_not_there_is_absent_in_a_condition(templates, source, expected):
    """A known field without a value yet (no review, no birthday given) compares as absent."""
    condition = templates.compile_expression(source)

    assert condition({"customer": customer(), "order": order()}) is expected


def test_computing_with_a_value_that_is_not_there_fails_with_its_name(templates):
    computed = templates.compile_expression("order.amount * 100 >= 2000")

    with pytest.raises(ExpressionError, match=r"order\.amount is missing"):
        computed({"order": order()})


def test_is_defined_and_default_work_in_expressions(templates):
    reviewed = templates.compile_expression("order.rating is defined")
    vip = templates.compile_expression("'vip' in customer.tags | default([])")

    assert reviewed({"order": order()}) is False
    assert reviewed({"order": order(rating="good")}) is True
    assert vip({"customer": customer()}) is False
    assert vip({"customer": customer(tags=["vip"])}) is True


def test_expressions_run_in_the_same_sandbox(templates):
    escape = templates.compile_expression("''.__class__.__mro__")

    with pytest.raises(ExpressionError, match=r"SecurityError"):
        escape({})


def test_send_at_expressions_compute_times_in_the_shop_time_zone(templates):
    day_before = templates.compile_expression("datetime(data.expires_at) - duration('24h')")

    due = day_before({"data": Record({"expires_at": "2026-11-11T23:59:59"}, "data")})

    assert due == datetime(2026, 11, 10, 23, 59, 59, tzinfo=SHANGHAI)


# Every shipped template, for a realistic order --------------------------------------------

# What starts each shipped template, and the data its event carries.
TRIGGERS = {
    "payment_reminder.sms.j2": ("order.created", {}),
    "shipping_notice.sms.j2": ("order.shipped", {"carrier": "顺丰速运", "tracking_no": "SF1234567890"}),
    "logistics_stuck.staff.j2": ("order.shipped", {"carrier": "顺丰速运", "tracking_no": "SF1234567890"}),
    "out_for_delivery.sms.j2": ("order.out_for_delivery", {}),
    "signed_care.sms.j2": ("order.signed", {}),
    "review_request.sms.j2": ("order.signed", {}),
    "good_review_thanks.sms.j2": ("order.reviewed", {"rating": "good"}),
    "bad_review_alert.staff.j2": ("order.reviewed", {"rating": "bad", "text": "睡袋拉链坏了"}),
    "logistics_exception.staff.j2": ("order.logistics_exception", {"description": "包裹滞留中转站"}),
    "honeymoon.sms.j2": ("order.paid", {}),
    "tier_upgrade.sms.j2": ("order.paid", {}),
    "cross_sell_pad.sms.j2": ("order.signed", {}),
    "coupon_expiry.sms.j2": ("coupon.issued", {"coupon_id": "CP-11", "name": "满200减30券",
                                               "expires_at": "2026-11-30T23:59:59"}),
    # calendar rules: a customer, no order (the event type is the sweep's)
    "winback_60d.sms.j2": ("sweep.idle", {}),
    "winback_90d.sms.j2": ("sweep.idle", {}),
    "winback_180d.sms.j2": ("sweep.idle", {}),
    "birthday.sms.j2": ("sweep.birthday", {}),
    "spring_festival.sms.j2": ("sweep.holiday", {}),
    "mid_autumn.sms.j2": ("sweep.holiday", {}),
    "member_day.sms.j2": ("sweep.cron", {}),
    "double11_coupon.sms.j2": ("sweep.date", {}),
    "double11_afternoon.sms.j2": ("sweep.date", {}),
}
# Minutes after 2026-11-11 10:00 (Shanghai) at which each stage happens.
LIFECYCLE = {"order.created": 0, "order.paid": 5, "order.shipped": 360, "order.logistics_exception": 1560,
             "order.out_for_delivery": 2820, "order.signed": 3180, "order.reviewed": 7800}
SHIPPED_TEMPLATES = sorted(p.name for p in (ROOT / "templates").glob("*.j2"))


def realistic_context(project, etype: str, data: dict, *, profile: bool = True) -> dict:
    """The order's life up to `etype`, stored as the engine stores it, as a message sees it.

    The order.created event carries 王小明, 13800000000 and one 羽绒睡袋 at ¥199 (unless
    `profile` is false: then the customer is known only by id); later events carry ids only.
    A calendar rule (sweep.*) or a coupon event sees the customer after the whole order
    and no order."""
    tz = project.config.timezone
    if etype.startswith("sweep.") or etype.startswith("coupon."):
        context = realistic_context(project, "order.reviewed", {"rating": "good"}, profile=profile)
        customer = context["customer"]._d
        now = context["now"] + timedelta(days=60)
        return build_context(customer, None, {"id": "e-x", "type": etype, "time": now}, data, project.config.shop,
                             now, tz, project.config.profile)
    cust, order_row = new_customer("c-1"), new_order("o-1", "c-1")
    stages = [t for t, minute in LIFECYCLE.items() if minute <= LIFECYCLE[etype] and t != "order.logistics_exception"]
    if etype not in stages:
        stages.append(etype)
    for number, stage in enumerate(stages, start=1):
        if stage == "order.created":
            raw = created(f"e{number}")
            if not profile:
                raw["customer"] = {"id": "c-1"}
        else:
            raw = event(f"e{number}", stage, LIFECYCLE[stage], data=data if stage == etype else None)
        last = parse_event(raw, tz)
        apply_customer(cust, last)
        apply_order(order_row, last)
    return build_context(cust, order_row, {"id": last.id, "type": last.type, "time": last.time}, data,
                         project.config.shop, last.time, tz, project.config.profile)


def test_every_shipped_template_has_a_trigger_here():
    assert sorted(TRIGGERS) == SHIPPED_TEMPLATES, "add the new template to TRIGGERS with its event and data"


def test_every_shipped_template_is_used_by_the_rule_its_trigger_names(project):
    used = {(r.template, etype) for r in project.rules.rules for etype in (*r.when, r.event_label)}

    assert {(name, etype) for name, (etype, _) in TRIGGERS.items()} <= used


@pytest.mark.parametrize("name", SHIPPED_TEMPLATES)
def test_every_shipped_template_renders_for_a_realistic_order(project, name):
    etype, data = TRIGGERS[name]
    context = realistic_context(project, etype, data)

    text = project.templates.render(name, context)

    assert text.strip() == text != ""
    assert "None" not in text
    assert ("【山野户外】" in text) if name.endswith(".sms.j2") else ("o-1" in text)
    if TRIGGERS[name][0].startswith("sweep."):
        assert "o-1" not in text  # a calendar message is about the customer, not an order


@pytest.mark.parametrize("name", [n for n in SHIPPED_TEMPLATES if n.endswith(".sms.j2")])
def test_every_shipped_sms_template_renders_for_a_customer_known_only_by_id(project, name):
    etype, data = TRIGGERS[name]
    context = realistic_context(project, etype, data, profile=False)

    assert "亲" in project.templates.render(name, context)


@pytest.mark.parametrize(("name", "expected"), [
    ("payment_reminder.sms.j2", "【山野户外】王小明，您拍下的羽绒睡袋还未付款，库存有限，付款后我们会尽快为您发货哦~"),
    ("shipping_notice.sms.j2", "【山野户外】王小明，您的羽绒睡袋已发货，顺丰速运单号SF1234567890，请留意查收。"),
    ("logistics_stuck.staff.j2", "【物流监控】订单 o-1 于 11-11 16:00 发货，72小时仍未签收（当前状态 shipped），请联系快递核实。"),
    ("bad_review_alert.staff.j2",
     "【差评预警】订单 o-1（¥199.00）收到差评：睡袋拉链坏了。客户 王小明 138****0000，请在24小时内回访。"),
], ids=["first-item-name", "carrier-and-tracking", "shipped-time-in-shop-time", "money-and-masked-phone"])
def test_shipped_templates_fill_in_the_order(project, name, expected):
    etype, data = TRIGGERS[name]
    context = realistic_context(project, etype, data)

    assert project.templates.render(name, context) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("coupon_expiry.sms.j2", "【山野户外】王小明，您的满200减30券将于11月30日23:59到期，别让优惠溜走哦~"),
    ("tier_upgrade.sms.j2", "【山野户外】恭喜王小明升级为普通会员！即日起购物享95折和优先发货，感谢一路相伴~"),
    ("winback_90d.sms.j2", "【山野户外】王小明，想您了！送您一张20元回归券，7天内下单自动抵扣，欢迎回来看看新品~"),
], ids=["expiry-time-from-the-event", "tier-from-config", "idle-customer-by-name"])
def test_lifecycle_and_calendar_templates_fill_in_the_customer(project, name, expected):
    etype, data = TRIGGERS[name]

    assert project.templates.render(name, realistic_context(project, etype, data)) == expected


def _marketing_sms_templates(project) -> list[tuple[str, str]]:
    rules = [r for r in project.rules.rules if r.kind == "marketing" and r.template.endswith(".sms.j2")]
    return sorted({(r.template, r.channel) for r in rules})


def test_every_shipped_marketing_sms_is_one_segment_with_signature_and_unsubscribe(project):
    """Short, polite, one billed SMS: 70 characters with 【山野户外】 and 回T退订 counted."""
    from engine.rules.sms import SmsStyle
    from engine.rules.templates import sms_segments

    too_long = []
    templates = _marketing_sms_templates(project)
    assert len(templates) >= 15
    for name, channel in templates:
        options = project.config.channels[channel].options.get("sms")
        style = SmsStyle.from_options(options, project.config.shop)
        etype, data = TRIGGERS[name]
        body = style.finish(project.templates.render(name, realistic_context(project, etype, data)), "marketing")
        assert body.startswith("【山野户外】") and body.endswith("回T退订")
        if sms_segments(body) > 1:
            too_long.append(f"{name}: {len(body)} characters")
    assert too_long == []


def test_templates_see_times_in_the_shop_time_zone(project):
    context = realistic_context(project, "order.paid", {})

    assert context["order"].paid_at == datetime(2026, 11, 11, 10, 5, tzinfo=SHANGHAI)
    assert context["order"].paid_at.utcoffset() == timedelta(hours=8)
    assert context["now"] == context["event"].time
