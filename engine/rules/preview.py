"""`check`'s warnings about what a rule will do: an SMS template that renders longer than
its channel allows (for realistic sample data, as the channel sends it, with signature
and unsubscribe suffix), and a rule on the statutory days off of a year the installed
holiday calendar does not know yet."""

from __future__ import annotations

from datetime import date

from engine.config.loader import Config
from engine.errors import Problem, TemplateError
from engine.rules.calendar import days_off_known_until
from engine.rules.model import RuleSet
from engine.rules.sample import sample_context
from engine.rules.sms import sms_style
from engine.rules.templates import Templates


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


def calendar_warnings(rules: RuleSet, today: date) -> list[Problem]:
    """`day: first_day_off` needs China's official schedule of days off, which the
    `chinesecalendar` package carries up to the year it was released for: past it, the
    rule silently never fires. Warn from the last known year on (the next year's
    schedule is published late in the year before)."""
    needs = [r for r in rules.rules if r.trigger is not None and r.trigger.first_day_off]
    if not needs:
        return []
    known = days_off_known_until()
    if today.year < known:
        return []
    return [Problem(r.file, r.line, f"{r.key_path}.when.day",
                    f"day: first_day_off needs the statutory days off of {known + 1}, which the installed "
                    f"chinesecalendar does not have (it knows up to {known}): this rule will not fire in {known + 1} "
                    "until you update it (pip install -U chinesecalendar, then restart the daemon)", "warning", None)
            for r in needs]
