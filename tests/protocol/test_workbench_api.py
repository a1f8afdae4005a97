"""The card workbench's HTTP side: when it is served, who may call it, and what it answers.

The browser tests (tests/browser/) drive the page; these tests pin the API contract behind it:
the evaluation endpoint gives exactly the cards of a hook call (same handler), pasted Bundles get
every problem back as an OperationOutcome issue with resource and path (422, never 500), and the
workbench is off in production unless enabled, and then never callable without a trusted JWT.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from service.http.app import create_app
from service.workbench_input import WORKBENCH_USER
from tests.auth.conftest import Signer
from tests.protocol.conftest import EXAMPLE_DIRS, delta_to_present, load_bundle, load_scenario
from tests.security.conftest import write_issuers
from tests.support.apps import dev_app

BASE = "https://cds.example.org/prefix"
ISS = "https://ehr-workbench.example.org"
S1 = next(p for p in EXAMPLE_DIRS if p.name.startswith("s1-labour"))


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(ec.generate_private_key(ec.SECP384R1()), "workbench-es384", "ES384")


@pytest.fixture(scope="module")
def app() -> Flask:
    return dev_app()


def _strip_ids(tree: Any) -> Any:
    """The document without the per-call ``uuid`` members (cards and suggestions)."""
    if isinstance(tree, dict):
        return {k: _strip_ids(v) for k, v in tree.items() if k != "uuid"}
    if isinstance(tree, list):
        return [_strip_ids(v) for v in tree]
    return tree


def _request_for(app: Flask, bundle: dict[str, Any], patient: str = "") -> dict[str, Any]:
    response = app.test_client().post(
        "/workbench/api/request", json={"bundle": bundle, "patientId": patient}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    request: dict[str, Any] = response.get_json()["request"]
    return request


@pytest.mark.parametrize("example", EXAMPLE_DIRS, ids=[p.name for p in EXAMPLE_DIRS])
def test_evaluate_gives_exactly_the_cards_of_a_hook_call(app: Flask, example: Path) -> None:
    # The record moved to the present, so the hook route (wall clock) and the workbench (its
    # "now" left empty, hence the wall clock too) judge the same moment.
    from service.fhir.timeshift import shift_times

    bundle = shift_times(load_bundle(example), delta_to_present(example))
    request = _request_for(app, bundle, load_scenario(example)["patientId"])
    client = app.test_client()
    hook = client.post("/cds-services/epidural-complications", json=request)
    bench = client.post("/workbench/api/evaluate", json={"request": request, "now": None})
    assert hook.status_code == bench.status_code == 200
    assert _strip_ids(bench.get_json()["response"]) == _strip_ids(hook.get_json())


def test_evaluate_at_the_scenario_time_replays_the_scenario(app: Flask) -> None:
    scenario = load_scenario(S1)
    request = _request_for(app, load_bundle(S1))
    assert request["context"] == {"userId": WORKBENCH_USER, "patientId": scenario["patientId"]}
    body = app.test_client().post(
        "/workbench/api/evaluate", json={"request": request, "now": scenario["now"]}
    )
    document = body.get_json()
    cards = document["response"]["cards"]
    expected = scenario["expected"]["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        (e["indicator"], e["summary"]) for e in expected
    ]
    assert document["request"] == request
    assert datetime.fromisoformat(document["now"]) == datetime.fromisoformat(scenario["now"])
    (timeline,) = document["timeline"]
    (interval,) = timeline["intervals"]
    assert interval["resource"] == "MedicationAdministration/s1-medadmin-enoxaparin"
    assert interval["conflict"] is True
    assert interval["short"] == "removal → dose 1.5 h (ASRA ≥ 4 h)"
    kinds = {m["kind"] for m in timeline["marks"]}
    assert {"puncture", "removal", "block_end", "finding", "dose", "lab", "temperature"} <= kinds
    assert {"fired", "now", "last_la"} <= kinds
    findings = {m["resource"]: m["laterality"] for m in timeline["marks"] if m["kind"] == "finding"}
    assert findings["Condition/s1-cond-leg-weakness-bilateral"] == "bilateral"
    (episode,) = document["explanation"]["episodes"]
    by_pattern = {e["pattern"]: e for e in episode["entries"]}
    assert by_pattern["hematoma_motor"]["fired"] is True
    assert by_pattern["hematoma_motor"]["shown"] == "card 1 (critical)"
    assert by_pattern["abscess"]["fired"] is False
    fever = by_pattern["abscess"]["conditions"][0]
    assert fever["met"] is False and fever["found"] == []
    assert by_pattern["antithrombotic_timing"]["shown"].startswith("folded into card 1")


def test_explanation_shows_a_near_miss_with_the_value_found(app: Flask) -> None:
    # S1 with the weakness on the left leg only: no longer bilateral, so the motor red flag does
    # not fire, and the explanation says which condition failed and on which resource.
    bundle = copy.deepcopy(load_bundle(S1))
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["id"] == "s1-cond-leg-weakness-bilateral":
            resource["code"] = {"text": "Weakness of left leg"}
            resource.pop("bodySite", None)
    request = _request_for(app, bundle)
    body = (
        app.test_client()
        .post(
            "/workbench/api/evaluate",
            json={"request": request, "now": load_scenario(S1)["now"]},
        )
        .get_json()
    )
    entries = {e["pattern"]: e for e in body["explanation"]["episodes"][0]["entries"]}
    motor = entries["hematoma_motor"]
    assert motor["fired"] is False
    weakness, sides, still_current = motor["conditions"]
    assert weakness["met"] is True  # new, after the block, in the window ...
    (found,) = weakness["found"]
    assert found["resource"] == "Condition/s1-cond-leg-weakness-bilateral"
    assert found["passed"] is True and "(left)" in found["text"]
    assert sides["met"] is False  # ... but on one side only
    assert sides["note"] == "only one side recorded"
    assert sides["found"][0]["checks"] == {"counts": False}
    assert still_current["met"] is False and still_current["note"] == "no finding to be current"


def test_no_epidural_says_why_there_is_no_card(app: Flask) -> None:
    example = next(p for p in EXAMPLE_DIRS if p.name == "no-epidural-knee-pain")
    request = _request_for(app, load_bundle(example))
    body = (
        app.test_client()
        .post(
            "/workbench/api/evaluate",
            json={"request": request, "now": load_scenario(example)["now"]},
        )
        .get_json()
    )
    assert body["response"] == {"cards": []}
    assert body["timeline"] == []
    assert body["explanation"]["summary"].startswith("No epidural")
    assert body["explanation"]["procedures"]


def test_malformed_bundle_gets_every_problem_with_resource_and_path(app: Flask) -> None:
    bundle = copy.deepcopy(load_bundle(S1))
    bundle["entry"][7]["resource"]["onsetDateTime"] = "yesterday evening"
    bundle["entry"][1]["resource"]["valueQuantity"] = {"value": "high"}
    bundle["entry"].append({"resource": {"resourceType": "Nonsense", "id": "x"}})
    response = app.test_client().post("/workbench/api/request", json={"bundle": bundle})
    assert response.status_code == 422
    assert response.mimetype == "application/fhir+json"
    issues = response.get_json()["issue"]
    places = {(i["details"]["text"], i["expression"][0]) for i in issues}
    assert (
        "Condition/s1-cond-leg-weakness-bilateral",
        "Bundle.entry[7].resource.onsetDateTime",
    ) in places
    assert ("Observation/s1-obs-platelets", "Bundle.entry[1].resource.valueQuantity.value") in {
        (r, p) for r, p in places
    }
    assert any(r == "Nonsense/x" for r, _ in places)
    assert all(i["severity"] == "error" and i["diagnostics"] for i in issues)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[]", 400),
        (json.dumps({"bundle": {"resourceType": "Patient"}}).encode(), 422),
        (json.dumps({"bundle": {"resourceType": "Bundle", "entry": "x"}}).encode(), 422),
        (json.dumps({"bundle": {"resourceType": "Bundle", "type": "collection"}}).encode(), 400),
    ],
)
def test_bad_input_is_a_4xx_outcome_never_a_500(app: Flask, body: bytes, status: int) -> None:
    response = app.test_client().post(
        "/workbench/api/request", data=body, content_type="application/json"
    )
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_evaluate_refuses_bad_now_and_fhir_authorization(app: Flask) -> None:
    request = _request_for(app, load_bundle(S1))
    client = app.test_client()
    bad_now = client.post("/workbench/api/evaluate", json={"request": request, "now": "tuesday"})
    assert bad_now.status_code == 400
    naive = client.post(
        "/workbench/api/evaluate", json={"request": request, "now": "2026-03-10T20:00:00"}
    )
    assert naive.status_code == 400
    proxied = dict(request, fhirServer="https://ehr.example.org/fhir")
    proxied["fhirAuthorization"] = {"access_token": "x", "token_type": "Bearer"}
    refused = client.post("/workbench/api/evaluate", json={"request": proxied})
    assert refused.status_code == 400
    assert "fhirAuthorization" in refused.get_json()["issue"][0]["diagnostics"]
    invalid = client.post("/workbench/api/evaluate", json={"request": {"hook": "patient-view"}})
    assert invalid.status_code == 400


def test_page_and_assets_are_shipped_with_a_strict_policy(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/workbench/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert client.get("/workbench/static/workbench.js").mimetype == "text/javascript"
    assert client.get("/workbench/static/workbench.css").mimetype == "text/css"
    assert client.get("/workbench/static/../app.py").status_code == 404
    assert client.get("/workbench/static/index.html").status_code == 404
    examples = client.get("/workbench/api/examples").get_json()["examples"]
    assert {e["id"] for e in examples} == {p.name for p in EXAMPLE_DIRS}
    assert client.get("/workbench/api/examples/nope").status_code == 404
    assert client.get("/workbench/api/examples/..%2Fcards").status_code == 404


def test_examples_come_from_the_configured_directory(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "scenario.json").write_text(json.dumps({"title": "Mine", "now": "x"}))
    (tmp_path / "mine" / "bundle.json").write_text(json.dumps({"resourceType": "Bundle"}))
    client = dev_app(workbench_examples_dir=str(tmp_path)).test_client()
    listing = client.get("/workbench/api/examples").get_json()["examples"]
    assert [e["id"] for e in listing] == ["mine"]


def test_workbench_can_be_switched_off_in_development() -> None:
    client = dev_app(workbench=False).test_client()
    assert client.get("/workbench/").status_code == 404
    assert client.post("/workbench/api/evaluate", json={}).status_code == 404


# -- production: off unless enabled, and then only with a trusted JWT ------------------------


def _prod(tmp_path: Path, signer: Signer, **settings: Any) -> Flask:
    issuers = write_issuers(
        tmp_path / "issuers.yaml", [{"iss": ISS, "jwks": {"keys": [signer.public_jwk()]}}]
    )
    return create_app(
        {
            "profile": "production",
            "public_base_url": BASE,
            "issuers_file": str(issuers),
            "data_dir": str(tmp_path / "data"),
            **settings,
        }
    )


def _token(signer: Signer, aud: str, lifetime: int = 900) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, signer.key, algorithm=signer.alg, headers={"kid": signer.kid})


def test_production_serves_no_workbench_by_default(tmp_path: Path, signer: Signer) -> None:
    client = _prod(tmp_path, signer).test_client()
    assert client.get("/workbench/").status_code == 404
    assert client.get("/workbench/api/examples").status_code == 404


def test_production_workbench_needs_a_trusted_token(tmp_path: Path, signer: Signer) -> None:
    client = _prod(tmp_path, signer, workbench=True).test_client()
    assert client.get("/workbench/").status_code == 200  # the page holds no data
    assert client.get("/workbench/api/config").get_json()["authRequired"] is True
    for path in ("/workbench/api/examples", "/workbench/api/discovery"):
        refused = client.get(path)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/workbench/api/evaluate", json={}).status_code == 401
    hook_audience = _token(signer, f"{BASE}/cds-services/epidural-complications")
    wrong = client.get(
        "/workbench/api/examples", headers={"Authorization": f"Bearer {hook_audience}"}
    )
    assert wrong.status_code == 401
    session = {"Authorization": f"Bearer {_token(signer, f'{BASE}/workbench')}"}
    # One token serves the whole session: it is used here four times.
    assert client.get("/workbench/api/examples", headers=session).status_code == 200
    assert client.get("/workbench/api/discovery", headers=session).status_code == 200
    request = _request_for_with(client, session)
    evaluated = client.post(
        "/workbench/api/evaluate",
        json={"request": request, "now": load_scenario(S1)["now"]},
        headers=session,
    )
    assert evaluated.status_code == 200
    assert evaluated.get_json()["response"]["cards"][0]["indicator"] == "critical"
    too_long = _token(signer, f"{BASE}/workbench", lifetime=7200)
    long_refused = client.get(
        "/workbench/api/examples", headers={"Authorization": f"Bearer {too_long}"}
    )
    assert long_refused.status_code == 401


def _request_for_with(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(
        "/workbench/api/request", json={"bundle": load_bundle(S1)}, headers=headers
    )
    assert response.status_code == 200
    request: dict[str, Any] = response.get_json()["request"]
    return request


def test_evaluation_time_is_reported_in_utc_when_left_empty(app: Flask) -> None:
    request = _request_for(app, load_bundle(S1))
    before = datetime.now(UTC)
    body = app.test_client().post("/workbench/api/evaluate", json={"request": request}).get_json()
    assert datetime.fromisoformat(body["now"]) >= before


def test_fever_before_24_hours_is_a_near_miss_of_the_abscess_rule(app: Flask) -> None:
    bundle = copy.deepcopy(load_bundle(S1))
    for entry in bundle["entry"]:
        if entry["resource"]["id"] == "s1-obs-temp":
            entry["resource"]["valueQuantity"]["value"] = 38.9
            entry["resource"]["effectiveDateTime"] = "2026-03-09T20:00:00+00:00"  # puncture + 12 h
    body = (
        app.test_client()
        .post(
            "/workbench/api/evaluate",
            json={"request": _request_for(app, bundle), "now": load_scenario(S1)["now"]},
        )
        .get_json()
    )
    entries = {e["pattern"]: e for e in body["explanation"]["episodes"][0]["entries"]}
    abscess = entries["abscess"]
    assert abscess["fired"] is False
    fever = abscess["conditions"][0]
    assert fever["met"] is False
    (found,) = fever["found"]
    assert found["resource"] == "Observation/s1-obs-temp"
    assert found["checks"] == {"new": True, "inWindow": True, "lateEnough": False}
