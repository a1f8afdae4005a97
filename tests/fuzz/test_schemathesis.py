"""Property-based fuzzing of every documented operation, in-process, from ``/openapi.json``.

Schemathesis reads the OpenAPI document the app serves and drives the Flask app directly (no
network). For every generated request:

* no 5xx: nothing a client sends may crash the service (``not_a_server_error``);
* every non-2xx answer is a FHIR OperationOutcome sent as ``application/fhir+json``;
* the answer matches the document (status code, media type, response schema), so the OpenAPI
  description cannot drift from what the service does.

Three phases: positive data for every operation; negative data (schema-violating requests) for
the hook, each of which must get a 4xx; and real example requests whose prefetched FHIR resources
are mutated (a member replaced by arbitrary JSON, or removed), because schema-valid random
requests never get past "wrong hook" or "required prefetch missing" into the clinical code.

Generation is derandomized and bounded: CI runs the same cases every time, in well under a
minute on two cores.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from service.fhir.timeshift import shift_times
from service.http.app import EXTENSION_KEY, ServiceState
from tests.protocol.conftest import (
    EXAMPLE_DIRS,
    delta_to_present,
    load_bundle,
    make_request,
)
from tests.support.apps import dev_app

APP = dev_app()
_STATE: ServiceState = APP.extensions[EXTENSION_KEY]
SERVICE_ID = _STATE.content.services[0].id
HOOK_PATH = "/cds-services/{service_id}"
MAX_EXAMPLES = 100


def _config(mode: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "generation": {"mode": mode, "max-examples": MAX_EXAMPLES, "deterministic": True},
            # Aim the hook at the real service so bodies reach parsing and evaluation instead of
            # stopping at 404 (unknown ids are covered by the protocol tests).
            "parameters": {"path.service_id": SERVICE_ID},
        }
    )


positive = schemathesis.openapi.from_wsgi("/openapi.json", APP, config=_config("positive"))
negative = schemathesis.openapi.from_wsgi("/openapi.json", APP, config=_config("negative")).include(
    path=HOOK_PATH, method="POST"
)
HOOK = positive[HOOK_PATH]["POST"]

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def error_is_operation_outcome(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Every non-2xx response is a FHIR OperationOutcome with at least one issue."""
    if 200 <= response.status_code < 300:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == "application/fhir+json", (
        f"{response.status_code} answered with {content_type!r}, not application/fhir+json"
    )
    body = json.loads(response.content)
    assert body.get("resourceType") == "OperationOutcome", body
    assert body.get("issue"), body
    return None


CHECKS = [
    not_a_server_error,
    error_is_operation_outcome,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@positive.parametrize()
@FUZZ_SETTINGS
def test_documented_operations(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


@negative.parametrize()
@FUZZ_SETTINGS
def test_hook_rejects_invalid_requests(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[*CHECKS, negative_data_rejection])


# -- malformed FHIR inside an otherwise valid request ---------------------------------------------

#: Valid requests for every example scenario, moved to the present so the rules see them.
EXAMPLE_REQUESTS = [
    make_request(APP, d, bundle=shift_times(load_bundle(d), delta_to_present(d)))
    for d in EXAMPLE_DIRS
]

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "2026-13-45", "2026-03-09", "2026-03-09T07:15:00", "Patient/x"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _wrong_type(value: Any) -> st.SearchStrategy[Any]:
    """A value of another JSON type than ``value`` (type confusion), or any JSON at all."""
    containers = st.lists(_SCALARS, max_size=2) | st.dictionaries(
        st.text(max_size=4), _SCALARS, max_size=2
    )
    if isinstance(value, dict | list):
        return _SCALARS | _JSON
    if isinstance(value, str):
        return containers | st.integers() | st.booleans() | st.none()
    return containers | st.text(max_size=12) | _JSON


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _resources(prefetch: dict[str, Any]) -> list[dict[str, Any]]:
    """The FHIR resources of a request's prefetch: single resources and searchset entries."""
    found = []
    for value in prefetch.values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            entries = value.get("entry")
            entries = entries if isinstance(entries, list) else []
            found += [e["resource"] for e in entries if isinstance(e, dict) and "resource" in e]
        elif isinstance(value, dict):
            found.append(value)
    return found


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """An example request with one to four members of its prefetch replaced or removed.

    Most mutations hit a member inside one resource (where the clinical code reads); some hit the
    prefetch structure itself (a Bundle's ``entry``, an entry's ``resource``).
    """
    request: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(EXAMPLE_REQUESTS)))
    for _ in range(draw(st.integers(1, 4))):
        resources = _resources(request["prefetch"])
        if resources and draw(st.integers(0, 4)) > 0:
            root: Any = draw(st.sampled_from(resources))
            paths = [p for p in _paths(root) if p and p != ("resourceType",)]
        else:
            root = request["prefetch"]
            paths = [p for p in _paths(root) if len(p) >= 2]
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent: Any = root
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.integers(0, 3)) == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_wrong_type(parent[path[-1]]))
    return request


