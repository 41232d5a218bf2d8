"""Loading rules/*.yaml: what a marketer reads when a rule file is wrong.

Every message names file, line, key path, the bad value and the fix, exactly as
`python run.py check` prints it (str(Problem)). A broken rule is left out; the good
rules next to it keep running (what the daemon does)."""

from __future__ import annotations

import shutil
from pathlib import Path
from textwrap import dedent
from zoneinfo import ZoneInfo

import pytest

from engine.app import load_project
from engine.rules.loader import load_rules
from engine.rules.model import RuleSet
from engine.rules.templates import Templates
from tests.conftest import ROOT

SHANGHAI = ZoneInfo("Asia/Shanghai")
SHOP = {"name": "山野户外", "signature": "【山野户外】"}  # what the templates read of shop: (config.yaml)
CHANNELS = ("sms", "email", "staff")  # as in the shipped config.yaml

TEMPLATES = {
    "thanks.sms.j2": "{{ shop.signature }}{{ customer.name | default('亲') }}，感谢您的支持~",
    "broken.sms.j2": "{{ shop.signature }}{{ customer.name }，您好",  # one closing brace missing
    "coupon_expiring.sms.j2": "{{ shop.signature }}您的优惠券 {{ coupon.code }} 明天到期",  # no `coupon` in messages
}

GOOD = """\
  - id: thanks
    when: order.signed
    channel: sms
    template: thanks.sms.j2
"""


def printed(ruleset: RuleSet) -> list[str]:
    """The problems in the order `check` prints them."""
    return [str(p) for p in sorted(ruleset.problems, key=lambda p: (p.file, p.line or 0))]


