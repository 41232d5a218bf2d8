"""Wiring: a Project is config + templates + rules as loaded from disk; an Engine puts
a project together with a store, channels, a gate and a clock. The daemon, `ingest`
and the dry-run all build an Engine; only the store, channels and clock differ."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Iterable

from engine.channels import Channel, create_channel
from engine.clock import Clock
from engine.config.loader import Config, default_config, load_config
from engine.delivery.dispatch import ChannelHealth, Dispatcher, DispatchReport
from engine.delivery.gate import Gate
from engine.delivery.pacing import SendPace
from engine.intake.events import Event
from engine.intake.ingest import IngestReport, Intake
from engine.rules.fields import Fields
from engine.rules.loader import load_rules
from engine.rules.model import RuleSet
from engine.rules.preview import calendar_warnings, sms_length_warnings
from engine.rules.sms import sms_style
from engine.rules.templates import Templates
from engine.store import Store
from engine.triggers.sweeps import Sweeper, SweepReport

SEND_THREADS = 8  # channels sending side by side in one dispatch pass


@dataclass
class Project:
    config: Config
    templates: Templates
    rules: RuleSet
    sources: tuple[Path | None, Path, Path] | None = None  # config.yaml, rules/, templates/ it was read from

    @property
    def problems(self):
        return self.rules.problems

    @property
    def errors(self):
        return self.rules.errors


def load_project(config_path: Path | None, rules_dir: Path, templates_dir: Path, today: date | None = None) -> Project:
    """Load config, templates and rules. Raises ConfigError for a broken config;
    rule problems are collected in project.rules.problems (broken rules left out).
    `today` (the shop's date): also warn about what a rule will not do from now on (a
    holiday calendar that ends)."""
    if config_path is not None:
        config = load_config(config_path)
    else:
        config = default_config()
    templates = Templates(templates_dir, config.timezone, config.shop)
    templates.fields = Fields(config.fields, tuple(config.shop))
    templates.config_segments = dict(config.segments)
    templates.define_segments(config.segments, {name: "config.yaml" for name in config.segments})
    templates.fingerprints  # noqa: B018 - what the templates were as loaded (a reload compares)
    rules = load_rules(rules_dir, templates, config.channels.keys())
    rules.problems.extend(sms_length_warnings(rules, templates, config))
    if today is not None:
        rules.problems.extend(calendar_warnings(rules, today))
    return Project(config, templates, rules, (config_path, rules_dir, templates_dir))


def build_channels(config: Config) -> dict[str, Channel]:
    return {name: create_channel(name, c.type, c.options, config.base_dir) for name, c in config.channels.items()}


class Engine:
    def __init__(self, project: Project, store: Store, channels: dict[str, Channel], clock: Clock,
                 gate: Gate | None = None):
        self.store = store
        self.channels = channels
        self.clock = clock
        self.channel_health = ChannelHealth()  # kept across reloads, like the channels
        self.send_pace = SendPace(clock.now, clock.sleep_until)  # likewise: the send loops' pacing
        self.log_decisions = False  # the daemon logs one line per decision
        # the threads that send each channel's share of a batch side by side, so one slow
        # provider does not hold up the others (made as needed; shut down by close)
        self.senders = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send")
        self._wire(project, gate)

    def _wire(self, project: Project, gate: Gate | None = None) -> None:
        """Build the parts that read the project. Each part is bound to this project, not
        to whatever `self.project` is later: a dispatch pass that began before a reload
        finishes with the rules, templates and limits it began with."""
        config = project.config
        rules = lambda: project.rules  # noqa: E731
        intake = Intake(self.store, rules, config.timezone, config.shop, config.profile)
        dispatcher = Dispatcher(self.store, rules, project.templates, self.channels,
                                gate or Gate(config.limits, config.timezone), config.timezone, config.shop,
                                config.dispatch.batch_size, config.profile, config.dispatch.retry,
                                self.channel_health, self.send_pace, self.senders)
        dispatcher.log_decisions = self.log_decisions
        dispatcher.sms = {name: style for name, c in config.channels.items()
                          if (style := sms_style(c.type, c.options, config.shop)) is not None}
        sweeper = Sweeper(self.store, rules, config.timezone, config.shop, config.profile,
                          segments=lambda: project.templates.segment_sources,
                          parse=project.templates.parse_expression)
        self.project, self.intake, self.dispatcher, self.sweeper = project, intake, dispatcher, sweeper

    def swap(self, project: Project) -> None:
        """Put a newly loaded project in place (hot reload). The next ingest, dispatch
        pass and sweep use it; channels stay (a change of channels needs a restart)."""
        self._wire(project)

    def current_rules(self) -> RuleSet:
        return self.project.rules

    def ingest(self, events: Iterable[Event], *, virtual: bool = False) -> IngestReport:
        """Store events and schedule what they start. virtual: each arrives at its own time."""
        return self.intake.ingest(events, None if virtual else self.clock.now())

    def dispatch(self, now: datetime | None = None, *, virtual: bool = False, stop=None) -> DispatchReport:
        return self.dispatcher.run(now or self.clock.now(), virtual=virtual, stop=stop,
                                   clock=None if now is not None else self.clock.now)

    def sweep(self, now: datetime | None = None) -> SweepReport:
        """Enqueue what the calendar rules (idle, birthday, holiday, date, cron) have due."""
        return self.sweeper.run(now or self.clock.now())

    def housekeeping(self) -> int:
        """Return claims abandoned by a crashed dispatcher to the queue."""
        return self.store.release_stale_claims(self.clock.now(), self.project.config.dispatch.lease)

    def close(self) -> None:
        """Finish the sends in hand, then close the channels and the store."""
        self.senders.shutdown(wait=True)
        for channel in self.channels.values():
            channel.close()
        self.store.close()
