"""Tests for CDS Hooks 2.0 prefetch resolution (service.fhir.prefetch) against a real HTTP server.

Each test states one rule of the spec (§Prefetch, §FHIR Resource Access) and checks it on the
wire: what the stub FHIR server on 127.0.0.1 received (or that it received nothing), how long the
call took, and what came back or which 412 was raised.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from service.errors import PrefetchUnavailable
from service.fhir.outbound import OutboundPolicy, new_session
from service.fhir.prefetch import (
    NOT_ALLOWED_MESSAGE,
    FetchSettings,
    PrefetchTemplate,
    ResolvedPrefetch,
    render_template,
    resolve_prefetch,
)
from tests.support.fhir_server import StubFhirServer

TOKEN = "s3cr3t-token-value"
PATIENT_ID = "pat-8731"
PATIENT = {"resourceType": "Patient", "id": PATIENT_ID}
PROC_TEMPLATE = "Procedure?patient={{context.patientId}}&status=completed,in-progress,stopped"
PROCEDURES = PrefetchTemplate("procedures", PROC_TEMPLATE, required=True)
PATIENT_READ = PrefetchTemplate("patient", "Patient/{{context.patientId}}", required=True)
OBS_OPTIONAL = PrefetchTemplate(
    "temperature",
    "Observation?patient={{context.patientId}}&code=http://loinc.org|8310-5",
    required=False,
)
FAST = FetchSettings(deadline_s=2.0)  # production outbound policy: allows no server at all
OUTCOME: dict[str, Any] = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "backend down"}],
}


# -- helpers --------------------------------------------------------------------------------------


def proc(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": f"p{i}",
        "status": "completed",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }


def searchset(
    resources: list[dict[str, Any]],
    next_url: str | None = None,
    outcomes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {"resource": r, "search": {"mode": "match"}} for r in resources
    ]
    entries += outcomes or []
    links = [{"relation": "self", "url": "http://ehr.example/fhir/Procedure"}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": links,
        "entry": entries,
    }


def hook_request(
    server: StubFhirServer | None = None,
    *,
    prefetch: dict[str, Any] | None = None,
    token: str | None = TOKEN,
    expires_in: Any = 300,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    req: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": context
        if context is not None
        else {"userId": "Practitioner/example", "patientId": PATIENT_ID},
    }
    if server is not None:
        req["fhirServer"] = server.base_url
    if token is not None:
        req["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": "user/*.read",
            "subject": "epidural-cds",
        }
    if prefetch is not None:
        req["prefetch"] = prefetch
    return req


def local_policy(*servers: StubFhirServer) -> OutboundPolicy:
    """Allow exactly these stub servers (plain http on 127.0.0.1), as a dev deployment would."""
    return OutboundPolicy(
        allowed_servers=tuple(s.base_url for s in servers),
        require_https=False,
        allow_private_addresses=True,
    )


def local(stub: StubFhirServer, **kwargs: Any) -> FetchSettings:
    """FetchSettings whose outbound policy allows only ``stub``."""
    return FetchSettings(policy=local_policy(stub), **kwargs)


def fast(stub: StubFhirServer) -> FetchSettings:
    return local(stub, deadline_s=2.0)


def ids(resolved: ResolvedPrefetch, key: str) -> list[str]:
    return [r["id"] for r in resolved.resources[key]]


def route_procedures(stub: StubFhirServer, resources: list[dict[str, Any]], **kw: Any) -> None:
    stub.route("Procedure", searchset(resources), **kw)


@pytest.fixture
def stub() -> Iterator[StubFhirServer]:
    with StubFhirServer() as server:
        yield server


@pytest.fixture
def other() -> Iterator[StubFhirServer]:
    with StubFhirServer() as server:
        yield server


# -- render_template ------------------------------------------------------------------------------


def test_render_substitutes_context_fields() -> None:
    assert render_template(PROC_TEMPLATE, {"patientId": "123"}) == (
        "Procedure?patient=123&status=completed,in-progress,stopped"
    )
    assert render_template("Encounter/{{context.encounterId}}", {"encounterId": "e1"}) == (
        "Encounter/e1"
    )


def test_render_url_encodes_values() -> None:
    rendered = render_template(
        "Procedure?patient={{context.patientId}}", {"patientId": "a b&c=d/e?#"}
    )
    assert rendered == "Procedure?patient=a%20b%26c%3Dd%2Fe%3F%23"


def test_render_keeps_user_id_as_a_relative_reference() -> None:
    assert render_template("{{context.userId}}", {"userId": "Practitioner/abc"}) == (
        "Practitioner/abc"
    )


@pytest.mark.parametrize(
    ("token", "user_id", "expected"),
    [
        ("userPractitionerId", "Practitioner/abc", "abc"),
        ("userPractitionerRoleId", "PractitionerRole/r 1", "r%201"),
        ("userPatientId", "Patient/p1", "p1"),
        ("userRelatedPersonId", "RelatedPerson/rp1", "rp1"),
    ],
)
def test_render_user_tokens(token: str, user_id: str, expected: str) -> None:
    assert render_template(f"X?u={{{{{token}}}}}", {"userId": user_id}) == f"X?u={expected}"


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("Procedure?patient={{context.patientId}}", {}),  # missing field
        ("Procedure?patient={{context.patientId}}", {"patientId": None}),
        ("Procedure?patient={{context.patientId}}", {"patientId": ""}),
        ("Patient/{{context.patientId}}", {"patientId": ".."}),  # would change the path
        ("X?m={{context.medication.id}}", {"medication": {"id": "m"}}),  # not root-level
        ("X?d={{context.draftOrders}}", {"draftOrders": {"resourceType": "Bundle"}}),  # object
        ("X?s={{context.selections}}", {"selections": ["a"]}),  # array
        ("X?p={{userPatientId}}", {"userId": "Practitioner/abc"}),  # wrong user type
        ("X?p={{userPractitionerId}}", {}),  # no userId
        ("X?t={{today()}}", {}),  # not a 2.0 token
        ("X?p={{context.patientId", {"patientId": "1"}),  # unterminated
    ],
)
def test_render_unfillable_tokens_raise(template: str, context: dict[str, Any]) -> None:
    with pytest.raises(PrefetchUnavailable):
        render_template(template, context)


def test_render_primitive_non_strings() -> None:
    assert render_template("X?a={{context.n}}&b={{context.f}}", {"n": 3, "f": True}) == (
        "X?a=3&b=true"
    )


# -- rule 1: prefetched data is used ------------------------------------------------------------


def test_prefetched_resource_and_bundle_are_used_without_any_request(stub: StubFhirServer) -> None:
    req = hook_request(
        stub, prefetch={"patient": PATIENT, "procedures": searchset([proc(1), proc(2)])}
    )
    resolved = resolve_prefetch(req, [PATIENT_READ, PROCEDURES], fast(stub))
    assert ids(resolved, "patient") == [PATIENT_ID]
    assert ids(resolved, "procedures") == ["p1", "p2"]
    assert dict(resolved.origin) == {"patient": "prefetch", "procedures": "prefetch"}
    assert resolved.unavailable == () and resolved.partial == frozenset()
    assert stub.requests == []


def test_operation_outcome_entries_are_dropped_from_prefetched_bundles(
    stub: StubFhirServer,
) -> None:
    outcomes: list[dict[str, Any]] = [
        {"resource": OUTCOME, "search": {"mode": "outcome"}},
        {"resource": {**OUTCOME, "id": "no-mode"}},  # OperationOutcome without search.mode
        {"resource": {"resourceType": "Procedure", "id": "flagged"}, "search": {"mode": "outcome"}},
    ]
    req = hook_request(stub, prefetch={"procedures": searchset([proc(1)], outcomes=outcomes)})
    resolved = resolve_prefetch(req, [PROCEDURES], fast(stub))
    assert ids(resolved, "procedures") == ["p1"]
    assert resolved.origin["procedures"] == "prefetch"
    assert stub.requests == []


# -- rule 2: null and empty Bundles mean "no data" ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"resourceType": "Bundle", "type": "searchset", "total": 0},
        {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []},
    ],
)
def test_null_or_empty_bundle_is_no_data_and_never_refetched(
    stub: StubFhirServer, value: Any
) -> None:
    route_procedures(stub, [proc(1)])
    req = hook_request(stub, prefetch={"procedures": value, "patient": None})
    resolved = resolve_prefetch(req, [PROCEDURES, PATIENT_READ], fast(stub))
    assert resolved.resources["procedures"] == () and resolved.resources["patient"] == ()
    assert dict(resolved.origin) == {"procedures": "none", "patient": "none"}
    assert stub.requests == []


# -- rule 3: absent keys and OperationOutcomes are fetched ----------------------------------------


def test_absent_key_is_fetched_with_bearer_token_and_fhir_accept(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(1), proc(2)])
    resolved = resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    assert ids(resolved, "procedures") == ["p1", "p2"]
    assert resolved.origin["procedures"] == "fetched"
    [req] = stub.requests
    assert req.path == "/fhir/Procedure"
    assert req.params == {"patient": [PATIENT_ID], "status": ["completed,in-progress,stopped"]}
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["accept"] == "application/fhir+json"


@pytest.mark.parametrize(
    "value",
    [
        OUTCOME,
        searchset([], outcomes=[{"resource": OUTCOME, "search": {"mode": "outcome"}}]),
        searchset([], outcomes=[{"resource": OUTCOME}]),
    ],
    ids=["bare", "search-mode-outcome", "outcome-resource-entry"],
)
def test_operation_outcome_prefetch_is_treated_as_absent(
    stub: StubFhirServer, value: dict[str, Any]
) -> None:
    route_procedures(stub, [proc(7)])
    resolved = resolve_prefetch(
        hook_request(stub, prefetch={"procedures": value}), [PROCEDURES], fast(stub)
    )
    assert ids(resolved, "procedures") == ["p7"]
    assert resolved.origin["procedures"] == "fetched"
    assert len(stub.requests) == 1


def test_no_authorization_means_no_request_and_412_for_required(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(1)])
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(stub, token=None), [PROCEDURES], fast(stub))
    assert info.value.status == 412
    assert "'procedures'" in info.value.message
    assert stub.requests == []


def test_no_authorization_optional_key_is_unavailable_without_request(stub: StubFhirServer) -> None:
    req = hook_request(stub, token=None, prefetch={"procedures": searchset([proc(1)])})
    resolved = resolve_prefetch(req, [PROCEDURES, OBS_OPTIONAL], fast(stub))
    assert resolved.origin["temperature"] == "unavailable"
    assert resolved.unavailable == ("temperature",)
    assert resolved.resources["temperature"] == ()
    assert stub.requests == []


def test_allow_unauthenticated_fetches_without_authorization_header(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(1)])
    settings = local(stub, deadline_s=2.0, allow_unauthenticated=True)
    resolved = resolve_prefetch(hook_request(stub, token=None), [PROCEDURES], settings)
    assert ids(resolved, "procedures") == ["p1"]
    [req] = stub.requests
    assert "authorization" not in req.headers


def test_no_fhir_server_is_412_for_required_and_unavailable_for_optional() -> None:
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(None), [PROCEDURES], FAST)
    settings = FetchSettings(allow_unauthenticated=True)
    resolved = resolve_prefetch(hook_request(None, token=None), [OBS_OPTIONAL], settings)
    assert resolved.origin["temperature"] == "unavailable"


# -- paging ---------------------------------------------------------------------------------------


def route_three_pages(stub: StubFhirServer) -> None:
    stub.route("Procedure", searchset([proc(1), proc(2)], f"{stub.base_url}/Procedure?pg=2"))
    stub.route("Procedure?pg=2", searchset([proc(3), proc(4)], f"{stub.base_url}/Procedure?pg=3"))
    stub.route("Procedure?pg=3", searchset([proc(5)]))


def test_fetch_follows_three_pages_with_the_token_on_each(stub: StubFhirServer) -> None:
    route_three_pages(stub)
    resolved = resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    assert ids(resolved, "procedures") == ["p1", "p2", "p3", "p4", "p5"]
    assert resolved.partial == frozenset()
    reqs = stub.requests
    assert [r.query for r in reqs][1:] == ["pg=2", "pg=3"]
    assert [r.headers.get("authorization") for r in reqs] == [f"Bearer {TOKEN}"] * 3


def test_page_cap_on_required_key_is_412(stub: StubFhirServer) -> None:
    route_three_pages(stub)
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], local(stub, max_pages=2))
    assert len(stub.requests) == 2


def test_page_cap_on_optional_key_keeps_what_came_and_marks_partial(stub: StubFhirServer) -> None:
    route_three_pages(stub)
    optional = PrefetchTemplate("procedures", PROC_TEMPLATE, required=False)
    resolved = resolve_prefetch(hook_request(stub), [optional], local(stub, max_pages=2))
    assert ids(resolved, "procedures") == ["p1", "p2", "p3", "p4"]
    assert resolved.origin["procedures"] == "fetched"
    assert resolved.partial == frozenset({"procedures"})
    assert len(stub.requests) == 2


def test_prefetched_bundle_with_next_link_is_followed_with_token(stub: StubFhirServer) -> None:
    stub.route("Procedure?pg=2", searchset([proc(3)]))
    first = searchset([proc(1), proc(2)], f"{stub.base_url}/Procedure?pg=2")
    resolved = resolve_prefetch(
        hook_request(stub, prefetch={"procedures": first}), [PROCEDURES], fast(stub)
    )
    assert ids(resolved, "procedures") == ["p1", "p2", "p3"]
    assert resolved.origin["procedures"] == "prefetch"
    [req] = stub.requests
    assert req.query == "pg=2"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"


def test_prefetched_next_link_without_token(stub: StubFhirServer) -> None:
    stub.route("Procedure?pg=2", searchset([proc(3)]))
    first = searchset([proc(1)], f"{stub.base_url}/Procedure?pg=2")
    req = hook_request(stub, token=None, prefetch={"procedures": first})
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(req, [PROCEDURES], fast(stub))
    optional = PrefetchTemplate("procedures", PROC_TEMPLATE, required=False)
    resolved = resolve_prefetch(req, [optional], fast(stub))
    assert ids(resolved, "procedures") == ["p1"]
    assert resolved.origin["procedures"] == "prefetch"
    assert resolved.partial == frozenset({"procedures"})
    assert stub.requests == []


def test_prefetched_next_link_failure_on_optional_key_keeps_first_page(
    stub: StubFhirServer,
) -> None:
    stub.route("Procedure?pg=2", OUTCOME, status=500)
    first = searchset([proc(1)], f"{stub.base_url}/Procedure?pg=2")
    optional = PrefetchTemplate("procedures", PROC_TEMPLATE, required=False)
    resolved = resolve_prefetch(
        hook_request(stub, prefetch={"procedures": first}), [optional], fast(stub)
    )
    assert ids(resolved, "procedures") == ["p1"]
    assert resolved.partial == frozenset({"procedures"})
    assert len(stub.requests) == 1


def test_next_link_to_another_port_fails_and_sends_nothing_there(
    stub: StubFhirServer, other: StubFhirServer
) -> None:
    other.route("Procedure", searchset([proc(2)]))
    stub.route("Procedure", searchset([proc(1)], f"{other.base_url}/Procedure?pg=2"))
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    optional = PrefetchTemplate("procedures", PROC_TEMPLATE, required=False)
    resolved = resolve_prefetch(hook_request(stub), [optional], fast(stub))
    assert resolved.origin["procedures"] == "unavailable"
    assert other.requests == []


def test_redirect_is_not_followed(stub: StubFhirServer, other: StubFhirServer) -> None:
    other.route("Procedure", searchset([proc(1)]))
    stub.route("Procedure", None, status=307, headers={"Location": f"{other.base_url}/Procedure"})
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    assert len(stub.requests) == 1
    assert other.requests == []


# -- rule 4: parallel, one deadline, failures -----------------------------------------------------


def test_missing_keys_are_fetched_in_parallel(stub: StubFhirServer) -> None:
    stub.route("Procedure", searchset([proc(1)]), delay_s=0.3)
    stub.route("Observation", searchset([{"resourceType": "Observation", "id": "o1"}]), delay_s=0.3)
    stub.route(f"Patient/{PATIENT_ID}", PATIENT, delay_s=0.3)
    started = time.monotonic()
    resolved = resolve_prefetch(
        hook_request(stub), [PROCEDURES, OBS_OPTIONAL, PATIENT_READ], local(stub, deadline_s=2.0)
    )
    elapsed = time.monotonic() - started
    assert elapsed < 0.75, f"3 x 0.3 s fetches took {elapsed:.2f} s: not parallel"
    assert dict(resolved.origin) == {
        "procedures": "fetched",
        "temperature": "fetched",
        "patient": "fetched",
    }
    assert len(stub.requests) == 3


def test_deadline_holds_for_a_hanging_server(stub: StubFhirServer) -> None:
    stub.route("Procedure", searchset([proc(1)]), delay_s=3.0)
    settings = local(stub, deadline_s=0.5, read_timeout_s=5.0)
    started = time.monotonic()
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], settings)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 * 1.1 + 0.2, f"deadline 0.5 s, took {elapsed:.2f} s"


def test_deadline_on_optional_key_returns_promptly_as_unavailable(stub: StubFhirServer) -> None:
    stub.route("Observation", searchset([]), delay_s=3.0)
    route_procedures(stub, [proc(1)])
    settings = local(stub, deadline_s=0.4, read_timeout_s=5.0)
    started = time.monotonic()
    resolved = resolve_prefetch(hook_request(stub), [PROCEDURES, OBS_OPTIONAL], settings)
    assert time.monotonic() - started < 0.4 * 1.1 + 0.2
    assert dict(resolved.origin) == {"procedures": "fetched", "temperature": "unavailable"}


def test_one_deadline_covers_all_pages(stub: StubFhirServer) -> None:
    stub.route("Procedure", searchset([proc(1)], f"{stub.base_url}/Procedure?pg=2"), delay_s=0.25)
    stub.route(
        "Procedure?pg=2", searchset([proc(2)], f"{stub.base_url}/Procedure?pg=3"), delay_s=0.25
    )
    stub.route("Procedure?pg=3", searchset([proc(3)]), delay_s=0.25)
    settings = local(stub, deadline_s=0.6, read_timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], settings)
    assert time.monotonic() - started < 0.6 * 1.1 + 0.2


@pytest.mark.parametrize("status", [401, 403, 500])
def test_fhir_server_errors_are_412_for_required(stub: StubFhirServer, status: int) -> None:
    stub.route("Procedure", OUTCOME, status=status)
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    assert info.value.status == 412
    assert info.value.diagnostics is not None and str(status) in info.value.diagnostics


@pytest.mark.parametrize(
    "body",
    [
        b"<html>login</html>",
        b'{"not": "fhir"}',
        b'{"resourceType": "OperationOutcome"}',
        b'{"resourceType": "Patient", "id": "x"}',
    ],
    ids=["html", "not-fhir", "operation-outcome", "search-returns-non-bundle"],
)
def test_bad_bodies_fail_required_and_optional_keys(stub: StubFhirServer, body: bytes) -> None:
    stub.route("Procedure", body)
    stub.route("Observation", body)
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    resolved = resolve_prefetch(hook_request(stub), [OBS_OPTIONAL], fast(stub))
    assert resolved.origin["temperature"] == "unavailable"


def test_oversized_response_fails(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(i) for i in range(200)], omit_length=True)
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], local(stub, max_response_bytes=5_000))


def test_optional_failure_does_not_fail_the_call(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(1)])
    stub.route("Observation", OUTCOME, status=503)
    resolved = resolve_prefetch(hook_request(stub), [PROCEDURES, OBS_OPTIONAL], fast(stub))
    assert resolved.origin["procedures"] == "fetched"
    assert resolved.unavailable == ("temperature",)


def test_412_message_names_the_key_only(
    stub: StubFhirServer, caplog: pytest.LogCaptureFixture
) -> None:
    stub.route("Procedure", OUTCOME, status=401)
    caplog.set_level(logging.DEBUG, logger="service")
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    err = info.value
    assert err.message == "required data 'procedures' could not be obtained from the FHIR server"
    leaked = [TOKEN, PATIENT_ID, "patient=", "backend down"]
    for text in (err.message, err.diagnostics or "", str(err), caplog.text):
        assert not any(s in text for s in leaked), text
    # No chained exception that a traceback logger could print.
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_unfillable_template_is_412_for_required_and_unavailable_for_optional(
    stub: StubFhirServer,
) -> None:
    enc = PrefetchTemplate("encounter", "Encounter/{{context.encounterId}}", required=True)
    with pytest.raises(PrefetchUnavailable, match="'encounter'"):
        resolve_prefetch(hook_request(stub), [enc], fast(stub))
    optional = PrefetchTemplate("encounter", enc.template, required=False)
    resolved = resolve_prefetch(hook_request(stub), [optional], fast(stub))
    assert resolved.origin["encounter"] == "unavailable"
    assert stub.requests == []


# -- token expiry -------------------------------------------------------------------------------


@pytest.mark.parametrize("expires_in", [0, -5, "300", None, True])
def test_expired_or_invalid_token_is_never_used(stub: StubFhirServer, expires_in: Any) -> None:
    route_procedures(stub, [proc(1)])
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub, expires_in=expires_in), [PROCEDURES], fast(stub))
    resolved = resolve_prefetch(
        hook_request(stub, expires_in=expires_in), [OBS_OPTIONAL], fast(stub)
    )
    assert resolved.origin["temperature"] == "unavailable"
    assert stub.requests == []


def test_token_expiry_caps_the_deadline(stub: StubFhirServer) -> None:
    stub.route("Procedure", searchset([proc(1)]), delay_s=1.0)
    received_at = time.monotonic() - 0.8  # the token (expires_in=1) has 0.2 s left
    started = time.monotonic()
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(
            hook_request(stub, expires_in=1),
            [PROCEDURES],
            local(stub, deadline_s=5.0),
            received_at=received_at,
        )
    assert time.monotonic() - started < 0.2 * 1.1 + 0.2


def test_received_at_must_be_monotonic_time(stub: StubFhirServer) -> None:
    with pytest.raises(ValueError, match="monotonic"):
        resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub), received_at=time.time())


# -- rule 5 and page_size ---------------------------------------------------------------------


def test_read_returns_the_single_resource(stub: StubFhirServer) -> None:
    stub.route(f"Patient/{PATIENT_ID}", PATIENT)
    resolved = resolve_prefetch(hook_request(stub), [PATIENT_READ], fast(stub))
    assert resolved.resources["patient"] == (PATIENT,)
    assert resolved.origin["patient"] == "fetched"


def test_read_404_is_no_data(stub: StubFhirServer) -> None:
    resolved = resolve_prefetch(hook_request(stub), [PATIENT_READ], fast(stub))
    assert resolved.resources["patient"] == ()
    assert resolved.origin["patient"] == "none"
    assert stub.requests[0].path == f"/fhir/Patient/{PATIENT_ID}"


def test_page_size_appends_count_to_searches_only(stub: StubFhirServer) -> None:
    route_procedures(stub, [])
    stub.route("Observation", searchset([]))
    stub.route(f"Patient/{PATIENT_ID}", PATIENT)
    with_count = PrefetchTemplate(
        "obs", "Observation?patient={{context.patientId}}&_count=3", required=True
    )
    bare = PrefetchTemplate("all", "Observation", required=True)
    settings = local(stub, page_size=50)
    resolve_prefetch(hook_request(stub), [PROCEDURES, with_count, PATIENT_READ, bare], settings)
    by_path: dict[str, list[dict[str, list[str]]]] = {}
    for r in stub.requests:
        by_path.setdefault(r.path, []).append(r.params)
    assert by_path["/fhir/Procedure"][0]["_count"] == ["50"]
    assert sorted(p.get("_count", [""])[0] for p in by_path["/fhir/Observation"]) == ["3", "50"]
    assert by_path[f"/fhir/Patient/{PATIENT_ID}"] == [{}]


def test_no_page_size_leaves_query_alone(stub: StubFhirServer) -> None:
    route_procedures(stub, [])
    resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub))
    assert "_count" not in stub.requests[0].params


def test_duplicate_template_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        resolve_prefetch(hook_request(None), [PROCEDURES, PROCEDURES], FAST)


def test_every_template_key_is_reported(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(1)])
    req = hook_request(stub, prefetch={"patient": PATIENT, "unrelated": PATIENT})
    resolved = resolve_prefetch(req, [PATIENT_READ, PROCEDURES, OBS_OPTIONAL], fast(stub))
    assert list(resolved.resources) == ["patient", "procedures", "temperature"]
    assert list(resolved.origin) == ["patient", "procedures", "temperature"]


# -- outbound policy (SSRF) ---------------------------------------------------------------------


def test_server_off_the_allowlist_is_412_and_nothing_is_sent(
    stub: StubFhirServer, other: StubFhirServer
) -> None:
    route_procedures(stub, [proc(1)])
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(stub), [PROCEDURES, OBS_OPTIONAL], fast(other))
    assert info.value.status == 412
    assert info.value.message == NOT_ALLOWED_MESSAGE
    assert info.value.diagnostics == "not_allowlisted"
    assert stub.requests == [] and other.requests == []


def test_refused_server_makes_optional_keys_unavailable_without_requests(
    stub: StubFhirServer, other: StubFhirServer
) -> None:
    route_procedures(stub, [proc(1)])
    req = hook_request(stub, prefetch={"procedures": searchset([proc(1)])})
    resolved = resolve_prefetch(req, [PROCEDURES, OBS_OPTIONAL], fast(other))
    assert dict(resolved.origin) == {"procedures": "prefetch", "temperature": "unavailable"}
    assert stub.requests == []


def test_refused_server_and_a_prefetched_next_link(
    stub: StubFhirServer, other: StubFhirServer
) -> None:
    stub.route("Procedure?pg=2", searchset([proc(2)]))
    first = searchset([proc(1)], f"{stub.base_url}/Procedure?pg=2")
    req = hook_request(stub, prefetch={"procedures": first})
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(req, [PROCEDURES], fast(other))
    assert info.value.message == NOT_ALLOWED_MESSAGE
    optional = PrefetchTemplate("procedures", PROC_TEMPLATE, required=False)
    resolved = resolve_prefetch(req, [optional], fast(other))
    assert ids(resolved, "procedures") == ["p1"]
    assert resolved.partial == frozenset({"procedures"})
    assert stub.requests == []


def test_production_default_refuses_every_fetch(stub: StubFhirServer) -> None:
    """FetchSettings() without a policy (as built by code not yet configured) fails closed."""
    route_procedures(stub, [proc(1)])
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(stub), [PROCEDURES], FetchSettings())
    assert info.value.diagnostics == "not_https"  # the stub speaks plain http
    assert stub.requests == []


def test_production_default_refuses_https_servers_without_dns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a refused server must not even be looked up")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    req = {**hook_request(None), "fhirServer": "https://ehr.example.org/fhir"}
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(req, [PROCEDURES], FetchSettings())
    assert info.value.message == NOT_ALLOWED_MESSAGE
    assert info.value.diagnostics == "not_allowlisted"


def test_fully_prefetched_call_needs_no_policy_check_and_no_dns(
    stub: StubFhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no DNS lookup expected")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    req = hook_request(stub, prefetch={"procedures": searchset([proc(1)]), "patient": PATIENT})
    resolved = resolve_prefetch(req, [PROCEDURES, PATIENT_READ], FAST)
    assert dict(resolved.origin) == {"procedures": "prefetch", "patient": "prefetch"}
    assert stub.requests == []


def test_http_server_is_refused_when_https_is_required(stub: StubFhirServer) -> None:
    policy = OutboundPolicy(allowed_servers=(stub.base_url,), allow_private_addresses=True)
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(stub), [PROCEDURES], FetchSettings(policy=policy))
    assert info.value.diagnostics == "not_https"
    assert stub.requests == []


def test_extra_allowed_adds_servers_for_one_call(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(1)])
    nothing = OutboundPolicy(require_https=False, allow_private_addresses=True)
    settings = FetchSettings(deadline_s=2.0, policy=nothing)
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub), [PROCEDURES], settings)
    assert stub.requests == []
    resolved = resolve_prefetch(
        hook_request(stub), [PROCEDURES], settings, extra_allowed=(stub.base_url,)
    )
    assert ids(resolved, "procedures") == ["p1"]
    assert len(stub.requests) == 1


def test_policy_is_checked_once_per_call(
    stub: StubFhirServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    route_procedures(stub, [proc(1)])
    stub.route("Observation", searchset([]))
    stub.route(f"Patient/{PATIENT_ID}", PATIENT)
    calls: list[str] = []
    real_check = OutboundPolicy.check

    def counting(self: OutboundPolicy, url: str, *, extra_allowed: tuple[str, ...] = ()) -> None:
        calls.append(url)
        real_check(self, url, extra_allowed=extra_allowed)

    monkeypatch.setattr(OutboundPolicy, "check", counting)
    resolve_prefetch(hook_request(stub), [PROCEDURES, OBS_OPTIONAL, PATIENT_READ], fast(stub))
    assert calls == [stub.base_url]
    assert len(stub.requests) == 3


def test_same_origin_next_link_outside_the_allowed_base_is_not_fetched(
    stub: StubFhirServer,
) -> None:
    stub.route("/admin/export", searchset([proc(2)]))
    first = searchset([proc(1)], f"{stub.origin}/admin/export")
    req = hook_request(stub, prefetch={"procedures": first})
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(req, [PROCEDURES], fast(stub))
    assert info.value.diagnostics is not None and "not_allowlisted" in info.value.diagnostics
    assert stub.requests == []


def test_caller_session_must_be_guarded(stub: StubFhirServer) -> None:
    route_procedures(stub, [proc(1)])
    plain = requests.Session()
    with pytest.raises(ValueError, match="new_session"):
        resolve_prefetch(hook_request(stub), [PROCEDURES], FAST, session=plain)
    plain.close()
    production_like = OutboundPolicy(allowed_servers=(stub.base_url,), require_https=False)
    guarded = new_session(production_like)
    settings = FetchSettings(deadline_s=2.0, policy=production_like)
    with pytest.raises(PrefetchUnavailable) as info:  # accepted, and 127.0.0.1 is private
        resolve_prefetch(hook_request(stub), [PROCEDURES], settings, session=guarded)
    assert info.value.diagnostics == "private_address"
    guarded.close()
    shared = new_session(local_policy(stub))
    resolved = resolve_prefetch(hook_request(stub), [PROCEDURES], fast(stub), session=shared)
    shared.close()
    assert ids(resolved, "procedures") == ["p1"]
    assert len(stub.requests) == 1


def test_a_task_without_a_server_or_a_query_fails_as_a_fetch_not_by_assert() -> None:
    """The invariants of a fetch task are checked in code, which ``python -O`` keeps."""
    import threading

    from service.fhir import prefetch as p
    from service.fhir.client import FhirFetchError

    settings = p.FetchSettings(
        policy=OutboundPolicy(
            allowed_servers=("http://127.0.0.1:9",),
            require_https=False,
            allow_private_addresses=True,
        )
    )
    no_server = p._Access(server=None, token=None, deadline=time.monotonic() + 5, reason="none")
    with pytest.raises(FhirFetchError, match="no fhirServer"):
        p._fetch(p._Task("k", False, ref="Condition"), no_server, settings, None, threading.Event())
    server = p._Access(
        server="http://127.0.0.1:9", token=None, deadline=time.monotonic() + 5, reason=""
    )
    with pytest.raises(FhirFetchError, match="neither a first page nor a query"):
        p._fetch(p._Task("k", False), server, settings, None, threading.Event())
