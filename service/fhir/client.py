"""HTTP mechanics for reading from a CDS client's FHIR server (CDS Hooks 2.0 §FHIR Resource Access).

Why this is its own module: the FHIR server is someone else's system reached with a bearer token
that is "extremely sensitive, transient" (https://cds-hooks.hl7.org/2.0/#fhir-resource-access).
Every safety property of a single request lives here, in one place, so prefetch logic cannot
forget one of them:

* every URL must pass the hospital's :class:`~service.fhir.outbound.OutboundPolicy` (allowlist,
  https, no userinfo) and the connection goes through the guarded transport of
  :mod:`service.fhir.outbound`, which only connects to public addresses it has just checked
  (SSRF and DNS-rebinding safety);
* the token is sent only to the ``fhirServer`` origin (scheme, host and port), including on
  ``Bundle.link[next]`` pages, and never to a redirect target (redirects are not followed); it
  lives in the client object for one hook invocation, goes into per-request headers only (never
  onto a possibly shared session) and is dropped on :meth:`FhirClient.close`;
* every call has (connect, read) timeouts clipped to one absolute deadline, so a slow server
  cannot hold a hook call past its budget;
* responses are streamed and cut off at a size cap, so a huge or hostile body cannot exhaust
  memory;
* anything that is not a 2xx FHIR JSON resource (or is an ``OperationOutcome``) is a
  :class:`~service.errors.FhirFetchError`, whose message never contains the token, the URL query
  (it holds patient ids) or the response body.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests

from service.errors import FhirFetchError
from service.fhir.outbound import (
    PRIVATE_ADDRESS,
    OutboundPolicy,
    OutboundRefused,
    blocked_by_transport,
    new_session,
    session_is_guarded,
)

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
_CHUNK_BYTES = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FhirStatusError(FhirFetchError):
    """The FHIR server answered non-2xx; the status is kept so a read's 404 can mean "no data"."""

    def __init__(self, status: int) -> None:
        super().__init__(f"FHIR server answered HTTP {status}")
        self.status = status


class FhirDeadlineExceeded(FhirFetchError):
    """The overall deadline passed before or during a request."""


class FhirRefused(FhirFetchError):
    """The outbound policy (or the guarded transport) refused a URL; nothing was sent.

    ``reason`` is an :mod:`service.fhir.outbound` reason such as ``"not_allowlisted"``. A
    :class:`FhirFetchError` so that prefetch treats it like any failed query of that key.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"FHIR URL refused by the outbound policy ({reason})")
        self.reason = reason


@dataclass(frozen=True)
class SearchResult:
    """The pages of one search; ``complete`` is False if a ``next`` link remained at the cap."""

    bundles: tuple[dict[str, Any], ...]
    complete: bool


def origin_of(url: str) -> tuple[str, str, int]:
    """Return (scheme, host, port) with default ports filled in; FhirFetchError if not http(s).

    Why: the token may only travel to the exact origin the CDS client named in ``fhirServer``.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise FhirFetchError("malformed FHIR URL") from None
    if scheme not in _DEFAULT_PORTS or not host:
        raise FhirFetchError("FHIR URL is not an absolute http(s) URL")
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def next_link(bundle: dict[str, Any]) -> str | None:
    """The ``Bundle.link`` URL with relation ``next``, if any."""
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None


