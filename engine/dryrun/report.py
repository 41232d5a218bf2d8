"""Decision records for people and for programs: the dry-run's timeline, its summary
per rule, and the JSON record format (a public contract, documented in the README)."""

from __future__ import annotations

from collections import Counter, defaultdict
from zoneinfo import ZoneInfo

from engine.outcomes import OUTCOMES as OUTCOME_ORDER
from engine.outcomes import Outcome
from engine.rules.model import RuleSet
from engine.rules.templates import sms_segments

JSON_FIELDS = ("time", "rule", "rule_name", "customer", "order", "channel", "kind", "outcome", "reason",
               "detail", "body", "segments")


def record(decision: dict, rules: RuleSet, tz: ZoneInfo, sms_channels: frozenset = frozenset()) -> dict:
    """One decision as the documented JSON object."""
    rule = rules.get(decision["rule_id"])
    sent = decision["outcome"] == Outcome.SENT
    return {
        "time": decision["time"].astimezone(tz).isoformat(),
        "rule": decision["rule_id"],
        "rule_name": rule.name if rule else decision["rule_id"],
        "customer": decision["customer_id"],
        "order": decision["order_id"],
        "channel": decision["channel"],
        "kind": decision["kind"],
        "outcome": decision["outcome"],
        "reason": decision["reason"],
        "detail": decision["detail"],
        "body": decision["body"] if sent else None,
        "segments": sms_segments(decision["body"]) if sent and decision["channel"] in sms_channels else None,
    }


def timeline(decisions: list[dict], tz: ZoneInfo, width: int = 100,
             sms_channels: frozenset = frozenset()) -> list[str]:
    if not decisions:
        return ["(no messages: no rule matched these events)"]
    rule_w = max(len(d["rule_id"]) for d in decisions)
    cust_w = max(len(d["customer_id"]) for d in decisions)
    chan_w = max(len(d["channel"] or "") for d in decisions)
    out = []
    for d in decisions:
        when = d["time"].astimezone(tz).strftime("%Y-%m-%d %H:%M")
        if d["outcome"] == Outcome.SENT:
            text = (d["body"] or "").replace("\n", " ")
            segments = sms_segments(text) if d["channel"] in sms_channels else 1
            if segments > 1:
                text = f"[{segments} SMS] {text}"
        else:
            text = f"{d['reason']}: {d['detail']}" if d["detail"] else str(d["reason"])
        if len(text) > width:
            text = text[: width - 1] + "…"
        out.append(f"{when}  {d['customer_id']:<{cust_w}}  {d['rule_id']:<{rule_w}}  "
                   f"{d['channel'] or '':<{chan_w}}  {d['outcome']:<10} {text}")
    return out


def summary(decisions: list[dict], rules: RuleSet) -> list[str]:
    """Per rule: counts by outcome, and for held-back outcomes the reasons."""
    counts: dict[str, Counter] = defaultdict(Counter)
    reasons: dict[str, Counter] = defaultdict(Counter)
    for d in decisions:
        counts[d["rule_id"]][d["outcome"]] += 1
        if d["outcome"] != Outcome.SENT:
            reasons[d["rule_id"]][f"{d['outcome']}/{d['reason']}"] += 1
    ids = [r.id for r in rules.rules if r.id in counts] + sorted(set(counts) - {r.id for r in rules.rules})
    unused = [r.id for r in rules.rules if r.id not in counts and r.enabled]
    if not ids:
        return ["summary: no decisions"] + ([f"rules that never matched: {', '.join(unused)}"] if unused else [])
    rule_w = max(len(i) for i in ids + ["rule"])
    header = f"{'rule':<{rule_w}}  " + "  ".join(f"{o:>10}" for o in OUTCOME_ORDER) + "  reasons"
    out = ["summary:", header]
    total: Counter = Counter()
    for rule_id in ids:
        total.update(counts[rule_id])
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons[rule_id].items()))
        out.append(f"{rule_id:<{rule_w}}  " + "  ".join(f"{counts[rule_id][o]:>10}" for o in OUTCOME_ORDER)
                   + (f"  {why}" if why else ""))
    out.append(f"{'total':<{rule_w}}  " + "  ".join(f"{total[o]:>10}" for o in OUTCOME_ORDER))
    if unused:
        out.append(f"rules that never matched: {', '.join(unused)}")
    return out
