"""No patient data and no secret ever reaches a log line.

Requests carry recognisable fake PHI (patient id, name, birth date, a Condition's text) and
secrets (the ``fhirAuthorization`` access token, the client's JWT) through every outcome: a
successful call with prefetch, a fetch from the EHR's FHIR server, 400, 401, 412 and 500. All log
output is captured with the root logger at DEBUG (every record: message, arguments, extras,
formatted traceback) together with anything written to stdout/stderr, and must contain none of
the markers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

import service.engine
from service.fhir.timeshift import shift_times
from service.http.audit import AUDIT_LOGGER
from service.http.logjson import JsonFormatter
from tests.protocol.conftest import (
    EXAMPLES,
    JSON,
    RecordingFhirServer,
    delta_to_present,
    load_bundle,
    local_fhir_app,
    make_request,
    service_url,
)
from tests.support.apps import dev_app
from tests.test_openapi import production_app

ROOT = Path(__file__).resolve().parents[1]
S1 = EXAMPLES / "s1-labour-epidural-lmwh-weakness"
S1_PATIENT = "s1-patient"

PATIENT_ID = "PHI-PATIENT-7f3a"
GIVEN, FAMILY = "Zebediah", "Quuxworth"
BIRTH_DATE = "1957-03-14"
NOTE = "PHI-NOTE secret symptom"
ACCESS_TOKEN = "TOKEN-SECRET-91b2"
GARBAGE_JWT = "eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJQSEktUEFUSUVOVC03ZjNhIn0.JWT-SECRET"
MARKERS = [
    PATIENT_ID,
    GIVEN,
    FAMILY,
    BIRTH_DATE,
    NOTE,
    "secret symptom",
    ACCESS_TOKEN,
    "JWT-SECRET",
]


@pytest.fixture(scope="module")
def app() -> Flask:
    return dev_app()


def authorization() -> dict[str, Any]:
    return {
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "epidural-cds",
        "patient": PATIENT_ID,
    }


def _resources(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "resourceType" in node:
            yield node
        for value in node.values():
            yield from _resources(value)
    elif isinstance(node, list):
        for value in node:
            yield from _resources(value)


def phi_request(app: Flask, *, with_prefetch: bool = True) -> dict[str, Any]:
    """The S1 scenario (moved to the present) re-identified with the fake PHI markers."""
    bundle = shift_times(load_bundle(S1), delta_to_present(S1))
    request = make_request(app, S1, with_prefetch, bundle=bundle)
    body: dict[str, Any] = json.loads(json.dumps(request).replace(S1_PATIENT, PATIENT_ID))
    for resource in _resources(body.get("prefetch")):
        if resource["resourceType"] == "Patient":
            resource["name"] = [{"family": FAMILY, "given": [GIVEN], "text": f"{GIVEN} {FAMILY}"}]
            resource["birthDate"] = BIRTH_DATE
        if resource["resourceType"] == "Condition":
            resource["code"]["text"] = f"{resource['code'].get('text', '')} {NOTE}".strip()
            resource["note"] = [{"text": NOTE}]
    text = json.dumps(body)
    assert body["context"]["patientId"] == PATIENT_ID
    assert not with_prefetch or all(m in text for m in (GIVEN, BIRTH_DATE, NOTE))
    return body


def post(app: Flask, body: Any, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return app.test_client().post(service_url(app), data=data, content_type=JSON, headers=headers)


def minted_jwt(**claims: Any) -> str:
    """A well-formed ES384 JWT for the trusted issuer, signed by a key nobody trusts."""
    now = int(time.time())
    payload = {
        "iss": "https://ehr.example.org",
        "aud": "https://cds.example.org/cds-services/epidural-complications",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    key = ec.generate_private_key(ec.SECP384R1())
    return jwt.encode(payload, key, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


# -- capturing everything --------------------------------------------------------------------------


def all_log_text(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    """Every captured record in every form a handler could write it, plus raw stdout/stderr."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    as_json = JsonFormatter()  # what `epidural-cds serve` writes: one JSON line per record
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(formatter.format(record))  # message + formatted traceback + stack
        parts.append(as_json.format(record))
        parts.append(repr(record.args))
        parts.append(repr({k: v for k, v in vars(record).items() if k != "exc_info"}))
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(formatter.formatException(record.exc_info))
            parts.append(repr(record.exc_info[1].args))
    out, err = capfd.readouterr()
    parts += [out, err]
    return "\n".join(parts)


