"""Protocol tests for service.fhir.client against a real HTTP server on 127.0.0.1.

Why a real server and not a mocked ``requests``: headers on the wire, redirects, streaming size
caps and timeouts are the client's whole job, and only a socket shows what really happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from service.errors import FhirFetchError
from service.fhir.client import (
    FhirClient,
    FhirDeadlineExceeded,
    FhirRefused,
    FhirStatusError,
    next_link,
    origin_of,
)
from service.fhir.outbound import OutboundPolicy, new_session
from tests.support.fhir_server import StubFhirServer

TOKEN = "s3cr3t-token-value"
PATIENT = {"resourceType": "Patient", "id": "123"}


def bundle(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "self", "url": "http://example.org/x"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def proc(i: int) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": f"p{i}", "status": "completed"}


@pytest.fixture
def stub() -> Iterator[StubFhirServer]:
    with StubFhirServer() as server:
        yield server


@pytest.fixture
def other() -> Iterator[StubFhirServer]:
    """A second server on another port: the token must never reach it."""
    with StubFhirServer() as server:
        yield server


def local_policy(*servers: StubFhirServer) -> OutboundPolicy:
    """Allow exactly these stub servers (plain http on 127.0.0.1), as a dev deployment would."""
    return OutboundPolicy(
        allowed_servers=tuple(s.base_url for s in servers),
        require_https=False,
        allow_private_addresses=True,
    )


def client_for(stub: StubFhirServer, **kwargs: Any) -> FhirClient:
    kwargs.setdefault("access_token", TOKEN)
    kwargs.setdefault("policy", local_policy(stub))
    return FhirClient(stub.base_url, **kwargs)


def test_get_sends_bearer_token_and_fhir_accept(stub: StubFhirServer) -> None:
    stub.route("Patient/123", PATIENT)
    with client_for(stub) as client:
        assert client.get("Patient/123") == PATIENT
    [req] = stub.requests
    assert req.path == "/fhir/Patient/123"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["accept"] == "application/fhir+json"


def test_no_token_means_no_authorization_header(stub: StubFhirServer) -> None:
    stub.route("Patient/123", PATIENT)
    with client_for(stub, access_token=None) as client:
        client.get("Patient/123")
    [req] = stub.requests
    assert "authorization" not in req.headers


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
def test_non_2xx_is_a_status_error(stub: StubFhirServer, status: int) -> None:
    stub.route("Procedure", {"resourceType": "OperationOutcome", "issue": []}, status=status)
    with client_for(stub) as client, pytest.raises(FhirStatusError) as info:
        client.get("Procedure?patient=123")
    assert info.value.status == status
    assert TOKEN not in str(info.value) and "patient" not in str(info.value)


def test_read_404_and_410_mean_no_resource(stub: StubFhirServer) -> None:
    stub.route("Patient/gone", None, status=410)
    with client_for(stub) as client:
        assert client.read("Patient/missing") is None  # unknown route: 404
        assert client.read("Patient/gone") is None
    stub.route("Patient/err", None, status=500)
    with client_for(stub) as client, pytest.raises(FhirStatusError):
        client.read("Patient/err")


def test_redirect_is_not_followed(stub: StubFhirServer, other: StubFhirServer) -> None:
    other.route("Patient/123", PATIENT)
    stub.route(
        "Patient/123", None, status=302, headers={"Location": f"{other.base_url}/Patient/123"}
    )
    with client_for(stub) as client, pytest.raises(FhirStatusError) as info:
        client.get("Patient/123")
    assert info.value.status == 302
    assert other.requests == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>not json</html>", "not valid JSON"),
        (b"[1, 2]", "not a FHIR resource"),
        (b'{"id": "x"}', "not a FHIR resource"),
        (b'{"resourceType": "OperationOutcome", "issue": []}', "OperationOutcome"),
    ],
)
def test_bodies_that_are_not_fhir_data_fail(
    stub: StubFhirServer, body: bytes, fragment: str
) -> None:
    stub.route("Patient/123", body)
    with client_for(stub) as client, pytest.raises(FhirFetchError, match=fragment):
        client.get("Patient/123")


def test_declared_size_over_cap_fails(stub: StubFhirServer) -> None:
    stub.route("Patient/123", {**PATIENT, "text": {"div": "x" * 5000}})
    with (
        client_for(stub, max_response_bytes=1000) as client,
        pytest.raises(FhirFetchError, match="larger than 1000"),
    ):
        client.get("Patient/123")


def test_streamed_size_over_cap_fails_without_content_length(stub: StubFhirServer) -> None:
    stub.route("Patient/123", {**PATIENT, "text": {"div": "x" * 300_000}}, omit_length=True)
    with (
        client_for(stub, max_response_bytes=100_000) as client,
        pytest.raises(FhirFetchError, match="larger than 100000"),
    ):
        client.get("Patient/123")
    # The same body passes under a larger cap, so the failure above was the cap.
    with client_for(stub, max_response_bytes=1_000_000) as client:
        assert client.get("Patient/123")["id"] == "123"


def test_search_follows_next_pages_with_token_on_each(stub: StubFhirServer) -> None:
    stub.route("Procedure", bundle([proc(1)], f"{stub.base_url}/Procedure?page=2"))
    stub.route("Procedure?page=2", bundle([proc(2)], f"{stub.base_url}/Procedure?page=3"))
    stub.route("/fhir/Procedure?page=3", bundle([proc(3)]))
    with client_for(stub) as client:
        result = client.search("Procedure?patient=123", max_pages=10)
    assert result.complete
    assert [p["entry"][0]["resource"]["id"] for p in result.bundles] == ["p1", "p2", "p3"]
    reqs = stub.requests
    assert [r.query for r in reqs] == ["patient=123", "page=2", "page=3"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in reqs)


def test_page_cap_stops_and_reports_incomplete(stub: StubFhirServer) -> None:
    stub.route("Procedure", bundle([proc(1)], f"{stub.base_url}/Procedure?page=2"))
    stub.route("Procedure?page=2", bundle([proc(2)], f"{stub.base_url}/Procedure?page=3"))
    stub.route("Procedure?page=3", bundle([proc(3)]))
    with client_for(stub) as client:
        result = client.search("Procedure", max_pages=2)
    assert not result.complete
    assert len(result.bundles) == 2
    assert len(stub.requests) == 2


def test_next_link_to_another_origin_is_refused(
    stub: StubFhirServer, other: StubFhirServer
) -> None:
    other.route("Procedure", bundle([proc(2)]))
    stub.route("Procedure", bundle([proc(1)], f"{other.base_url}/Procedure?page=2"))
    with client_for(stub) as client, pytest.raises(FhirFetchError, match="origin"):
        client.search("Procedure", max_pages=10)
    assert other.requests == []


def test_paging_loop_is_detected(stub: StubFhirServer) -> None:
    stub.route("Procedure", bundle([proc(1)], f"{stub.base_url}/Procedure?page=2"))
    stub.route("Procedure?page=2", bundle([proc(2)], f"{stub.base_url}/Procedure?page=2"))
    with client_for(stub) as client, pytest.raises(FhirFetchError, match="loop"):
        client.search("Procedure", max_pages=10)


def test_search_must_return_a_bundle(stub: StubFhirServer) -> None:
    stub.route("Procedure", PATIENT)
    with client_for(stub) as client, pytest.raises(FhirFetchError, match="Bundle"):
        client.search("Procedure", max_pages=3)


def test_next_link_to_another_allowed_server_is_still_refused(
    stub: StubFhirServer, other: StubFhirServer
) -> None:
    """Being on the allowlist is not enough: the token stays on the fhirServer origin."""
    other.route("Procedure", bundle([proc(2)]))
    stub.route("Procedure", bundle([proc(1)], f"{other.base_url}/Procedure?page=2"))
    with (
        client_for(stub, policy=local_policy(stub, other)) as client,
        pytest.raises(FhirFetchError, match="origin"),
    ):
        client.search("Procedure", max_pages=10)
    assert other.requests == []


@pytest.mark.parametrize(
    "next_path",
    ["/admin/Procedure?page=2", "/fhirx/Procedure?page=2", "/fhir/../admin?page=2"],
)
def test_same_origin_next_link_outside_the_allowed_base_is_refused(
    stub: StubFhirServer, next_path: str
) -> None:
    """A same-origin ``next`` link must also pass the policy (it may point at another app)."""
    stub.route(next_path.partition("?")[0], bundle([proc(2)]))
    stub.route("Procedure", bundle([proc(1)], f"{stub.origin}{next_path}"))
    with client_for(stub) as client, pytest.raises(FhirRefused) as info:
        client.search("Procedure", max_pages=10)
    assert info.value.reason in ("not_allowlisted", "bad_url")
    assert [r.path for r in stub.requests] == ["/fhir/Procedure"]


def test_base_url_off_the_allowlist_is_refused_before_any_request(
    stub: StubFhirServer, other: StubFhirServer
) -> None:
    stub.route("Patient/123", PATIENT)
    with pytest.raises(FhirRefused) as info:
        FhirClient(stub.base_url, policy=local_policy(other), access_token=TOKEN)
    assert info.value.reason == "not_allowlisted"
    assert TOKEN not in str(info.value)
    assert stub.requests == []


def test_plain_http_is_refused_when_https_is_required(stub: StubFhirServer) -> None:
    policy = OutboundPolicy(allowed_servers=(stub.base_url,), allow_private_addresses=True)
    with pytest.raises(FhirRefused) as info:
        FhirClient(stub.base_url, policy=policy)
    assert info.value.reason == "not_https"
    assert stub.requests == []


def test_loopback_server_is_refused_in_production_mode(stub: StubFhirServer) -> None:
    """127.0.0.1 is a private address: refused even when allowlisted, unless dev mode allows it."""
    stub.route("Patient/123", PATIENT)
    policy = OutboundPolicy(allowed_servers=(stub.base_url,), require_https=False)
    with pytest.raises(FhirRefused) as info:
        FhirClient(stub.base_url, policy=policy, access_token=TOKEN)
    assert info.value.reason == "private_address"
    assert stub.requests == []


def test_a_caller_session_must_be_guarded(stub: StubFhirServer) -> None:
    stub.route("Patient/123", PATIENT)
    production_like = OutboundPolicy(allowed_servers=("https://ehr.example.org/fhir",))
    plain = requests.Session()
    with pytest.raises(ValueError, match="new_session"):
        FhirClient("https://ehr.example.org/fhir", policy=production_like, session=plain)
    plain.close()
    # A guarded session is accepted and is not closed by the client (the caller owns it).
    shared = new_session(local_policy(stub))
    with client_for(stub, session=shared) as client:
        assert client.get("Patient/123") == PATIENT
    with client_for(stub, session=shared) as client:
        assert client.get("Patient/123") == PATIENT
    shared.close()
    assert len(stub.requests) == 2


def test_close_forgets_the_token(stub: StubFhirServer) -> None:
    client = client_for(stub)
    client.close()
    assert TOKEN not in repr(vars(client))


def test_relative_references_resolve_against_the_base(stub: StubFhirServer) -> None:
    client = client_for(stub)
    assert client.resolve("Patient/1") == f"{stub.base_url}/Patient/1"
    assert client.resolve("/fhir/Patient/1") == f"{stub.base_url}/Patient/1"
    with pytest.raises(FhirFetchError):
        client.resolve("https://evil.example/fhir/Patient/1")
    client.close()


def test_origin_comparison_fills_default_ports() -> None:
    assert origin_of("http://EHR.example/fhir") == origin_of("http://ehr.example:80/x")
    assert origin_of("https://ehr.example/fhir") == ("https", "ehr.example", 443)
    assert origin_of("https://ehr.example/fhir") != origin_of("http://ehr.example/fhir")
    for bad in ("ftp://ehr.example/fhir", "/fhir", "http://ehr.example:notaport/"):
        with pytest.raises(FhirFetchError):
            origin_of(bad)


def test_next_link_ignores_other_relations() -> None:
    assert next_link({"link": [{"relation": "self", "url": "a"}]}) is None
    assert next_link({"link": [{"relation": "next", "url": "b"}]}) == "b"
    assert next_link({"link": "garbage"}) is None


def test_passed_deadline_sends_nothing(stub: StubFhirServer) -> None:
    stub.route("Patient/123", PATIENT)
    with (
        client_for(stub, deadline=time.monotonic() - 0.01) as client,
        pytest.raises(FhirDeadlineExceeded),
    ):
        client.get("Patient/123")
    assert stub.requests == []


def test_cancel_flag_stops_new_requests(stub: StubFhirServer) -> None:
    stub.route("Patient/123", PATIENT)
    cancel = threading.Event()
    cancel.set()
    with client_for(stub, cancel=cancel) as client, pytest.raises(FhirFetchError):
        client.get("Patient/123")
    assert stub.requests == []


def test_read_timeout_is_clipped_to_the_deadline(stub: StubFhirServer) -> None:
    stub.route("Patient/123", PATIENT, delay_s=2.0)
    started = time.monotonic()
    with (
        client_for(stub, read_timeout_s=5.0, deadline=time.monotonic() + 0.3) as client,
        pytest.raises(FhirFetchError),
    ):
        client.get("Patient/123")
    assert time.monotonic() - started < 0.6


def test_connection_refused_is_a_fetch_error() -> None:
    with StubFhirServer() as dead:
        url = dead.base_url
    policy = OutboundPolicy(
        allowed_servers=(url,), require_https=False, allow_private_addresses=True
    )
    with (
        FhirClient(url, policy=policy, access_token=TOKEN) as client,
        pytest.raises(FhirFetchError) as info,
    ):
        client.get("Patient/123")
    assert TOKEN not in str(info.value)