@pytest.fixture
def templates_dir(tmp_path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, text in TEMPLATES.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def load(tmp_path, templates_dir):
    """Write rule files under tmp_path/rules and load them; paths print relative to tmp_path."""

    def load(files: dict[str, str]) -> RuleSet:
        rules = tmp_path / "rules"
        rules.mkdir(exist_ok=True)
        for name, text in files.items():
            (rules / name).write_text(dedent(text), encoding="utf-8")
        return load_rules(rules, Templates(templates_dir, SHANGHAI, SHOP), CHANNELS, display_root=tmp_path)

    return load


KEY_TWICE = """\
rules:
  - id: review-request
    when: order.signed
    channel: sms
    channel: email
    template: thanks.sms.j2
"""

BROKEN = [
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
            chanel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:2: rules[0]: missing required key 'channel' (for example: channel: sms)",
         "rules/broken.yaml:4: rules[0].chanel: unknown key 'chanel'; did you mean 'channel'?"],
        id="unknown-key-did-you-mean"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: 5
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when: must be text, a list of texts or a calendar trigger such as "
         "{idle: 60d}, not 5 (a number) "
         "(for example: when: order.created)"],
        id="when-is-a-number"),
    pytest.param(
        """\
        rules:
          - id: care
            when: {idle: soon}
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when.idle: bad duration 'soon'; write days such as 60d"],
        id="idle-not-a-duration"),
    pytest.param(
        """\
        rules:
          - id: care
            when: {holiday: spring_festivle}
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when.holiday: unknown holiday 'spring_festivle'; did you mean 'spring_festival'? (known: childrens_day, christmas, double_ninth_festival, double_twelve, dragon_boat_festival, laba_festival, labour_day, lantern_festival, mid_autumn_festival, national_day, new_years_day, new_years_eve, qixi, singles_day, spring_festival, tomb_sweeping_day, valentines_day, womens_day, or their Chinese names such as 中秋节)"],
        id="holiday-misspelt"),
    pytest.param(
        """\
        rules:
          - id: care
            when: {date: "13-45", at: "14:00"}
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when.date: '13-45' is not a day of the calendar"],
        id="date-not-in-calendar"),
    pytest.param(
        """\
        rules:
          - id: care
            when: {birthday: -3d, at: "25:00"}
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when.at: bad time of day '25:00'; write HH:MM in the shop's time zone, such as 10:00"],
        id="at-not-a-time"),
    pytest.param(
        """\
        rules:
          - id: care
            when: {idle: 60d, at: "10:00"}
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when.at: at does not apply to idle (it fires 60d after the latest order, within send windows; use the rule's window: for the hours)"],
        id="idle-with-at"),
    pytest.param(
        """\
        rules:
          - id: care
            when: {idle: 60d, birthday: 0d}
            channel: sms
            template: thanks.sms.j2
        """,
        ['rules/broken.yaml:3: rules[0].when: write exactly one of idle, birthday, holiday, date, cron (for example: when: {idle: 60d}); found idle, birthday'],
        id="two-triggers"),
    pytest.param(
        """\
        rules:
          - id: care
            when: {cron: "every monday"}
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when.cron: bad cron expression 'every monday' (Wrong number of fields); write five fields: minute hour day month weekday, such as '0 10 * * 1' (Monday 10:00)"],
        id="cron-not-five-fields"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
            channel: sms
            template: thanks.sms.j2
            enabled: "yes"
        """,
        ["rules/broken.yaml:6: rules[0].enabled: must be true or false, not 'yes' (for example: enabled: true)"],
        id="enabled-is-text"),
    pytest.param(
        """\
        rules:
          - id: big-orders
            when: order.paid
            if:
              amount: 50
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].if: must be text or a list of texts, not a mapping "
         "(for example: if: order.amount >= 50)"],
        id="if-is-a-mapping"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
            channel: smss
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].channel: unknown channel 'smss'; "
         "channels in config.yaml: email, sms, staff; did you mean 'sms'?"],
        id="unknown-channel-lists-channels"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
            channel: sms
            template: thank.sms.j2
        """,
        ["rules/broken.yaml:5: rules[0].template: template 'thank.sms.j2' not found in {templates}; did you mean "
         "'thanks.sms.j2'? (templates there: broken.sms.j2, coupon_expiring.sms.j2, thanks.sms.j2)"],
        id="missing-template-lists-templates"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
            channel: sms
            template: broken.sms.j2
        """,
        ["rules/broken.yaml:5: rules[0].template: template broken.sms.j2 does not compile: line 1: unexpected '}'"],
        id="template-does-not-compile"),
    pytest.param(
        """\
        rules:
          - id: coupon-reminder
            when: coupon.issued
            channel: sms
            template: coupon_expiring.sms.j2
        """,
        ["rules/broken.yaml:5: rules[0].template: template coupon_expiring.sms.j2 uses coupon, which messages "
         "do not have; available: customer, order, event, data, shop, now"],
        id="template-uses-undefined-variable"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            when: order.created
            wait: 30 minutes
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].wait: bad duration '30 minutes'; "
         "write a number and a unit: 30s, 30m, 2h, 3d, 1w (or combined, like 1d12h)"],
        id="wait-in-words"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            when: order.created
            expires: 10
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].expires: must be text, not 10 (a number) (for example: expires: 24h)"],
        id="expires-without-unit"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            when: order.created
            wait: -5m
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].wait: bad duration '-5m'; "
         "write a number and a unit: 30s, 30m, 2h, 3d, 1w (or combined, like 1d12h)"],
        id="negative-wait"),
    pytest.param(
        """\
        rules:
          - id: big-orders
            when: order.paid
            if: "order.amount >"
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].if: expression does not compile: unexpected 'end of template'"],
        id="expression-does-not-compile"),
    pytest.param(
        """\
        rules:
          - id: big-orders
            when: order.paid
            if: "amount >= 50"
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].if: expression does not compile: unknown name 'amount'; "
         "expressions can use customer, order, event, data, now, shop"],
        id="expression-unknown-name"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            when: order.created
            unless:
              - "order.status == 'paid'"
              - "order.status =="
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:6: rules[0].unless[1]: expression does not compile: unexpected 'end of template'"],
        id="second-unless-does-not-compile"),
    pytest.param(
        """\
        rules:
          - id: coupon-reminder
            when: coupon.issued
            send_at: "now +"
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].send_at: expression does not compile: unexpected 'end of template'"],
        id="send_at-does-not-compile"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            when: order.created
            wait: 30m
            send_at: "now"
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:5: rules[0].send_at: use either wait or send_at, not both"],
        id="wait-and-send_at"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
            channel: ''
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].channel: must be text, not empty text (for example: channel: sms)"],
        id="empty-channel"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            when: order.created
        """,
        ["rules/broken.yaml:2: rules[0]: missing required key 'channel' (for example: channel: sms)",
         "rules/broken.yaml:2: rules[0]: missing required key 'template' "
         "(for example: template: payment_reminder.sms.j2)"],
        id="missing-channel-and-template"),
    pytest.param(
        """\
        rules:
          - when: order.created
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:2: rules[0]: missing required key 'id' (for example: id: payment-reminder)"],
        id="missing-id"),
    pytest.param(
        """\
        rules:
          - id: payment reminder
            when: order.created
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:2: rules[0].id: 'payment reminder': use letters, digits, '-', '_', '.', ':' "
         "(for example: payment-reminder)"],
        id="id-with-a-space"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            kind: servise
            when: order.created
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].kind: 'servise' is not allowed; choose one of: service, marketing; "
         "did you mean 'service'?"],
        id="kind-typo"),
    pytest.param(
        """\
        rules:
          - id: profile-thanks
            when: customer.updated
            once_per: order
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].once_per: once_per: order needs order events in 'when'; "
         "use customer or event"],
        id="once_per-order-on-customer-events"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
           channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: YAML syntax error: expected <block end>, but found '<block mapping start>'; "
         "check indentation and quote values containing ': ' or '#'"],
        id="yaml-bad-indentation"),
    pytest.param(
        """\
        rules:
          - id: payment-reminder
            name: 催付: 下单30分钟未付款
            when: order.created
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: YAML syntax error: mapping values are not allowed here; "
         "check indentation and quote values containing ': ' or '#'"],
        id="yaml-unquoted-colon"),
    pytest.param(
        """\
        - id: review-request
          when: order.signed
          channel: sms
          template: thanks.sms.j2
        """,
        ["rules/broken.yaml:1: a rules file is a mapping with a list under 'rules:'"],
        id="list-instead-of-rules-mapping"),
    pytest.param(
        """\
        rules:
          id: review-request
          when: order.signed
        """,
        ["rules/broken.yaml:1: rules: must be a list of rules, each starting with '- id: ...'"],
        id="rules-is-not-a-list"),
    pytest.param(
        """\
        rule:
          - id: review-request
        """,
        ["rules/broken.yaml:1: rule: unknown key 'rule'; did you mean 'rules'?: a rules file holds a list under "
         "'rules:' and/or named conditions under 'segments:'"],
        id="rules-key-misspelt"),
    pytest.param(
        """\
        rules:
          - payment-reminder
        """,
        ["rules/broken.yaml:2: rules[0]: each rule is a mapping of keys such as id, when, channel, template"],
        id="rule-is-plain-text"),
    pytest.param(
        KEY_TWICE,
        ["rules/broken.yaml:5: rules[0].channel: key 'channel' is written twice in this block; keep one"],
        id="same-key-twice"),
    # what a Chinese keyboard and YAML's number rules do to a marketer's file (issue 11)
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed
            wait：2d
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: full-width '：' — write ':'"],
        id="full-width-colon"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: [order.signed，order.completed]
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: full-width '，' — write ','"],
        id="full-width-comma-in-a-list"),
    pytest.param(
        """\
        rules:
          - id: review-request
            when: order.signed，
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when: full-width '，' — write ','"],
        id="full-width-comma-after-a-value"),
    pytest.param(
        """\
        rules:
          - id: d11
            when: {date: "11-11", at: 10:00}
            channel: sms
            template: thanks.sms.j2
        """,
        ['rules/broken.yaml:3: rules[0].when.at: write "10:00" in quotes (YAML read 10:00 as the number 600)'],
        id="time-read-as-a-number"),
    pytest.param(
        """\
        rules:
          - id: vip-thanks
            when: order.signed
            if: "customer.tags contains 'vip'"
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:4: rules[0].if: expression does not compile: `contains` is not a word of expressions; "
         "write `'vip' in customer.tags`"],
        id="contains"),
    pytest.param(
        """\
        rules:
          - id: d11
            when: {holiday: double_eleven}
            channel: sms
            template: thanks.sms.j2
        """,
        ["rules/broken.yaml:3: rules[0].when.holiday: unknown holiday 'double_eleven'; did you mean 'singles_day'? "
         "(known: childrens_day, christmas, double_ninth_festival, double_twelve, dragon_boat_festival, laba_festival, "
         "labour_day, lantern_festival, mid_autumn_festival, national_day, new_years_day, new_years_eve, qixi, "
         "singles_day, spring_festival, tomb_sweeping_day, valentines_day, womens_day, or their Chinese names such "
         "as 中秋节)"],
        id="holiday-by-meaning"),
    pytest.param(
        """\
        rules:
          - id: review-thanks
            when: order.reviewed
            channel: sms
            template: thanks_for_review.sms.j2
        """,
        ["rules/broken.yaml:5: rules[0].template: template 'thanks_for_review.sms.j2' not found in {templates}; "
         "did you mean 'thanks.sms.j2'? (templates there: broken.sms.j2, coupon_expiring.sms.j2, thanks.sms.j2)"],
        id="template-by-meaning"),
    pytest.param(
        """\
        rules:
          - id: out-for-delivery
            when: order.out_for_delivery
            channel: sms
            template: for_delivery_notice.sms.j2
        """,
        ["rules/broken.yaml:5: rules[0].template: template 'for_delivery_notice.sms.j2' not found in {templates} "
         "(templates there: broken.sms.j2, coupon_expiring.sms.j2, thanks.sms.j2)"],
        id="template-with-nothing-like-it"),
    pytest.param(
        """\
        rules:
          - id: good-thanks
            when: order.reviewed
            if: "segment('high_qualty')"
            channel: sms
            template: thanks.sms.j2
        segments:
          high_quality: "customer.orders >= 1 and not customer.had_bad_review"
        """,
        ["rules/broken.yaml:4: rules[0].if: unknown segment 'high_qualty'; did you mean 'high_quality'?; segments "
         "(config.yaml or a rules file's segments:): high_quality"],
        id="segment-misspelt"),
]


