"""Fixtures for the HTTP-level client-authentication tests (issue "Trust and security").

These tests drive the real app (``create_app``) and the real ``epidural-cds serve`` command, so
they reuse the key and key-set-server fixtures of ``tests/auth`` (real keys generated with
``cryptography``, a real ``http.server`` JWKS endpoint) but mint tokens against the *wall clock*:
the app's authenticator uses real time.

Hook bodies are the S1 example moved to the present with every prefetch key answered, so a token
that passes authentication gets ``200`` with a critical card; every ``401`` below is therefore
caused by the token alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from service import content as content_module
from service.fhir.local_search import build_prefetch, bundle_resources
from service.fhir.timeshift import shift_times
from tests.auth.conftest import (  # noqa: F401 - fixtures re-exported for this package
    DROP,
    JwksServer,
    Signer,
    b64url,
    b64url_json,
    ec_other,
    ec_signer,
    rsa_signer,
    rsa_signer_b,
)
from tests.support.recording_fhir import RecordingFhirServer

ROOT = Path(__file__).resolve().parents[2]
S1 = ROOT / "fhir_examples" / "s1-labour-epidural-lmwh-weakness"
SERVICE_ID = "epidural-complications"
SERVICE_PATH = f"/cds-services/{SERVICE_ID}"
BASE = "https://cds.example.org/prefix"
SERVICE_AUD = f"{BASE}{SERVICE_PATH}"
DISCOVERY_AUD = f"{BASE}/cds-services"
USER_ID = "Practitioner/security-test"

ISS_ES = "https://ehr-es.example.org"  # ES384 key set configured inline
ISS_RS = "https://ehr-rs.example.org"  # RS384 key set configured inline
ISS_TENANT = "https://tenants.example.org"  # ES384 inline, tenant allowlist
ISS_JKU = "https://ehr-jku.example.org"  # RS384 key set fetched from an allowlisted jku
TENANT_OK = "tenant-a"


# -- tokens ---------------------------------------------------------------------------------------


def claims(issuer: str, aud: Any = SERVICE_AUD, **overrides: Any) -> dict[str, Any]:
    """A valid payload at wall-clock time (5-minute lifetime, fresh jti), overrides applied."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": aud,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    payload.update(overrides)
    return {name: value for name, value in payload.items() if value is not DROP}


def mint(
    signer: Signer,
    issuer: str,
    *,
    headers: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """Sign a token the way a CDS client does (header ``typ``/``kid``, plus ``headers``)."""
    header: dict[str, Any] = {"typ": "JWT", "kid": signer.kid}
    header.update(headers or {})
    header = {name: value for name, value in header.items() if value is not DROP}
    return jwt.encode(claims(issuer, **overrides), signer.key, algorithm=signer.alg, headers=header)


def unsigned_token(issuer: str, kid: str, **overrides: Any) -> str:
    """``alg: none``: header and payload, empty signature."""
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{b64url_json(header)}.{b64url_json(claims(issuer, **overrides))}."


def hmac_with_public_key(signer: Signer, issuer: str, **overrides: Any) -> str:
    """The algorithm-confusion forgery: HS256 keyed with the client's *public* key PEM."""
    pem = signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims(issuer, **overrides))}"
    signature = hmac.new(pem, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- hook bodies ----------------------------------------------------------------------------------


def s1_hook_body(*, with_prefetch: bool = True) -> dict[str, Any]:
    """S1 moved to the present; every prefetch key answered (or none, for FHIR-fetch tests)."""
    scenario = json.loads((S1 / "scenario.json").read_text(encoding="utf-8"))
    patient_id = scenario["patientId"]
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": USER_ID, "patientId": patient_id},
    }
    if with_prefetch:
        from datetime import UTC, datetime, timedelta

        then = datetime.fromisoformat(scenario["now"])
        delta = timedelta(seconds=int((datetime.now(UTC) - then).total_seconds()) - 1)
        bundle = shift_times(json.loads((S1 / "bundle.json").read_text(encoding="utf-8")), delta)
        service = content_module.load(None).services[0]
        queries = {
            spec.key: spec.query.replace("{{context.patientId}}", patient_id)
            for spec in service.prefetch
        }
        body["prefetch"] = build_prefetch(bundle_resources(bundle), queries)
    return body


@pytest.fixture(scope="session")
def s1_body() -> dict[str, Any]:
    """One S1 body with full prefetch (built once; ``hookInstance`` is refreshed per use)."""
    return s1_hook_body()


# -- configuration files --------------------------------------------------------------------------


def write_issuers(path: Path, issuers: list[dict[str, Any]]) -> Path:
    """Write an issuers file (YAML) and return its path."""
    path.write_text(yaml.safe_dump({"issuers": issuers}, sort_keys=False), encoding="utf-8")
    return path


# -- log assertions -------------------------------------------------------------------------------


def auth_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every "authentication failed on ..." message the app logged."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("authentication failed on ")
    ]


def assert_token_not_logged(caplog: pytest.LogCaptureFixture, token: str) -> None:
    """Neither the token nor any of its signed parts appears in any log record."""
    parts = [token, *(part for part in token.split(".") if len(part) >= 16)]
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + str(record.exc_text or "")
        for part in parts:
            assert part not in text, f"token material logged by {record.name}: {text[:200]}"


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


# -- a JWKS server per test -----------------------------------------------------------------------


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- a FHIR server that records what it is asked --------------------------------------------------


RecordingFhirStub = RecordingFhirServer


@pytest.fixture
def fhir_stub() -> Iterator[RecordingFhirStub]:
    stub = RecordingFhirStub()
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


# -- subprocesses ---------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
