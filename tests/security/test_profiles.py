"""Deployment profiles: production refuses unsafe configuration; development says so loudly.

Production must not start (``ConfigError`` naming the variable) without a trusted issuer, without
an https public base URL, or with any development switch. Development may trust the public CDS
Hooks sandbox, logs "DEVELOPMENT MODE", puts the warning into discovery, and ``serve`` binds only
loopback unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from service.cli import main
from service.errors import ConfigError
from service.http.app import create_app
from service.security.trust import (
    DEV_NOTICE_AUTH_OFF,
    DEV_NOTICE_SANDBOX,
    SANDBOX_ISSUER,
    SANDBOX_JKU,
)
from tests.auth.conftest import SANDBOX_JWKS_FILE, Signer
from tests.security.conftest import (
    ISS_ES,
    ROOT,
    SERVICE_PATH,
    assert_token_not_logged,
    auth_reasons,
    bearer,
    free_port,
    mint,
    s1_hook_body,
    write_issuers,
)

BASE = "https://cds.example.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


@pytest.fixture
def issuers_file(tmp_path: Path, ec_signer: Signer) -> str:
    path = write_issuers(
        tmp_path / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}}]
    )
    return str(path)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No EPIDURAL_CDS_* variable from the outside leaks into a test."""
    for name in list(os.environ):
        if name.startswith("EPIDURAL_CDS_"):
            monkeypatch.delenv(name)
    return monkeypatch


# -- production refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"issuers_file": None}, "EPIDURAL_CDS_ISSUERS_FILE"),
        ({"public_base_url": None}, "EPIDURAL_CDS_PUBLIC_BASE_URL"),
        ({"public_base_url": "http://cds.example.org"}, "EPIDURAL_CDS_PUBLIC_BASE_URL"),
        ({"auth_disabled": True}, "EPIDURAL_CDS_AUTH_DISABLED"),
        ({"trust_sandbox": True}, "EPIDURAL_CDS_TRUST_SANDBOX"),
        ({"fhir_allow_http": True}, "EPIDURAL_CDS_FHIR_ALLOW_HTTP"),
        ({"jwks_allow_http": True}, "EPIDURAL_CDS_JWKS_ALLOW_HTTP"),
        ({"allow_unauthenticated_fhir": True}, "EPIDURAL_CDS_ALLOW_UNAUTHENTICATED_FHIR"),
    ],
    ids=[
        "no-issuers",
        "no-public-url",
        "http-public-url",
        "auth-disabled",
        "trust-sandbox",
        "fhir-allow-http",
        "jwks-allow-http",
        "unauthenticated-fhir",
    ],
)
def test_production_refuses_to_start(
    issuers_file: str, tmp_path: Path, change: dict[str, Any], variable: str
) -> None:
    settings: dict[str, Any] = {
        "profile": "production",
        "public_base_url": BASE,
        "issuers_file": issuers_file,
        "data_dir": str(tmp_path / "data"),
    }
    settings.update(change)
    with pytest.raises(ConfigError, match=variable):
        create_app({k: v for k, v in settings.items() if v is not None})
    assert not (tmp_path / "data").exists(), "refused before touching the store"


def test_production_control_starts(issuers_file: str, tmp_path: Path) -> None:
    # The baseline the refusals above change one setting of.
    app = create_app(
        {
            "profile": "production",
            "public_base_url": BASE,
            "issuers_file": issuers_file,
            "data_dir": str(tmp_path),
        }
    )
    assert app.test_client().get("/healthz").status_code == 200


