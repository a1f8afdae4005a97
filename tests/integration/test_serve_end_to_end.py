"""End to end: ``epidural-cds serve`` (real gunicorn) fetching from a real FHIR server.

No prefetch is sent, so the service must fetch every key from the sekmet FHIR R4 server with the
EHR's bearer token, following ``next`` pages (the page size is forced to 1, so the second
Condition of the S1 patient is reachable only through a ``next`` link).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from service.fhir.timeshift import shift_times
from tests.integration.conftest import SEKMET_TOKEN
from tests.support.fhir_server import SekmetServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fhir_examples" / "s1-labour-epidural-lmwh-weakness"
SERVICE = "epidural-complications"
# Authentication is not what these tests are about: development profile, auth off.
DEV = {"EPIDURAL_CDS_PROFILE": "development", "EPIDURAL_CDS_AUTH_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s1_on_server(fhir_server_requiring_token: SekmetServer) -> dict[str, object]:
    """Load the S1 patient, moved so that its scenario ``now`` is the real now."""
    scenario = json.loads((EXAMPLE / "scenario.json").read_text())
    bundle = json.loads((EXAMPLE / "bundle.json").read_text())
    delta = datetime.now(UTC) - datetime.fromisoformat(scenario["now"])
    fhir_server_requiring_token.load(shift_times(bundle, delta))
    return scenario


@pytest.fixture(scope="module")
def served(fhir_server_requiring_token: SekmetServer) -> Iterator[str]:
    """``epidural-cds serve`` as a subprocess with 2 gunicorn workers; yields its base URL."""
    port = _free_port()
    fhir_base = fhir_server_requiring_token.base_url
    data_dir = tempfile.mkdtemp(prefix="epidural-cds-serve-")
    env = {
        **os.environ,
        "EPIDURAL_CDS_FHIR_PAGE_SIZE": "1",
        "EPIDURAL_CDS_FHIR_DEADLINE": "10",
        "EPIDURAL_CDS_FHIR_ALLOW_HTTP": "true",
        "EPIDURAL_CDS_FHIR_ALLOW_PRIVATE_ADDRESSES": "true",
        "EPIDURAL_CDS_FHIR_ALLOWED_SERVERS": fhir_base,
        **DEV,
        "EPIDURAL_CDS_DATA_DIR": data_dir,
    }
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(
            "epidural-cds serve did not start:\n"
            + (process.stdout.read() if process.stdout else "")
        )
    yield base
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


def _hook(fhir: SekmetServer, patient_id: str, token: str) -> dict[str, object]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir.base_url,
        "fhirAuthorization": {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "epidural-cds",
        },
        "context": {"userId": "Practitioner/integration", "patientId": patient_id},
    }


def test_fetches_everything_and_answers_critical(
    served: str, fhir_server_requiring_token: SekmetServer, s1_on_server: dict[str, object]
) -> None:
    body = _hook(fhir_server_requiring_token, str(s1_on_server["patientId"]), SEKMET_TOKEN)
    response = requests.post(f"{served}/cds-services/{SERVICE}", json=body, timeout=20)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    expected = s1_on_server["expected"]["cards"]  # type: ignore[index]
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        (e["indicator"], e["summary"]) for e in expected
    ]
    detail = cards[0]["detail"]
    evidence = cards[0]["extension"]["org.example.epidural-cds.evidence"]
    # Both Conditions arrived although, at one resource per page, one of them was only on page 2.
    assert "Condition/s1-cond-leg-weakness-bilateral" in evidence
    assert "Condition/s1-cond-urinary-retention" in evidence
    assert "Enoxaparin 40 mg — given" in detail
    # The card's rule-book link is absolute and served by the same gunicorn, as HTML.
    rule_book = cards[0]["links"][-1]
    assert rule_book["type"] == "absolute" and rule_book["url"].startswith(served)
    page = requests.get(rule_book["url"], timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "R-01" in page.text
    mri = cards[0]["suggestions"][0]["actions"][0]["resource"]
    assert mri["priority"] == "stat" and mri["subject"] == {
        "reference": f"Patient/{s1_on_server['patientId']}"
    }


def test_rejected_token_is_412(
    served: str, fhir_server_requiring_token: SekmetServer, s1_on_server: dict[str, object]
) -> None:
    body = _hook(fhir_server_requiring_token, str(s1_on_server["patientId"]), "wrong-token")
    response = requests.post(f"{served}/cds-services/{SERVICE}", json=body, timeout=20)
    assert response.status_code == 412
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "wrong-token" not in response.text


def test_interrupt_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1"],
        env={**os.environ, **DEV, "EPIDURAL_CDS_DATA_DIR": str(tmp_path)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(f"{base}/cds-services", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/cds-services", timeout=1)
