"""The public CDS Hooks sandbox, replayed: exactly what it sends, and what we must answer.

What the sandbox does (its source: ``jwt-generator.js``, ``service-exchange.js``; see
``shared/spec/cds-hooks-2.0.md`` §5 and §8 and ``shared/fixtures/README.md``):

* it runs in a browser, so every call carries ``Authorization`` and is preflighted (``OPTIONS``
  with ``Access-Control-Request-Headers: authorization, content-type``);
* it signs every call (discovery, hook, feedback) with an ES384 JWT: header ``typ: JWT``, its
  ``kid`` and its ``jku``; claims ``iss`` = the sandbox, ``aud`` = the exact endpoint URL,
  ``exp`` = ``iat`` + 300 s, a uuid4 ``jti``, and no ``tenant``;
* it gathers prefetch itself by ``POST {fhirServer}/{type}/_search`` with the template's
  parameters form-encoded (reads are plain ``GET``s);
* it sends ``fhirServer`` without ``fhirAuthorization`` (its FHIR server is open);
* its feedback carries override reasons with only a ``code``.

**The key.** The sandbox's *public* key set is shipped in ``service/security/data/`` (the one in
``shared/fixtures``), and the service finds its ``kid`` there without fetching the ``jku``. Its
private key is not something these tests hold, so they cannot sign as the real sandbox: they
put a test P-384 key under the sandbox's exact issuer, ``kid`` and ``jku`` configuration (by
pointing the service's sandbox key-set file at a key set with that ``kid``), and sign with it
(``tests/security/test_profiles.py`` proves the shipped key set refuses such a token). Everything
else, ``EPIDURAL_CDS_TRUST_SANDBOX=true`` included, is the real configuration.

The FHIR server is a real one (sekmet), loaded with the S1 example moved to the present, and the
service runs behind a real HTTP server on 127.0.0.1, called with ``requests``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import make_server

import service.security.trust as trust
from service import content as content_module
from service.fhir.prefetch import render_template
from service.fhir.timeshift import shift_times
from service.http.app import create_app
from tests.auth.conftest import Signer
from tests.protocol.conftest import EXAMPLES, delta_to_present, load_bundle
from tests.support.fhir_server import SekmetServer

pytestmark = pytest.mark.integration

SANDBOX_ORIGIN = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
SERVICE_ID = "epidural-complications"
S1 = EXAMPLES / "s1-labour-epidural-lmwh-weakness"
S1_PATIENT = "s1-patient"
CRITICAL = "Possible spinal epidural hematoma"


class Sandbox:
    """Makes calls the way the sandbox's browser code does."""

    def __init__(self, base: str, signer: Signer) -> None:
        self.base = base
        self.signer = signer

    def token(self, url: str) -> str:
        now = int(time.time())
        claims = {
            "iss": trust.SANDBOX_ISSUER,
            "aud": url,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        header = {"typ": "JWT", "kid": SANDBOX_KID, "jku": trust.SANDBOX_JKU}
        return jwt.encode(claims, self.signer.key, algorithm="ES384", headers=header)

    def preflight(self, url: str, method: str) -> requests.Response:
        response = requests.options(
            url,
            headers={
                "Origin": SANDBOX_ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization,content-type",
            },
            timeout=10,
        )
        assert response.status_code in (200, 204), response.text
        assert response.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX_ORIGIN)
        allowed = {
            h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
        }
        assert {"authorization", "content-type"} <= allowed
        return response

    def get(self, path: str) -> requests.Response:
        url = f"{self.base}{path}"
        self.preflight(url, "GET")
        headers = {"Authorization": f"Bearer {self.token(url)}", "Origin": SANDBOX_ORIGIN}
        return requests.get(url, headers=headers, timeout=10)

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        url = f"{self.base}{path}"
        self.preflight(url, "POST")
        headers = {
            "Authorization": f"Bearer {self.token(url)}",
            "Content-Type": "application/json",
            "Origin": SANDBOX_ORIGIN,
        }
        return requests.post(url, data=json.dumps(body), headers=headers, timeout=10)