def test_an_expiry_shorter_than_the_wait_is_a_warning_that_says_what_it_means(load):
    ruleset = load({"late.yaml": "rules:\n  - id: care\n    when: order.signed\n    wait: 3d\n    expires: 1d\n"
                                 "    channel: sms\n    template: thanks.sms.j2\n"})

    assert printed(ruleset) == [
        "rules/late.yaml:5: rules[0].expires: warning: expires 1d is shorter than wait 3d: expires counts from when "
        "the message is due (its event + wait), so it may still go 4d after the event (if you meant 1d after the "
        "event, no message of this rule could ever go)"]
    assert [r.id for r in ruleset.rules] == ["care"]  # a warning: the rule runs


def test_a_tab_in_the_indentation_is_named_on_its_line(load):
    ruleset = load({"broken.yaml": "rules:\n  - id: a\n\twhen: order.signed\n    channel: sms\n"
                                   "    template: thanks.sms.j2\n"})

    assert printed(ruleset) == ["rules/broken.yaml:3: a tab character; indent with spaces"]


@pytest.mark.parametrize(("name", "festival"), [
    ("中秋节", "mid_autumn_festival"), ("春节", "spring_festival"), ("端午节", "dragon_boat_festival"),
    ("七夕", "qixi"), ("双十一", "singles_day"), ("双11", "singles_day"), ("清明", "tomb_sweeping_day"),
], ids=lambda v: v)
def test_a_festival_may_be_written_by_its_chinese_name(load, name, festival):
    ruleset = load({"festival.yaml": f"rules:\n  - id: greeting\n    when: {{holiday: {name}, offset: -3d}}\n"
                                     "    channel: sms\n    template: thanks.sms.j2\n"})

    assert printed(ruleset) == []
    assert ruleset.rules[0].trigger.holiday == festival


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_rule_file_is_reported_with_file_line_key_and_fix(load, templates_dir, text, expected):
    ruleset = load({"broken.yaml": text})

    assert printed(ruleset) == [m.replace("{templates}", str(templates_dir)) for m in expected]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_every_problem_has_a_line_number(load, text, expected):
    ruleset = load({"broken.yaml": text})

    assert ruleset.problems
    assert all(p.line is not None for p in ruleset.problems)


