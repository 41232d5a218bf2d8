"""The README is checked: its commands work, and its contracts match the code."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from engine.cli import main
from engine.dryrun.report import JSON_FIELDS
from engine.outcomes import REASONS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    test_command = next(line for line in shell_lines() if "pytest" in line)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_is_documented_with_an_example(name):
    command = main.commands[name]
    assert "Example:" in command.help, f"`{name} --help` needs an example"
    assert re.search(rf"run\.py {re.escape(name)}\b", README), f"README does not mention `run.py {name}`"


@pytest.mark.parametrize("line", [cmd for cmd in shell_lines() if "run.py" in cmd and "&&" not in cmd])
def test_readme_commands_work(line, tmp_path):
    args = shlex.split(line)
    args = [sys.executable] + args[1:]  # .venv/bin/python -> this interpreter
    command = args[2]
    if command in ("daemon", "ingest"):  # long-running / writes the database: check they parse
        args = args[:3] + ["--help"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_reason_codes_table_matches_the_code():
    section = README.split("### Reason codes", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([\w, ]+) \| (.+?) \|$", section, flags=re.M)
    documented = {code: tuple(o.strip() for o in outcomes.split(",")) for code, outcomes, _ in rows}
    assert documented == {code: outcomes for code, (outcomes, _) in REASONS.items()}


def test_json_fields_table_matches_the_records():
    section = README.split("### Dry-run JSON records", 1)[1].split("###", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert documented == list(JSON_FIELDS)