def gather_prefetch(
    fhir_base: str, templates: dict[str, str], context: dict[str, str]
) -> dict[str, Any]:
    """The sandbox's prefetch: ``POST {type}/_search``, parameters form-encoded; reads by GET."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        query = render_template(template, context)
        if "?" in query:
            resource_type, _, params = query.partition("?")
            response = requests.post(
                f"{fhir_base}/{resource_type}/_search",
                data=params,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/fhir+json",
                },
                timeout=30,
            )
        else:
            response = requests.get(
                f"{fhir_base}/{query}", headers={"Accept": "application/fhir+json"}, timeout=30
            )
        assert response.status_code == 200, (key, response.text[:300])
        prefetch[key] = response.json()
    return prefetch


@pytest.fixture(scope="module")
def sandbox_signer() -> Signer:
    return Signer(ec.generate_private_key(ec.SECP384R1()), SANDBOX_KID, "ES384")


@pytest.fixture(scope="module")
def fhir() -> Iterator[SekmetServer]:
    with SekmetServer() as server:
        server.load(shift_times(load_bundle(S1), delta_to_present(S1)))
        yield server


@pytest.fixture(scope="module")
def sandbox(
    sandbox_signer: Signer,
    fhir: SekmetServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Sandbox]:
    """The service with ``EPIDURAL_CDS_TRUST_SANDBOX=true``, behind a real HTTP server."""
    directory = tmp_path_factory.mktemp("sandbox")
    keys = directory / "sandbox-jwks.json"
    keys.write_text(json.dumps({"keys": [sandbox_signer.public_jwk()]}))
    server = make_server("127.0.0.1", 0, lambda environ, start: [], threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    patch = pytest.MonkeyPatch()
    patch.setattr(trust, "_SANDBOX_JWKS", keys)
    try:
        server.app = create_app(
            {
                "profile": "development",
                "trust_sandbox": True,
                "public_base_url": base,
                "data_dir": str(directory / "data"),
                # The sandbox's own FHIR server is open; ours is too, on loopback over http.
                "allow_unauthenticated_fhir": True,
                "fhir_allowed_servers": fhir.base_url,
                "fhir_allow_http": True,
                "fhir_allow_private_addresses": True,
            }
        )
    finally:
        patch.undo()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Sandbox(base, sandbox_signer)
    finally:
        server.shutdown()
        server.server_close()


def _templates() -> dict[str, str]:
    service = content_module.load(None).service(SERVICE_ID)
    assert service is not None
    return {p.key: p.query for p in service.prefetch}


def _hook_body(fhir: SekmetServer, prefetch: dict[str, Any]) -> dict[str, Any]:
    return {
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir.base_url,
        "hook": "patient-view",
        "context": {"userId": "Practitioner/example", "patientId": S1_PATIENT},
        "prefetch": prefetch,
    }


def test_discovery_with_the_sandbox_token(sandbox: Sandbox) -> None:
    response = sandbox.get("/cds-services")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", SANDBOX_ORIGIN)
    # The patient-view service the sandbox calls (the order hooks have their own entries).
    (entry,) = [s for s in response.json()["services"] if s["hook"] == "patient-view"]
    assert entry["id"] == SERVICE_ID and entry["hook"] == "patient-view"
    assert set(entry["prefetch"]) == set(_templates())


def test_hook_call_with_prefetch_gathered_by_post_search(
    sandbox: Sandbox, fhir: SekmetServer
) -> None:
    context = {"userId": "Practitioner/example", "patientId": S1_PATIENT}
    prefetch = gather_prefetch(fhir.base_url, _templates(), context)
    assert prefetch["procedures"]["resourceType"] == "Bundle"
    assert prefetch["procedures"]["total"] >= 1
    response = sandbox.post(f"/cds-services/{SERVICE_ID}", _hook_body(fhir, prefetch))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert [c["indicator"] for c in cards] == ["critical"]
    assert cards[0]["summary"].startswith(CRITICAL)
    assert all(card["uuid"] for card in cards)


def test_fhir_server_without_authorization_fills_a_missing_key(
    sandbox: Sandbox, fhir: SekmetServer
) -> None:
    # The sandbox leaves out a key it could not satisfy; with an open FHIR server the service
    # fetches it itself, without a token (EPIDURAL_CDS_ALLOW_UNAUTHENTICATED_FHIR, development).
    context = {"userId": "Practitioner/example", "patientId": S1_PATIENT}
    prefetch = gather_prefetch(fhir.base_url, _templates(), context)
    del prefetch["conditions"]
    body = _hook_body(fhir, prefetch)
    assert "fhirAuthorization" not in body
    response = sandbox.post(f"/cds-services/{SERVICE_ID}", body)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["indicator"] == "critical"
    # The evidence the service fetched itself is named in the card's evidence extension.
    assert "Condition/s1-cond-leg-weakness-bilateral" in json.dumps(card.get("extension", {}))


def test_a_token_for_another_endpoint_is_refused(sandbox: Sandbox) -> None:
    url = f"{sandbox.base}/cds-services/{SERVICE_ID}"
    token = sandbox.token(f"{sandbox.base}/cds-services")
    response = requests.post(
        url,
        data=json.dumps({}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 401


def test_feedback_with_a_code_only_override_reason(sandbox: Sandbox, fhir: SekmetServer) -> None:
    context = {"userId": "Practitioner/example", "patientId": S1_PATIENT}
    prefetch = gather_prefetch(fhir.base_url, _templates(), context)
    (card,) = sandbox.post(f"/cds-services/{SERVICE_ID}", _hook_body(fhir, prefetch)).json()[
        "cards"
    ]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    overridden = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": card["overrideReasons"][0]["code"]}},
                "outcomeTimestamp": stamp,
            }
        ]
    }
    response = sandbox.post(f"/cds-services/{SERVICE_ID}/feedback", overridden)
    assert response.status_code == 200, response.text
    suggestion = card["suggestions"][0]["uuid"]
    accepted = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion}],
                "outcomeTimestamp": stamp,
            }
        ]
    }
    assert sandbox.post(f"/cds-services/{SERVICE_ID}/feedback", accepted).status_code == 200


def test_the_shipped_sandbox_key_set_is_the_published_one() -> None:
    shipped = json.loads(
        Path(trust.__file__).with_name("data").joinpath("cds-hooks-sandbox-jwks.json").read_text()
    )
    (key,) = shipped["keys"]
    assert (key["kid"], key["alg"], key["crv"]) == (SANDBOX_KID, "ES384", "P-384")
