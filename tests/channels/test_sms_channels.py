"""One definition of an SMS channel: a channel's type says whether it sends SMS (an SMS
provider always; a file outbox or a webhook when it has an `sms:` block; email and the
log never), and every marketing SMS carries the shop's signature and the unsubscribe
suffix, whatever the provider. Each SMS-capable type end to end: the engine sends a
marketing and a service message and we read what reached the provider."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from engine.app import Engine, build_channels, load_project
from engine.clock import VirtualClock
from engine.dryrun.replay import run_dry
from engine.intake.events import parse_event
from engine.rules.sms import sms_channels
from tests.channels.test_aliyun_sms import ENV, FakeAliyun
from tests.localhttp import LocalServer

NOW = datetime(2026, 11, 11, 4, 0, tzinfo=timezone.utc)  # 12:00 in Shanghai: no quiet hours
PROMO = "双11返场，全场8折"
NOTICE = "您的订单已发货"


def project(tmp_path: Path, channel: dict):
    for name in ("rules", "templates"):
        (tmp_path / name).mkdir()
    config = {"timezone": "Asia/Shanghai", "database": f"sqlite:///{tmp_path / 'engine.db'}",
              "shop": {"name": "山野户外", "signature": "【山野户外】"},
              "channels": {"sms": channel},
              "limits": {"marketing": {"per_customer": []}, "service": {"per_customer": []}}}
    rules = [{"id": "promo", "kind": "marketing", "when": "coupon.issued", "channel": "sms", "template": "promo.j2"},
             {"id": "notice", "kind": "service", "when": "order.shipped", "channel": "sms", "template": "notice.j2"}]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (tmp_path / "rules" / "r.yaml").write_text(yaml.safe_dump({"rules": rules}, allow_unicode=True), encoding="utf-8")
    (tmp_path / "templates" / "promo.j2").write_text(PROMO, encoding="utf-8")
    (tmp_path / "templates" / "notice.j2").write_text(NOTICE, encoding="utf-8")
    loaded = load_project(tmp_path / "config.yaml", tmp_path / "rules", tmp_path / "templates")
    assert [str(p) for p in loaded.problems] == []
    return loaded


def events(tz) -> list:
    customer = {"id": "c-1", "name": "王小明", "phone": "13800000001", "email": "c1@example.com"}
    return [parse_event({"id": "e-1", "type": "coupon.issued", "time": NOW.isoformat(), "customer": customer}, tz),
            parse_event({"id": "e-2", "type": "order.shipped", "time": NOW.isoformat(), "customer": customer,
                         "order": {"id": "o-1"}}, tz)]


def send_both(loaded) -> None:
    from engine.store import Store

    store = Store(loaded.config.database)
    engine = Engine(loaded, store, build_channels(loaded.config), VirtualClock(NOW))
    try:
        engine.ingest(events(loaded.config.timezone))
        engine.dispatch()
        assert sorted((r["rule_id"], r["outcome"]) for r in store.rows("message_log")) == [
            ("notice", "sent"), ("promo", "sent")]
    finally:
        engine.close()


def test_aliyun_sms_is_sms_without_an_sms_block(tmp_path, monkeypatch):
    fake = FakeAliyun()
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    try:
        loaded = project(tmp_path, {"type": "aliyun_sms", "sign_name": "山野户外", "template_code": "SMS_1",
                                    "access_key_id_env": "ALIYUN_ID", "access_key_secret_env": "ALIYUN_SECRET",
                                    "endpoint": fake.endpoint})
        send_both(loaded)
    finally:
        fake.close()

    sent = {json.loads(call["TemplateParam"])["content"]: call["SignName"] for call in fake.calls}
    # Aliyun puts 【山野户外】 in front itself (SignName); the text carries the unsubscribe suffix
    assert sent == {f"{PROMO}回T退订": "山野户外", NOTICE: "山野户外"}
    assert sms_channels(loaded.config) == {"sms"}


@pytest.mark.parametrize("sms_block", [{}, {"unsubscribe": "拒收请回复R"}], ids=["defaults", "own-suffix"])
def test_a_webhook_to_an_sms_gateway_with_an_sms_block_sends_sms(tmp_path, sms_block):
    received: list[dict] = []
    gateway = LocalServer(lambda request: (received.append(request.json()), (200, {"ok": True}))[1])
    try:
        loaded = project(tmp_path, {"type": "webhook", "url": f"{gateway.base}/send", "contact": "phone",
                                    "sms": sms_block})
        send_both(loaded)
    finally:
        gateway.close()

    suffix = sms_block.get("unsubscribe", "回T退订")
    assert sorted(m["body"] for m in received) == sorted([f"【山野户外】{PROMO}{suffix}", f"【山野户外】{NOTICE}"])


def test_a_file_outbox_with_an_sms_block_holds_sms(tmp_path):
    loaded = project(tmp_path, {"type": "file", "path": "outbox/sms.jsonl", "contact": "phone", "sms": {}})

    send_both(loaded)

    lines = [json.loads(line) for line in (tmp_path / "outbox" / "sms.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(m["body"] for m in lines) == sorted([f"【山野户外】{PROMO}回T退订", f"【山野户外】{NOTICE}"])


@pytest.mark.parametrize("channel", [
    {"type": "webhook", "url": "http://127.0.0.1:9/none", "contact": "phone"},
    {"type": "file", "path": "outbox/mail.jsonl", "contact": "email"},
    {"type": "log"},
    {"type": "smtp", "host": "127.0.0.1", "from": "shop@example.com", "contact": "email"},
], ids=["webhook", "file", "log", "smtp"])
def test_a_channel_without_sms_is_not_sms(tmp_path, channel):
    loaded = project(tmp_path, channel)

    assert sms_channels(loaded.config) == frozenset()


def test_the_dry_run_shows_an_aliyun_marketing_sms_as_the_customer_gets_it(tmp_path):
    loaded = project(tmp_path, {"type": "aliyun_sms", "sign_name": "山野户外", "template_code": "SMS_1",
                                "access_key_id_env": "ALIYUN_ID", "access_key_secret_env": "ALIYUN_SECRET"})
    lines = [(i, json.dumps(e.to_json(), ensure_ascii=False)) for i, e in enumerate(events(loaded.config.timezone), 1)]

    result = run_dry(loaded, lines)

    assert sorted((d["rule_id"], d["body"]) for d in result.decisions) == [
        ("notice", f"【山野户外】{NOTICE}"), ("promo", f"【山野户外】{PROMO}回T退订")]
