"""Fixtures and helpers for the CDS Hooks protocol and scenario tests.

Hook requests are built the way a CDS client would build them: the prefetch templates the app
advertises are rendered for the example's patient and answered from the example's bundle with
:func:`service.fhir.local_search.build_prefetch` (the same local FHIR search the CLI uses), so a
change to a template changes what the service receives.

The HTTP route evaluates at wall-clock time. Scenario tests therefore either call
``handler.handle(..., now=scenario_now)`` directly, or move the whole record to the present with
:func:`shift_times` before posting it.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.fhir.local_search import build_prefetch, bundle_resources
from service.http.app import EXTENSION_KEY, ServiceState
from tests.support.apps import dev_app
from tests.support.recording_fhir import RecordingFhirServer

EXAMPLES = Path(__file__).resolve().parents[2] / "fhir_examples"
EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []
PATIENT_TOKEN = "{{context.patientId}}"
USER_ID = "Practitioner/protocol-test-user"
JSON = "application/json"
FHIR_JSON = "application/fhir+json"


# -- example files --------------------------------------------------------------------------------


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_scenario(example_dir: Path) -> dict[str, Any]:
    scenario: dict[str, Any] = load_json(example_dir / "scenario.json")
    return scenario


def load_bundle(example_dir: Path) -> dict[str, Any]:
    bundle: dict[str, Any] = load_json(example_dir / "bundle.json")
    return bundle


def scenario_now(example_dir: Path) -> datetime:
    now = datetime.fromisoformat(load_scenario(example_dir)["now"])
    assert now.tzinfo is not None, f"{example_dir.name}: scenario 'now' needs an offset"
    return now


def delta_to_present(example_dir: Path, present: datetime | None = None) -> timedelta:
    """Whole seconds from the scenario's ``now`` to the present, rounded down so that nothing
    shifted ends up after the wall-clock time the service reads a moment later."""
    present = present or datetime.now(UTC)
    seconds = (present - scenario_now(example_dir)).total_seconds()
    return timedelta(seconds=math.floor(seconds))


# -- hook requests --------------------------------------------------------------------------------


def service_state(app: Flask) -> ServiceState:
    found: ServiceState = app.extensions[EXTENSION_KEY]
    return found


def rendered_queries(app: Flask, patient_id: str, hook: str = "patient-view") -> dict[str, str]:
    """The prefetch templates of the ``hook`` service with ``{{context.patientId}}`` filled in,
    as an EHR would."""
    service = next(s for s in service_state(app).content.services if s.hook == hook)
    return {spec.key: spec.query.replace(PATIENT_TOKEN, patient_id) for spec in service.prefetch}


def scenario_hook(example_dir: Path) -> str:
    """The hook an example is a scenario of (``patient-view`` unless its scenario says)."""
    return str(load_scenario(example_dir).get("hook", "patient-view"))


def make_hook_request(
    app: Flask, example_dir: Path, *, bundle: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The request an EHR would send for the example's own hook: patient-view as
    :func:`make_request`, or order-select/order-sign with the scenario's ``draftOrders`` (and
    ``selections``), shaped like the CDS Hooks sandbox's order requests."""
    hook = scenario_hook(example_dir)
    if hook == "patient-view":
        return make_request(app, example_dir, bundle=bundle)
    scenario = load_scenario(example_dir)
    patient_id = scenario["patientId"]
    context: dict[str, Any] = {
        "userId": USER_ID,
        "patientId": patient_id,
        "draftOrders": scenario["draftOrders"],
    }
    if "selections" in scenario:
        context["selections"] = scenario["selections"]
    elif hook == "order-select":
        context["selections"] = [
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in scenario["draftOrders"]["entry"]
        ]
    resources = bundle_resources(bundle if bundle is not None else load_bundle(example_dir))
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": build_prefetch(resources, rendered_queries(app, patient_id, hook)),
    }


def example_service_id(app: Flask, example_dir: Path) -> str:
    """The id of the service that answers the example's hook."""
    hook = scenario_hook(example_dir)
    return next(s.id for s in service_state(app).content.services if s.hook == hook)


def make_request(
    app: Flask,
    example_dir: Path,
    with_prefetch: bool = True,
    *,
    bundle: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid patient-view hook request for ``example_dir`` (optionally with a changed bundle)."""
    scenario = load_scenario(example_dir)
    patient_id = scenario["patientId"]
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": USER_ID, "patientId": patient_id},
    }
    if with_prefetch:
        resources = bundle_resources(bundle if bundle is not None else load_bundle(example_dir))
        body["prefetch"] = build_prefetch(resources, rendered_queries(app, patient_id))
    return body


def service_id(app: Flask) -> str:
    return service_state(app).content.services[0].id


def service_url(app: Flask) -> str:
    return f"/cds-services/{service_id(app)}"


def encode(body: Any) -> bytes:
    return json.dumps(body).encode("utf-8")


def local_fhir_app(server: RecordingFhirServer, **settings: Any) -> Flask:
    """An app allowed to query the local (http, loopback) recording FHIR server."""
    return dev_app(
        fhir_allowed_servers=server.base_url,
        fhir_allow_http=True,
        fhir_allow_private_addresses=True,
        **settings,
    )


def authorization(patient_id: str, token: str = "protocol-test-token") -> dict[str, Any]:
    """A well-formed ``fhirAuthorization`` object."""
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "epidural-cds",
        "patient": patient_id,
    }


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def app() -> Flask:
    """The app with the content shipped in ``cards/`` and default settings."""
    return dev_app()


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def build_request(app: Flask) -> Callable[..., dict[str, Any]]:
    """``build_request(example_dir, with_prefetch=True, *, bundle=None)`` for the default app."""

    def build(
        example_dir: Path, with_prefetch: bool = True, *, bundle: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return make_request(app, example_dir, with_prefetch, bundle=bundle)

    return build


@pytest.fixture
def fhir_server() -> Iterator[RecordingFhirServer]:
    with RecordingFhirServer() as server:
        yield server


# -- shared assertions ----------------------------------------------------------------------------


def find_empty(value: Any, path: str = "$") -> list[str]:
    """JSON paths of null, "", [] or {} anywhere in ``value`` (CDS Hooks 2.0 §Use of JSON)."""
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += find_empty(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += find_empty(item, f"{path}[{index}]")
    return found


def assert_operation_outcome(response: Any, status: int) -> dict[str, Any]:
    """``response`` has ``status`` and a FHIR OperationOutcome body without internals."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == FHIR_JSON
    body: dict[str, Any] = json.loads(text)
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] in ("error", "fatal")
    assert isinstance(issue["code"], str) and issue["code"]
    assert isinstance(issue["diagnostics"], str) and issue["diagnostics"].strip()
    assert "Traceback" not in text
    assert 'File "' not in text
    assert find_empty(body) == []
    return body
