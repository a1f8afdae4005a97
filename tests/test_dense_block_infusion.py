"""R-05 infusion variant: weakness while the epidural infusion is still running is a warning,
and becomes the R-01 red flag once the infusion has stopped and the block should have worn off."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service import content as content_module
from service import engine
from service.fhir.record import PatientRecord
from service.render import RenderContext

SNOMED = "http://snomed.info/sct"
PID = "infusion-patient"
CONTENT = content_module.load()


def _records(infusion_end: str | None) -> list[dict[str, Any]]:
    period = {"start": "2026-05-01T08:00:00+00:00"}
    if infusion_end:
        period["end"] = infusion_end
    return [
        {
            "resourceType": "Procedure",
            "id": "thoracic",
            "status": "in-progress",
            "subject": {"reference": f"Patient/{PID}"},
            "code": {"coding": [{"system": SNOMED, "code": "427060008"}]},
            "performedPeriod": {"start": "2026-05-01T08:00:00+00:00"},
        },
        {
            "resourceType": "MedicationAdministration",
            "id": "infusion",
            "status": "completed" if infusion_end else "in-progress",
            "subject": {"reference": f"Patient/{PID}"},
            "medicationCodeableConcept": {
                "text": "Bupivacaine 0.1% with fentanyl epidural infusion"
            },
            "effectivePeriod": period,
            "dosage": {"route": {"coding": [{"system": SNOMED, "code": "404820008"}]}},
        },
        {
            "resourceType": "Condition",
            "id": "weak",
            "subject": {"reference": f"Patient/{PID}"},
            "verificationStatus": {"coding": [{"code": "confirmed"}]},
            "code": {"coding": [{"system": SNOMED, "code": "713514005"}]},
            "bodySite": [{"coding": [{"system": SNOMED, "code": "51440002"}]}],
            "onsetDateTime": "2026-05-02T10:00:00+00:00",
        },
    ]


def _cards(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    now = datetime.fromisoformat("2026-05-02T11:00:00+00:00")
    record = PatientRecord.from_resources(PID, resources)
    cards = engine.evaluate(record, CONTENT, RenderContext(PID, "Practitioner/1", None, now))
    return [(c["indicator"], c["summary"]) for c in cards]


def test_weakness_with_running_infusion_is_a_dense_block_warning() -> None:
    assert _cards(_records(None)) == [
        ("warning", CONTENT.wording.cards["dense_block_infusion"].summary)
    ]


def test_weakness_more_than_4_h_after_infusion_stopped_is_critical() -> None:
    assert _cards(_records("2026-05-02T05:00:00+00:00")) == [
        ("critical", CONTENT.wording.cards["hematoma_motor"].summary)
    ]


def test_weakness_within_4_h_of_stopping_is_not_yet_a_red_flag() -> None:
    indicators = [i for i, _ in _cards(_records("2026-05-02T07:00:00+00:00"))]
    assert "critical" not in indicators
