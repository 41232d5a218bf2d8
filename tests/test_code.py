"""The code's own rules, checked by the suite so CI enforces them (issue 13).

- import-linter: the layer order and the "nevers" in pyproject's [tool.importlinter]
  (only engine.daemon knows the scheduler/web server/watcher/Prometheus, channels know
  neither the rules nor the store, nothing below the CLI prints);
- ruff: the rule set in [tool.ruff];
- radon: no engine function above cyclomatic complexity 20 (rank D or worse).

Each runs the real tool as a subprocess, the way a contributor runs it by hand."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: it is part of the test extra (pip install -e '.[test]')")
    return found


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    done = _run(_tool("lint-imports"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    # every contract in pyproject was checked, none silently dropped
    assert done.stdout.count(" KEPT") == 4, done.stdout


def test_ruff_finds_nothing():
    done = _run(_tool("ruff"), "check", "--no-cache", "engine", "tests", "bench", "examples", "run.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_engine_function_above_complexity_20():
    done = _run(_tool("radon"), "cc", "--min", "D", "--show-complexity", "engine")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", "functions of rank D or worse (complexity > 20):\n" + done.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The contracts check real imports: a module under engine.channels importing the store fails them."""
    probe = ROOT / "engine" / "channels" / "_contract_probe.py"
    probe.write_text("import engine.store  # noqa: F401\n", encoding="utf-8")
    try:
        done = _run(_tool("lint-imports"), "--no-cache")
    finally:
        probe.unlink()
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "engine.channels._contract_probe" in done.stdout