@pytest.mark.parametrize(("text", "expected"), [p for p in BROKEN if p.id != "same-key-twice"])
def test_a_broken_rule_is_left_out(load, text, expected):
    assert load({"broken.yaml": text}).rules == []


def test_a_rule_with_a_key_written_twice_is_left_out(load):
    ruleset = load({"broken.yaml": KEY_TWICE})

    assert [p.severity for p in ruleset.problems] == ["error"]
    assert ruleset.rules == []


@pytest.mark.parametrize(("when", "problem"), [
    pytest.param("order.payed", "rules/custom.yaml:3: rules[0].when: warning: unknown event type 'order.payed'; "
                                "did you mean 'order.paid'? (custom types are allowed; ignore this if it is one)",
                 id="typo-of-a-standard-type"),
    pytest.param("[order.paid, erp.invoice_sent]",
                 "rules/custom.yaml:3: rules[0].when[1]: warning: unknown event type 'erp.invoice_sent' "
                 "(custom types are allowed; ignore this if it is one)",
                 id="custom-type-in-a-list"),
])
def test_unknown_event_type_is_a_warning_and_the_rule_still_loads(load, when, problem):
    ruleset = load({"custom.yaml": f"""\
        rules:
          - id: custom
            when: {when}
            channel: sms
            template: thanks.sms.j2
        """})

    assert printed(ruleset) == [problem]
    assert ruleset.errors == []
    assert [r.id for r in ruleset.rules] == ["custom"]


