"""The OpenAPI 3.1 document shipped in ``service/cdshooks/openapi.json`` and served at
``GET /openapi.json``.

The document is checked against the official OpenAPI 3.1 meta-schema (the copy that schemathesis
ships, so no network is needed), every schema in it against JSON Schema 2020-12, and every
internal ``$ref`` is resolved. Its request and response schemas must be exactly our CDS Hooks
JSON Schemas (``schemas/*.schema.json``, with ``$defs`` moved to ``components/schemas``), so the
two cannot drift apart. Every Flask route must be documented, and the route must be public.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from jsonschema import Draft202012Validator
from jwt.algorithms import ECAlgorithm
from schemathesis.specs.openapi.definitions import OPENAPI_31

from service.cdshooks import schemas
from service.http.app import create_app
from tests.support.apps import dev_app

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("service.cdshooks").joinpath("openapi.json").read_text("utf-8")
)
#: Component name prefix -> schema file, as the document embeds them.
EMBEDDED = {
    "HookRequest": schemas.HOOK_REQUEST,
    "HookResponse": schemas.HOOK_RESPONSE,
    "DiscoveryResponse": schemas.DISCOVERY_RESPONSE,
    "FeedbackRequest": schemas.FEEDBACK_REQUEST,
}
ERROR_STATUSES = ("400", "401", "404", "405", "412", "413", "415", "500", "503")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
#: Methods Flask adds by itself; CORS preflight is answered by flask-cors.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def app() -> Flask:
    return dev_app()


def production_app(tmp: Path) -> Flask:
    """A production-profile app that trusts one issuer (a freshly generated key)."""
    key = ec.generate_private_key(ec.SECP384R1())
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": "k1", "alg": "ES384", "use": "sig"})
    issuers = tmp / "issuers.json"
    issuers.write_text(
        json.dumps({"issuers": [{"iss": "https://ehr.example.org", "jwks": {"keys": [jwk]}}]})
    )
    return create_app(
        {
            "profile": "production",
            "public_base_url": "https://cds.example.org",
            "issuers_file": str(issuers),
            "data_dir": str(tmp / "data"),
        }
    )


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _resolve(pointer: str) -> Any:
    node: Any = DOCUMENT
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _embedded(name: str, prefix: str) -> dict[str, Any]:
    """Schema file ``name`` the way the document embeds it, as components named ``prefix.*``."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    f"#/components/schemas/{prefix}.{value.removeprefix('#/$defs/')}"
                    if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                    else rewrite(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    source = dict(schemas.schema(name))
    defs = source.pop("$defs", {})
    source.pop("$schema", None)
    source.pop("$id", None)
    out = {prefix: rewrite(source)}
    out.update({f"{prefix}.{key}": rewrite(value) for key, value in defs.items()})
    return out


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


# -- the document itself ---------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    validator = Draft202012Validator(OPENAPI_31)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(DOCUMENT)]
    assert errors == []
    assert re.fullmatch(r"3\.1\.\d+", DOCUMENT["openapi"])
    assert DOCUMENT["info"]["title"] and DOCUMENT["info"]["version"]
    assert DOCUMENT["servers"] == [
        {"url": "/", "description": DOCUMENT["servers"][0]["description"]}
    ]


def test_meta_schema_rejects_a_broken_document() -> None:
    """Control: the meta-schema check above can fail."""
    broken = {**DOCUMENT, "paths": {"/x": {"get": {"responses": {"200": {}}}}}}
    del broken["info"]
    assert list(Draft202012Validator(OPENAPI_31).iter_errors(broken))


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    for schema in DOCUMENT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_ref_resolves() -> None:
    refs = [
        (path, node["$ref"])
        for path, node in _walk(DOCUMENT)
        if isinstance(node, dict) and isinstance(node.get("$ref"), str)
    ]
    assert len(refs) > 50
    for path, ref in refs:
        assert ref.startswith("#/"), f"{path}: only internal references, got {ref}"
        _resolve(ref)  # KeyError names the dangling reference


def test_embedded_schemas_are_our_cds_hooks_schemas() -> None:
    components = DOCUMENT["components"]["schemas"]
    for prefix, name in EMBEDDED.items():
        expected = _embedded(name, prefix)
        actual = {k: v for k, v in components.items() if k == prefix or k.startswith(prefix + ".")}
        assert actual == expected, f"{prefix} differs from schemas/{name}.schema.json"


def test_bearer_jwt_on_cds_hooks_endpoints_and_open_elsewhere() -> None:
    scheme = DOCUMENT["components"]["securitySchemes"]["cdsHooksJwt"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    security = {(p, m): op.get("security") for p, m, op in _operations()}
    assert security[("/cds-services", "get")] == [{"cdsHooksJwt": []}]
    assert security[("/cds-services/{service_id}", "post")] == [{"cdsHooksJwt": []}]
    assert security[("/cds-services/{service_id}/feedback", "post")] == [{"cdsHooksJwt": []}]
    assert security[("/healthz", "get")] == []
    assert security[("/openapi.json", "get")] == []
    assert "security" not in DOCUMENT  # no global default that an operation could inherit


def test_hook_and_discovery_reference_our_schemas() -> None:
    hook = DOCUMENT["paths"]["/cds-services/{service_id}"]["post"]
    for media in ("application/json", "application/fhir+json"):
        body = hook["requestBody"]["content"][media]["schema"]
        assert body == {"$ref": "#/components/schemas/HookRequest"}
    assert hook["requestBody"]["required"] is True
    ok = hook["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/HookResponse"}
    discovery = DOCUMENT["paths"]["/cds-services"]["get"]["responses"]["200"]
    assert discovery["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DiscoveryResponse"
    }


def test_hook_documents_every_error_status_as_operation_outcome() -> None:
    hook = DOCUMENT["paths"]["/cds-services/{service_id}"]["post"]["responses"]
    assert set(hook) == {"200", *ERROR_STATUSES} - {"405"}
    responses = DOCUMENT["components"]["responses"]
    for _path, _method, operation in _operations():
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                target = _resolve(response["$ref"]) if "$ref" in response else response
                schema = target["content"]["application/fhir+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/OperationOutcome"}
    # 405 has no operation of its own; it is documented as a reusable response.
    allowed = responses["MethodNotAllowed"]
    assert allowed["content"]["application/fhir+json"]["schema"] == {
        "$ref": "#/components/schemas/OperationOutcome"
    }


def test_operation_outcome_schema_accepts_what_the_service_sends() -> None:
    from service.cdshooks.outcome import operation_outcome

    schema = DOCUMENT["components"]["schemas"]["OperationOutcome"]
    for code in ("invalid", "login", "not-found", "not-supported", "incomplete", "too-costly"):
        Draft202012Validator(schema).validate(operation_outcome(code, "a message"))
    assert list(Draft202012Validator(schema).iter_errors({"resourceType": "Patient"}))


# -- the routes ------------------------------------------------------------------------------------


def _flask_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue  # see test_no_static_file_route
        if rule.endpoint.startswith("workbench."):
            continue  # the workbench's page and its own API: docs/workbench.md, not CDS Hooks
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(path, m.lower()) for m in (rule.methods or set()) - IMPLICIT_METHODS}
    return routes


def test_every_flask_route_is_documented(app: Flask) -> None:
    documented = {(path, method) for path, method, _ in _operations()}
    routes = _flask_routes(app)
    assert routes == documented
    assert ("/openapi.json", "get") in routes


def test_no_static_file_route(app: Flask) -> None:
    assert [r.rule for r in app.url_map.iter_rules() if r.endpoint == "static"] == []


def test_route_serves_the_packaged_document(app: Flask) -> None:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == DOCUMENT
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_route_is_public_in_production() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = production_app(Path(tmp))
        client = app.test_client()
        assert client.get("/cds-services").status_code == 401  # control: auth is on
        response = client.get("/openapi.json")
        assert response.status_code == 200
        assert response.get_json() == DOCUMENT


def test_documented_service_id_pattern_accepts_the_real_ids(app: Flask) -> None:
    parameter = DOCUMENT["paths"]["/cds-services/{service_id}"]["parameters"][0]
    discovery = app.test_client().get("/cds-services").get_json()
    for service in discovery["services"]:
        assert re.fullmatch(parameter["schema"]["pattern"], service["id"])


def test_package_data_ships_the_document() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8")
    package_data = pyproject.split("[tool.setuptools.package-data]", 1)[1]
    assert '"cdshooks/openapi.json"' in package_data.split("cards =", 1)[0]
