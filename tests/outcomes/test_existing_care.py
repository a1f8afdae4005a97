"""Care already under way replaces the card's own suggestion; the alert loop stays closed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.outcomes.conftest import (
    S1,
    accepted,
    hook,
    labels,
    later,
    mri_order,
    outcome_app,
    send_feedback,
)
from tests.protocol.conftest import scenario_now

MRI = "Order stat MRI thoracic and lumbar spine without contrast"
REFERRAL = "Refer to neurosurgery now"
PATIENT = "s1-patient"


def _study(started_hours_ago: float, status: str = "available") -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": "mri-study-1",
        "status": status,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "started": (scenario_now(S1) - timedelta(hours=started_hours_ago)).isoformat(),
        "procedureCode": [{"coding": [{"system": "http://loinc.org", "code": "36532-0"}]}],
    }


def _referral(hours_ago: float) -> dict[str, Any]:
    order = mri_order(PATIENT, scenario_now(S1) - timedelta(hours=hours_ago))
    order["id"] = "ns-referral-1"
    order["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "308482002"}]}
    return order


def test_without_care_under_way_both_suggestions_are_offered(tmp_path: Path) -> None:
    [card] = hook(outcome_app(tmp_path), S1)
    assert labels(card) == [MRI, REFERRAL]


def test_an_mri_ordered_after_onset_replaces_the_mri_suggestion(tmp_path: Path) -> None:
    order = mri_order(PATIENT, scenario_now(S1) - timedelta(minutes=30))
    [card] = hook(outcome_app(tmp_path), S1, extra=[order])
    assert card["indicator"] == "critical"
    assert labels(card) == [REFERRAL]
    assert "A spine MRI is already ordered (2026-03-10 19:30 +00:00" in card["detail"]
    # Named by kind, status and time; no raw FHIR id in the clinician's text (issue 13).
    assert order["id"] not in card["detail"] and "(ServiceRequest)" not in card["detail"]
    assert "<b>" not in card["detail"] and "free text" not in card["detail"]


def test_an_mri_from_before_the_symptoms_does_not_count(tmp_path: Path) -> None:
    order = mri_order(PATIENT, scenario_now(S1) - timedelta(days=3))
    [card] = hook(outcome_app(tmp_path), S1, extra=[order])
    assert labels(card) == [MRI, REFERRAL]


def test_a_revoked_order_does_not_count(tmp_path: Path) -> None:
    order = mri_order(PATIENT, scenario_now(S1) - timedelta(minutes=30), status="revoked")
    [card] = hook(outcome_app(tmp_path), S1, extra=[order])
    assert labels(card) == [MRI, REFERRAL]


def test_an_imaging_study_done_after_onset_counts(tmp_path: Path) -> None:
    [card] = hook(outcome_app(tmp_path), S1, extra=[_study(0.5)])
    assert labels(card) == [REFERRAL]
    assert "already done (images available)" in card["detail"]


def test_a_diagnostic_report_counts(tmp_path: Path) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "mri-report-1",
        "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": "30679-5"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": (scenario_now(S1) - timedelta(minutes=10)).isoformat(),
    }
    [card] = hook(outcome_app(tmp_path), S1, extra=[report])
    assert labels(card) == [REFERRAL]
    assert "reported (preliminary)" in card["detail"]


def test_an_existing_neurosurgery_referral_replaces_the_referral_suggestion(
    tmp_path: Path,
) -> None:
    [card] = hook(outcome_app(tmp_path), S1, extra=[_referral(0.5)])
    assert labels(card) == [MRI]
    assert "A neurosurgery referral is already ordered" in card["detail"]


def test_both_under_way_leaves_only_the_anticoagulant_hold(tmp_path: Path) -> None:
    order = mri_order(PATIENT, scenario_now(S1) - timedelta(minutes=30))
    [card] = hook(outcome_app(tmp_path), S1, extra=[order, _referral(0.5)])
    assert card["indicator"] == "critical"
    assert labels(card) == []
    assert [s["actions"][0]["type"] for s in card["suggestions"]] == ["update"]


def test_accepting_the_mri_does_not_bring_the_same_suggestion_back(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    [card] = hook(app, S1)
    plan = card["suggestions"][0]
    # One suggestion is one whole plan (at-most-one, issue 13): accepting it orders both.
    assert plan["label"] == f"{MRI} + {REFERRAL}"
    assert send_feedback(app, accepted(card, plan, later(S1, 0.05))).status_code == 200
    [again] = hook(app, S1, now=later(S1, 0.25))
    assert again["indicator"] == "critical"
    assert labels(again) == []
    assert "Already accepted from this service at 2026-03-10 20:03 +00:00" in again["detail"]


def test_the_accepted_draft_order_in_the_record_is_named_once(tmp_path: Path) -> None:
    app = outcome_app(tmp_path)
    [card] = hook(app, S1)
    send_feedback(app, accepted(card, card["suggestions"][0], later(S1, 0.05)))
    draft = mri_order(PATIENT, later(S1, 0.05), status="draft")
    [again] = hook(app, S1, extra=[draft], now=later(S1, 0.25))
    assert labels(again) == []
    assert "drafted (not yet signed)" in again["detail"]
    # The MRI is named once, as the draft in the record; the referral of the same accepted
    # plan is named as accepted.
    accepted_lines = [line for line in again["detail"].splitlines() if "Already accepted" in line]
    assert accepted_lines and not any(MRI in line for line in accepted_lines)