def test_on_instead_of_when_says_to_write_when(load):
    ruleset = load({"broken.yaml": """\
        rules:
          - id: review-request
            on: order.signed
            channel: sms
            template: thanks.sms.j2
        """})

    assert "rules/broken.yaml:3: rules[0].on: YAML reads the key 'on' as a boolean; use 'when:' for the event" \
        in printed(ruleset)
    assert ruleset.rules == []


def test_on_instead_of_when_is_reported_once_with_the_fix(load):
    ruleset = load({"broken.yaml": """\
        rules:
          - id: review-request
            on: order.signed
            channel: sms
            template: thanks.sms.j2
        """})

    assert printed(ruleset) == [
        "rules/broken.yaml:3: rules[0].on: YAML reads the key 'on' as a boolean; use 'when:' for the event",
    ]


@pytest.mark.parametrize(("when", "path", "words"), [
    pytest.param("[]", "rules[0].when", "empty list", id="empty-list"),
    pytest.param("[order.paid, 5]", "rules[0].when[1]", "5 (a number)", id="number-in-list"),
])
def test_a_bad_when_list_names_what_is_wrong_in_it(load, when, path, words):
    ruleset = load({"broken.yaml": f"""\
        rules:
          - id: review-request
            when: {when}
            channel: sms
            template: thanks.sms.j2
        """})

    [problem] = ruleset.problems
    assert problem.path == path
    assert words in problem.message


def test_good_rules_in_the_same_file_still_load(load):
    ruleset = load({"mixed.yaml": """\
        rules:
          - id: first-good
            when: order.paid
            channel: sms
            template: thanks.sms.j2
          - id: broken
            when: order.shipped
            channel: smss
            template: thanks.sms.j2
          - id: second-good
            when: order.signed
            channel: email
            template: thanks.sms.j2
        """})

    assert [r.id for r in ruleset.rules] == ["first-good", "second-good"]
    assert [p.rule_id for p in ruleset.problems] == ["rules/mixed.yaml:rules[1]"]
    assert [r.id for r in ruleset.for_event("order.shipped")] == []


