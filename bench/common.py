"""Shared pieces of the benchmark: the shipped project with file channels, stores,
machine facts, timing. Only the engine's public Python API is used."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
if str(ROOT) not in sys.path:  # the engine without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from engine import gcsetting  # noqa: E402
from engine.app import Engine, Project, load_project  # noqa: E402
from engine.channels import Channel, create_channel  # noqa: E402
from engine.clock import VirtualClock  # noqa: E402
from engine.daemon import logs  # noqa: E402
from engine.store import Store  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_BENCH_DB = "bench_engine"


def quiet() -> None:
    """Operator log at WARNING: the dispatcher's per-batch debug lines would cost time and flood stderr."""
    logs.setup("WARNING")


def shipped_project() -> Project:
    """config.yaml, rules/ and templates/ exactly as shipped."""
    project = load_project(ROOT / "config.yaml", ROOT / "rules", ROOT / "templates")
    if project.errors:
        raise SystemExit("the shipped rules have errors:\n" + "\n".join(map(str, project.errors)))
    return project


def file_channels(project: Project, folder: Path) -> dict[str, Channel]:
    """Every configured channel name bound to a `file` channel writing to `folder`
    (keeping the channel's contact field, so no phone still means no_contact)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, cfg in project.config.channels.items():
        options = {"path": f"{name}.jsonl"}
        if cfg.options.get("contact"):
            options["contact"] = cfg.options["contact"]
        path = folder / options["path"]
        if path.exists():
            path.unlink()
        out[name] = create_channel(name, "file", options, folder)
    return out


def sqlite_url(path: Path) -> str:
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            candidate.unlink()
    return f"sqlite:///{path}"


@contextmanager
def pg_database(admin_url: str = PG_ADMIN_URL, name: str = PG_BENCH_DB, keep: bool = False):
    """A scratch PostgreSQL database, dropped afterwards (unless keep)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def build_engine(project: Project, url: str, outbox: Path, start: datetime) -> Engine:
    gcsetting.tune()  # as run.py does for every command
    store = Store(url)
    return Engine(project, store, file_channels(project, outbox), VirtualClock(start))


class Timer:
    def __init__(self):
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def machine() -> dict:
    """The facts the README's table needs."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    import apscheduler
    import sqlalchemy

    return {"date": datetime.now().astimezone().isoformat(timespec="seconds"), "nproc": os.cpu_count(),
            "cpu": cpu, "ram_gib": ram_gib, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "sqlalchemy": sqlalchemy.__version__,
            "apscheduler": apscheduler.__version__, "postgresql": pg_version(), "kernel": platform.release()}


def pg_version(admin_url: str = PG_ADMIN_URL) -> str | None:
    try:
        from sqlalchemy import create_engine, text

        eng = create_engine(admin_url)
        with eng.connect() as conn:
            version = conn.execute(text("show server_version")).scalar()
        eng.dispose()
        return version
    except Exception:  # noqa: BLE001 - no server: the PostgreSQL figures are skipped
        return None


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def git_head() -> str | None:
    """The engine's commit (BENCH_ENGINE_REV when running from an exported snapshot)."""
    if os.environ.get("BENCH_ENGINE_REV"):
        return os.environ["BENCH_ENGINE_REV"]
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return None