MALFORMED_FHIR_BUG = (
    "BUG: a FHIR resource with a wrongly typed member crashes evaluation with a 500 "
    "(TypeError: `status` that is an object/array is used in a set lookup in "
    "clinical/episodes.py:137, clinical/findings.py:268, clinical/medications.py:137 and :171; "
    "a non-list `CodeableConcept.coding` is iterated in clinical/terminology.py:80). "
    "See test_minimal_malformed_fhir_requests."
)


@settings(FUZZ_SETTINGS, max_examples=400)  # ~10 ms each; a crash needs the right member
@given(request=mutated_requests())
def test_hook_survives_malformed_fhir_in_prefetch(request: dict[str, Any]) -> None:
    case = HOOK.Case(
        path_parameters={"service_id": SERVICE_ID}, body=request, media_type="application/json"
    )
    case.call_and_validate(checks=CHECKS)


# The minimal requests the fuzzer's crashes reduce to: one malformed member each.

_PATIENT = "p1"


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


_EPIDURAL = {
    "resourceType": "Procedure",
    "status": "completed",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "18946005"}]},
    "performedDateTime": (datetime.now(UTC) - timedelta(hours=10)).isoformat(),
}

MINIMAL_CRASHES = {
    "Procedure.status is an array (clinical/episodes.py:137)": {
        "procedures": _bundle({"resourceType": "Procedure", "status": []}),
    },
    "Procedure.code.coding is a boolean (clinical/terminology.py:80)": {
        "procedures": _bundle({**_EPIDURAL, "code": {"coding": True}}),
    },
    "MedicationAdministration.status is an array (clinical/medications.py:137)": {
        "medication-administrations": _bundle(
            {"resourceType": "MedicationAdministration", "status": []}
        ),
    },
    "MedicationRequest.status is an object (clinical/medications.py:171)": {
        "medication-requests": _bundle({"resourceType": "MedicationRequest", "status": {}}),
    },
    "Observation.status is an object, after an epidural (clinical/findings.py:268)": {
        "procedures": _bundle(_EPIDURAL),
        "observations": _bundle({"resourceType": "Observation", "status": {}}),
    },
}


@pytest.mark.parametrize(
    "prefetch",
    [pytest.param(p, id=name) for name, p in MINIMAL_CRASHES.items()],
)
def test_minimal_malformed_fhir_requests(prefetch: dict[str, Any]) -> None:
    body = {
        "hook": "patient-view",
        "hookInstance": "fuzz-minimal",
        "context": {"userId": "Practitioner/u1", "patientId": _PATIENT},
        "prefetch": {"procedures": None, "conditions": None, "observations": None, **prefetch},
    }
    case = HOOK.Case(
        path_parameters={"service_id": SERVICE_ID}, body=body, media_type="application/json"
    )
    case.call_and_validate(checks=CHECKS)