def test_every_error_in_every_file_is_reported(load):
    ruleset = load({
        "a_service.yaml": """\
            rules:
              - id: payment-reminder
                when: order.created
                wait: 30 minutes
                channel: sms
                template: thanks.sms.j2
              - id: shipping-notice
                when: order.shipped
                channel: smss
                template: thanks.sms.j2
            """,
        "b_after_sale.yaml": """\
            rules:
              - id: review-request
                when: order.signed
                chanel: sms
                template: thanks.sms.j2
            """,
        "c_fine.yaml": "rules:\n" + GOOD,
    })

    assert printed(ruleset) == [
        "rules/a_service.yaml:4: rules[0].wait: bad duration '30 minutes'; "
        "write a number and a unit: 30s, 30m, 2h, 3d, 1w (or combined, like 1d12h)",
        "rules/a_service.yaml:9: rules[1].channel: unknown channel 'smss'; "
        "channels in config.yaml: email, sms, staff; did you mean 'sms'?",
        "rules/b_after_sale.yaml:2: rules[0]: missing required key 'channel' (for example: channel: sms)",
        "rules/b_after_sale.yaml:4: rules[0].chanel: unknown key 'chanel'; did you mean 'channel'?",
    ]
    assert [r.id for r in ruleset.rules] == ["thanks"]


def test_a_yaml_syntax_error_skips_only_that_file(load):
    ruleset = load({
        "a_broken.yaml": "rules:\n  - id: x\n   when: order.paid\n",
        "b_fine.yaml": "rules:\n" + GOOD,
    })

    assert [p.file for p in ruleset.problems] == ["rules/a_broken.yaml"]
    assert [r.id for r in ruleset.rules] == ["thanks"]


def test_both_yaml_and_yml_files_are_read_in_name_order(load):
    ruleset = load({"b.yml": "rules:\n" + GOOD.replace("thanks", "from-yml", 1),
                    "a.yaml": "rules:\n" + GOOD.replace("thanks", "from-yaml", 1)})

    assert [r.id for r in ruleset.rules] == ["from-yaml", "from-yml"]
    assert ruleset.problems == []


def test_duplicate_id_across_files_names_the_first_location(load):
    ruleset = load({
        "a_service.yaml": "rules:\n" + GOOD,
        "b_after_sale.yaml": "rules:\n" + GOOD.replace("thanks", "other", 1) + GOOD,
    })

    assert printed(ruleset) == [
        "rules/b_after_sale.yaml:6: rules[1].id: duplicate id 'thanks', already used at rules/a_service.yaml:2; "
        "ids must be unique across all files",
    ]
    assert "other" in [r.id for r in ruleset.rules]


def test_duplicate_id_in_one_file_is_reported(load):
    ruleset = load({"a.yaml": "rules:\n" + GOOD + GOOD})

    assert printed(ruleset) == [
        "rules/a.yaml:6: rules[1].id: duplicate id 'thanks', already used at rules/a.yaml:2; "
        "ids must be unique across all files",
    ]


def test_duplicate_id_leaves_the_original_rule_running(load):
    ruleset = load({
        "a_service.yaml": "rules:\n" + GOOD,
        "b_after_sale.yaml": "rules:\n" + GOOD,
    })

    assert [(r.id, r.file) for r in ruleset.rules] == [("thanks", "rules/a_service.yaml")]


def test_duplicate_id_is_reported_even_when_the_first_is_broken(load):
    ruleset = load({
        "a_service.yaml": "rules:\n" + GOOD.replace("channel: sms", "channel: smss"),
        "b_after_sale.yaml": "rules:\n" + GOOD,
    })

    assert "rules/b_after_sale.yaml" in [p.file for p in ruleset.problems]


