"""Issued cards are written by the per-process batch writer, after responses, in batches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from service.outcomes.tables import issued_cards, issued_suggestions
from tests.outcomes.conftest import S1, hook, outcome_app
from tests.protocol.conftest import service_state


def test_cards_reach_the_store_within_the_flush_interval_without_feedback(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    tracker = service_state(app).handler.outcomes
    assert tracker is not None
    [card] = hook(app, S1)
    deadline = time.monotonic() + 10 * tracker.writer.interval_s
    count = 0
    while time.monotonic() < deadline and count == 0:
        time.sleep(0.05)
        with tracker.store.engine.connect() as connection:
            count = connection.execute(select(func.count()).select_from(issued_cards)).scalar_one()
    assert count == 1
    with tracker.store.engine.connect() as connection:
        row = connection.execute(select(issued_cards)).one()
        kinds = connection.execute(select(issued_suggestions.c.kind)).scalars().all()
    assert row.card_uuid == card["uuid"] and row.rule == "R-01" and row.shown
    assert row.indicator == "critical" and len(row.patient_key) == 64
    assert row.patient_key != "s1-patient"
    assert row.content_version == service_state(app).content.version
    # One row per suggested plan, its orders' content keys joined with "+" (issue 13).
    assert sorted(kinds) == sorted(
        ["mri_hematoma+neurosurgery_referral", "mri_hematoma+neurosurgery_referral+hold_order"]
    )


def _stored_cards(tracker: Any) -> int:
    with tracker.store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(issued_cards)).scalar_one())


def test_cards_are_written_once_a_response_is_closed_after_the_interval(tmp_path: Path) -> None:
    # The server writes the buffer after sending a response (Werkzeug's call_on_close), not
    # from a thread beside the next hook call.
    app = outcome_app(tmp_path)
    tracker = service_state(app).handler.outcomes
    assert tracker is not None
    tracker.writer.interval_s = 0.4
    client = app.test_client()
    hook(app, S1)
    early = client.get("/healthz")
    early.close()
    assert _stored_cards(tracker) == 0  # not due yet
    time.sleep(0.45)
    late = client.get("/healthz")
    late.close()  # after the interval, before the idle thread's twice the interval
    assert _stored_cards(tracker) == 1


def test_the_writer_thread_waits_twice_the_interval(tmp_path: Path) -> None:
    # The thread is for a worker that answers no more calls; under load it must stay out of
    # the request thread's way (the GIL), so it leaves younger cards to flush_if_due.
    app = outcome_app(tmp_path)
    tracker = service_state(app).handler.outcomes
    assert tracker is not None
    tracker.writer.interval_s = 0.3
    hook(app, S1)  # starts the thread
    time.sleep(0.45)  # the thread has woken once, the card is past one interval
    assert _stored_cards(tracker) == 0
    deadline = time.monotonic() + 5
    while _stored_cards(tracker) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stored_cards(tracker) == 1


def test_flush_if_due_writes_only_a_buffer_that_has_waited(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    tracker = service_state(app).handler.outcomes
    assert tracker is not None
    writer = tracker.writer
    writer.interval_s = 0.3
    assert writer.flush_if_due() == 0  # nothing buffered
    hook(app, S1)
    assert writer.flush_if_due() == 0
    time.sleep(0.35)
    assert writer.flush_if_due() == 1
    assert writer.flush_if_due() == 0
