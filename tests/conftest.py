"""Shared fixtures: real SQLite files, the real PostgreSQL server, the shipped project.

PostgreSQL: ENGINE_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
names a server where the tests may create a scratch database. When it is unreachable the
PostgreSQL tests skip with the reason, except on CI (CI=true) or with
ENGINE_REQUIRE_POSTGRES=1, where they fail."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.app import Engine, load_project
from engine.channels.recording import RecordingChannel
from engine.clock import VirtualClock
from engine.store import Store
from engine.store.tables import metadata

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PG_URL = os.environ.get("ENGINE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_REQUIRED = os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("ENGINE_REQUIRE_POSTGRES") == "1"


def _unavailable(reason: str):
    if PG_REQUIRED:
        pytest.fail(f"PostgreSQL is required here (CI) but {reason}")
    pytest.skip(f"PostgreSQL not reachable ({reason}); start it or set ENGINE_TEST_PG_URL")


@pytest.fixture(scope="session")
def pg_database():
    """A scratch database on the real server, dropped at the end of the session."""
    admin_url = make_url(PG_URL)
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "unavailable"
        _unavailable(f"{admin_url.render_as_string(hide_password=True)}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    name = f"engine_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _fresh_pg(url: str) -> None:
    engine = create_engine(url)
    metadata.drop_all(engine)
    with engine.begin() as conn:  # and the schema's revision (engine.store.schema): a new database again
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """The storage contract runs on both: a real SQLite file and the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'engine.db'}"
    url = request.getfixturevalue("pg_database")
    _fresh_pg(url)
    return url


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def project():
    """The shipped config, rules and templates."""
    return load_project(ROOT / "config.yaml", ROOT / "rules", ROOT / "templates")


@pytest.fixture
def clock():
    return VirtualClock(datetime(2026, 11, 11, 0, 0, tzinfo=timezone.utc))


def recording_channels(project):
    return {name: RecordingChannel.twin(name, c.options, project.config.base_dir)
            for name, c in project.config.channels.items()}


@pytest.fixture
def engine(project, store, clock):
    eng = Engine(project, store, recording_channels(project), clock)
    yield eng
    for channel in eng.channels.values():
        channel.close()


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{SHARED} is required on CI")
        pytest.skip(f"{SHARED} not found (it exists only on the project's machines)")
    return SHARED


@pytest.fixture
def workdir(tmp_path):
    """A copy of the shipped project (config, rules, templates) to modify freely."""
    for name in ("rules", "templates"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    return tmp_path
