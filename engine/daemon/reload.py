"""Hot reload: config.yaml, rules/ and templates/ are watched (watchfiles); a change is
validated as `check` validates it and swapped in whole, or not at all.

A broken file is reported (log, GET /healthz) and the last good version keeps running.
A rule that is gone (removed, or `enabled: false`) schedules nothing more, and what it
had scheduled is cancelled with reason `rule_removed`. Settings the running daemon
cannot change in place (the database, the HTTP address, the channels) are reported as
needing a restart and keep their running values."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import watchfiles
from loguru import logger

from engine.app import Engine, Project, load_project
from engine.errors import ConfigError

log = logger.bind(component="reload")
WATCH_RETRY = 1.0  # seconds between looks for a watched folder that is gone


@dataclass
class ReloadResult:
    at: datetime
    ok: bool
    errors: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    cancelled: int = 0  # pending messages of removed rules
    restart_needed: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)  # templates added, removed or edited

    def as_dict(self, tz=None) -> dict:
        """`tz`: show the time in it (the shop's), with its offset."""
        return {"at": (self.at.astimezone(tz) if tz is not None else self.at).isoformat(), "ok": self.ok,
                "errors": self.errors, "added": self.added,
                "removed": self.removed, "changed": self.changed, "templates": self.templates,
                "cancelled": self.cancelled, "restart_needed": self.restart_needed}


class Reloader:
    def __init__(self, engine: Engine, config_path: Path, rules_dir: Path, templates_dir: Path):
        self.engine = engine
        self.config_path, self.rules_dir, self.templates_dir = config_path, rules_dir, templates_dir
        self.last: ReloadResult | None = None
        self.on_reload: list = []  # called with each ReloadResult (the daemon records its health)
        self._lock = threading.Lock()

    def reload(self) -> ReloadResult:
        with self._lock:
            try:
                result = self._reload()
            except Exception as exc:  # noqa: BLE001 - whatever happened, it is a refused reload, reported
                log.exception("reload failed")
                result = self._refused(self.engine.clock.now(), [f"reload failed: {type(exc).__name__}: {exc}"])
            self.last = result
            try:  # for `run.py status`
                self.engine.store.set_daemon_state("last_reload", result.as_dict(self.engine.project.config.timezone),
                                                   result.at)
            except Exception:  # noqa: BLE001 - the reload happened; only its report is missing
                log.exception("could not record the reload result for run.py status")
            for callback in self.on_reload:
                callback(result)
            return result

    def _reload(self) -> ReloadResult:
        now = self.engine.clock.now()
        try:
            project = load_project(self.config_path, self.rules_dir, self.templates_dir)
        except ConfigError as exc:
            return self._refused(now, [str(p) for p in exc.problems])
        except OSError as exc:  # a folder removed or unreadable meanwhile
            return self._refused(now, [f"{exc.filename}: {exc.strerror}"])
        except Exception as exc:  # noqa: BLE001 - a file no check foresaw: refused, and the daemon says why
            log.exception("loading the changed files failed")
            return self._refused(now, [f"could not load the changed files: {type(exc).__name__}: {exc}"])
        errors = [str(p) for p in project.errors]
        running = set(self.engine.channels)
        errors += [f"rule {r.id} sends on channel {r.channel!r}, which the running daemon does not have; "
                   "restart it to add channels" for r in project.rules.rules if r.enabled and r.channel not in running]
        if errors:
            return self._refused(now, errors)
        old = self.engine.project
        restart = _restart_needed(old, project)
        for what in restart:
            log.warning("{} changed in config.yaml: it takes effect at the next restart; the running value stays", what)
        if restart:
            project.config.database = old.config.database
            project.config.http = old.config.http
            project.config.channels = old.config.channels
            project.config.dispatch.tick = old.config.dispatch.tick
        before, after = _enabled(old), _enabled(project)
        added = sorted(after.keys() - before.keys())
        removed = sorted(before.keys() - after.keys())
        changed = sorted(r for r in after.keys() & before.keys() if after[r] != before[r])
        old_texts, new_texts = old.templates.fingerprints, project.templates.fingerprints
        templates = sorted(n for n in old_texts.keys() | new_texts.keys() if old_texts.get(n) != new_texts.get(n))
        self.engine.swap(project)
        reasons = {r: (f"rule {r} was disabled (enabled: false) in a reload" if r in _all(project)
                       else f"rule {r} was removed from the rules in a reload") for r in removed}
        cancelled = self.engine.store.cancel_rule_messages(reasons, now)
        for problem in project.problems:
            log.warning("{}", problem)
        log.info("reloaded: {} rules ({} added, {} removed, {} changed), {} template(s) changed{}; {} pending "
                 "messages of removed rules cancelled", len(after), len(added), len(removed), len(changed),
                 len(templates), f" ({', '.join(templates)})" if templates else "", cancelled)
        return ReloadResult(now, True, [], added, removed, changed, cancelled, restart, templates)

    def _refused(self, now: datetime, errors: list[str]) -> ReloadResult:
        for error in errors:
            log.error("{}", error)
        log.error("reload refused: {} error(s); the last good rules, templates and config keep running", len(errors))
        return ReloadResult(now, False, errors)

    # watching ---------------------------------------------------------------------------
    def watch(self, stop: threading.Event) -> list[threading.Thread]:
        """Start the watchers (threads); each change, once the files are quiet for a
        moment, reloads. They end when `stop` is set."""
        name = self.config_path.name
        folders = {str(Path(self.rules_dir)), str(Path(self.templates_dir))}

        def project_file(_change, path: str) -> bool:  # not an editor's swap or temporary file
            return path.endswith((".yaml", ".yml", ".j2")) or path.rstrip("/") in folders

        jobs = [
            ([self.rules_dir, self.templates_dir], True, project_file),
            ([self.config_path.resolve().parent], False, lambda _change, path: Path(path).name == name),
        ]
        threads = []
        for paths, recursive, only in jobs:
            thread = threading.Thread(target=self._watch, args=(paths, recursive, only, stop), daemon=True,
                                      name="reload-watch")
            thread.start()
            threads.append(thread)
        return threads

    def _watch(self, paths, recursive: bool, only, stop: threading.Event) -> None:
        """Watch until `stop`, whatever happens to the files: a folder removed, renamed or
        unreadable is reported (a refused reload) and watched for until it is back, and
        the watch starts again (with a reload, for what changed meanwhile)."""
        shown = ", ".join(map(str, paths))
        reported: list = []  # the folders found missing and reported
        reload_when_back = False  # the watch was interrupted: what changed meanwhile is reloaded
        while not stop.is_set():
            missing = [p for p in paths if not Path(p).is_dir()]
            if missing:
                if missing != reported:
                    log.warning("{} is not there (removed or renamed?); watching for it to come back",
                                ", ".join(map(str, missing)))
                    self.reload()
                    reported = missing
                reload_when_back = True
                stop.wait(WATCH_RETRY)
                continue
            reported = []
            try:
                reload_when_back = self._watch_once(paths, recursive, only, stop, reload_when_back)
            except Exception:  # noqa: BLE001 - the watcher must not die; it says so and starts again
                log.exception("watching {} failed; watching again in {} s", shown, WATCH_RETRY)
                reload_when_back = True
                stop.wait(WATCH_RETRY)

    def _watch_once(self, paths, recursive: bool, only, stop: threading.Event, catch_up: bool) -> bool:
        """One watch of `paths`, reloading on each change (and once it is set up, when
        `catch_up`: for what changed while nothing watched). True when it ended because a
        watched folder is no longer the one watched (removed, or renamed away)."""
        identity = {p: _identity(p) for p in paths}
        for changes in watchfiles.watch(*paths, watch_filter=only, recursive=recursive, stop_event=stop,
                                        debounce=400, step=100, rust_timeout=500, yield_on_timeout=True,
                                        raise_interrupt=False):
            if catch_up:
                log.info("watching {} again", ", ".join(map(str, paths)))
                self.reload()
                catch_up = False
            if changes:
                log.info("change in {}: reloading", ", ".join(sorted({Path(p).name for _, p in changes})))
                self.reload()
            if any(_identity(p) != identity[p] for p in paths):
                return True
        return not stop.is_set()  # the watch ended by itself: its folder went away


def _identity(path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _enabled(project: Project) -> dict[str, dict]:
    """Rule id -> its raw definition, for the rules that run."""
    return {r.id: r.raw for r in project.rules.rules if r.enabled}


def _all(project: Project) -> set[str]:
    return {r.id for r in project.rules.rules}


def _restart_needed(old: Project, new: Project) -> list[str]:
    changes = []
    if new.config.database != old.config.database:
        changes.append("database")
    if new.config.http != old.config.http:  # address, secrets' variable names, body limit
        changes.append("http")
    if {n: (c.type, c.options) for n, c in new.config.channels.items()} != \
            {n: (c.type, c.options) for n, c in old.config.channels.items()}:
        changes.append("channels")
    if new.config.dispatch.tick != old.config.dispatch.tick:
        changes.append("dispatch.tick")
    return changes
