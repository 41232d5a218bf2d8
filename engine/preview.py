"""`check`'s SMS length warning: each SMS rule's template rendered with realistic
sample data, as the channel would send it (signature, unsubscribe suffix), and measured
in billed segments."""

from __future__ import annotations

from datetime import datetime, timezone

from engine.config import Config
from engine.context import build_context
from engine.errors import Problem, TemplateError
from engine.rules.model import RuleSet
from engine.sms import SmsStyle
from engine.templates import Templates

SAMPLE_TIME = datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)
SAMPLE_CUSTOMER = {"id": "c-1", "name": "王小明", "phone": "13800000000", "email": "buyer@example.com",
                   "birthday": "1990-05-01", "timezone": None, "tags": [], "attrs": {}, "opted_out": []}
SAMPLE_ORDER = {"id": "o-10001", "customer_id": "c-1", "status": "signed", "amount": 399.0, "attrs": {},
                "items": [{"sku": "SB-01", "name": "羽绒睡袋", "category": "outdoor", "qty": 1, "price": 399.0}],
                "created_at": SAMPLE_TIME, "paid_at": SAMPLE_TIME, "shipped_at": SAMPLE_TIME,
                "signed_at": SAMPLE_TIME}
SAMPLE_DATA = {"carrier": "顺丰速运", "tracking_no": "SF1234567890123", "rating": "good", "text": "很好用"}


def sms_length_warnings(rules: RuleSet, templates: Templates, config: Config) -> list[Problem]:
    out = []
    for rule in rules.rules:
        channel = config.channels.get(rule.channel)
        if channel is None or "sms" not in channel.options:
            continue
        style = SmsStyle.from_options(channel.options.get("sms"), config.shop)
        context = build_context(SAMPLE_CUSTOMER, SAMPLE_ORDER, {"id": "e-1", "type": rule.event_label, "time": SAMPLE_TIME},
                                SAMPLE_DATA, config.shop, SAMPLE_TIME, config.timezone)
        try:
            body = style.finish(templates.render(rule.template, context), rule.kind)
        except TemplateError:
            continue  # needs data the sample lacks; the dry-run measures real messages
        segments = style.segments(body)
        if segments > style.max_segments:
            out.append(Problem(rule.file, rule.line, f"{rule.key_path}.template",
                               f"{rule.template} renders to {segments} SMS segments ({len(body)} characters with "
                               f"signature{' and unsubscribe suffix' if rule.kind == 'marketing' else ''}) for "
                               f"sample data; channel {rule.channel} allows {style.max_segments}: shorten the text",
                               "warning", None))
    return out
