"""The two rows every layer writes have one constructor each, and it fills every column."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from engine.outcomes import OUTCOMES, REASONS, Outcome, Reason, State
from engine.store import Store
from engine.store.rows import log_row, new_message
from engine.store.tables import message_log, messages

NOW = datetime(2026, 11, 11, 2, 0, tzinfo=timezone.utc)


def _message():
    return new_message(rule_id="payment-reminder", dedup_key="order:o-1", customer_id="c-1", order_id="o-1",
                       event_id="e-1", channel="sms", kind="service", due_at=NOW + timedelta(minutes=30),
                       expires_at=None, now=NOW)


def test_a_new_message_row_fills_every_column_but_the_id():
    assert set(_message()) == {c.name for c in messages.columns} - {"id"}


def test_a_log_row_fills_every_column_but_the_id():
    row = log_row(message_id=None, time=NOW, rule_id="r", customer_id="c-1", order_id=None, channel="sms",
                  kind="marketing", outcome=Outcome.SUPPRESSED, reason=Reason.DUPLICATE, detail="already fired")
    assert set(row) == {c.name for c in message_log.columns} - {"id"}


def test_rows_with_enum_values_are_stored_and_read_back_as_plain_codes(db_url):
    """StrEnum members go into the database as their codes on both databases, and come back
    equal to the strings the dry-run's JSON and the README use."""
    store = Store(db_url)
    try:
        message = _message()
        assert message["state"] == "pending"
        store.enqueue_swept([message])
        stored = store.rows("messages")
        assert [(m["rule_id"], m["state"]) for m in stored] == [("payment-reminder", "pending")]
        store.finish([], [log_row(message_id=stored[0]["id"], time=NOW, rule_id="payment-reminder",
                                  customer_id="c-1", order_id="o-1", channel="sms", kind="service",
                                  outcome=Outcome.CANCELLED, reason=Reason.UNLESS, detail="order o-1 is paid now")])
        log = store.rows("message_log")
        assert [(r["outcome"], r["reason"]) for r in log] == [("cancelled", "unless")]
        assert type(log[0]["outcome"]) is str and json.dumps(log[0]["outcome"]) == '"cancelled"'
    finally:
        store.close()


def test_the_vocabularies_agree():
    assert set(REASONS) == set(Reason)  # every reason code is explained, and nothing else
    assert OUTCOMES == ("sent", "deferred", "cancelled", "suppressed", "expired", "failed")  # the report's order
    assert {o for outcomes, _ in REASONS.values() for o in outcomes} <= set(Outcome)
    # every outcome but deferred (which sets the message pending again) is a final state of a message
    assert set(Outcome) - {Outcome.DEFERRED} <= set(State) and Outcome.DEFERRED not in set(State)
