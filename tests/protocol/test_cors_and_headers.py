"""CORS (CDS Hooks 2.0 §Cross-Origin Resource Sharing) and security headers.

Browser-based clients such as the CDS Hooks sandbox send ``Authorization`` on GET and POST, which
triggers an OPTIONS preflight on the discovery and service URLs. Production deployments restrict
the allowed origins with ``EPIDURAL_CDS_CORS_ORIGINS``.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import service.engine
from tests.protocol.conftest import EXAMPLES, JSON, encode, make_request, service_url
from tests.support.apps import dev_app

EHR = "https://ehr.example.org"
OTHER = "https://attacker.example.com"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def preflight(client: FlaskClient, url: str, origin: str, method: str = "POST") -> TestResponse:
    return client.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )


def header_set(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


@pytest.fixture(scope="module")
def restricted_app() -> Flask:
    return dev_app(cors_origins=EHR)


def urls(app: Flask) -> list[str]:
    return ["/cds-services", service_url(app)]


@pytest.mark.parametrize("which", ["discovery", "service"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_preflight_allows_authorization_and_content_type(
    app: Flask, client: FlaskClient, which: str, method: str
) -> None:
    url = "/cds-services" if which == "discovery" else service_url(app)
    response = preflight(client, url, EHR, method)
    assert response.status_code in (200, 204)
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", EHR)
    assert {"authorization", "content-type"} <= header_set(
        response.headers.get("Access-Control-Allow-Headers")
    )
    assert {"get", "post"} <= header_set(response.headers.get("Access-Control-Allow-Methods"))


def test_default_config_allows_any_origin_on_actual_requests(
    app: Flask, client: FlaskClient
) -> None:
    response = client.get("/cds-services", headers={"Origin": OTHER})
    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", OTHER)


def test_configured_origin_is_allowed(restricted_app: Flask) -> None:
    client = restricted_app.test_client()
    for url in urls(restricted_app):
        response = preflight(client, url, EHR)
        assert response.headers.get("Access-Control-Allow-Origin") == EHR, url
    response = client.get("/cds-services", headers={"Origin": EHR})
    assert response.headers.get("Access-Control-Allow-Origin") == EHR
    body = make_request(restricted_app, EXAMPLES / "s1-labour-epidural-lmwh-weakness")
    response = client.post(
        service_url(restricted_app), data=encode(body), content_type=JSON, headers={"Origin": EHR}
    )
    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin") == EHR


def test_other_origins_get_no_allow_origin(restricted_app: Flask) -> None:
    client = restricted_app.test_client()
    for url in urls(restricted_app):
        response = preflight(client, url, OTHER)
        assert "Access-Control-Allow-Origin" not in response.headers, url
        assert "Access-Control-Allow-Headers" not in response.headers, url
    response = client.get("/cds-services", headers={"Origin": OTHER})
    assert "Access-Control-Allow-Origin" not in response.headers
    body = make_request(restricted_app, EXAMPLES / "s1-labour-epidural-lmwh-weakness")
    response = client.post(
        service_url(restricted_app),
        data=encode(body),
        content_type=JSON,
        headers={"Origin": OTHER},
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_origin_list_is_configurable_from_a_comma_separated_value() -> None:
    app = dev_app(cors_origins=f"{EHR}, https://sandbox.cds-hooks.org")
    client = app.test_client()
    for origin in (EHR, "https://sandbox.cds-hooks.org"):
        response = preflight(client, "/cds-services", origin, "GET")
        assert response.headers.get("Access-Control-Allow-Origin") == origin
    assert "Access-Control-Allow-Origin" not in preflight(client, "/cds-services", OTHER).headers


@pytest.mark.parametrize(
    "call",
    [
        "discovery",
        "hook-200",
        "hook-400",
        "hook-404",
        "hook-415",
        "hook-500",
        "preflight",
        "health",
    ],
)
def test_security_headers_on_every_response(
    app: Flask, client: FlaskClient, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = encode(make_request(app, EXAMPLES / "s1-labour-epidural-lmwh-weakness"))
    if call == "discovery":
        response = client.get("/cds-services")
    elif call == "hook-200":
        response = client.post(service_url(app), data=body, content_type=JSON)
    elif call == "hook-400":
        response = client.post(service_url(app), data=b"{", content_type=JSON)
    elif call == "hook-404":
        response = client.post("/cds-services/nope", data=body, content_type=JSON)
    elif call == "hook-415":
        response = client.post(service_url(app), data=body, content_type="text/plain")
    elif call == "hook-500":
        # Fake engine failure (see test_hook_errors): headers must survive the error path.
        def broken(*args: object, **kwargs: object) -> list[object]:
            raise RuntimeError("boom")

        monkeypatch.setattr(service.engine, "evaluate_plans", broken)
        response = client.post(service_url(app), data=body, content_type=JSON)
        assert response.status_code == 500
    elif call == "preflight":
        response = preflight(client, service_url(app), EHR)
    else:
        response = client.get("/healthz")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (call, name)
