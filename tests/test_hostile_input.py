"""Hostile and unusual input on the HTTP surface, through the Flask test client.

Deep nesting is refused by a byte-level pre-scan before ``json.loads`` recurses (limit 64
levels); an over-long declared body is refused before a byte of it is read; unknown members are
ignored, as CDS Hooks requires; only JSON media types are accepted; and every answer, success or
failure, carries the security headers.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client, EnvironBuilder, TestResponse
from werkzeug.wrappers import Response

import service.engine
from service.cdshooks.handler import nested_deeper_than, parse_json
from service.errors import InvalidRequest
from service.fhir.timeshift import shift_times
from tests.protocol.conftest import (
    EXAMPLES,
    JSON,
    assert_operation_outcome,
    delta_to_present,
    encode,
    load_bundle,
    make_request,
    service_url,
)
from tests.support.apps import dev_app
from tests.test_openapi import production_app

S1 = EXAMPLES / "s1-labour-epidural-lmwh-weakness"
MAX_DEPTH = 64
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@pytest.fixture(scope="module")
def app() -> Flask:
    return dev_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def depth(value: Any) -> int:
    """Nesting depth as the pre-scan counts it: each array or object is one level."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def request_of_depth(app: Flask, total: int) -> bytes:
    """A valid S1 request whose ``extension`` nests so that the whole document is ``total`` deep.

    S1 is moved to the present: the route evaluates at the wall clock, and S1's red flags are
    current only near their own time (clinical-spec §3.5), so its critical card still shows.
    """
    body = make_request(app, S1, bundle=shift_times(load_bundle(S1), delta_to_present(S1)))
    assert depth(body) < total
    body["extension"] = {"org.example.deep": "DEEP"}  # the document and extension: 2 levels
    arrays = total - 2
    return encode(body).replace(b'"DEEP"', b"[" * arrays + b"]" * arrays)


def post(client: FlaskClient, url: str, data: bytes, content_type: str | None = JSON) -> Any:
    if content_type is None:
        return client.post(url, data=data)
    return client.post(url, data=data, content_type=content_type)


# -- nesting depth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b"[" * 100_000,  # unterminated as well as deep
    ],
    ids=["arrays-1000", "objects-1000", "unterminated-100000"],
)
def test_deeply_nested_body_is_400_not_500(app: Flask, client: FlaskClient, raw: bytes) -> None:
    response = post(client, service_url(app), raw)
    body = assert_operation_outcome(response, 400)
    assert f"nested deeper than {MAX_DEPTH} levels" in body["issue"][0]["diagnostics"]


def test_deep_request_inside_a_valid_request_is_400(app: Flask, client: FlaskClient) -> None:
    raw = request_of_depth(app, 1000)
    body = assert_operation_outcome(post(client, service_url(app), raw), 400)
    assert "nested deeper" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("total", [60, MAX_DEPTH])
def test_request_up_to_the_limit_is_parsed(app: Flask, client: FlaskClient, total: int) -> None:
    raw = request_of_depth(app, total)
    assert depth(json.loads(raw)) == total
    response = post(client, service_url(app), raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"]


def test_one_level_over_the_limit_is_400(app: Flask, client: FlaskClient) -> None:
    response = post(client, service_url(app), request_of_depth(app, MAX_DEPTH + 1))
    assert_operation_outcome(response, 400)


def test_brackets_inside_strings_do_not_count(app: Flask, client: FlaskClient) -> None:
    body = make_request(app, S1)
    body["extension"] = {"org.example.text": "[{" * 5000 + '\\"[[[' + "\\\\" + "]}" * 10}
    response = post(client, service_url(app), encode(body))
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("raw", "deep"),
    [
        (b"[" * 65 + b"]" * 65, True),
        (b"[" * 64 + b"]" * 64, False),
        (b'["' + b"[" * 100 + b'"]', False),  # inside a string
        (b'["\\"' + b"[" * 100 + b'"]', False),  # after an escaped quote, still in the string
        (b'["\\\\"' + b"," + b"[" * 65 + b"]" * 65 + b"]", True),  # escaped backslash ends it
        (b'{"k\\u005b":' + b"[" * 63 + b"]" * 63 + b"}", False),  # \u005b is not a bracket
        (b'["\\u00b0' + b"[" * 100 + b'"]', False),  # a harmless escape: no escape pass
        (b'["' + b"\\n" * 10 + b'\\"' + b"[" * 100 + b'"]', False),  # \" after other escapes
        pytest.param(
            b'["' + b"\\n" * 5000 + b'\\"' + b"[" * 100 + b'"]', False, id="5000-escapes-then-quote"
        ),
        (b'["' + b"\\/" * 10 + b'\\\\"' + b"," + b"[" * 65 + b"]" * 65 + b"]", True),
        (('["é€𝄞' + "[" * 100 + '"]').encode(), False),  # multi-byte UTF-8 in the string
        (b"\xef\xbb\xbf" + b"[" * 65 + b"]" * 65, True),  # behind a UTF-8 BOM
    ],
)
def test_pre_scan_counts_only_structural_brackets(raw: bytes, deep: bool) -> None:
    if deep:
        with pytest.raises(InvalidRequest, match="nested deeper than 64"):
            parse_json(raw)
    else:
        assert parse_json(raw) == json.loads(raw.decode("utf-8-sig"))


