"""Client authentication over HTTP: every way a bearer JWT can be wrong gets a bare 401.

The app runs in the production profile (``create_app``, Flask test client) behind a configured
public base URL with a path prefix, trusting issuers from a real issuers file. Each rejection is
checked four ways: the status, ``WWW-Authenticate: Bearer``, an OperationOutcome that tells the
caller nothing about why, and the exact reason in the log (``authentication failed on <path>:
<reason>``) with no trace of the token in any log record. The same hook body with a good token
gets ``200`` with cards, so no ``401`` here can come from anything but the token.

Cases that need an ``http`` ``jku`` (a real local key-set server) use the development profile
with ``jwks_allow_http``, which production refuses.
"""

from __future__ import annotations

import copy
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

import service.security.trust
from service.http.app import create_app
from service.security.jwks import JwksCache
from tests.auth.conftest import DROP, FakeClock, JwksServer, Signer
from tests.security.conftest import (
    BASE,
    DISCOVERY_AUD,
    ISS_ES,
    ISS_JKU,
    ISS_RS,
    ISS_TENANT,
    SERVICE_AUD,
    SERVICE_PATH,
    TENANT_OK,
    RecordingFhirStub,
    assert_token_not_logged,
    auth_reasons,
    bearer,
    hmac_with_public_key,
    mint,
    s1_hook_body,
    unsigned_token,
    write_issuers,
)

