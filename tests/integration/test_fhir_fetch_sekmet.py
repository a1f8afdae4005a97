"""Fallback fetching against a real FHIR R4 server (sekmet-fhir): search semantics and real paging.

Why: the stub-server tests prove our side of the wire; these prove that what we send is
understood by a real FHIR server (``patient=``, ``code=system|code``, ``_count``) and that the
``next`` links a real server produces are followed to the end, with the token on every page.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import PrefetchUnavailable
from service.fhir.outbound import OutboundPolicy
from service.fhir.prefetch import (
    FetchSettings,
    PrefetchTemplate,
    ResolvedPrefetch,
    resolve_prefetch,
)
from tests.support.fhir_server import SekmetServer

pytestmark = pytest.mark.integration

PATIENT_ID = "epi-pat-1"
OTHER_PATIENT_ID = "epi-pat-2"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
PROCEDURE_IDS = [f"epi-proc-{i:02d}" for i in range(1, 13)]
TEMPERATURE_IDS = ["epi-temp-1", "epi-temp-2", "epi-temp-3"]
HEART_RATE_IDS = ["epi-hr-1", "epi-hr-2"]
CONDITION_IDS = ["epi-cond-1", "epi-cond-2"]

TEMPLATES = [
    PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=True),
    PrefetchTemplate("procedures", "Procedure?patient={{context.patientId}}", required=True),
    PrefetchTemplate(
        "temperature",
        f"Observation?patient={{{{context.patientId}}}}&code={LOINC}|8310-5",
        required=True,
    ),
    PrefetchTemplate("conditions", "Condition?patient={{context.patientId}}", required=False),
]


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def _observation(
    oid: str, code: str, display: str, value: float, unit: str, when: str
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def fixture_bundle() -> dict[str, Any]:
    """Patient + 12 Procedures + temperature and heart-rate Observations + Conditions."""
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": PATIENT_ID,
            "gender": "female",
            "birthDate": "1990-04-02",
            "name": [{"family": "Testpatient", "given": ["Epi"]}],
        },
        {
            "resourceType": "Patient",
            "id": OTHER_PATIENT_ID,
            "gender": "male",
            "birthDate": "1970-01-01",
        },
        {
            "resourceType": "Procedure",
            "id": "epi-proc-other",
            "status": "completed",
            "code": {"coding": [{"system": SNOMED, "code": "18946005"}]},
            "subject": {"reference": f"Patient/{OTHER_PATIENT_ID}"},
            "performedDateTime": "2026-02-01T08:00:00Z",
        },
    ]
    for i, pid in enumerate(PROCEDURE_IDS, start=1):
        resources.append(
            {
                "resourceType": "Procedure",
                "id": pid,
                "status": "completed" if i % 3 else "in-progress",
                "code": {
                    "coding": [
                        {"system": SNOMED, "code": "18946005", "display": "Epidural anesthesia"}
                    ]
                },
                "subject": {"reference": f"Patient/{PATIENT_ID}"},
                "performedDateTime": f"2026-01-{i:02d}T10:00:00Z",
            }
        )
    for i, oid in enumerate(TEMPERATURE_IDS, start=1):
        resources.append(
            _observation(
                oid, "8310-5", "Body temperature", 37.0 + i / 2, "Cel", f"2026-01-1{i}T12:00:00Z"
            )
        )
    for i, oid in enumerate(HEART_RATE_IDS, start=1):
        resources.append(
            _observation(oid, "8867-4", "Heart rate", 80.0 + i, "/min", f"2026-01-1{i}T12:00:00Z")
        )
    for cid, code in zip(CONDITION_IDS, ["267038008", "161891005"], strict=True):
        resources.append(
            {
                "resourceType": "Condition",
                "id": cid,
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"coding": [{"system": SNOMED, "code": code}]},
                "subject": {"reference": f"Patient/{PATIENT_ID}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_put(r) for r in resources]}


def hook_request(server: SekmetServer, token: str) -> dict[str, Any]:
    """A patient-view request with NO prefetch: everything must be fetched."""
    return {
        "hook": "patient-view",
        "hookInstance": "8d4b9f38-2f45-4d2c-a6c4-0f7e0f3f8a11",
        "fhirServer": server.base_url,
        "fhirAuthorization": {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Procedure.read "
            "user/Observation.read user/Condition.read",
            "subject": "epidural-cds",
        },
        "context": {"userId": "Practitioner/example", "patientId": PATIENT_ID},
    }


def ids(resolved: ResolvedPrefetch, key: str) -> set[str]:
    return {r["id"] for r in resolved.resources[key]}


@pytest.fixture(scope="module")
def loaded(fhir_server: SekmetServer) -> SekmetServer:
    fhir_server.load(fixture_bundle())
    return fhir_server


@pytest.fixture(scope="module")
def loaded_with_token(fhir_server_requiring_token: SekmetServer) -> SekmetServer:
    fhir_server_requiring_token.load(fixture_bundle())
    return fhir_server_requiring_token


# The sekmet servers listen on loopback over http: allowed here, per test, through extra_allowed.
LOCAL = OutboundPolicy(allowed_servers=(), require_https=False, allow_private_addresses=True)

# Generous deadline: these tests are about completeness, not latency on a loaded CI machine.
SETTINGS = FetchSettings(
    policy=LOCAL, page_size=5, deadline_s=20.0, read_timeout_s=10.0, connect_timeout_s=5.0
)


def test_server_really_pages_at_page_size_5(loaded: SekmetServer) -> None:
    status, first = loaded.request("GET", f"Procedure?patient={PATIENT_ID}&_count=5")
    assert status == 200 and first is not None
    assert first["total"] == 12
    assert len(first["entry"]) == 5
    assert any(link["relation"] == "next" for link in first["link"])


def test_all_data_arrives_only_after_following_next_pages(loaded: SekmetServer) -> None:
    resolved = resolve_prefetch(
        hook_request(loaded, "fake-token-123"),
        TEMPLATES,
        SETTINGS,
        extra_allowed=(loaded.base_url,),
    )
    assert ids(resolved, "patient") == {PATIENT_ID}
    assert ids(resolved, "procedures") == set(PROCEDURE_IDS)  # 12 = pages of 5 + 5 + 2
    assert len(resolved.resources["procedures"]) == 12  # no duplicates across pages
    assert ids(resolved, "conditions") == set(CONDITION_IDS)
    assert dict(resolved.origin) == {
        "patient": "fetched",
        "procedures": "fetched",
        "temperature": "fetched",
        "conditions": "fetched",
    }
    assert resolved.partial == frozenset() and resolved.unavailable == ()


def test_code_filter_returns_only_temperature_observations(loaded: SekmetServer) -> None:
    settings = FetchSettings(policy=LOCAL, page_size=2, deadline_s=20.0, read_timeout_s=10.0)
    resolved = resolve_prefetch(
        hook_request(loaded, "fake-token-123"),
        TEMPLATES,
        settings,
        extra_allowed=(loaded.base_url,),
    )
    assert ids(resolved, "temperature") == set(TEMPERATURE_IDS)  # 2 pages of 2 + 1
    codes = {c["code"] for r in resolved.resources["temperature"] for c in r["code"]["coding"]}
    assert codes == {"8310-5"}
    # And it really was paged: one page of 2 leaves the optional key partial.
    one_page = FetchSettings(
        policy=LOCAL, page_size=2, max_pages=1, deadline_s=20.0, read_timeout_s=10.0
    )
    optional = PrefetchTemplate("temperature", TEMPLATES[2].template, required=False)
    resolved = resolve_prefetch(
        hook_request(loaded, "fake-token-123"),
        [optional],
        one_page,
        extra_allowed=(loaded.base_url,),
    )
    assert len(resolved.resources["temperature"]) == 2
    assert resolved.partial == frozenset({"temperature"})


def test_page_cap_on_real_server_is_412_for_required(loaded: SekmetServer) -> None:
    settings = FetchSettings(
        policy=LOCAL, page_size=5, max_pages=2, deadline_s=20.0, read_timeout_s=10.0
    )
    with pytest.raises(PrefetchUnavailable, match="'procedures'"):
        resolve_prefetch(
            hook_request(loaded, "fake-token-123"),
            TEMPLATES,
            settings,
            extra_allowed=(loaded.base_url,),
        )


def test_token_is_sent_on_every_page(loaded_with_token: SekmetServer) -> None:
    token = loaded_with_token.bearer_token
    assert token is not None
    resolved = resolve_prefetch(
        hook_request(loaded_with_token, token),
        TEMPLATES,
        SETTINGS,
        extra_allowed=(loaded_with_token.base_url,),
    )
    assert ids(resolved, "procedures") == set(PROCEDURE_IDS)


def test_rejected_token_is_412(loaded_with_token: SekmetServer) -> None:
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(
            hook_request(loaded_with_token, "wrong-token"),
            TEMPLATES,
            SETTINGS,
            extra_allowed=(loaded_with_token.base_url,),
        )
    assert info.value.status == 412
    assert "wrong-token" not in f"{info.value.message} {info.value.diagnostics}"
