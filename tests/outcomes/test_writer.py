"""Issued cards are written by the per-process batch writer, off the request path."""

from __future__ import annotations

import time
from pathlib import Path

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