class FhirClient:
    """A read-only FHIR R4 client bound to one ``fhirServer``, one token and one deadline.

    Create one per hook invocation: the token must not outlive it. ``deadline`` is an absolute
    ``time.monotonic()`` value; once it has passed (or ``cancel`` is set, e.g. because the hook
    call already failed) no further request is started. ``policy`` is required so that no caller
    can forget it; ``extra_allowed`` is the per-issuer allowlist. When no ``session`` is given the
    client owns a guarded one (:func:`~service.fhir.outbound.new_session`) and closes it in
    :meth:`close`; a given session must be guarded too (``ValueError`` otherwise), because a plain
    ``requests.Session`` would connect wherever DNS points.

    The base URL is checked against the policy without DNS: the caller (prefetch) has already run
    the full :meth:`OutboundPolicy.check`, and the transport re-checks addresses when it connects.
    """

    def __init__(
        self,
        base_url: str,
        *,
        policy: OutboundPolicy,
        extra_allowed: tuple[str, ...] = (),
        access_token: str | None = None,
        session: requests.Session | None = None,
        connect_timeout_s: float = 1.0,
        read_timeout_s: float = 2.0,
        max_response_bytes: int = 20_000_000,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = origin_of(self.base_url)
        self._policy = policy
        self._extra_allowed = extra_allowed
        self._check_policy(self.base_url)
        if session is not None and not session_is_guarded(session, policy):
            raise ValueError("the session must come from service.fhir.outbound.new_session()")
        self._token = access_token
        self._own_session = session is None
        self._session = session if session is not None else new_session(policy)
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_bytes = max_response_bytes
        self._deadline = deadline
        self._cancel = cancel

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Forget the token and close the session if this client created it."""
        self._token = None
        if self._own_session:
            self._session.close()

    # -- URL handling -------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """Turn a relative FHIR path or an absolute URL into an absolute URL on ``fhirServer``.

        Absolute URLs (e.g. ``next`` links) must share the server's origin; otherwise the request
        is refused so the token never reaches another host. Every URL must also pass the outbound
        policy, so a same-origin ``next`` link outside the allowed base path is refused as well.
        """
        if urlsplit(ref).scheme:
            url = ref
        elif ref.startswith("/"):
            url = urljoin(self.base_url + "/", ref)
        else:
            url = f"{self.base_url}/{ref}"
        if origin_of(url) != self._origin:
            raise FhirFetchError("FHIR URL is not on the fhirServer origin; token not sent")
        self._check_policy(url)
        return url

    def _check_policy(self, url: str) -> None:
        try:
            self._policy.check_request(url, extra_allowed=self._extra_allowed)
        except OutboundRefused as err:
            raise FhirRefused(err.reason) from None

    def _timeouts(self) -> tuple[float, float]:
        if self._cancel is not None and self._cancel.is_set():
            raise FhirDeadlineExceeded("the caller no longer needs this FHIR data")
        if self._deadline is None:
            return self._connect_timeout_s, self._read_timeout_s
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise FhirDeadlineExceeded("deadline passed before the FHIR request")
        return min(self._connect_timeout_s, remaining), min(self._read_timeout_s, remaining)

    # -- requests -----------------------------------------------------------------------------

    def get(self, ref: str) -> dict[str, Any]:
        """GET one FHIR resource as a dict; every failure is a :class:`FhirFetchError`."""
        url = self.resolve(ref)
        timeout = self._timeouts()
        headers = {"Accept": FHIR_JSON}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        started = time.monotonic()
        try:
            resp = self._session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            )
        except requests.Timeout:
            raise FhirDeadlineExceeded("FHIR request timed out") from None
        except requests.RequestException as exc:
            if blocked_by_transport(exc):
                raise FhirRefused(PRIVATE_ADDRESS) from None
            raise FhirFetchError(f"FHIR request failed ({type(exc).__name__})") from None
        try:
            log.debug(
                "FHIR GET -> HTTP %d after %.0f ms",
                resp.status_code,
                (time.monotonic() - started) * 1000,
            )
            if not 200 <= resp.status_code < 300:
                raise FhirStatusError(resp.status_code)
            raw = self._read_capped(resp)
        finally:
            resp.close()
        return _parse_resource(raw)

    def _read_capped(self, resp: requests.Response) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise FhirFetchError(f"FHIR response larger than {self._max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.iter_content(_CHUNK_BYTES):
                size += len(chunk)
                if size > self._max_bytes:
                    raise FhirFetchError(f"FHIR response larger than {self._max_bytes} bytes")
                if self._deadline is not None and time.monotonic() > self._deadline:
                    raise FhirDeadlineExceeded("deadline passed while reading the FHIR response")
                chunks.append(chunk)
        except requests.Timeout:
            raise FhirDeadlineExceeded("FHIR response timed out") from None
        except requests.RequestException as exc:
            name = type(exc).__name__
            raise FhirFetchError(f"reading the FHIR response failed ({name})") from None
        return b"".join(chunks)

    def read(self, ref: str) -> dict[str, Any] | None:
        """FHIR read: the resource, or None when the server says it does not exist (404/410)."""
        try:
            return self.get(ref)
        except FhirStatusError as err:
            if err.status in (404, 410):
                return None
            raise

    def search(self, ref: str, *, max_pages: int) -> SearchResult:
        """FHIR search: the first Bundle plus ``next`` pages, at most ``max_pages`` pages in all."""
        first = self.get(ref)
        if first.get("resourceType") != "Bundle":
            raise FhirFetchError("FHIR search did not return a Bundle")
        return self.follow(first, max_pages=max_pages)

    def follow(self, first: dict[str, Any], *, max_pages: int) -> SearchResult:
        """Follow ``Bundle.link[next]`` from a Bundle in hand, up to ``max_pages`` pages in all.

        Why a cap: a server that keeps returning ``next`` (or a loop) must not keep us busy;
        the caller decides what an incomplete result means via ``SearchResult.complete``.
        """
        pages = [first]
        seen: set[str] = set()
        current = first
        while True:
            url = next_link(current)
            if url is None:
                return SearchResult(tuple(pages), complete=True)
            if len(pages) >= max_pages:
                return SearchResult(tuple(pages), complete=False)
            if url in seen:
                raise FhirFetchError("FHIR paging loops back to a page already fetched")
            seen.add(url)
            page = self.get(url)
            if page.get("resourceType") != "Bundle":
                raise FhirFetchError("FHIR next page is not a Bundle")
            pages.append(page)
            current = page


def _parse_resource(raw: bytes) -> dict[str, Any]:
    """Parse a body as a FHIR JSON resource; an OperationOutcome means "no data given"."""
    try:
        # orjson also refuses nesting deeper than 1,024 levels, so a hostile server cannot
        # drive the decoder into Python recursion.
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirFetchError("FHIR response is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirFetchError("FHIR response is not a FHIR resource")
    if body["resourceType"] == "OperationOutcome":
        raise FhirFetchError("FHIR server returned an OperationOutcome instead of data")
    return body
