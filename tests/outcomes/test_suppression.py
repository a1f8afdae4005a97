"""Suppression after "plan in place", keyed on the evidence fingerprint (safety note 9).

Real app, real SQLite store, real feedback over HTTP; hook calls at exact scenario times.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.outcomes.conftest import (
    S1,
    S2B,
    hook,
    later,
    outcome_app,
    overridden,
    send_feedback,
)
from tests.protocol.conftest import load_bundle, scenario_now


def _numbness_again(minutes_later: int) -> dict[str, Any]:
    """A second, newer numbness examination for S2b (one new finding)."""
    original = next(
        e["resource"]
        for e in load_bundle(S2B)["entry"]
        if e["resource"]["id"] == "s2b-obs-numbness-right-leg-day1"
    )
    found = copy.deepcopy(original)
    found["id"] = "s2b-obs-numbness-right-leg-recheck"
    at = scenario_now(S2B) - timedelta(minutes=30) + timedelta(minutes=minutes_later)
    found["effectiveDateTime"] = at.isoformat()
    return found


def test_same_evidence_is_held_back_after_plan_in_place(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    [card] = hook(app, S2B)
    assert card["indicator"] == "warning"
    assert (
        send_feedback(app, overridden(card, "assessed-not-concerning", later(S2B, 0.1))).status_code
        == 200
    )
    assert hook(app, S2B, now=later(S2B, 0.5)) == []


def test_one_new_finding_shows_the_card_again_at_once(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    [card] = hook(app, S2B)
    send_feedback(app, overridden(card, "assessed-not-concerning", later(S2B, 0.1)))
    again = hook(app, S2B, extra=[_numbness_again(20)], now=later(S2B, 0.5))
    assert [c["indicator"] for c in again] == ["warning"]


def test_a_newer_version_of_an_evidence_resource_shows_the_card_again(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    [card] = hook(app, S2B)
    send_feedback(app, overridden(card, "assessed-not-concerning", later(S2B, 0.1)))
    bundle_obs = next(
        e["resource"]
        for e in load_bundle(S2B)["entry"]
        if e["resource"]["id"] == "s2b-obs-numbness-right-leg-day1"
    )
    updated = {**copy.deepcopy(bundle_obs), "meta": {"versionId": "2"}}
    assert len(hook(app, S2B, extra=[updated], now=later(S2B, 0.5))) == 1


def test_a_reason_that_is_not_plan_in_place_suppresses_nothing(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    [card] = hook(app, S2B)
    send_feedback(app, overridden(card, "record-incorrect", later(S2B, 0.1)))
    send_feedback(app, overridden(card, None, later(S2B, 0.2)))
    assert len(hook(app, S2B, now=later(S2B, 0.5))) == 1


def test_the_window_ends(tmp_path: Path) -> None:
    app = outcome_app(tmp_path, suppression_window_hours=0.5)
    [card] = hook(app, S2B)
    send_feedback(app, overridden(card, "assessed-not-concerning", later(S2B, 0.0)))
    assert hook(app, S2B, now=later(S2B, 0.25)) == []
    assert len(hook(app, S2B, now=later(S2B, 1.0))) == 1


def test_a_critical_red_flag_is_never_suppressed_by_default(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    [card] = hook(app, S1)
    assert card["indicator"] == "critical"
    send_feedback(app, overridden(card, "specialist-involved", later(S1, 0.1)))
    again = hook(app, S1, now=later(S1, 0.5))
    assert [c["indicator"] for c in again] == ["critical"]


def test_critical_cards_follow_their_own_window_when_it_is_set(tmp_path: Path) -> None:
    app = outcome_app(tmp_path, suppression_critical_window_hours=2)
    [card] = hook(app, S1)
    send_feedback(app, overridden(card, "specialist-involved", later(S1, 0.1)))
    assert hook(app, S1, now=later(S1, 0.5)) == []


def test_a_resource_with_a_malformed_id_does_not_break_the_fingerprint(tmp_path: Path) -> None:
    # Found by the fuzz test: an id that is a JSON object (unhashable) in an evidence type.
    odd = {
        "resourceType": "Condition",
        "id": {"not": "an id"},
        "subject": {"reference": "Patient/s1-patient"},
        "code": {"text": "odd"},
    }
    cards = hook(outcome_app(tmp_path), S1, extra=[odd])
    assert [c["indicator"] for c in cards] == ["critical"]
