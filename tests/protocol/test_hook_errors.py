"""POST /cds-services/{id}: every non-200 outcome, and what counts as "no data".

Each error must be a FHIR OperationOutcome (CDS Hooks 3.0 SHOULD, harmless in 2.0) with
``application/fhir+json`` and no Python internals. A client treats any non-200 as "no guidance",
so an internal failure must never turn into ``200 {"cards": []}`` (read as "no concerns").
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wrappers import Response

import service.engine
from service.fhir.timeshift import shift_times
from tests.protocol.conftest import (
    EXAMPLES,
    JSON,
    RecordingFhirServer,
    assert_operation_outcome,
    authorization,
    delta_to_present,
    encode,
    load_bundle,
    local_fhir_app,
    make_request,
    service_state,
    service_url,
)
from tests.support.apps import dev_app

S1 = EXAMPLES / "s1-labour-epidural-lmwh-weakness"
SMALL_LIMIT = 1000

BuildRequest = Callable[..., dict[str, Any]]


def post(client: FlaskClient, url: str, body: Any, content_type: str | None = JSON) -> Any:
    data = body if isinstance(body, bytes) else encode(body)
    if content_type is None:
        return client.post(url, data=data)
    return client.post(url, data=data, content_type=content_type)


def null_prefetch(app: Flask) -> dict[str, None]:
    return {spec.key: None for spec in service_state(app).content.services[0].prefetch}


def minimal_request(app: Flask, **prefetch: Any) -> dict[str, Any]:
    """A small request (no bundle) whose prefetch says "no data" for every key."""
    body = make_request(app, S1, with_prefetch=False)
    body["prefetch"] = {**null_prefetch(app), **prefetch}
    return body


def present_request(app: Flask, example: Path) -> dict[str, Any]:
    """The example moved to the present, so the wall-clock HTTP route sees the scenario."""
    bundle = shift_times(load_bundle(example), delta_to_present(example))
    return make_request(app, example, bundle=bundle)


# -- 200 controls (so the error tests below cannot pass for the wrong reason) ---------------------


@pytest.mark.parametrize(
    "content_type", [JSON, "application/json; charset=utf-8", "application/fhir+json"]
)
def test_valid_request_is_200(app: Flask, client: FlaskClient, content_type: str) -> None:
    response = post(client, service_url(app), make_request(app, S1), content_type)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == JSON
    assert isinstance(response.get_json()["cards"], list)


# -- 400 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"hook": "patient-view", ', b"", b"not json", b"{'hook': 'patient-view'}", b"[1, 2,]"],
    ids=["truncated", "empty", "text", "single-quotes", "trailing-comma"],
)
def test_malformed_json_is_400(app: Flask, client: FlaskClient, raw: bytes) -> None:
    assert_operation_outcome(post(client, service_url(app), raw), 400)


def test_non_utf8_body_is_400(app: Flask, client: FlaskClient) -> None:
    raw = encode(make_request(app, S1)).replace(b'"hook"', b'"hook", "note": "caf\xe9"', 1)
    body = assert_operation_outcome(post(client, service_url(app), raw), 400)
    assert "UTF-8" in body["issue"][0]["diagnostics"]


def test_utf16_body_is_400(app: Flask, client: FlaskClient) -> None:
    raw = json.dumps(make_request(app, S1)).encode("utf-16")
    assert_operation_outcome(post(client, service_url(app), raw), 400)


def test_utf8_body_behind_a_byte_order_mark_is_accepted(app: Flask, client: FlaskClient) -> None:
    # S1 moved to the present: its red flag is current only near its own time (§3.5).
    present = shift_times(load_bundle(S1), delta_to_present(S1))
    raw = b"\xef\xbb\xbf" + encode(make_request(app, S1, bundle=present))
    response = post(client, service_url(app), raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"]


@pytest.mark.parametrize(
    "value",
    [b"NaN", b"Infinity", b"-Infinity", b'"\\ud800"', b"1e999"],
    ids=["nan", "infinity", "minus-infinity", "lone-surrogate", "overflow"],
)
def test_values_that_are_not_json_are_400(app: Flask, client: FlaskClient, value: bytes) -> None:
    # The standard library would read these (float("nan"), a lone surrogate); RFC 8259 does not.
    raw = encode(make_request(app, S1)).replace(b'"hook"', b'"note": ' + value + b', "hook"', 1)
    body = assert_operation_outcome(post(client, service_url(app), raw), 400)
    assert "not valid JSON" in body["issue"][0]["diagnostics"]


Change = Callable[[dict[str, Any]], Any]


def _without(path: tuple[str, ...]) -> Change:
    def change(body: dict[str, Any]) -> Any:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return body

    return change


def _setting(path: tuple[str, ...], value: Any) -> Change:
    def change(body: dict[str, Any]) -> Any:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return body

    return change


INVALID: dict[str, Change] = {
    "missing-hook": _without(("hook",)),
    "missing-hookInstance": _without(("hookInstance",)),
    "empty-hookInstance": _setting(("hookInstance",), ""),
    "missing-context": _without(("context",)),
    "context-not-object": _setting(("context",), "s1-patient"),
    "missing-patientId": _without(("context", "patientId")),
    "missing-userId": _without(("context", "userId")),
    "patientId-with-type": _setting(("context", "patientId"), "Patient/s1-patient"),
    "patientId-empty": _setting(("context", "patientId"), ""),
    "patientId-number": _setting(("context", "patientId"), 12345),
    "patientId-with-space": _setting(("context", "patientId"), "s1 patient"),
    "patientId-too-long": _setting(("context", "patientId"), "p" * 65),
    "userId-bare": _setting(("context", "userId"), "abc"),
    "fhirAuthorization-without-fhirServer": _setting(
        ("fhirAuthorization",), authorization("s1-patient")
    ),
    "fhirServer-not-url": _setting(("fhirServer",), "ehr.example.org/fhir"),
    "prefetch-value-string": _setting(("prefetch", "procedures"), "Procedure/1"),
    "prefetch-not-object": _setting(("prefetch",), ["Procedure/1"]),
    "body-array": lambda body: [body],
    "body-string": lambda body: "patient-view",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_schema_invalid_request_is_400(app: Flask, client: FlaskClient, case: str) -> None:
    body = INVALID[case](make_request(app, S1))
    response = post(client, service_url(app), body)
    outcome = assert_operation_outcome(response, 400)
    assert outcome["issue"][0]["code"] == "invalid"


def test_fhir_authorization_with_bad_token_type_is_400(app: Flask, client: FlaskClient) -> None:
    body = make_request(app, S1)
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = {**authorization("s1-patient"), "token_type": "MAC"}
    assert_operation_outcome(post(client, service_url(app), body), 400)


def test_wrong_hook_for_service_is_400(app: Flask, client: FlaskClient) -> None:
    body = make_request(app, S1)
    body["hook"] = "order-sign"
    body["context"]["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "sr1",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/s1-patient"},
                }
            }
        ],
    }
    outcome = assert_operation_outcome(post(client, service_url(app), body), 400)
    assert "order-sign" in outcome["issue"][0]["diagnostics"]


# -- 404, 405, 415 --------------------------------------------------------------------------------


def test_unknown_service_id_is_404(app: Flask, client: FlaskClient) -> None:
    response = post(client, "/cds-services/no-such-service", make_request(app, S1))
    outcome = assert_operation_outcome(response, 404)
    assert outcome["issue"][0]["code"] == "not-found"


def test_unknown_path_is_404(client: FlaskClient) -> None:
    assert_operation_outcome(client.get("/no-such-path"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "service"),
        ("PUT", "service"),
        ("DELETE", "service"),
        ("POST", "/cds-services"),
        ("DELETE", "/cds-services"),
    ],
)
def test_wrong_method_is_405(app: Flask, client: FlaskClient, method: str, path: str) -> None:
    url = service_url(app) if path == "service" else path
    response = client.open(url, method=method)
    assert_operation_outcome(response, 405)
    assert response.headers.get("Allow"), "405 must say which methods are allowed"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", None, "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_non_json_content_type_is_415(
    app: Flask, client: FlaskClient, content_type: str | None
) -> None:
    response = post(client, service_url(app), make_request(app, S1), content_type)
    if content_type is None:
        assert "Content-Type" not in response.request.headers
    assert_operation_outcome(response, 415)


# -- 413 ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_app() -> Flask:
    return dev_app(max_body_bytes=SMALL_LIMIT)


def test_body_within_a_small_limit_is_accepted(small_app: Flask) -> None:
    raw = encode(minimal_request(small_app))
    assert len(raw) <= SMALL_LIMIT
    response = post(small_app.test_client(), service_url(small_app), raw)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_body_over_the_limit_with_content_length_is_413(small_app: Flask) -> None:
    raw = encode(make_request(small_app, S1))
    assert len(raw) > SMALL_LIMIT
    response = post(small_app.test_client(), service_url(small_app), raw)
    assert_operation_outcome(response, 413)


def _post_chunked(app: Flask, raw: bytes) -> Response:
    """POST ``raw`` as a streamed body with no Content-Length, as gunicorn passes a chunked
    request on (it sets ``wsgi.input_terminated``)."""
    environ = EnvironBuilder(
        path=service_url(app),
        method="POST",
        input_stream=io.BytesIO(raw),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True
    app_iter, status, headers = Client(app).run_wsgi_app(environ, buffered=True)
    return Response(b"".join(app_iter), status=status, headers=headers)


def test_chunked_body_within_the_limit_is_accepted(small_app: Flask) -> None:
    response = _post_chunked(small_app, encode(minimal_request(small_app)))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_chunked_body_over_the_limit_is_413(small_app: Flask) -> None:
    raw = encode(make_request(small_app, S1))
    assert len(raw) > SMALL_LIMIT
    assert_operation_outcome(_post_chunked(small_app, raw), 413)


# -- 412 ------------------------------------------------------------------------------------------


def test_no_prefetch_and_no_fhir_server_is_412(app: Flask, client: FlaskClient) -> None:
    body = make_request(app, S1, with_prefetch=False)
    outcome = assert_operation_outcome(post(client, service_url(app), body), 412)
    assert outcome["issue"][0]["code"] == "incomplete"


def test_missing_required_key_without_fhir_server_is_412(app: Flask, client: FlaskClient) -> None:
    required = [s.key for s in service_state(app).content.services[0].prefetch if s.required]
    assert required
    for key in required:
        body = make_request(app, S1)
        del body["prefetch"][key]
        outcome = assert_operation_outcome(post(client, service_url(app), body), 412)
        assert key in outcome["issue"][0]["diagnostics"]


def test_missing_optional_key_is_not_412(app: Flask, client: FlaskClient) -> None:
    optional = [s.key for s in service_state(app).content.services[0].prefetch if not s.required]
    for key in optional:
        body = make_request(app, S1)
        del body["prefetch"][key]
        response = post(client, service_url(app), body)
        assert response.status_code == 200, (key, response.get_data(as_text=True))


def test_fhir_server_without_authorization_is_412_and_not_queried(
    fhir_server: RecordingFhirServer,
) -> None:
    app = local_fhir_app(fhir_server)
    body = make_request(app, S1, with_prefetch=False)
    body["fhirServer"] = fhir_server.base_url
    assert not service_state(app).settings.allow_unauthenticated_fhir
    assert_operation_outcome(post(app.test_client(), service_url(app), body), 412)
    assert fhir_server.requests == []


def test_fhir_server_not_on_the_allowlist_is_412_and_not_queried(
    app: Flask, client: FlaskClient, fhir_server: RecordingFhirServer
) -> None:
    body = make_request(app, S1, with_prefetch=False)
    body["fhirServer"] = fhir_server.base_url
    body["fhirAuthorization"] = authorization("s1-patient")
    outcome = assert_operation_outcome(post(client, service_url(app), body), 412)
    assert "not an allowed FHIR server" in outcome["issue"][0]["diagnostics"]
    assert fhir_server.requests == []


def test_unauthenticated_switch_lets_the_service_query_fhir_server(
    fhir_server: RecordingFhirServer,
) -> None:
    # Control for the test above: the same request is served once the switch is on.
    open_app = local_fhir_app(fhir_server, allow_unauthenticated_fhir=True)
    body = make_request(open_app, S1, with_prefetch=False)
    body["fhirServer"] = fhir_server.base_url
    response = post(open_app.test_client(), service_url(open_app), body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert fhir_server.requests
    assert all(auth is None for _, auth in fhir_server.requests)


# -- 500 ------------------------------------------------------------------------------------------


def test_internal_failure_is_500_not_empty_cards(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one fake in these tests: nothing in the real engine fails on demand, so the engine call
    # is replaced by one that raises, to prove how the HTTP layer maps an unexpected exception.
    def broken(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service.engine, "evaluate", broken)
    response = post(client, service_url(app), make_request(app, S1))
    outcome = assert_operation_outcome(response, 500)
    assert "cards" not in outcome
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text
    assert "RuntimeError" not in text


# -- "no data" is not an error --------------------------------------------------------------------


def test_null_prefetch_values_mean_no_data(
    app: Flask, client: FlaskClient, fhir_server: RecordingFhirServer
) -> None:
    body = minimal_request(app)
    body["fhirServer"] = fhir_server.base_url
    body["fhirAuthorization"] = authorization("s1-patient")
    response = post(client, service_url(app), body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}
    assert fhir_server.requests == [], "a null prefetch value must not be fetched again"


@pytest.mark.parametrize("with_entry_key", [False, True], ids=["no-entry", "entry-empty-list"])
def test_empty_bundles_mean_no_data(
    app: Flask, client: FlaskClient, fhir_server: RecordingFhirServer, with_entry_key: bool
) -> None:
    empty: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    if with_entry_key:
        empty["entry"] = []
    body = minimal_request(app)
    body["prefetch"] = {
        spec.key: (None if "?" not in spec.query else copy.deepcopy(empty))
        for spec in service_state(app).content.services[0].prefetch
    }
    body["fhirServer"] = fhir_server.base_url
    body["fhirAuthorization"] = authorization("s1-patient")
    response = post(client, service_url(app), body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}
    assert fhir_server.requests == [], "an empty Bundle must not be fetched again"


def test_operation_outcome_entries_in_prefetch_are_ignored(app: Flask, client: FlaskClient) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "incomplete", "diagnostics": "partial"}],
    }
    plain = present_request(app, S1)
    noisy = copy.deepcopy(plain)
    for value in noisy["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            value.setdefault("entry", []).append(
                {"resource": copy.deepcopy(outcome), "search": {"mode": "outcome"}}
            )
    expected = post(client, service_url(app), plain)
    got = post(client, service_url(app), noisy)
    assert expected.status_code == got.status_code == 200
    summaries = [(c["indicator"], c["summary"]) for c in got.get_json()["cards"]]
    assert summaries == [(c["indicator"], c["summary"]) for c in expected.get_json()["cards"]]
    assert summaries, "the control request should produce a card"


def test_prefetch_operation_outcome_is_not_data(
    app: Flask, client: FlaskClient, fhir_server: RecordingFhirServer
) -> None:
    body = make_request(app, S1)
    body["prefetch"]["procedures"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": "backend down"}],
    }
    # Without FHIR access the required key cannot be obtained at all...
    assert_operation_outcome(post(client, service_url(app), body), 412)
    # ...and with access the service fetches exactly that key itself.
    allowed = local_fhir_app(fhir_server)
    body["fhirServer"] = fhir_server.base_url
    body["fhirAuthorization"] = authorization("s1-patient")
    response = post(allowed.test_client(), service_url(allowed), body)
    assert response.status_code == 200, response.get_data(as_text=True)
    paths = [path for path, _ in fhir_server.requests]
    assert len(paths) == 1 and paths[0].startswith("/fhir/Procedure?"), paths
    assert fhir_server.requests[0][1] == "Bearer protocol-test-token"
