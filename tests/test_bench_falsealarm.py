"""The false-alarm benchmark's own machinery on small hand-made bundles (no PySynthea needed).

Reference resolution, chart cutting and epidural placement decide what the service is asked;
if any of them were wrong, the benchmark would measure charts no EHR could send.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bench.falsealarm import place, report, sets
from bench.falsealarm.cut import chart_at, parse_time
from bench.falsealarm.evaluate import Evaluator
from bench.falsealarm.resolve import resolve_bundle

PID = "11111111-1111-1111-1111-111111111111"
T = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _entry(resource: dict[str, Any], full: str, put: bool = False) -> dict[str, Any]:
    request = (
        {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        if put
        else {"method": "POST", "url": resource["resourceType"]}
    )
    return {"fullUrl": full, "resource": resource, "request": request}


def _bundle() -> dict[str, Any]:
    patient = {
        "resourceType": "Patient",
        "id": PID,
        "birthDate": "1990-01-01",
        "identifier": [{"system": "urn:sys", "value": "MRN1"}],
    }
    org = {
        "resourceType": "Organization",
        "id": "org-1",
        "identifier": [{"system": "https://npi", "value": "42"}],
    }
    encounter = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "subject": {"reference": f"urn:uuid:{PID}"},
        "serviceProvider": {"reference": "Organization?identifier=https://npi|42"},
        "period": {"start": "2026-03-09T10:00:00+00:00"},
    }
    procedure = {
        "resourceType": "Procedure",
        "status": "completed",
        "code": {"coding": [place.EPIDURAL]},
        "subject": {"reference": f"urn:uuid:{PID}"},
        "encounter": {"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"},
        "performedDateTime": "2026-03-09T10:00:00+00:00",
        "reasonReference": [{"reference": "urn:uuid:99999999-0000-0000-0000-000000000000"}],
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(patient, f"urn:uuid:{PID}"),
            _entry(org, "urn:uuid:33333333-3333-3333-3333-333333333333", put=True),
            _entry(encounter, "urn:uuid:22222222-2222-2222-2222-222222222222"),
            _entry(procedure, "urn:uuid:44444444-4444-4444-4444-444444444444"),
        ],
    }


# ---- reference resolution -------------------------------------------------------------------


def test_urn_uuid_references_become_type_slash_id_including_nested_ones() -> None:
    bundle = _bundle()
    out = resolve_bundle(bundle)
    by_type = {r["resourceType"]: r for r in out.resources}
    assert by_type["Procedure"]["subject"] == {"reference": f"Patient/{PID}"}
    assert by_type["Procedure"]["encounter"] == {"reference": "Encounter/enc-1"}
    assert by_type["Encounter"]["subject"] == {"reference": f"Patient/{PID}"}
    # an entry without its own id gets the UUID of its full URL
    assert by_type["Procedure"]["id"] == "44444444-4444-4444-4444-444444444444"
    # the input is not modified
    assert bundle["entry"][3]["resource"]["subject"]["reference"] == f"urn:uuid:{PID}"


def test_conditional_identifier_reference_resolves_and_unknown_urns_are_reported() -> None:
    out = resolve_bundle(_bundle())
    encounter = next(r for r in out.resources if r["resourceType"] == "Encounter")
    assert encounter["serviceProvider"] == {"reference": "Organization/org-1"}
    assert out.unresolved == ["urn:uuid:99999999-0000-0000-0000-000000000000"]


def test_resolved_chart_answers_the_patient_queries_of_the_prefetch() -> None:
    """Without resolution the service's ``Procedure?patient=X`` finds nothing."""
    from service.fhir.local_search import search_local

    raw = [e["resource"] for e in _bundle()["entry"]]
    assert search_local(raw, f"Procedure?patient={PID}") == []
    resolved = resolve_bundle(_bundle()).resources
    assert len(search_local(resolved, f"Procedure?patient={PID}")) == 1


# ---- chart cutting --------------------------------------------------------------------------