def test_disabled_rule_loads_but_matches_no_event(load):
    ruleset = load({"a.yaml": "rules:\n" + GOOD + "    enabled: false\n"})

    assert [r.id for r in ruleset.rules] == ["thanks"]
    assert ruleset.problems == []
    assert list(ruleset.for_event("order.signed")) == []


def test_an_empty_rules_file_is_fine(load):
    ruleset = load({"empty.yaml": "# nothing here yet\n"})

    assert ruleset.rules == []
    assert ruleset.problems == []


def test_a_missing_rules_folder_says_how_to_pass_one(tmp_path, templates_dir):
    ruleset = load_rules(tmp_path / "nowhere", Templates(templates_dir, SHANGHAI, SHOP), CHANNELS)

    assert printed(ruleset) == [f"{tmp_path / 'nowhere'}: rules folder not found; pass --rules DIR"]


def test_the_shipped_rules_load_without_problems(project):
    assert project.problems == []
    assert {r.id for r in project.rules.rules} == {
        # order service and after-sale
        "payment-reminder", "shipping-notice", "out-for-delivery", "signed-care",
        "review-request", "good-review-thanks", "bad-review-alert", "logistics-stuck", "logistics-exception",
        # lifecycle
        "honeymoon-30d", "cross-sell-sleeping-pad", "tier-upgrade", "gold-member-day",
        "winback-60d", "winback-90d", "winback-180d",
        # calendar campaigns
        "birthday-coupon", "spring-festival", "mid-autumn", "coupon-expiry", "double11-coupon-reminder",
        "double11-afternoon"}


def test_load_project_checks_channels_against_config_yaml(workdir):
    path = workdir / "rules" / "order_service.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("channel: sms\n    template: payment_reminder", "channel: smss\n    template: payment_reminder")
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("    channel: smss") + 1

    project = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")

    assert printed(project.rules) == [
        f"{path}:{line}: rules[0].channel: unknown channel 'smss'; "
        "channels in config.yaml: email, sms, staff; did you mean 'sms'?"]
    assert "payment-reminder" not in [r.id for r in project.rules.rules]
    shipped = load_project(ROOT / "config.yaml", ROOT / "rules", ROOT / "templates")
    assert len(project.rules.rules) == len(shipped.rules.rules) - 1  # only the broken rule is left out


def test_shipped_templates_folder_is_what_rules_are_checked_against(tmp_path):
    """A rule may use any template shipped in templates/."""
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "rules").mkdir()
    names = sorted(p.name for p in (ROOT / "templates").glob("*.j2"))
    body = "".join(f"  - id: r{i}\n    when: order.paid\n    channel: sms\n    template: {name}\n"
                   for i, name in enumerate(names))
    (tmp_path / "rules" / "all.yaml").write_text("rules:\n" + body, encoding="utf-8")

    ruleset = load_rules(tmp_path / "rules", Templates(tmp_path / "templates", SHANGHAI, SHOP), CHANNELS)

    assert ruleset.problems == []
    assert [r.template for r in ruleset.rules] == names


def test_a_rule_on_days_off_the_holiday_calendar_does_not_know_yet_is_a_warning(tmp_path, workdir):
    from datetime import date

    from engine.rules.calendar import days_off_known_until

    (workdir / "rules" / "cny.yaml").write_text(
        "rules:\n  - id: cny-off\n    when: {holiday: 春节, day: first_day_off, offset: -3d}\n    channel: sms\n"
        "    template: spring_festival.sms.j2\n", encoding="utf-8")
    known = days_off_known_until()

    in_time = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates", date(known - 1, 6, 1))
    late = load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates", date(known, 12, 2))

    assert [str(p) for p in in_time.problems] == []
    assert [str(p) for p in late.problems] == [
        f"{workdir / 'rules' / 'cny.yaml'}:2: rules[0].when.day: warning: day: first_day_off needs the statutory "
        f"days off of {known + 1}, which the installed chinesecalendar does not have (it knows up to {known}): this "
        f"rule will not fire in {known + 1} until you update it (pip install -U chinesecalendar, then restart the "
        "daemon)"]
