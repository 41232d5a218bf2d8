"""Operator logs: the text format by default; JSON lines and a rotated file on request."""

from __future__ import annotations

import json
import re
from zoneinfo import ZoneInfo

from loguru import logger

from engine.daemon import logs


def test_json_logs_go_to_the_file_one_object_per_line(tmp_path, capsys):
    path = tmp_path / "engine.log"
    logs.setup("INFO", json=True, file=str(path), rotation="1 MB", retention="7 days")
    try:
        logger.bind(component="dispatch").info("payment-reminder c-1 (138****0000) sent")
        logger.bind(component="dispatch").debug("not at INFO")
        logger.complete()
    finally:
        logs.setup("WARNING")

    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(r["record"]["level"]["name"], r["record"]["message"], r["record"]["extra"]["component"])
            for r in records] == [("INFO", "payment-reminder c-1 (138****0000) sent", "dispatch")]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and json.loads(err[0])["record"]["message"] == "payment-reminder c-1 (138****0000) sent"


def test_text_logs_name_the_component(capsys):
    logs.setup("INFO")
    try:
        logger.bind(component="daemon").info("running")
    finally:
        logs.setup("WARNING")

    assert capsys.readouterr().err.rstrip().endswith("INFO    [daemon] running")


def test_each_log_line_is_in_the_shops_time_with_its_offset(capsys):
    logs.setup("INFO", tz=ZoneInfo("Asia/Shanghai"))
    try:
        logger.bind(component="daemon").info("running")
    finally:
        logs.setup("WARNING")

    line = capsys.readouterr().err.rstrip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00 INFO    \[daemon\] running", line), line


def test_standard_logging_reaches_the_same_sinks_in_the_same_format(tmp_path, capsys):
    """uvicorn, APScheduler and httpx log through the standard `logging`: the bridge sends
    their lines to loguru's sinks, named by their logger, in the engine's format."""
    import logging

    path = tmp_path / "engine.log"
    logs.setup("INFO", json=True, file=str(path))
    try:
        logging.getLogger("uvicorn.error").info("Uvicorn running on http://127.0.0.1:8080")
        logging.getLogger("uvicorn.error").debug("below the configured level")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("some.library").exception("it failed")
        # httpx logs each request's URL at INFO (an SMS provider's URL holds the phone number): kept quiet
        logging.getLogger("httpx").info("HTTP Request: POST https://sms.example/?PhoneNumbers=13800000000")
        logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")  # noise
        logger.complete()
    finally:
        logs.setup("WARNING")

    records = [json.loads(line)["record"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(r["level"]["name"], r["extra"]["component"], r["message"]) for r in records] == [
        ("INFO", "uvicorn.error", "Uvicorn running on http://127.0.0.1:8080"),
        ("ERROR", "some.library", "it failed"),
    ]
    assert records[1]["exception"]["type"] == "RuntimeError"
    err = capsys.readouterr().err
    assert "13800000000" not in err and "13800000000" not in path.read_text(encoding="utf-8")


def test_text_lines_from_standard_logging_look_like_the_engines(capsys):
    import logging

    logs.setup("INFO", tz=ZoneInfo("Asia/Shanghai"))
    try:
        logging.getLogger("apscheduler.scheduler").error("job raised")
    finally:
        logs.setup("WARNING")

    line = capsys.readouterr().err.rstrip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00 ERROR   \[apscheduler.scheduler\] job raised",
                        line), line
