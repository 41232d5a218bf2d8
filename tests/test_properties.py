"""Property-based test of the no-spam promise (issue 3, BRIEF promise 1).

For random config limits, random rule sets and random event streams, the dry-run (the
real engine on a virtual clock) must never show, among the messages it reports as sent:

  (a) a customer over a cap: for every marketing cap COUNT/WINDOW, at most COUNT marketing
      messages to one customer in any rolling window of that length (a message sent exactly
      WINDOW ago no longer counts); the same for each per-channel marketing cap, counting that
      channel's marketing messages only; the same for the service caps, counting service
      messages only;
  (b) a marketing message inside the marketing quiet hours, in the customer's local time
      (customer.timezone, else the shop's), DST zones included;
  (c) two messages for one `once_per` key (rule + event / order / customer);
  (d) a marketing message after the customer's customer.unsubscribed event, on that event's
      data.channel, or on any channel when it names none.

Also checked, because they are stated as plainly in issue 3 and the checks are as small:
  (e) the same rule sent to the same customer twice within its `cooldown`;
  (f) a service message inside the service quiet hours, or any message outside its rule's
      own `window` (customer's local time).

The checkers below are the specification: they use only what was generated (the limits as
numbers, the events as written) and the public decision fields, never engine code. Each
runs twice: on `result.decisions` and on the documented JSON records (engine.report.record,
through json.dumps/json.loads), so the public format is covered too.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from engine.app import load_project
from engine.dryrun.replay import run_dry
from engine.dryrun.report import record

SHOP_TZ = "Asia/Shanghai"
SHOP_ZONE = ZoneInfo(SHOP_TZ)
# Start days: an ordinary week, and the weeks of the US/EU daylight-saving changes of 2026
# (US: 03-08 and 11-01; EU: 03-29 and 10-25), in the shop's time zone.
STARTS = [datetime(2026, 11, 9, 0, 0, tzinfo=SHOP_ZONE), datetime(2026, 3, 6, 12, 0, tzinfo=SHOP_ZONE),
          datetime(2026, 3, 27, 12, 0, tzinfo=SHOP_ZONE), datetime(2026, 10, 23, 12, 0, tzinfo=SHOP_ZONE),
          datetime(2026, 10, 30, 12, 0, tzinfo=SHOP_ZONE)]
CUSTOMER_ZONES = [None, None, "America/New_York", "Europe/Berlin", "Asia/Shanghai"]
ORDER_TYPES = ["order.created", "order.paid", "order.shipped", "order.signed"]
TRIGGER_TYPES = ORDER_TYPES + ["customer.updated"]
CHANNELS = ["sms", "email"]
TEMPLATE = "{{ customer.id }} 你好 [{{ event.id }}]"  # the event id lets the checker find once_per: event keys
EVENT_IN_BODY = re.compile(r"\[(e\d+)\]")


# --- the generated scenario, as plain numbers the checkers use ------------------------------

@dataclass(frozen=True)
class Cap:
    count: int
    window: timedelta

    @property
    def text(self) -> str:
        return f"{self.count}/{_dur(self.window)}"


@dataclass(frozen=True)
class Daily:
    """[start, end) in local wall-clock time; end <= start spans midnight."""

    start: time
    end: time

    @property
    def text(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass
class Limits:
    marketing_caps: list[Cap]
    service_caps: list[Cap]
    channel_caps: dict[str, list[Cap]]  # marketing only
    marketing_quiet: Daily | None
    service_quiet: Daily | None
    sms_rate: str | None
    max_deferral: str | None
    batch_size: int | None = None


@dataclass
class RuleSpec:
    id: str
    when: list[str]
    kind: str
    channel: str
    once_per: str  # event | order | customer (written to the YAML only sometimes; default event)
    write_once_per: bool
    wait: timedelta | None
    expires: str | None
    cooldown: timedelta | None
    window: Daily | None
    priority: int | None
    on_limit: str | None

    def yaml(self) -> dict:
        out: dict = {"id": self.id, "kind": self.kind, "when": self.when[0] if len(self.when) == 1 else self.when,
                     "channel": self.channel, "template": f"{self.id}.j2"}
        if self.wait:
            out["wait"] = _dur(self.wait)
        if self.expires:
            out["expires"] = self.expires
        if self.cooldown:
            out["cooldown"] = _dur(self.cooldown)
        if self.window:
            out["window"] = self.window.text
        if self.priority is not None:
            out["priority"] = self.priority
        if self.on_limit:
            out["on_limit"] = self.on_limit
        if self.write_once_per:
            out["once_per"] = self.once_per
        return out


@dataclass
class Scenario:
    limits: Limits
    rules: list[RuleSpec]
    events: list[dict]  # canonical events, in file order (not time order; duplicates possible)
    zones: dict[str, str | None]  # customer id -> its timezone (fixed for the whole stream)
    config_text: str = ""
    rules_text: str = ""
    lines: list[tuple[int, str]] = field(default_factory=list)


def _dur(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def event_time(ev: dict) -> datetime:
    """An event's time as the BRIEF defines it: a time without an offset is in the shop's zone."""
    t = datetime.fromisoformat(ev["time"])
    return (t if t.tzinfo else t.replace(tzinfo=SHOP_ZONE)).astimezone(timezone.utc)


# --- strategies ----------------------------------------------------------------------------

def caps(choices: list[str], max_size: int):
    def parse(text: str) -> Cap:
        count, span = text.split("/")
        unit = {"h": 60, "d": 1440}[span[-1]]
        return Cap(int(count), timedelta(minutes=int(span[:-1]) * unit))
    return st.lists(st.sampled_from(choices), max_size=max_size, unique=True).map(lambda xs: [parse(x) for x in xs])


def daily(text: str) -> Daily:
    a, b = text.split("-")
    return Daily(time.fromisoformat(a), time.fromisoformat(b))


limits_strategy = st.builds(
    Limits,
    marketing_caps=caps(["1/1d", "2/1d", "3/1d", "2/3d", "3/7d", "1/12h", "1/3d"], 3),
    service_caps=caps(["6/1d", "2/1d", "1/1d", "3/7d"], 2),
    # sms always has a per-channel marketing cap (it binds when the marketing caps are looser)
    channel_caps=st.fixed_dictionaries({"sms": caps(["2/1d", "1/1d", "1/2d"], 2)},
                                       optional={"email": caps(["1/1d", "2/3d"], 1)}),
    # 23:30-02:30 ends inside the hour that DST skips or repeats in New York and Berlin
    marketing_quiet=st.sampled_from([None, "21:00-09:00", "22:00-08:00", "20:30-10:15", "13:00-14:00", "23:30-02:30"])
    .map(lambda t: t and daily(t)),
    service_quiet=st.sampled_from([None, "23:00-07:00", "22:00-08:00"]).map(lambda t: t and daily(t)),
    sms_rate=st.sampled_from([None, "50/s", "1/m", "3/h"]),
    max_deferral=st.sampled_from([None, "12h", "1d", "3d"]),
    batch_size=st.sampled_from([None, 1, 2, 7]),  # small dispatch batches: one minute's decisions span several
)


@st.composite
def rule_strategy(draw, index: int) -> RuleSpec:
    when = draw(st.lists(st.sampled_from(TRIGGER_TYPES), min_size=1, max_size=2, unique=True))
    once_per = draw(st.sampled_from(["event", "order", "customer"]))
    if once_per == "order" and not any(t.startswith("order.") for t in when):
        once_per = "customer"  # the loader rightly refuses once_per: order without order events
    wait_minutes = draw(st.one_of(st.just(0), st.sampled_from([10, 30, 60, 300, 1440, 2880, 4320]),
                                  st.integers(0, 3 * 1440)))
    return RuleSpec(
        id=f"r{index}",
        when=when,
        kind=draw(st.sampled_from(["service", "marketing"])),
        channel=draw(st.sampled_from(CHANNELS)),
        once_per=once_per,
        write_once_per=once_per != "event" or draw(st.booleans()),
        wait=timedelta(minutes=wait_minutes) if wait_minutes else None,
        expires=draw(st.sampled_from([None, None, "1h", "6h", "12h", "1d", "2d"])),
        cooldown=draw(st.sampled_from([None, None, timedelta(hours=1), timedelta(days=1), timedelta(days=3),
                                       timedelta(days=7)])),
        window=draw(st.sampled_from([None, None, "10:00-20:00", "09:00-12:00", "20:00-23:00", "22:00-02:00",
                                     "14:30-15:00", "02:30-04:00"]).map(lambda t: t and daily(t))),
        priority=draw(st.one_of(st.none(), st.integers(-5, 10))),
        on_limit=draw(st.sampled_from([None, "skip", "defer"])),
    )


@st.composite
def scenarios(draw) -> Scenario:
    limits = draw(limits_strategy)
    n_rules = draw(st.integers(1, 6))
    rules = [draw(rule_strategy(i)) for i in range(n_rules)]

    n_customers = draw(st.integers(1, 8))
    profiles, zones = {}, {}
    for c in range(n_customers):
        cid = f"c{c}"
        zone = draw(st.sampled_from(CUSTOMER_ZONES))
        profile = {"id": cid, "name": f"顾客{c}"}
        if draw(st.sampled_from([True] * 9 + [False])):  # a few customers cannot be reached (no_contact)
            profile["phone"] = f"1380000{c:04d}"
        if draw(st.sampled_from([True] * 9 + [False])):
            profile["email"] = f"{cid}@example.com"
        if zone:
            profile["timezone"] = zone
        profiles[cid], zones[cid] = profile, zone

    start = draw(st.sampled_from(STARTS))
    n_events = draw(st.integers(1, 60))  # drawn first: plain st.lists would mostly stay short
    raw = draw(st.lists(st.tuples(
        st.integers(0, n_customers - 1),                                   # customer
        st.sampled_from(ORDER_TYPES * 3 + ["customer.updated", "customer.unsubscribed"]),
        st.integers(0, 2),                                                 # order of that customer
        st.one_of(st.integers(0, 4 * 1440 - 1),                            # minute (some on the same
                  st.integers(0, 7).map(lambda h: h * 720)),               #   few minutes), second
        st.integers(0, 59),
        st.sampled_from([None, "sms", "email"]),                           # unsubscribe channel
        st.sampled_from(["offset", "utc", "naive"]),                       # how the time is written
        st.booleans(),                                                     # ids only (when not first)
    ), min_size=n_events, max_size=n_events))

    events = []
    for n, (c, etype, k, minute, second, unsub, style, ids_only) in enumerate(raw, start=1):
        when = start + timedelta(minutes=minute, seconds=second)
        stamp = {"offset": when.isoformat(), "utc": when.astimezone(timezone.utc).isoformat(),
                 "naive": when.replace(tzinfo=None).isoformat()}[style]
        ev = {"id": f"e{n}", "type": etype, "time": stamp, "customer": {"id": f"c{c}"}, "_ids_only": ids_only}
        if etype.startswith("order."):
            ev["order"] = {"id": f"o{c}-{k}", "amount": 99.0}
        if etype == "customer.unsubscribed" and unsub:
            ev["data"] = {"channel": unsub}
        events.append(ev)
    # The full profile rides on each customer's first event (in time order, as the dry-run
    # reads them), so a customer's time zone is the same for every message; later events
    # carry it too, or only the ids.
    seen = set()
    for ev in sorted(events, key=event_time):  # stable: ties keep file order, like the dry-run
        cid = ev["customer"]["id"]
        if cid not in seen or not ev["_ids_only"]:
            ev["customer"] = dict(profiles[cid])
        seen.add(cid)
    for ev in events:
        del ev["_ids_only"]
    # Some events are delivered twice (same id): ingestion must stay idempotent.
    dups = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    events = events + [events[i] for i in dups]

    scenario = Scenario(limits, rules, events, zones)
    scenario.config_text = config_yaml(limits)
    scenario.rules_text = yaml.safe_dump({"rules": [r.yaml() for r in rules]}, allow_unicode=True, sort_keys=False)
    scenario.lines = [(i, json.dumps(ev, ensure_ascii=False)) for i, ev in enumerate(events, start=1)]
    return scenario


def config_yaml(limits: Limits) -> str:
    def kind(caps_: list[Cap], quiet: Daily | None) -> dict:
        # both keys always written: a missing key would mean the engine's defaults
        return {"per_customer": [c.text for c in caps_], "quiet_hours": quiet.text if quiet else None}

    channel_limits: dict = {name: {"per_customer": [c.text for c in cs]} for name, cs in limits.channel_caps.items()}
    if limits.sms_rate:
        channel_limits.setdefault("sms", {})["rate"] = limits.sms_rate
    data = {
        "timezone": SHOP_TZ,
        "shop": {"name": "测试店", "signature": "【测试店】"},
        "channels": {"sms": {"type": "recording", "contact": "phone", "sms": {"signature": "【测试店】"}},
                     "email": {"type": "file", "path": "outbox/email.jsonl", "contact": "email"}},
        "limits": {"marketing": kind(limits.marketing_caps, limits.marketing_quiet),
                   "service": kind(limits.service_caps, limits.service_quiet),
                   "channels": channel_limits},
    }
    if limits.max_deferral:
        data["limits"]["max_deferral"] = limits.max_deferral
    if limits.batch_size:
        data["dispatch"] = {"batch_size": limits.batch_size}
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# --- the checkers: the specification ------------------------------------------------------

@dataclass(frozen=True)
class Sent:
    time: datetime
    rule: str
    customer: str
    order: str | None
    channel: str
    kind: str
    body: str


def sent_from_decisions(decisions: list[dict]) -> list[Sent]:
    return [Sent(d["time"], d["rule_id"], d["customer_id"], d["order_id"], d["channel"], d["kind"], d["body"])
            for d in decisions if d["outcome"] == "sent"]


def sent_from_records(records: list[dict]) -> list[Sent]:
    return [Sent(datetime.fromisoformat(r["time"]), r["rule"], r["customer"], r["order"], r["channel"], r["kind"],
                 r["body"]) for r in records if r["outcome"] == "sent"]


def over_cap(sent: list[Sent], cap: Cap, label: str) -> list[str]:
    """`sent` already filtered to what the cap counts. The fullest rolling window ends at a
    send, so it is enough to count, for each send, the sends in (its time - window, its time]."""
    out = []
    by_customer = defaultdict(list)
    for s in sent:
        by_customer[s.customer].append(s.time)
    for customer, times in by_customer.items():
        for t in times:
            inside = sorted(u for u in times if t - cap.window < u <= t)
            if len(inside) > cap.count:
                out.append(f"(a) {label} {cap.text}: {customer} got {len(inside)} messages in the window ending "
                           f"{t.astimezone(SHOP_ZONE):%m-%d %H:%M:%S}: "
                           + ", ".join(f"{u.astimezone(SHOP_ZONE):%m-%d %H:%M:%S}" for u in inside))
                break
    return out


def check_caps(sent: list[Sent], limits: Limits) -> list[str]:
    marketing = [s for s in sent if s.kind == "marketing"]
    service = [s for s in sent if s.kind == "service"]
    out = []
    for cap in limits.marketing_caps:
        out += over_cap(marketing, cap, "marketing cap")
    for cap in limits.service_caps:
        out += over_cap(service, cap, "service cap")
    for channel, channel_caps in limits.channel_caps.items():
        for cap in channel_caps:
            out += over_cap([s for s in marketing if s.channel == channel], cap, f"{channel} marketing cap")
    return out


def local(s: Sent, zones: dict[str, str | None]) -> datetime:
    return s.time.astimezone(ZoneInfo(zones.get(s.customer) or SHOP_TZ))


def check_quiet_hours(sent: list[Sent], limits: Limits, zones: dict[str, str | None]) -> list[str]:
    out = []
    for s in sent:
        quiet = limits.marketing_quiet if s.kind == "marketing" else limits.service_quiet
        wall = local(s, zones)
        if quiet and quiet.contains(wall.time()):
            tag = "(b)" if s.kind == "marketing" else "(f)"
            out.append(f"{tag} {s.kind} {s.rule} to {s.customer} sent at {wall.isoformat()} "
                       f"({wall.tzinfo}), inside quiet hours {quiet.text}")
    return out


def check_windows(sent: list[Sent], rules: dict[str, RuleSpec], zones: dict[str, str | None]) -> list[str]:
    out = []
    for s in sent:
        window = rules[s.rule].window
        wall = local(s, zones)
        if window and not window.contains(wall.time()):
            out.append(f"(f) {s.rule} to {s.customer} sent at {wall.isoformat()} ({wall.tzinfo}), "
                       f"outside its window {window.text}")
    return out


def once_per_key(s: Sent, rule: RuleSpec) -> tuple:
    if rule.once_per == "customer":
        return (rule.id, "customer", s.customer)
    if rule.once_per == "order" and s.order is not None:
        return (rule.id, "order", s.order)
    match = EVENT_IN_BODY.search(s.body or "")
    assert match, f"the body {s.body!r} lost the event id its template writes"
    return (rule.id, "event", match.group(1))  # once_per: event, or order on an event without an order


def check_once_per(sent: list[Sent], rules: dict[str, RuleSpec]) -> list[str]:
    seen: dict[tuple, Sent] = {}
    out = []
    for s in sent:
        key = once_per_key(s, rules[s.rule])
        if key in seen:
            out.append(f"(c) once_per {key[1]}: {key} sent twice, at {seen[key].time.isoformat()} and "
                       f"{s.time.isoformat()}")
        seen.setdefault(key, s)
    return out


def check_unsubscribe(sent: list[Sent], events: list[dict]) -> list[str]:
    """From the moment of the event on: a message decided at exactly that second is taken as
    decided just before it (the dry-run decides what is due before it ingests an event at the
    same time), anything later must not go."""
    unsubs = [(ev["customer"]["id"], event_time(ev), (ev.get("data") or {}).get("channel"))
              for ev in events if ev["type"] == "customer.unsubscribed"]
    out = []
    for s in sent:
        if s.kind != "marketing":
            continue
        for customer, at, channel in unsubs:
            if customer == s.customer and at < s.time and channel in (None, s.channel):
                out.append(f"(d) marketing {s.rule} on {s.channel} to {s.customer} sent at {s.time.isoformat()} "
                           f"after unsubscribing ({channel or 'all channels'}) at {at.isoformat()}")
                break
    return out


def check_cooldowns(sent: list[Sent], rules: dict[str, RuleSpec]) -> list[str]:
    out = []
    by_key = defaultdict(list)
    for s in sent:
        by_key[(s.rule, s.customer)].append(s.time)
    for (rule_id, customer), times in by_key.items():
        cooldown = rules[rule_id].cooldown
        times.sort()
        if cooldown:
            for a, b in zip(times, times[1:]):
                if b - a < cooldown:
                    out.append(f"(e) cooldown {_dur(cooldown)} of {rule_id}: {customer} got it at "
                               f"{a.isoformat()} and {b.isoformat()}")
    return out


def violations(sent: list[Sent], scenario: Scenario) -> list[str]:
    rules = {r.id: r for r in scenario.rules}
    out = []
    for s in sent:  # the fields the checks sort by must be the rule's own
        rule = rules[s.rule]
        if (s.kind, s.channel) != (rule.kind, rule.channel):
            out.append(f"{s.rule} sent as {s.kind}/{s.channel}, but the rule is {rule.kind}/{rule.channel}")
    return (out + check_caps(sent, scenario.limits) + check_quiet_hours(sent, scenario.limits, scenario.zones)
            + check_once_per(sent, rules) + check_unsubscribe(sent, scenario.events)
            + check_cooldowns(sent, rules) + check_windows(sent, rules, scenario.zones))


# --- running a scenario ---------------------------------------------------------------------

def dry_run(scenario: Scenario):
    """Write config.yaml, rules and templates to a scratch folder and run the dry-run."""
    with tempfile.TemporaryDirectory(prefix="prop-") as tmp:
        root = Path(tmp)
        (root / "rules").mkdir()
        (root / "templates").mkdir()
        (root / "config.yaml").write_text(scenario.config_text, encoding="utf-8")
        (root / "rules" / "generated.yaml").write_text(scenario.rules_text, encoding="utf-8")
        for rule in scenario.rules:
            (root / "templates" / f"{rule.id}.j2").write_text(TEMPLATE, encoding="utf-8")
        project = load_project(root / "config.yaml", root / "rules", root / "templates")
        assert not project.errors, [str(p) for p in project.errors]
        assert [r.id for r in project.rules.rules] == [r.id for r in scenario.rules]
        result = run_dry(project, scenario.lines, workdir=root)
        assert result.rejected == [], result.rejected
        records = [json.loads(json.dumps(record(d, project.rules, project.config.timezone), ensure_ascii=False))
                   for d in result.decisions]
    return result, records


def show(scenario: Scenario) -> None:
    note("config.yaml:\n" + scenario.config_text)
    note("rules/generated.yaml:\n" + scenario.rules_text)
    note("events.jsonl:\n" + "\n".join(text for _, text in scenario.lines))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_the_dry_run_never_shows_spam(scenario):
    show(scenario)
    result, records = dry_run(scenario)
    from_decisions = sent_from_decisions(result.decisions)
    from_records = sent_from_records(records)
    note("sent:\n" + "\n".join(f"{s.time.astimezone(SHOP_ZONE):%m-%d %H:%M:%S} {s.customer} {s.rule} {s.kind} "
                               f"{s.channel} {s.body}" for s in from_decisions))
    assert from_records == from_decisions  # the JSON says what the engine decided
    assert violations(from_decisions, scenario) == []
    assert violations(from_records, scenario) == []


# --- the checkers flag what they should (a spec that accepts everything proves nothing) ----

T = datetime(2026, 11, 11, 12, 0, tzinfo=SHOP_ZONE)


def _sent(minutes: float, rule: str = "r0", customer: str = "c0", kind: str = "marketing", channel: str = "sms",
          order: str | None = "o0-0", event: str = "e1") -> Sent:
    return Sent(T + timedelta(minutes=minutes), rule, customer, order, channel, kind, f"{customer} 你好 [{event}]")


def _rule(**kw) -> RuleSpec:
    base = dict(id="r0", when=["order.paid"], kind="marketing", channel="sms", once_per="event", write_once_per=False,
                wait=None, expires=None, cooldown=None, window=None, priority=None, on_limit=None)
    return RuleSpec(**{**base, **kw})


def _limits(**kw) -> Limits:
    base = dict(marketing_caps=[], service_caps=[], channel_caps={}, marketing_quiet=None, service_quiet=None,
                sms_rate=None, max_deferral=None)
    return Limits(**{**base, **kw})


def test_cap_checker_counts_rolling_windows_per_kind_and_channel():
    day = timedelta(days=1)
    limits = _limits(marketing_caps=[Cap(1, day)], service_caps=[Cap(2, day)], channel_caps={"email": [Cap(1, day)]})
    assert check_caps([_sent(0), _sent(24 * 60)], limits) == []  # exactly one window later: no longer counted
    assert len(check_caps([_sent(0), _sent(24 * 60 - 1)], limits)) == 1
    assert check_caps([_sent(0), _sent(1, kind="service"), _sent(2, kind="service")], limits) == []
    assert len(check_caps([_sent(i, kind="service") for i in range(3)], limits)) == 1
    assert check_caps([_sent(0, customer="c0"), _sent(1, customer="c1")], limits) == []
    two_a_day = _limits(channel_caps={"email": [Cap(1, day)]})
    assert check_caps([_sent(0, channel="sms"), _sent(1, channel="sms")], two_a_day) == []
    assert len(check_caps([_sent(0, channel="email"), _sent(1, channel="email")], two_a_day)) == 1
    assert check_caps([_sent(0, channel="email", kind="service"), _sent(1, channel="email", kind="service")],
                      two_a_day) == []


def test_quiet_hour_checker_uses_the_customers_zone():
    limits = _limits(marketing_quiet=daily("21:00-09:00"))
    assert len(check_quiet_hours([_sent(10 * 60)], limits, {"c0": None})) == 1  # 22:00 Shanghai
    assert check_quiet_hours([_sent(0)], limits, {"c0": None}) == []  # 12:00 Shanghai
    assert len(check_quiet_hours([_sent(0)], limits, {"c0": "America/New_York"})) == 1  # 23:00 New York
    assert check_quiet_hours([_sent(0, kind="service")], limits, {"c0": "America/New_York"}) == []
    assert check_quiet_hours([_sent(-3 * 60)], limits, {"c0": None}) == []  # 09:00 is allowed again


def test_once_per_checker_keys():
    assert len(check_once_per([_sent(0, event="e1"), _sent(5, event="e1")], {"r0": _rule()})) == 1
    assert check_once_per([_sent(0, event="e1"), _sent(5, event="e2")], {"r0": _rule()}) == []
    by_order = {"r0": _rule(once_per="order")}
    assert len(check_once_per([_sent(0, event="e1"), _sent(5, event="e2")], by_order)) == 1
    assert check_once_per([_sent(0, order=None, event="e1"), _sent(5, order=None, event="e2")], by_order) == []
    by_customer = {"r0": _rule(once_per="customer")}
    assert len(check_once_per([_sent(0, order="o0-0"), _sent(5, order="o0-1", event="e2")], by_customer)) == 1


def test_unsubscribe_checker_by_channel():
    at = T.isoformat()
    unsub_sms = [{"id": "u", "type": "customer.unsubscribed", "time": at, "customer": {"id": "c0"},
                  "data": {"channel": "sms"}}]
    unsub_all = [{"id": "u", "type": "customer.unsubscribed", "time": at, "customer": {"id": "c0"}}]
    assert len(check_unsubscribe([_sent(1)], unsub_sms)) == 1
    assert check_unsubscribe([_sent(1, channel="email")], unsub_sms) == []
    assert len(check_unsubscribe([_sent(1, channel="email")], unsub_all)) == 1
    assert check_unsubscribe([_sent(-1), _sent(1, kind="service"), _sent(1, customer="c1")], unsub_all) == []


def test_cooldown_and_window_checkers():
    rules = {"r0": _rule(cooldown=timedelta(days=1), window=daily("10:00-20:00"))}
    assert len(check_cooldowns([_sent(0), _sent(60)], rules)) == 1
    assert check_cooldowns([_sent(0), _sent(24 * 60)], rules) == []
    assert check_windows([_sent(0)], rules, {"c0": None}) == []
    assert len(check_windows([_sent(8 * 60)], rules, {"c0": None})) == 1  # 20:00 is outside [10:00, 20:00)