def test_production_is_the_default_profile(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("EPIDURAL_CDS_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as refused:
        create_app()
    message = str(refused.value)
    assert "EPIDURAL_CDS_ISSUERS_FILE" in message
    assert "EPIDURAL_CDS_PUBLIC_BASE_URL" in message


def test_serve_in_production_without_issuers_exits_2_naming_the_variable(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("EPIDURAL_CDS_PUBLIC_BASE_URL", BASE)
    clean_env.setenv("EPIDURAL_CDS_DATA_DIR", str(tmp_path))
    port = free_port()
    assert main(["serve", "--port", str(port)]) == 2
    assert "EPIDURAL_CDS_ISSUERS_FILE" in capsys.readouterr().err


# -- development --------------------------------------------------------------------------------


def test_development_with_sandbox_warns_loudly_and_in_discovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(
        {
            "profile": "development",
            "trust_sandbox": True,
            "discovery_open": True,
            "public_base_url": "http://127.0.0.1:8080",
            "data_dir": str(tmp_path),
        }
    )
    warnings = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and "DEVELOPMENT MODE" in r.getMessage()
    ]
    assert [r.getMessage() for r in warnings] == [DEV_NOTICE_SANDBOX]
    response = app.test_client().get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert services
    for entry in services:
        assert entry["description"].endswith(DEV_NOTICE_SANDBOX)
        assert "DEVELOPMENT MODE" in entry["description"]


def test_development_with_auth_off_warns_in_discovery(tmp_path: Path) -> None:
    app = create_app({"profile": "development", "auth_disabled": True, "data_dir": str(tmp_path)})
    services = app.test_client().get("/cds-services").get_json()["services"]
    assert all(entry["description"].endswith(DEV_NOTICE_AUTH_OFF) for entry in services)


def test_production_discovery_carries_no_development_warning(
    issuers_file: str, tmp_path: Path
) -> None:
    app = create_app(
        {
            "profile": "production",
            "public_base_url": BASE,
            "issuers_file": issuers_file,
            "discovery_open": True,
            "data_dir": str(tmp_path),
        }
    )
    text = app.test_client().get("/cds-services").get_data(as_text=True)
    assert "DEVELOPMENT MODE" not in text


def test_sandbox_key_set_is_the_published_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A token that names the sandbox's kid (and its jku, as the sandbox does) but is signed with
    # another P-384 key: the published key is found locally, so no fetch, and the signature fails.
    from cryptography.hazmat.primitives.asymmetric import ec

    caplog.set_level(logging.INFO)
    published = json.loads(SANDBOX_JWKS_FILE.read_text(encoding="utf-8"))
    assert [k["kid"] for k in published["keys"]] == [SANDBOX_KID]
    base = "http://127.0.0.1:8080"
    app = create_app(
        {
            "profile": "development",
            "trust_sandbox": True,
            "public_base_url": base,
            "data_dir": str(tmp_path),
        }
    )
    forger = Signer(ec.generate_private_key(ec.SECP384R1()), SANDBOX_KID, "ES384")
    token = mint(forger, SANDBOX_ISSUER, aud=f"{base}{SERVICE_PATH}", headers={"jku": SANDBOX_JKU})
    response = app.test_client().post(SERVICE_PATH, json=s1_hook_body(), headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert auth_reasons(caplog) == [f"authentication failed on {SERVICE_PATH}: bad_signature"]
    assert_token_not_logged(caplog, token)
    assert not any("fetched JWK Set" in r.getMessage() for r in caplog.records)


# -- serve: loopback only in development ------------------------------------------------------


def _dev_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPIDURAL_CDS_")}
    env.update(
        {
            "EPIDURAL_CDS_PROFILE": "development",
            "EPIDURAL_CDS_AUTH_DISABLED": "true",
            "EPIDURAL_CDS_DATA_DIR": str(tmp_path / "data"),
            **extra,
        }
    )
    return env


def test_serve_development_on_all_interfaces_exits_2(tmp_path: Path) -> None:
    port = free_port("0.0.0.0")
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],
        cwd=ROOT,
        env=_dev_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "development profile only binds loopback" in result.stderr
    assert "EPIDURAL_CDS_ALLOW_DEV_ON_NETWORK" in result.stderr


@pytest.fixture
def served_on_all_interfaces(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port("0.0.0.0")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.cli",
                "serve",
                "--host",
                "0.0.0.0",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env=_dev_env(tmp_path, EPIDURAL_CDS_ALLOW_DEV_ON_NETWORK="true"),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process, port, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_serve_development_on_all_interfaces_when_allowed(
    served_on_all_interfaces: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, log_path = served_on_all_interfaces
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, log_path.read_text()
        try:
            response = session.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0
    output = log_path.read_text()
    assert f"Listening at: http://0.0.0.0:{port}" in output
    assert "DEVELOPMENT MODE" in output