def leaked_lines(text: str, secrets: list[str]) -> list[str]:
    return [line for line in text.splitlines() if any(s in line for s in secrets)]


@pytest.fixture
def captured(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], str]]:
    caplog.set_level(logging.DEBUG)  # root logger and the capture handler
    yield lambda: all_log_text(caplog, capfd)


# -- the outcomes ----------------------------------------------------------------------------------


def test_successful_call_with_prefetch(app: Flask, captured: Callable[[], str]) -> None:
    body = phi_request(app)
    body["fhirServer"] = "https://fhir.example.org/r4"
    body["fhirAuthorization"] = authorization()
    response = post(app, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"]
    text = captured()
    assert "hook " in text  # control: the call was logged
    assert leaked_lines(text, MARKERS) == []


def test_the_audit_record_of_a_successful_call_holds_no_phi(
    app: Flask, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    body = phi_request(app)
    body["fhirServer"] = "https://fhir.example.org/r4"
    body["fhirAuthorization"] = authorization()
    assert post(app, body).status_code == 200
    audits = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    assert len(audits) == 1  # control: one audit record per call
    record = json.loads(JsonFormatter().format(audits[0]))["record"]
    assert record["status"] == 200 and record["indicators"] == ["critical"]
    assert record["hookInstance"] == body["hookInstance"]
    assert leaked_lines(json.dumps(record), MARKERS) == []
    assert leaked_lines(all_log_text(caplog, capfd), MARKERS) == []


def test_schema_invalid_request_400(app: Flask, captured: Callable[[], str]) -> None:
    body = phi_request(app)
    body["context"]["patientId"] = f"{PATIENT_ID} {GIVEN} {FAMILY} {BIRTH_DATE}"  # not an id
    body["fhirServer"] = "https://fhir.example.org/r4"
    body["fhirAuthorization"] = authorization()
    response = post(app, body)
    assert response.status_code == 400
    assert PATIENT_ID in response.get_data(as_text=True)  # the caller may see its own value
    text = captured()
    assert "InvalidRequest" in text  # control
    assert leaked_lines(text, MARKERS) == []


def test_malformed_json_400(app: Flask, captured: Callable[[], str]) -> None:
    raw = json.dumps(phi_request(app)).encode()[:-3]  # truncated: not JSON
    assert post(app, raw).status_code == 400
    assert leaked_lines(captured(), MARKERS) == []


def test_fhir_server_not_allowed_412(app: Flask, captured: Callable[[], str]) -> None:
    body = phi_request(app, with_prefetch=False)
    body["fhirServer"] = f"https://fhir.example.org/r4/{PATIENT_ID}"
    body["fhirAuthorization"] = authorization()
    response = post(app, body)
    assert response.status_code == 412, response.get_data(as_text=True)
    text = captured()
    assert "outbound policy" in text  # control
    assert leaked_lines(text, MARKERS) == []


@pytest.mark.parametrize("token", ["garbage", "untrusted-signature"])
def test_bad_client_jwt_401(captured: Callable[[], str], token: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        secured = production_app(Path(tmp))
        if token == "garbage":
            jwt_text = GARBAGE_JWT
        else:
            jwt_text = minted_jwt(sub=PATIENT_ID, name=f"{GIVEN} {FAMILY}", note=NOTE)
        body = phi_request(secured)
        body["fhirServer"] = "https://fhir.example.org/r4"
        body["fhirAuthorization"] = authorization()
        response = post(secured, body, headers={"Authorization": f"Bearer {jwt_text}"})
    assert response.status_code == 401
    text = captured()
    assert "authentication failed" in text  # control
    assert leaked_lines(text, [*MARKERS, jwt_text, jwt_text.split(".")[-1]]) == []


INTERNAL_ERROR_LEAK = (
    "BUG: the 500 handler logs log.exception('internal error on %s %s'), whose traceback ends "
    "with the exception's message; an exception raised with patient data in its message (as "
    "ValueError/KeyError from parsing a resource value would be) goes to the log verbatim, "
    "e.g. 'RuntimeError: evaluation failed for PHI-PATIENT-7f3a (Zebediah Quuxworth): "
    "PHI-NOTE secret symptom'. Log the exception type and traceback frames without the message."
)


def test_internal_error_500(
    app: Flask, captured: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise RuntimeError(f"evaluation failed for {PATIENT_ID} ({GIVEN} {FAMILY}): {NOTE}")

    monkeypatch.setattr(service.engine, "evaluate_plans", broken)
    response = post(app, phi_request(app))
    assert response.status_code == 500
    assert PATIENT_ID not in response.get_data(as_text=True)  # never to the caller
    text = captured()
    assert "internal error on POST" in text  # control
    assert leaked_lines(text, MARKERS) == []


def test_internal_error_500_without_phi_in_the_message(
    app: Flask, captured: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control for the case above: the traceback itself (code, not values) carries no PHI."""

    def broken(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(service.engine, "evaluate_plans", broken)
    assert post(app, phi_request(app)).status_code == 500
    text = captured()
    # The log keeps the exception type and the frames (code, not values), not the message.
    assert "internal error on POST" in text and "RuntimeError" in text and 'File "' in text
    assert leaked_lines(text, MARKERS) == []


FHIR_URL_AT_DEBUG_LEAK = (
    "BUG (DEBUG level only): with EPIDURAL_CDS_LOG_LEVEL=DEBUG the root logger lets urllib3's "
    "connection-pool logger write every FHIR request line, query string included, e.g. "
    '"GET /fhir/Procedure?patient=PHI-PATIENT-7f3a&status=... HTTP/1.1" 200; the patient id '
    "(and any other search parameter) reaches the log. Keep urllib3 at WARNING."
)


def test_fetch_from_the_fhir_server_at_debug(captured: Callable[[], str]) -> None:
    with RecordingFhirServer() as server:
        fetching = local_fhir_app(server, allow_unauthenticated_fhir=False)
        body = phi_request(fetching, with_prefetch=False)
        body["fhirServer"] = server.base_url
        body["fhirAuthorization"] = authorization()
        response = post(fetching, body)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert server.requests  # control: the service did query the FHIR server
    text = captured()
    assert leaked_lines(text, MARKERS) == []


def test_fetch_from_the_fhir_server_at_info(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """At the default level (INFO) the same fetch logs no PHI and no token."""
    caplog.set_level(logging.INFO)
    with RecordingFhirServer() as server:
        fetching = local_fhir_app(server)
        body = phi_request(fetching, with_prefetch=False)
        body["fhirServer"] = server.base_url
        body["fhirAuthorization"] = authorization()
        assert post(fetching, body).status_code == 200
        assert any(auth == f"Bearer {ACCESS_TOKEN}" for _, auth in server.requests)
    text = all_log_text(caplog, capfd)
    assert "hook " in text  # control
    assert leaked_lines(text, MARKERS) == []


def test_markers_would_be_found(captured: Callable[[], str]) -> None:
    """Control: a marker that is logged is detected, in the message and in a traceback."""
    log = logging.getLogger("service.test")
    log.debug("patient %s", PATIENT_ID)
    try:
        raise ValueError(ACCESS_TOKEN)
    except ValueError:
        log.exception("failed")
    text = captured()
    assert leaked_lines(text, [PATIENT_ID]) and leaked_lines(text, [ACCESS_TOKEN])


# -- the real server: gunicorn's access and error logs ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
def test_gunicorn_logs_carry_no_phi(app: Flask) -> None:
    """``epidural-cds serve`` at DEBUG: access log (path and status only) and error log."""
    port = _free_port()
    env = {
        **os.environ,
        "EPIDURAL_CDS_PROFILE": "development",
        "EPIDURAL_CDS_AUTH_DISABLED": "true",
        "EPIDURAL_CDS_DATA_DIR": tempfile.mkdtemp(prefix="epidural-cds-logs-"),
        "EPIDURAL_CDS_LOG_LEVEL": "DEBUG",
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("epidural-cds serve did not start")
        url = f"{base}{service_url(app)}?patient={PATIENT_ID}&name={FAMILY}"
        headers = {"Authorization": f"Bearer {GARBAGE_JWT}", "Referer": f"https://ehr/{NOTE}"}
        ok = phi_request(app)
        invalid = phi_request(app)
        invalid["context"]["patientId"] = f"{PATIENT_ID} {GIVEN}"
        refused = phi_request(app, with_prefetch=False)
        refused["fhirServer"] = "https://fhir.example.org/r4"
        refused["fhirAuthorization"] = authorization()
        statuses = [
            requests.post(url, json=body, headers=headers, timeout=10).status_code
            for body in (ok, invalid, refused)
        ]
        assert statuses == [200, 400, 412]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15)
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert [(r["method"], r["path"], r["status"]) for r in access if r["method"] == "POST"] == [
        ("POST", service_url(app), status) for status in (200, 400, 412)
    ]  # control: the access log is there, one JSON object per line like every other log
    assert leaked_lines(output, MARKERS) == []