def _condition(abated: str | None, recorded: str = "2020-01-01T00:00:00+00:00") -> dict[str, Any]:
    resource = place.condition(f"Patient/{PID}", parse_time(recorded) or T, "c1", place.RETENTION)
    if abated:
        resource["abatementDateTime"] = abated
        resource["clinicalStatus"]["coding"][0]["code"] = "resolved"
    return resource


def test_resources_from_after_the_evaluation_time_are_removed() -> None:
    before = place.fever(f"Patient/{PID}", datetime(2026, 3, 10, 11, tzinfo=UTC), "o1")
    after = place.fever(f"Patient/{PID}", datetime(2026, 3, 10, 13, tzinfo=UTC), "o2")
    released_late = {**before, "id": "o3", "issued": "2026-03-10T12:30:00+00:00"}
    kept = chart_at([before, after, released_late, {"resourceType": "Organization", "id": "x"}], T)
    assert [r["id"] for r in kept] == ["o1", "x"]


def test_condition_abated_later_is_active_then_and_earlier_abatement_is_kept() -> None:
    later = chart_at([_condition("2026-04-01")], T)[0]
    assert "abatementDateTime" not in later
    assert later["clinicalStatus"]["coding"][0]["code"] == "active"
    earlier = chart_at([_condition("2021-01-01")], T)[0]
    assert earlier["abatementDateTime"] == "2021-01-01"
    assert earlier["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert chart_at([_condition(None, recorded="2026-03-11T00:00:00+00:00")], T) == []


def test_running_periods_and_orders_read_as_they_did_then() -> None:
    procedure = {
        "resourceType": "Procedure",
        "id": "p",
        "status": "completed",
        "performedPeriod": {"start": "2026-03-10T08:00:00Z", "end": "2026-03-11T08:00:00Z"},
    }
    order = {
        "resourceType": "MedicationRequest",
        "id": "m",
        "status": "stopped",
        "authoredOn": "2026-03-01T00:00:00Z",
        "dispenseRequest": {"expectedSupplyDuration": {"value": 2, "code": "wk"}},
    }
    old_order = {**order, "id": "m2", "authoredOn": "2025-01-01T00:00:00Z"}
    patient = {"resourceType": "Patient", "id": "p1", "deceasedDateTime": "2027-01-01"}
    cut = {r["id"]: r for r in chart_at([procedure, order, old_order, patient], T)}
    assert cut["p"]["status"] == "in-progress" and "end" not in cut["p"]["performedPeriod"]
    assert cut["m"]["status"] == "active"
    assert cut["m2"]["status"] == "stopped"
    assert "deceasedDateTime" not in cut["p1"]
    assert procedure["performedPeriod"]["end"] == "2026-03-11T08:00:00Z"  # input untouched


def test_partial_dates_are_their_first_instant() -> None:
    assert parse_time("2026") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("2026-03") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_time("2026-03-10T12:00:00") == T
    assert parse_time("garbage") is None


# ---- placement ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator()


def _patient(extra: list[dict[str, Any]] | None = None) -> sets.Patient:
    resources = resolve_bundle(_bundle()).resources + (extra or [])
    return sets.make_patient(0, "hand", resources)


def test_placed_epidural_is_the_generator_shape_and_the_service_sees_it(
    evaluator: Evaluator,
) -> None:
    at = datetime(2026, 3, 10, 8, tzinfo=UTC)
    placed = place.epidural(f"Patient/{PID}", at, "bench-epidural-0")
    assert placed["performedDateTime"] == "2026-03-10T08:00:00+00:00"
    assert placed["code"]["coding"] == [place.EPIDURAL] and placed["status"] == "completed"
    patient = _patient()
    fever = place.fever(patient.ref, datetime(2026, 3, 12, 8, tzinfo=UTC), "f1")
    cards = evaluator.open(
        [*patient.resources, placed, fever], patient.id, datetime(2026, 3, 12, 9, tzinfo=UTC)
    )
    assert "fever_after_epidural" in {c.pattern for c in cards}
    assert all(c.pattern != "unmatched" for c in cards)


def test_placed_random_openings_are_after_the_placed_epidural_and_seeded() -> None:
    patient = _patient()
    patient.end = datetime(2026, 12, 1, tzinfo=UTC)
    first = list(sets.placed_random(patient, 7))
    again = list(sets.placed_random(patient, 7))
    other = list(sets.placed_random(patient, 8))
    assert [o.now for o in first] == [o.now for o in again]
    assert [o.now for o in first] != [o.now for o in other]
    for opening in first:
        placed = [r for r in opening.resources if r["id"].startswith("bench-epidural")]
        assert len(placed) == 1
        assert parse_time(placed[0]["performedDateTime"]) < opening.now  # type: ignore[operator]


def test_epidural_is_placed_just_before_each_chosen_event(evaluator: Evaluator) -> None:
    concepts = place.Concepts.from_content(evaluator.content)
    when = datetime(2026, 3, 10, 12, tzinfo=UTC)
    cool = place.fever(f"Patient/{PID}", when, "cool", 36.8)
    hot = place.fever(f"Patient/{PID}", when, "hot", 38.6)
    patient = _patient([cool, hot])
    assert place.events(patient.resources, concepts)["fever"] == [when]
    openings = list(sets.placed_before_event(patient, 7, concepts))
    assert len(openings) == len(sets.BEFORE_EVENT_HOURS)
    for opening, hours in zip(openings, sets.BEFORE_EVENT_HOURS, strict=True):
        placed = next(r for r in opening.resources if r["id"] == "bench-epidural-e")
        assert parse_time(placed["performedDateTime"]) == place.shift(when, -hours)
        assert opening.now == place.shift(when, 1) and opening.finding == "fever"


def test_history_removal_keeps_normal_temperatures_and_later_records(evaluator: Evaluator) -> None:
    concepts = place.Concepts.from_content(evaluator.content)
    old_hot = place.fever(f"Patient/{PID}", datetime(1991, 1, 1, tzinfo=UTC), "old-hot", 38.2)
    old_cool = place.fever(f"Patient/{PID}", datetime(1991, 1, 2, tzinfo=UTC), "old-cool", 36.9)
    new_hot = place.fever(f"Patient/{PID}", datetime(2026, 3, 12, tzinfo=UTC), "new-hot", 40.6)
    kept = place.strip_history(
        [old_hot, old_cool, new_hot], concepts.temperature, T, fever_only_hot=True
    )
    assert [r["id"] for r in kept] == ["old-cool", "new-hot"]


def test_miss_is_reported_only_when_history_removal_restores_the_card() -> None:
    def row(variant: str, pattern: str) -> dict[str, Any]:
        cards = [{"indicator": "warning", "pattern": pattern, "rule": "R-02"}] if pattern else []
        return {
            "set": "miss",
            "patient": "p",
            "finding": "fever",
            "variant": variant,
            "cards": cards,
        }

    caused = report.summarise(
        [
            row("as-generated", ""),
            row("planted-history", ""),
            row("history-removed", "fever_after_epidural"),
        ]
    )
    assert caused["miss"]["missed_because_of_history"]["fever"] == [
        "p (as-generated, planted-history)"
    ]
    fine = report.summarise([row(v, "fever_after_epidural") for v in sets.MISS_VARIANTS])
    assert fine["miss"]["missed_because_of_history"] == {}


def test_cards_are_attributed_to_their_pattern_by_summary(evaluator: Evaluator) -> None:
    filled = evaluator.content.wording.cards["antithrombotic_after"].summary.format(
        drug_title="Enoxaparin", hours="2 h", event="puncture", interval="12 h"
    )
    assert evaluator.classify(filled) == ("antithrombotic_after", "R-03")
    hematoma = evaluator.content.wording.cards["hematoma_motor"].summary
    assert evaluator.classify(hematoma) == ("hematoma_motor/hematoma_sensory", "R-01")
    assert evaluator.classify("Something the content never says") == ("unmatched", "?")