# Strings full of the characters the pre-scan treats specially.
_TRICKY_TEXT = st.text(alphabet='[]{}"\\\\ax\u00e9\u20ac\U0001d11e\n', max_size=12)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY_TEXT, inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(_JSON_VALUES, st.integers(min_value=0, max_value=8), st.booleans())
def test_pre_scan_agrees_with_the_decoded_depth(value: Any, limit: int, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nested_deeper_than(raw, limit) == (depth(value) > limit)


def test_truncated_body_is_reported_as_invalid_json_not_as_deep() -> None:
    raw = json.dumps({"a": [[{"b": list(range(100))}] for _ in range(100)]}).encode()
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_json(raw[: len(raw) // 2])


# -- size ------------------------------------------------------------------------------------------


class UnreadableStream(io.RawIOBase):
    """A request body that fails the test if the service reads any of it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the service read the body of an over-long request")


def test_declared_100_mb_body_is_413_without_reading_it(app: Flask) -> None:
    environ = EnvironBuilder(path=service_url(app), method="POST", content_type=JSON).get_environ()
    environ["wsgi.input"] = UnreadableStream()
    environ["CONTENT_LENGTH"] = str(100 * 1024 * 1024)
    app_iter, status, headers = Client(app).run_wsgi_app(environ, buffered=True)
    response = Response(b"".join(app_iter), status=status, headers=headers)
    assert_operation_outcome(response, 413)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value


# -- unknown members -------------------------------------------------------------------------------


def test_unknown_members_are_ignored(app: Flask, client: FlaskClient) -> None:
    baseline = post(client, service_url(app), encode(make_request(app, S1)))
    assert baseline.status_code == 200
    body = make_request(app, S1)
    body["futureTopLevelField"] = {"anything": [1, "two", None]}
    body["x-vendor"] = "value"
    body["extension"] = {
        "com.example.unknown": {"nested": True},
        "org.example.other": [1, 2, 3],
    }
    body["context"]["com.example.contextExtra"] = "ignored"
    response = post(client, service_url(app), encode(body))
    assert response.status_code == 200, response.get_data(as_text=True)
    summaries = [card["summary"] for card in response.get_json()["cards"]]
    assert summaries == [card["summary"] for card in baseline.get_json()["cards"]]


# -- media types -----------------------------------------------------------------------------------


def test_json_with_charset_is_accepted(app: Flask, client: FlaskClient) -> None:
    response = post(
        client, service_url(app), encode(make_request(app, S1)), "application/json; charset=utf-8"
    )
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize(
    "content_type", ["text/json", "application/x-www-form-urlencoded", "text/plain", None]
)
def test_other_media_types_are_415(
    app: Flask, client: FlaskClient, content_type: str | None
) -> None:
    response = post(client, service_url(app), encode(make_request(app, S1)), content_type)
    if content_type is None:
        assert "Content-Type" not in response.request.headers
    assert_operation_outcome(response, 415)


# -- security headers on every kind of answer ------------------------------------------------------


def _broken_engine(*args: object, **kwargs: object) -> list[object]:
    raise RuntimeError("simulated engine failure")


CALLS = [
    "discovery-200",
    "hook-200",
    "health-200",
    "openapi-200",
    "hook-400-deep",
    "hook-401",
    "hook-404",
    "path-404",
    "hook-405",
    "hook-413",
    "hook-415",
    "hook-500",
]


@pytest.mark.parametrize("call", CALLS)
def test_security_headers_on_every_answer(
    app: Flask, client: FlaskClient, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = service_url(app)
    valid = encode(make_request(app, S1))
    response: TestResponse
    if call == "discovery-200":
        response = client.get("/cds-services")
    elif call == "hook-200":
        response = post(client, url, valid)
    elif call == "health-200":
        response = client.get("/healthz")
    elif call == "openapi-200":
        response = client.get("/openapi.json")
    elif call == "hook-400-deep":
        response = post(client, url, b"[" * 1000)
    elif call == "hook-401":
        with tempfile.TemporaryDirectory() as tmp:
            secured = production_app(Path(tmp))
            response = post(secured.test_client(), url, valid)
    elif call == "hook-404":
        response = post(client, "/cds-services/no-such-service", valid)
    elif call == "path-404":
        response = client.get("/no/such/path")
    elif call == "hook-405":
        response = client.get(url)
    elif call == "hook-413":
        response = post(dev_app(max_body_bytes=100).test_client(), url, valid)
    elif call == "hook-415":
        response = post(client, url, valid, "text/json")
    else:
        monkeypatch.setattr(service.engine, "evaluate", _broken_engine)
        response = post(client, url, valid)
    expected_status = int(call.split("-")[1])
    assert response.status_code == expected_status, response.get_data(as_text=True)
    if expected_status >= 400:
        assert_operation_outcome(response, expected_status)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (call, name)
