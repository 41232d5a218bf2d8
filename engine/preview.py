"""`check`'s SMS length warning: each SMS rule's template rendered with realistic
sample data, as the channel would send it (signature, unsubscribe suffix), and measured
in billed segments."""

from __future__ import annotations

from engine.config import Config
from engine.errors import Problem, TemplateError
from engine.rules.model import RuleSet
from engine.rules.sample import sample_context
from engine.sms import sms_style
from engine.templates import Templates


def sms_length_warnings(rules: RuleSet, templates: Templates, config: Config) -> list[Problem]:
    out = []
    for rule in rules.rules:
        channel = config.channels.get(rule.channel)
        style = sms_style(channel.type, channel.options, config.shop) if channel is not None else None
        if style is None:
            continue
        context = sample_context(rule.when, rule.event_label, templates.fields, config.shop, config.timezone,
                                 config.profile)
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
