"""Unit tests for ``service.fhir.local_search``: the offline answer to prefetch templates.

Each test pins one FHIR search rule (R4 §search) the module claims to follow, so a change that
would hand the clinical core different data from a real FHIR server fails here first.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service.fhir.local_search import build_prefetch, bundle_resources, search_local

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
EXAMPLES = Path(__file__).resolve().parent.parent / "fhir_examples"


def _cc(*codings: tuple[str | None, str]) -> dict[str, Any]:
    return {"coding": [{"code": c} if s is None else {"system": s, "code": c} for s, c in codings]}


RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Patient", "id": "p2"},
    {
        "resourceType": "Procedure",
        "id": "proc-epidural",
        "status": "completed",
        "code": _cc((SCT, "18946005"), (CPT, "01967")),
        "category": _cc((SCT, "387713003")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Procedure",
        "id": "proc-esi",
        "status": "in-progress",
        "code": _cc((CPT, "64483")),
        "subject": {"reference": "http://fhir.example.org/r4/Patient/p1/_history/3"},
    },
    {
        "resourceType": "Procedure",
        "id": "proc-eie",
        "status": "entered-in-error",
        "code": _cc((SCT, "18946005")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Procedure",
        "id": "proc-other-patient",
        "status": "completed",
        "code": _cc((SCT, "18946005")),
        "subject": {"reference": "Patient/p2"},
    },
    {
        "resourceType": "Procedure",
        "id": "proc-text-only",
        "status": "completed",
        "code": {"text": "L4-5 interlaminar epidural steroid injection"},
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Observation",
        "id": "obs-temp",
        "status": "final",
        "category": [_cc((OBS_CAT, "vital-signs"))],
        "code": _cc((LOINC, "8310-5")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Observation",
        "id": "obs-crp",
        "status": "final",
        "category": [_cc((OBS_CAT, "laboratory")), _cc((OBS_CAT, "exam"))],
        "code": _cc((LOINC, "1988-5")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Observation",
        "id": "obs-local-code",
        "status": "amended",
        "code": _cc((None, "TEMP"), ("urn:oid:1.2.3", "8310-5")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Observation",
        "id": "obs-group",
        "status": "final",
        "code": _cc((LOINC, "8310-5")),
        "subject": {"reference": "Group/p1"},
    },
    {
        "resourceType": "Condition",
        "id": "cond-weakness",
        "clinicalStatus": _cc((CLIN, "active")),
        "verificationStatus": _cc((VER, "provisional")),
        "code": _cc((SCT, "713514005")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Condition",
        "id": "cond-retention-eie",
        "verificationStatus": _cc((VER, "entered-in-error")),
        "code": _cc((SCT, "267064002")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "Condition",
        "id": "cond-resolved",
        "clinicalStatus": _cc((CLIN, "resolved")),
        "verificationStatus": _cc((VER, "confirmed")),
        "code": _cc((SCT, "279039007")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "medreq-enox",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": _cc((RXNORM, "854235")),
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "AllergyIntolerance",
        "id": "allergy",
        "clinicalStatus": _cc((None, "active")),
        "patient": {"reference": "Patient/p1"},
    },
]


def ids(query: str, resources: list[dict[str, Any]] | None = None) -> list[str]:
    return [r["id"] for r in search_local(RESOURCES if resources is None else resources, query)]


# ---- read ------------------------------------------------------------------------------------


def test_read_returns_the_resource() -> None:
    assert search_local(RESOURCES, "Patient/p1") == [{"resourceType": "Patient", "id": "p1"}]


def test_read_of_missing_id_or_wrong_type_is_empty() -> None:
    assert search_local(RESOURCES, "Patient/nope") == []
    assert search_local(RESOURCES, "Patient/proc-epidural") == []


def test_read_tolerates_leading_slash() -> None:
    assert ids("/Patient/p2") == ["p2"]


def test_read_with_parameters_is_rejected() -> None:
    with pytest.raises(ValueError, match="read takes no parameters"):
        search_local(RESOURCES, "Patient/p1?_format=json")


def test_results_are_copies() -> None:
    source = copy.deepcopy(RESOURCES)
    result = search_local(source, "Procedure?patient=p1&_id=proc-epidural")
    result[0]["code"]["coding"][0]["code"] = "changed"
    assert source == RESOURCES


def test_later_duplicate_replaces_earlier_like_a_put() -> None:
    first = {"resourceType": "Patient", "id": "dup", "gender": "male"}
    second = {"resourceType": "Patient", "id": "dup", "gender": "female"}
    assert search_local([first, second], "Patient/dup") == [second]
    assert search_local([first, second], "Patient?_id=dup") == [second]


def test_resources_without_id_are_searchable_but_not_readable() -> None:
    anon = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/x"}}
    assert search_local([anon, dict(anon)], "Observation?patient=x") == [anon, anon]


# ---- patient / subject -----------------------------------------------------------------------


def test_patient_bare_id_and_typed_reference_are_equivalent() -> None:
    expected = ["proc-epidural", "proc-esi", "proc-eie", "proc-text-only"]
    assert ids("Procedure?patient=p1") == expected
    assert ids("Procedure?patient=Patient/p1") == expected
    assert ids("Procedure?patient=Patient%2Fp1") == expected


def test_patient_matches_absolute_and_versioned_references() -> None:
    assert "proc-esi" in ids("Procedure?patient=p1")


def test_patient_never_mixes_patients() -> None:
    assert ids("Procedure?patient=p2") == ["proc-other-patient"]
    assert ids("Procedure?patient=unknown") == []


def test_patient_does_not_match_a_group_subject_with_the_same_id() -> None:
    assert "obs-group" not in ids("Observation?patient=p1")


def test_patient_searches_the_patient_element_too() -> None:
    assert ids("AllergyIntolerance?patient=p1") == ["allergy"]


def test_patient_comma_is_or() -> None:
    assert ids("Procedure?patient=p2,Patient/p1&_id=proc-epidural,proc-other-patient") == [
        "proc-epidural",
        "proc-other-patient",
    ]


def test_patient_must_reference_a_patient() -> None:
    with pytest.raises(ValueError, match="must point at Patient"):
        search_local(RESOURCES, "Observation?patient=Group/p1")


def test_subject_bare_id_matches_any_type_typed_reference_only_that_type() -> None:
    assert ids("Observation?subject=p1") == ["obs-temp", "obs-crp", "obs-local-code", "obs-group"]
    assert ids("Observation?subject=Group/p1") == ["obs-group"]
    assert ids("Observation?subject=Patient/p1") == ["obs-temp", "obs-crp", "obs-local-code"]


def test_subject_does_not_search_the_patient_element() -> None:
    assert ids("AllergyIntolerance?subject=p1") == []


def test_malformed_reference_value_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a FHIR id"):
        search_local(RESOURCES, "Procedure?patient=a b")
    with pytest.raises(ValueError, match="not a FHIR reference"):
        search_local(RESOURCES, "Procedure?subject=patient/p1")


# ---- _id and status --------------------------------------------------------------------------


def test_id_list() -> None:
    assert ids("Patient?_id=p2,p1,zz") == ["p1", "p2"]


def test_status_token_list_is_or() -> None:
    assert ids("Procedure?patient=p1&status=completed,in-progress") == [
        "proc-epidural",
        "proc-esi",
        "proc-text-only",
    ]
    assert ids("Procedure?patient=p1&status=entered-in-error") == ["proc-eie"]


def test_status_with_system_matches_on_code() -> None:
    assert ids("Procedure?status=http://hl7.org/fhir/event-status|in-progress") == ["proc-esi"]


def test_status_is_rejected_where_r4_has_no_status_parameter() -> None:
    with pytest.raises(ValueError, match="'status' is not supported for Condition"):
        search_local(RESOURCES, "Condition?patient=p1&status=active")


# ---- code ------------------------------------------------------------------------------------


def test_code_system_and_code() -> None:
    assert ids(f"Observation?code={LOINC}|8310-5") == ["obs-temp", "obs-group"]


def test_code_percent_encoded_pipe() -> None:
    assert ids("Observation?code=http%3A%2F%2Floinc.org%7C8310-5") == ["obs-temp", "obs-group"]


def test_code_without_system_matches_any_system() -> None:
    assert ids("Observation?code=8310-5") == ["obs-temp", "obs-local-code", "obs-group"]


def test_code_with_empty_system_matches_only_codings_without_system() -> None:
    assert ids("Observation?code=|TEMP") == ["obs-local-code"]
    assert ids("Observation?code=|8310-5") == []


def test_code_system_only_matches_any_code_in_that_system() -> None:
    assert ids(f"Procedure?patient=p1&code={CPT}|") == ["proc-epidural", "proc-esi"]


def test_code_wrong_system_does_not_match() -> None:
    assert ids(f"Observation?code={SCT}|8310-5") == []


def test_code_list_is_or_across_systems_and_any_coding() -> None:
    query = f"Procedure?patient=p1&code={CPT}|64483,{SCT}|18946005"
    assert ids(query) == ["proc-epidural", "proc-esi", "proc-eie"]


def test_code_ignores_text_only_concepts() -> None:
    assert "proc-text-only" not in ids("Procedure?code=epidural")


def test_repeated_parameter_is_and() -> None:
    assert ids(f"Procedure?code={CPT}|01967&code={SCT}|18946005") == ["proc-epidural"]
    assert ids(f"Procedure?code={CPT}|64483&code={SCT}|18946005") == []


def test_code_on_medication_resources_searches_the_medication_concept() -> None:
    assert ids(f"MedicationRequest?patient=p1&code={RXNORM}|854235") == ["medreq-enox"]


def test_escaped_comma_is_part_of_the_value() -> None:
    odd = {
        "resourceType": "Observation",
        "id": "odd",
        "code": _cc(("urn:x", "a,b"), ("urn:x|y", "c")),
    }
    assert ids(r"Observation?code=urn:x|a\,b", [odd]) == ["odd"]
    assert ids("Observation?code=urn:x|a,b", [odd]) == []
    assert ids(r"Observation?code=urn:x\|y|c", [odd]) == ["odd"]


def test_plus_is_kept_literally() -> None:
    plus = {"resourceType": "Observation", "id": "plus", "code": _cc(("urn:x", "a+b"))}
    assert ids("Observation?code=a+b", [plus]) == ["plus"]
    assert ids("Observation?code=a%2Bb", [plus]) == ["plus"]


def test_malformed_token_is_rejected() -> None:
    with pytest.raises(ValueError, match="malformed token"):
        search_local(RESOURCES, "Observation?code=|")
    with pytest.raises(ValueError, match="malformed token"):
        search_local(RESOURCES, "Observation?code=a|b|c")


# ---- category, clinical-status, verification-status ------------------------------------------


def test_category_matches_any_concept_in_the_list() -> None:
    assert ids("Observation?category=laboratory") == ["obs-crp"]
    assert ids("Observation?category=exam") == ["obs-crp"]
    assert ids(f"Observation?category={OBS_CAT}|vital-signs,{OBS_CAT}|laboratory") == [
        "obs-temp",
        "obs-crp",
    ]


def test_category_on_a_single_codeable_concept() -> None:
    assert ids(f"Procedure?category={SCT}|387713003") == ["proc-epidural"]


def test_category_is_rejected_for_patient() -> None:
    with pytest.raises(ValueError, match="'category' is not supported for Patient"):
        search_local(RESOURCES, "Patient?category=x")


def test_clinical_status() -> None:
    assert ids("Condition?patient=p1&clinical-status=active,recurrence,relapse") == [
        "cond-weakness"
    ]
    assert ids(f"Condition?clinical-status={CLIN}|resolved") == ["cond-resolved"]


def test_condition_without_clinical_status_is_not_matched_by_it() -> None:
    assert "cond-retention-eie" not in ids("Condition?clinical-status=active,resolved")


def test_verification_status() -> None:
    assert ids(f"Condition?verification-status={VER}|entered-in-error") == ["cond-retention-eie"]
    assert ids("Condition?verification-status=provisional,confirmed") == [
        "cond-weakness",
        "cond-resolved",
    ]


def test_clinical_status_on_allergy_intolerance() -> None:
    assert ids("AllergyIntolerance?clinical-status=active") == ["allergy"]


@pytest.mark.parametrize("param", ["clinical-status", "verification-status"])
def test_condition_status_params_are_rejected_elsewhere(param: str) -> None:
    with pytest.raises(ValueError, match=f"'{param}' is not supported for Procedure"):
        search_local(RESOURCES, f"Procedure?{param}=active")


# ---- ignored, unknown and malformed parameters -----------------------------------------------


def test_count_and_sort_are_ignored() -> None:
    assert ids("Observation?patient=p1&code=8310-5&_count=1&_sort=-date") == [
        "obs-temp",
        "obs-local-code",
    ]


def test_search_without_parameters_returns_every_resource_of_the_type() -> None:
    assert ids("Patient") == ["p1", "p2"]
    assert ids("Patient?") == ["p1", "p2"]


def test_empty_segments_are_tolerated() -> None:
    assert ids("Patient?&_id=p1&") == ["p1"]


@pytest.mark.parametrize(
    "param", ["date", "code:in", "status:not", "_include", "_lastUpdated", "onset-date"]
)
def test_unknown_parameter_raises_naming_it(param: str) -> None:
    with pytest.raises(ValueError, match=f"unsupported search parameter '{param}'"):
        search_local(RESOURCES, f"Observation?patient=p1&{param}=x")


def test_unknown_parameter_raises_even_when_nothing_would_match() -> None:
    with pytest.raises(ValueError, match="'foo'"):
        search_local([], "Observation?foo=1")


@pytest.mark.parametrize(
    "query", ["Procedure?patient=", "Procedure?status=a,,b", "Procedure?code=,"]
)
def test_empty_values_are_rejected(query: str) -> None:
    with pytest.raises(ValueError, match="empty value"):
        search_local(RESOURCES, query)


def test_parameter_without_equals_is_rejected() -> None:
    with pytest.raises(ValueError, match="'patient' has no value"):
        search_local(RESOURCES, "Procedure?patient")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "procedure?patient=p1",
        "Patient/p1/_history/2",
        "http://fhir.example.org/Patient/p1",
        "Patient/not an id",
        "Procedure/_search?patient=p1",
    ],
)
def test_malformed_queries_are_rejected(query: str) -> None:
    with pytest.raises(ValueError):
        search_local(RESOURCES, query)


# ---- build_prefetch --------------------------------------------------------------------------


def test_build_prefetch_read_and_search() -> None:
    prefetch = build_prefetch(
        RESOURCES,
        {
            "patient": "Patient/p1",
            "missing": "Patient/nobody",
            "procedures": "Procedure?patient=p1&status=completed,in-progress",
            "none": f"Observation?patient=p2&code={LOINC}|8310-5",
        },
    )
    assert prefetch["patient"] == {"resourceType": "Patient", "id": "p1"}
    assert prefetch["missing"] is None
    procedures = prefetch["procedures"]
    assert procedures["resourceType"] == "Bundle"
    assert procedures["type"] == "searchset"
    assert procedures["total"] == 3
    assert [e["fullUrl"] for e in procedures["entry"]] == [
        "Procedure/proc-epidural",
        "Procedure/proc-esi",
        "Procedure/proc-text-only",
    ]
    assert all(e["search"] == {"mode": "match"} for e in procedures["entry"])
    assert procedures["entry"][0]["resource"] == RESOURCES[2]
    assert prefetch["none"] == {"resourceType": "Bundle", "type": "searchset", "total": 0}


def test_build_prefetch_entry_without_id_has_no_full_url() -> None:
    anon = {"resourceType": "Observation", "subject": {"reference": "Patient/x"}}
    prefetch = build_prefetch([anon], {"obs": "Observation?patient=x"})
    assert prefetch["obs"]["entry"] == [{"resource": anon, "search": {"mode": "match"}}]


def test_build_prefetch_with_no_queries_is_empty() -> None:
    assert build_prefetch(RESOURCES, {}) == {}


def test_build_prefetch_accepts_a_one_shot_iterable() -> None:
    prefetch = build_prefetch(iter(RESOURCES), {"a": "Patient/p1", "b": "Patient/p2"})
    assert prefetch["a"] is not None
    assert prefetch["b"] is not None


def test_build_prefetch_fails_on_any_bad_query() -> None:
    with pytest.raises(ValueError, match="'date'"):
        build_prefetch(RESOURCES, {"ok": "Patient/p1", "bad": "Observation?patient=p1&date=ge2026"})


def test_build_prefetch_output_is_json_serialisable() -> None:
    prefetch = build_prefetch(RESOURCES, {"c": "Condition?patient=p1"})
    assert json.loads(json.dumps(prefetch)) == prefetch


# ---- bundle_resources ------------------------------------------------------------------------


@pytest.mark.parametrize("bundle_type", ["transaction", "batch", "collection", "searchset"])
def test_bundle_resources_any_bundle_type(bundle_type: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": bundle_type,
        "entry": [{"fullUrl": f"Patient/{r['id']}", "resource": r} for r in RESOURCES[:2]],
    }
    assert bundle_resources(bundle) == RESOURCES[:2]


def test_bundle_resources_skips_entries_without_resource() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": "Patient/old"}},
            {"resource": RESOURCES[0], "request": {"method": "PUT", "url": "Patient/p1"}},
        ],
    }
    assert bundle_resources(bundle) == [RESOURCES[0]]


def test_bundle_resources_empty_bundle() -> None:
    assert bundle_resources({"resourceType": "Bundle", "type": "searchset", "total": 0}) == []


def test_bundle_resources_rejects_non_bundles_and_bad_entries() -> None:
    with pytest.raises(ValueError, match="expected a Bundle"):
        bundle_resources({"resourceType": "Patient", "id": "p1"})
    with pytest.raises(ValueError, match="entry must be an array"):
        bundle_resources({"resourceType": "Bundle", "entry": {}})
    with pytest.raises(ValueError, match=r"entry\[0\] must be an object"):
        bundle_resources({"resourceType": "Bundle", "entry": ["x"]})
    with pytest.raises(ValueError, match=r"entry\[0\]\.resource is not a FHIR resource"):
        bundle_resources({"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]})


# ---- end to end on a shipped example ---------------------------------------------------------


def test_prefetch_from_an_example_bundle() -> None:
    bundle = json.loads((EXAMPLES / "s1-labour-epidural-lmwh-weakness" / "bundle.json").read_text())
    resources = bundle_resources(bundle)
    prefetch = build_prefetch(
        resources,
        {
            "patient": "Patient/s1-patient",
            "procedures": "Procedure?patient=s1-patient&status=completed,in-progress"
            f"&code={CPT}|01967,{SCT}|18946005",
            "conditions": "Condition?patient=s1-patient&verification-status="
            "unconfirmed,provisional,differential,confirmed",
            "anticoagulants": f"MedicationAdministration?patient=s1-patient&code={RXNORM}|854235",
            "epidural-meds": "MedicationAdministration?patient=s1-patient&status=completed",
        },
    )
    assert prefetch["patient"]["id"] == "s1-patient"
    assert prefetch["procedures"]["total"] == 1
    assert prefetch["conditions"]["total"] == 2
    assert prefetch["anticoagulants"]["total"] == 1
    assert prefetch["epidural-meds"]["total"] == 3