# -- apps -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod_issuers_file(
    tmp_path_factory: pytest.TempPathFactory, ec_signer: Signer, rsa_signer: Signer
) -> Path:
    directory = tmp_path_factory.mktemp("prod-issuers")
    return write_issuers(
        directory / "issuers.yaml",
        [
            {"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}},
            {"iss": ISS_RS, "jwks": {"keys": [rsa_signer.public_jwk()]}},
            {
                "iss": ISS_TENANT,
                "jwks": {"keys": [ec_signer.public_jwk()]},
                "tenants": [TENANT_OK],
            },
        ],
    )


def _prod_app(issuers_file: Path, data_dir: Path, **settings: Any) -> Flask:
    return create_app(
        {
            "profile": "production",
            "public_base_url": BASE,
            "issuers_file": str(issuers_file),
            "data_dir": str(data_dir),
            **settings,
        }
    )


@pytest.fixture(scope="module")
def prod_app(prod_issuers_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return _prod_app(prod_issuers_file, tmp_path_factory.mktemp("prod-data"))


@pytest.fixture
def client(prod_app: Flask) -> Iterator[FlaskClient]:
    with prod_app.test_client() as test_client:
        yield test_client


@pytest.fixture
def post_hook(client: FlaskClient, s1_body: dict[str, Any]) -> Callable[[str | None], Any]:
    """POST the S1 hook (full prefetch) with ``token`` (or no Authorization at all)."""

    def post(token: str | None) -> Any:
        body = copy.deepcopy(s1_body)
        body["hookInstance"] = str(uuid.uuid4())
        headers = bearer(token) if token is not None else {}
        return client.post(SERVICE_PATH, json=body, headers=headers)

    return post


def assert_rejected(
    response: Any,
    caplog: pytest.LogCaptureFixture,
    reason: str,
    token: str | None,
    path: str = SERVICE_PATH,
) -> None:
    """401, ``WWW-Authenticate: Bearer``, a reason-free OperationOutcome, the exact logged
    reason, and no token material in any log record."""
    text = response.get_data(as_text=True)
    assert response.status_code == 401, text
    assert response.headers.get("WWW-Authenticate") == "Bearer"
    assert response.mimetype == "application/fhir+json"
    # The whole body, exactly: the same generic outcome whatever went wrong.
    assert json.loads(text) == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": "authentication failed"}],
    }
    if token is not None:
        assert token not in text
        assert_token_not_logged(caplog, token)
    assert auth_reasons(caplog) == [f"authentication failed on {path}: {reason}"]


def assert_cards(response: Any) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code == 200, text
    cards = response.get_json()["cards"]
    assert [card["indicator"] for card in cards] == ["critical"], cards


# -- positive controls ----------------------------------------------------------------------------


def test_es384_token_gets_200_with_cards(
    post_hook: Callable[[str | None], Any], ec_signer: Signer, caplog_info: Any
) -> None:
    token = mint(ec_signer, ISS_ES)
    assert_cards(post_hook(token))
    assert auth_reasons(caplog_info) == []
    assert_token_not_logged(caplog_info, token)


def test_rs384_token_gets_200_with_cards(
    post_hook: Callable[[str | None], Any], rsa_signer: Signer, caplog_info: Any
) -> None:
    token = mint(rsa_signer, ISS_RS)
    assert_cards(post_hook(token))
    assert_token_not_logged(caplog_info, token)


def test_aud_as_array_holding_the_public_url_is_accepted(
    post_hook: Callable[[str | None], Any], ec_signer: Signer
) -> None:
    assert_cards(post_hook(mint(ec_signer, ISS_ES, aud=["https://other.example", SERVICE_AUD])))


def test_allowlisted_tenant_gets_200(
    post_hook: Callable[[str | None], Any], ec_signer: Signer
) -> None:
    assert_cards(post_hook(mint(ec_signer, ISS_TENANT, tenant=TENANT_OK)))


# -- the negative matrix --------------------------------------------------------------------------


def _token_cases(ec: Signer, ec_other: Signer, rsa: Signer) -> dict[str, tuple[str, str]]:
    """case id -> (token, logged reason)."""
    now = int(time.time())
    return {
        "alg-none": (unsigned_token(ISS_ES, ec.kid), "alg_not_allowed"),
        "hs256-with-rsa-public-key-pem": (hmac_with_public_key(rsa, ISS_RS), "alg_not_allowed"),
        "bad-signature": (mint(ec_other, ISS_ES), "bad_signature"),
        "unknown-iss": (mint(ec, "https://attacker.example.org"), "unknown_issuer"),
        "unknown-kid": (mint(ec.with_kid("no-such-kid"), ISS_ES), "unknown_kid"),
        "aud-is-the-url-flask-sees": (
            mint(ec, ISS_ES, aud=f"http://localhost{SERVICE_PATH}"),
            "wrong_audience",
        ),
        "aud-without-the-prefix": (
            mint(ec, ISS_ES, aud=f"https://cds.example.org{SERVICE_PATH}"),
            "wrong_audience",
        ),
        "aud-of-discovery": (mint(ec, ISS_ES, aud=DISCOVERY_AUD), "wrong_audience"),
        "expired": (mint(ec, ISS_ES, iat=now - 600, exp=now - 120), "expired"),
        "iat-in-the-future": (
            mint(ec, ISS_ES, iat=now + 600, exp=now + 900),
            "issued_in_future",
        ),
        "missing-jti": (mint(ec, ISS_ES, jti=DROP), "missing_jti"),
        "wrong-tenant": (mint(ec, ISS_TENANT, tenant="tenant-b"), "wrong_tenant"),
        "missing-tenant": (mint(ec, ISS_TENANT), "wrong_tenant"),
    }


CASES = [
    "alg-none",
    "hs256-with-rsa-public-key-pem",
    "bad-signature",
    "unknown-iss",
    "unknown-kid",
    "aud-is-the-url-flask-sees",
    "aud-without-the-prefix",
    "aud-of-discovery",
    "expired",
    "iat-in-the-future",
    "missing-jti",
    "wrong-tenant",
    "missing-tenant",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_token_is_401_with_the_reason_only_in_the_log(
    case: str,
    post_hook: Callable[[str | None], Any],
    caplog_info: pytest.LogCaptureFixture,
    ec_signer: Signer,
    ec_other: Signer,
    rsa_signer: Signer,
) -> None:
    token, reason = _token_cases(ec_signer, ec_other, rsa_signer)[case]
    assert_rejected(post_hook(token), caplog_info, reason, token)


def test_flask_sees_a_different_url_than_the_public_one(
    client: FlaskClient, s1_body: dict[str, Any], ec_signer: Signer
) -> None:
    # The premise of the aud cases: the request URL Flask sees is http://localhost/..., yet a
    # token for the configured https://cds.example.org/prefix/... URL is the one accepted.
    # The client fixture keeps the last request's context, so flask.request is that request.
    response = client.post(SERVICE_PATH, json=s1_body, headers=bearer(mint(ec_signer, ISS_ES)))
    assert request.url == f"http://localhost{SERVICE_PATH}"
    assert_cards(response)
    assert not SERVICE_AUD.startswith("http://localhost")


def test_missing_authorization_is_401(
    post_hook: Callable[[str | None], Any], caplog_info: pytest.LogCaptureFixture
) -> None:
    assert_rejected(post_hook(None), caplog_info, "missing_token", None)


def test_replayed_jti_is_401_the_second_time(
    post_hook: Callable[[str | None], Any],
    caplog_info: pytest.LogCaptureFixture,
    ec_signer: Signer,
) -> None:
    token = mint(ec_signer, ISS_ES)
    assert_cards(post_hook(token))
    assert auth_reasons(caplog_info) == []
    assert_rejected(post_hook(token), caplog_info, "replayed_jti", token)


def test_jti_is_remembered_per_issuer_not_globally(
    post_hook: Callable[[str | None], Any], ec_signer: Signer, rsa_signer: Signer
) -> None:
    jti = uuid.uuid4().hex
    assert_cards(post_hook(mint(ec_signer, ISS_ES, jti=jti)))
    assert_cards(post_hook(mint(rsa_signer, ISS_RS, jti=jti)))


# -- discovery ------------------------------------------------------------------------------------


def test_discovery_needs_a_token_in_production(
    client: FlaskClient, caplog_info: pytest.LogCaptureFixture
) -> None:
    assert_rejected(
        client.get("/cds-services"), caplog_info, "missing_token", None, "/cds-services"
    )


def test_discovery_with_a_token_for_the_discovery_url_is_200(
    client: FlaskClient, ec_signer: Signer
) -> None:
    response = client.get(
        "/cds-services", headers=bearer(mint(ec_signer, ISS_ES, aud=DISCOVERY_AUD))
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    ids = [s["id"] for s in response.get_json()["services"]]
    # patient-view first, then the order service once per hook (issue 17).
    assert ids == [
        "epidural-complications",
        "epidural-anticoagulant-orders",
        "epidural-anticoagulant-orders",
    ]


def test_discovery_refuses_a_token_for_a_service_url(
    client: FlaskClient, ec_signer: Signer, caplog_info: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_ES)  # aud = the hook endpoint
    response = client.get("/cds-services", headers=bearer(token))
    assert_rejected(response, caplog_info, "wrong_audience", token, "/cds-services")


def test_discovery_open_answers_without_a_token_but_hooks_still_need_one(
    prod_issuers_file: Path, tmp_path: Path, s1_body: dict[str, Any]
) -> None:
    app = _prod_app(prod_issuers_file, tmp_path, discovery_open=True)
    client = app.test_client()
    response = client.get("/cds-services")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["services"]
    assert client.post(SERVICE_PATH, json=s1_body).status_code == 401


# -- jku: a real key-set server (development profile: http jku) -----------------------------------


def _jku_app(jwks_server: JwksServer, data_dir: Path, **settings: Any) -> Flask:
    issuers = write_issuers(data_dir / "issuers.yaml", [{"iss": ISS_JKU, "jku": [jwks_server.url]}])
    return create_app(
        {
            "profile": "development",
            "public_base_url": BASE,
            "issuers_file": str(issuers),
            "jwks_allow_http": True,
            "data_dir": str(data_dir),
            **settings,
        }
    )


def _post(app: Flask, token: str) -> Any:
    body = s1_hook_body()
    return app.test_client().post(SERVICE_PATH, json=body, headers=bearer(token))


def test_rs384_via_allowlisted_jku_gets_200(
    jwks_server: JwksServer, tmp_path: Path, rsa_signer: Signer
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    app = _jku_app(jwks_server, tmp_path)
    assert jwks_server.request_count == 0, "key sets are fetched on demand, not at start-up"
    assert_cards(_post(app, mint(rsa_signer, ISS_JKU, headers={"jku": jwks_server.url})))
    # Without a header jku the issuer's configured URL is used; the cached set answers.
    assert_cards(_post(app, mint(rsa_signer, ISS_JKU)))
    assert jwks_server.requests == ["/jwks.json"]


def test_jku_not_on_the_allowlist_is_never_fetched(
    jwks_server: JwksServer,
    tmp_path: Path,
    rsa_signer: Signer,
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    # The attacker's URL is on the same (real) server, which would serve the right key: a fetch
    # would make the token pass, so 401 plus zero requests proves it was refused unfetched.
    jwks_server.serve(rsa_signer.public_jwk())
    app = _jku_app(jwks_server, tmp_path)
    evil = f"{jwks_server.base}/attacker/jwks.json"
    token = mint(rsa_signer, ISS_JKU, headers={"jku": evil})
    response = app.test_client().post(SERVICE_PATH, json=s1_hook_body(), headers=bearer(token))
    assert_rejected(response, caplog_info, "jku_not_allowed", token)
    assert jwks_server.request_count == 0


def test_unknown_kid_via_jku_is_401(
    jwks_server: JwksServer,
    tmp_path: Path,
    rsa_signer: Signer,
    rsa_signer_b: Signer,
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    app = _jku_app(jwks_server, tmp_path)
    token = mint(rsa_signer_b, ISS_JKU, headers={"jku": jwks_server.url})
    assert_rejected(_post(app, token), caplog_info, "unknown_kid", token)
    assert jwks_server.request_count == 1


def test_key_rotation_at_the_jku_needs_no_restart(
    jwks_server: JwksServer,
    tmp_path: Path,
    rsa_signer: Signer,
    rsa_signer_b: Signer,
    monkeypatch: pytest.MonkeyPatch,
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    # The one fake: the key-set cache's monotonic clock, so the per-URL refetch rate limit
    # (60 s, against kid-guessing floods) can be stepped over without sleeping.
    clock = FakeClock()
    monkeypatch.setattr(
        service.security.trust, "JwksCache", functools.partial(JwksCache, clock=clock)
    )
    jwks_server.serve(rsa_signer.public_jwk())
    app = _jku_app(jwks_server, tmp_path)
    assert_cards(_post(app, mint(rsa_signer, ISS_JKU, headers={"jku": jwks_server.url})))

    jwks_server.serve(rsa_signer_b.public_jwk())  # the client rotates: rsa-a withdrawn
    clock.advance(61)
    assert_cards(_post(app, mint(rsa_signer_b, ISS_JKU, headers={"jku": jwks_server.url})))
    assert jwks_server.request_count == 2

    old = mint(rsa_signer, ISS_JKU, headers={"jku": jwks_server.url})
    assert_rejected(_post(app, old), caplog_info, "unknown_kid", old)


# -- per-issuer fhirServer allowlist --------------------------------------------------------------


def test_issuer_fhir_servers_allow_only_that_issuers_calls(
    tmp_path: Path,
    fhir_stub: RecordingFhirStub,
    ec_signer: Signer,
    ec_other: Signer,
) -> None:
    other = ec_other.with_kid("ec-other")
    issuers = write_issuers(
        tmp_path / "issuers.yaml",
        [
            {
                "iss": ISS_ES,
                "jwks": {"keys": [ec_signer.public_jwk()]},
                "fhir_servers": [fhir_stub.base_url],
            },
            {"iss": ISS_RS, "jwks": {"keys": [other.public_jwk()]}},
        ],
    )
    app = create_app(
        {
            "profile": "development",
            "public_base_url": BASE,
            "issuers_file": str(issuers),
            "fhir_allow_http": True,
            "fhir_allow_private_addresses": True,
            "data_dir": str(tmp_path),
        }
    )
    client = app.test_client()

    def body() -> dict[str, Any]:
        request = s1_hook_body(with_prefetch=False)
        request["fhirServer"] = fhir_stub.base_url
        request["fhirAuthorization"] = {
            "access_token": "ehr-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "epidural-cds",
        }
        return request

    refused = client.post(SERVICE_PATH, json=body(), headers=bearer(mint(other, ISS_RS)))
    assert refused.status_code == 412, refused.get_data(as_text=True)
    assert "not an allowed FHIR server" in refused.get_json()["issue"][0]["diagnostics"]
    assert fhir_stub.requests == []

    allowed = client.post(SERVICE_PATH, json=body(), headers=bearer(mint(ec_signer, ISS_ES)))
    assert allowed.status_code == 200, allowed.get_data(as_text=True)
    assert fhir_stub.requests
    assert {auth for _, auth in fhir_stub.requests} == {"Bearer ehr-access-token"}
