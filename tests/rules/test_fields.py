"""`check` catches what would fail every message: every attribute a template or an
expression reads on customer, order, event, data and shop is a field the engine knows or
one config.yaml declares (`fields:`); every rule's template renders for full sample data.
And a known field that has no value yet is absent in a condition, so `check` passing
means the rule runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from engine.app import Engine, load_project
from engine.intake.events import parse_event
from tests.conftest import recording_channels
from tests.helpers import T0, created, event


def project_dir(workdir: Path, rules: list[dict], templates: dict[str, str], fields: dict | None = None) -> Path:
    """The shipped project with only these rules (and these templates added)."""
    for path in (workdir / "rules").glob("*.yaml"):
        path.unlink()
    (workdir / "rules" / "test.yaml").write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True,
                                                                sort_keys=False), encoding="utf-8")
    for name, text in templates.items():
        (workdir / "templates" / name).write_text(text, encoding="utf-8")
    if fields is not None:
        config = workdir / "config.yaml"
        config.write_text(config.read_text(encoding="utf-8") + yaml.safe_dump({"fields": fields}), encoding="utf-8")
    return workdir


def load(workdir: Path):
    return load_project(workdir / "config.yaml", workdir / "rules", workdir / "templates")


def errors(project) -> list[str]:
    return [str(p) for p in project.errors]


def rule(rule_id: str = "thanks", when="order.signed", template: str = "t.sms.j2", **keys) -> dict:
    return {"id": rule_id, "when": when, "channel": "sms", "template": template, **keys}


def test_a_misspelt_field_in_a_template_is_an_error_with_file_line_and_did_you_mean(workdir):
    project_dir(workdir, [rule()], {"t.sms.j2": "{{ shop.signature }}\n{{ customer.nmae }}，您好"})

    project = load(workdir)

    assert errors(project) == [
        f"{workdir / 'rules' / 'test.yaml'}:5: rules[0].template: {workdir / 'templates' / 't.sms.j2'}:2: "
        "customer.nmae: unknown field; did you mean customer.name?"]
    assert project.rules.rules == []  # it would fail every message: left out


@pytest.mark.parametrize(("source", "message"), [
    ("order.amout >= 100", "order.amout: unknown field; did you mean order.amount?"),
    ("customer.rfm.frequncy >= 3", "customer.rfm.frequncy: unknown field; did you mean customer.rfm.frequency?"),
    ("order.items[0].skuu == 'SB-01'", "order.items[0].skuu: unknown field; did you mean order.items[0].sku?"),
    ("data.tracking_number is defined", "data.tracking_number: unknown field; did you mean data.tracking_no?"),
    ("customer['vip_level'] == 3", "customer.vip_level: unknown field (a custom field: declare it in config.yaml "
                                   "under `fields: customer`)"),
    ("event.kind == 'x'", "event.kind: unknown field"),
], ids=["order", "nested", "item", "data", "custom-undeclared", "event"])
def test_an_unknown_field_in_a_condition_is_an_error_on_its_line(workdir, source, message):
    project_dir(workdir, [rule(**{"if": source})], {"t.sms.j2": "{{ shop.signature }}您好"})

    project = load(workdir)

    assert errors(project) == [f"{workdir / 'rules' / 'test.yaml'}:6: rules[0].if: {message}"]


def test_a_broadcast_reading_a_misspelt_field_is_refused(workdir):
    project_dir(workdir, [rule("d11", {"date": "11-11", "at": "14:00"},
                               **{"if": "customer.rfm.frequency >= 3 and not customer.orderd_today"})],
                {"t.sms.j2": "{{ shop.signature }}双11最后10小时"})

    assert errors(load(workdir)) == [
        f"{workdir / 'rules' / 'test.yaml'}:8: rules[0].if: customer.orderd_today: unknown field; "
        "did you mean customer.ordered_today?"]


def test_declared_custom_fields_may_be_read_and_a_loop_variable_is_an_item(workdir):
    project_dir(workdir, [rule(**{"if": "customer.vip_level >= 3 and order.platform == 'tmall'"})],
                {"t.sms.j2": "{{ shop.signature }}{% for item in order.items %}{{ item.name }}{{ item.color }}"
                             "{% endfor %}{{ data.warehouse }}"},
                fields={"customer": ["vip_level"], "order": ["platform"], "item": ["color"], "data": ["warehouse"]})

    project = load(workdir)

    assert errors(project) == []
    assert [r.id for r in project.rules.rules] == ["thanks"]


def test_a_misspelt_field_of_a_loop_variable_is_found_too(workdir):
    project_dir(workdir, [rule()], {"t.sms.j2": "{{ shop.signature }}{% for it in order.items %}{{ it.nmae }}"
                                                "{% endfor %}"})

    assert [e.split(": ", 2)[2] for e in errors(load(workdir))] == [
        f"{workdir / 'templates' / 't.sms.j2'}:1: it.nmae: unknown field; did you mean it.name?"]


def test_the_fields_section_is_checked_with_file_line_and_did_you_mean(workdir):
    config = workdir / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "fields:\n  custmer: [vip_level]\n  order: vip\n",
                      encoding="utf-8")
    lines = config.read_text(encoding="utf-8").count("\n")

    with pytest.raises(Exception) as caught:
        load(workdir)

    assert [str(p) for p in caught.value.problems] == [
        f"{config}:{lines - 1}: fields.custmer: unknown object 'custmer'; did you mean 'customer'?; custom fields "
        "can be declared for customer, order, item, data",
        f"{config}:{lines}: fields.order: must be a list of field names (letters, digits, _), such as "
        "[vip_level, wechat_id]"]


def test_a_segment_reading_an_unknown_field_is_an_error(workdir):
    config = workdir / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        'frequent: "customer.rfm.frequency >= 3"', 'frequent: "customer.rfm.freq >= 3"'), encoding="utf-8")

    with pytest.raises(Exception) as caught:
        load(workdir)

    assert [p.message for p in caught.value.problems] == [
        "customer.rfm.freq: unknown field; did you mean customer.rfm.frequency?"]


def test_a_template_that_fails_for_sample_data_is_an_error_with_its_line(workdir):
    project_dir(workdir, [rule("care", {"idle": "60d"}, template="care.sms.j2")],
                {"care.sms.j2": "{{ shop.signature }}{{ customer.name | default('亲') }}，\n"
                                "您的订单{{ order.id }}用得还好吗？"})  # an idle letter has no order

    assert errors(load(workdir)) == [
        f"{workdir / 'rules' / 'test.yaml'}:6: rules[0].template: {workdir / 'templates' / 'care.sms.j2'}:2: "
        "fails for sample data, so it would fail every message: order.id is missing: this message has no order"]


def test_an_unless_on_a_review_not_yet_given_is_simply_false(workdir, store, clock):
    """`unless: order.rating == 'bad'` passed check and then failed 41 messages with
    expression_error for orders not yet reviewed; it must hold back only bad reviews."""
    project_dir(workdir, [rule("care", "order.signed", unless="order.rating == 'bad'", kind="service",
                               wait="1d")], {"t.sms.j2": "{{ shop.signature }}已签收，有问题随时找我们"})
    project = load(workdir)
    assert errors(project) == []
    engine = Engine(project, store, recording_channels(project), clock)
    tz = project.config.timezone
    raw = [created("e-1", 0, customer="c-1", order="o-1"), event("e-2", "order.signed", 10, "c-1", "o-1"),
           created("e-3", 0, customer="c-2", order="o-2"), event("e-4", "order.signed", 10, "c-2", "o-2"),
           event("e-5", "order.reviewed", 60, "c-2", "o-2", data={"rating": "bad"})]
    raw[2]["customer"]["phone"] = "13900000000"
    engine.ingest([parse_event(r, tz) for r in raw])
    clock.set(T0 + timedelta(days=1, hours=2))

    engine.dispatch()

    assert sorted((r["customer_id"], r["outcome"], r["reason"]) for r in store.rows("message_log")) == [
        ("c-1", "sent", None), ("c-2", "cancelled", "unless")]
