"""CDS Hooks 2.0 prefetch resolution: use what the client sent, fetch what is missing, else 412.

Spec: https://cds-hooks.hl7.org/2.0/#providing-fhir-resources-to-a-cds-service. The client may
satisfy "zero, some, or all" prefetch templates, so the service must check each key and
"programmatically retrieve any additional necessary data", answering 412 when required data can
be neither prefetched nor fetched. Why this module exists: every hook call goes through it, so it
encodes the spec's distinctions exactly once:

* key present with data -> use it (dropping OperationOutcomes, following ``next`` pages);
* key present as ``null`` or an empty Bundle -> the client says "no data": never refetch;
* key absent, or only OperationOutcomes -> fetch from ``fhirServer`` with the bearer token.

Missing keys are fetched in parallel under one deadline (CDS services "SHOULD respond quickly (on
the order of 500 ms)"), and never after the token's ``expires_in`` has elapsed. The HTTP details
(timeouts, size cap, same-origin paging, no redirects) live in :mod:`service.fhir.client`.

SSRF: ``fhirServer`` comes from the caller, so before the first fetch (a missing key or a
prefetched Bundle's ``next`` page) it is checked once against ``FetchSettings.policy`` plus the
per-issuer ``extra_allowed`` list (:mod:`service.fhir.outbound`). A refused server means no
request at all for any key: 412 for required keys, ``"unavailable"`` for optional ones. The
check runs only when a fetch is needed, so fully prefetched calls never trigger a DNS lookup.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote

import requests

from service.errors import FhirFetchError, PrefetchUnavailable
from service.fhir import events
from service.fhir.client import (
    FhirClient,
    FhirDeadlineExceeded,
    FhirRefused,
    FhirStatusError,
    SearchResult,
    next_link,
)
from service.fhir.outbound import OutboundPolicy, OutboundRefused, session_is_guarded

log = logging.getLogger(__name__)

_MAX_WORKERS = 8
_TOKEN = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}

ORIGIN_PREFETCH = "prefetch"
ORIGIN_FETCHED = "fetched"
ORIGIN_NONE = "none"
ORIGIN_UNAVAILABLE = "unavailable"

NOT_ALLOWED_MESSAGE = "the fhirServer is not an allowed FHIR server"
# Fail closed: until the deployment lists its FHIR servers, no fetch may leave the service.
PRODUCTION_DEFAULT_POLICY = OutboundPolicy(
    allowed_servers=(), require_https=True, allow_private_addresses=False
)

Resources = tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PrefetchTemplate:
    """One prefetch key as advertised in discovery, and whether the service can work without it."""

    key: str
    template: str
    required: bool


@dataclass(frozen=True)
class FetchSettings:
    """Limits for fallback fetches, so a slow FHIR server cannot stall a hook call.

    ``policy`` says which FHIR servers may be contacted at all. Its default allows none (and only
    https, only public addresses), so settings built without one fail closed: every fetch is
    refused until the deployment configures its FHIR servers.
    """

    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    deadline_s: float = 1.5
    max_pages: int = 10
    max_response_bytes: int = 20_000_000
    page_size: int | None = None
    allow_unauthenticated: bool = False
    policy: OutboundPolicy = PRODUCTION_DEFAULT_POLICY


@dataclass(frozen=True)
class ResolvedPrefetch:
    """The data for every template key, and where it came from.

    Every template key appears in ``resources`` (possibly as an empty tuple) and in ``origin``:
    ``"prefetch"``, ``"fetched"``, ``"none"`` (the client or server says there is no data) or
    ``"unavailable"`` (an optional key we could not get). ``partial`` holds optional keys whose
    data is known to be incomplete (a ``next`` page could not be followed or the page cap was hit),
    so downstream logic can say so instead of implying "nothing found".
    """

    resources: Mapping[str, Resources]
    origin: Mapping[str, str]
    partial: frozenset[str] = field(default_factory=frozenset)

    @property
    def unavailable(self) -> tuple[str, ...]:
        """Optional keys whose data could not be obtained."""
        return tuple(k for k, o in self.origin.items() if o == ORIGIN_UNAVAILABLE)


# -- template rendering ---------------------------------------------------------------------------


def _encode_value(value: str) -> str | None:
    if value in ("", ".", ".."):
        return None  # would change the URL's meaning (empty or dot path segments)
    return quote(value, safe="")


def _token_value(name: str, context: Mapping[str, Any]) -> str | None:
    if name.startswith("context."):
        field_name = name[len("context.") :]
        if not field_name or "." in field_name:
            return None  # only root-level context fields are prefetch tokens
        value = context.get(field_name)
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str | int | float):
            return None  # missing, null, object or array: not a primitive
        text = str(value)
        if field_name == "userId" and "/" in text:
            # userId is already a relative reference ("Practitioner/abc"); keep it a path.
            parts = [_encode_value(p) for p in text.split("/")]
            return None if None in parts else "/".join(p for p in parts if p is not None)
        return _encode_value(text)
    if name in _USER_TOKENS:
        user = context.get("userId")
        if not isinstance(user, str):
            return None
        rtype, _, rid = user.partition("/")
        if rtype != _USER_TOKENS[name] or "/" in rid:
            return None
        return _encode_value(rid)
    return None


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """Fill a prefetch template's ``{{...}}`` tokens from the hook context, URL-encoding values.

    Why encode: context values come from the caller, and an unencoded ``&`` or ``/`` would change
    which resources are queried. Tokens allowed by CDS Hooks 2.0: ``{{context.<field>}}`` for a
    root-level primitive field, and ``{{userPractitionerId}}``, ``{{userPractitionerRoleId}}``,
    ``{{userPatientId}}``, ``{{userRelatedPersonId}}`` (the id part of ``context.userId`` when its
    type matches). A token that cannot be filled raises :class:`PrefetchUnavailable`; the caller
    decides whether that is fatal (required key) or not (optional key).
    """
    unfilled: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        value = _token_value(match.group(1), context)
        if value is None:
            unfilled.append(match.group(1))
            return ""
        return value

    rendered = _TOKEN.sub(substitute, template)
    if unfilled:
        raise PrefetchUnavailable(
            f"prefetch token {{{{{unfilled[0]}}}}} cannot be filled from the hook context"
        )
    if "{{" in rendered or "}}" in rendered:
        raise PrefetchUnavailable("prefetch template has an unterminated token")
    return rendered


def _is_read(rendered: str) -> bool:
    """``Type/id`` with no query is a FHIR read; everything else is a search returning a Bundle."""
    if "?" in rendered:
        return False
    return len(rendered.strip("/").split("/")) == 2


def _with_page_size(rendered: str, page_size: int | None) -> str:
    if page_size is None or _is_read(rendered):
        return rendered
    _, _, query = rendered.partition("?")
    if any(name == "_count" for name, _ in parse_qsl(query, keep_blank_values=True)):
        return rendered
    if "?" not in rendered:
        sep = "?"
    elif rendered.endswith(("?", "&")):
        sep = ""
    else:
        sep = "&"
    return f"{rendered}{sep}_count={page_size}"


# -- reading Bundles ------------------------------------------------------------------------------


def _is_outcome(resource: Any) -> bool:
    return isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome"


def bundle_resources(bundle: Mapping[str, Any]) -> Resources:
    """The entry resources of a Bundle without OperationOutcomes (``search.mode == "outcome"``)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return ()
    kept: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and not _is_outcome(resource):
            kept.append(resource)
    return tuple(kept)


def _pages_resources(result: SearchResult) -> Resources:
    out: list[dict[str, Any]] = []
    for page in result.bundles:
        out.extend(bundle_resources(page))
    return tuple(out)


# -- resolution -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Access:
    """Whether and how this call may reach ``fhirServer``."""

    server: str | None
    token: str | None
    deadline: float
    reason: str  # why not, when server is None
    extra_allowed: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return self.server is not None


class _Gate:
    """Whether fetching is possible: access (server, token) and the outbound policy.

    The policy check runs lazily, at most once per call, the first time a key needs a fetch.
    It may resolve the host name, and ``getaddrinfo`` has no timeout of its own (a stuck resolver
    can take many seconds), so it runs in a helper thread and is given only the call's remaining
    deadline; running out of time means the server cannot be used, like any unreachable server.
    """

    def __init__(self, access: _Access, policy: OutboundPolicy) -> None:
        self.access = access
        self._policy = policy
        self._checked = False
        self.refused: str | None = None  # an OutboundRefused reason
        self.unusable: str | None = None  # any other reason the check could not pass

    def open(self) -> bool:
        if self.access.server is None:
            return False
        if not self._checked:
            self._checked = True
            self._check(self.access.server)
        return self.refused is None and self.unusable is None

    def _check(self, server: str) -> None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fhir-policy")
        try:
            future = executor.submit(
                self._policy.check, server, extra_allowed=self.access.extra_allowed
            )
            remaining = max(0.0, self.access.deadline - time.monotonic())
            future.result(timeout=remaining)
        except OutboundRefused as err:
            self.refused = err.reason
            log.warning("fhirServer refused by the outbound policy (%s); not fetching", err.reason)
        except FutureTimeout:
            self.unusable = "deadline exceeded while checking the fhirServer address"
            log.warning("prefetch: %s", self.unusable)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def failure(self, key: str, situation: str) -> PrefetchUnavailable:
        """The 412 for a required key that needed a fetch which cannot happen."""
        if self.refused is not None:
            return PrefetchUnavailable(NOT_ALLOWED_MESSAGE, diagnostics=self.refused)
        if self.unusable is not None:
            return _unavailable(key, f"{situation}{self.unusable}")
        return _unavailable(key, f"{situation}{self.access.reason}")


@dataclass(frozen=True)
class _Task:
    key: str
    required: bool
    ref: str | None = None  # rendered template to fetch
    first: dict[str, Any] | None = None  # prefetched Bundle whose next pages must be followed


@dataclass(frozen=True)
class _Result:
    resources: Resources
    complete: bool
    found: bool = True  # False: a read answered 404/410


def _access(
    request: Mapping[str, Any],
    settings: FetchSettings,
    start: float,
    received_at: float,
    extra_allowed: tuple[str, ...],
) -> _Access:
    deadline = start + settings.deadline_s
    server = request.get("fhirServer")
    if not isinstance(server, str) or not server:
        return _Access(None, None, deadline, "no fhirServer in the request")
    auth = request.get("fhirAuthorization")
    if auth is None:
        if settings.allow_unauthenticated:
            return _Access(server, None, deadline, "", extra_allowed)
        return _Access(None, None, deadline, "no fhirAuthorization in the request")
    if not isinstance(auth, Mapping):
        return _Access(None, None, deadline, "fhirAuthorization is not an object")
    token = auth.get("access_token")
    if not isinstance(token, str) or not token:
        return _Access(None, None, deadline, "fhirAuthorization has no access_token")
    expires_in = auth.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in < 0:
        return _Access(None, None, deadline, "fhirAuthorization has no valid expires_in")
    token_deadline = received_at + float(expires_in)
    if token_deadline <= time.monotonic():
        return _Access(None, None, deadline, "the fhirAuthorization token has expired")
    return _Access(server, token, min(deadline, token_deadline), "", extra_allowed)


def _unavailable(key: str, diagnostics: str) -> PrefetchUnavailable:
    return PrefetchUnavailable(
        f"required data '{key}' could not be obtained from the FHIR server",
        diagnostics=diagnostics,
    )


def _run_task(
    task: _Task,
    access: _Access,
    settings: FetchSettings,
    session: requests.Session | None,
    cancel: threading.Event,
) -> _Result:
    started = time.monotonic()
    try:
        out = _fetch(task, access, settings, session, cancel)
    except FhirFetchError as err:
        events.fetched(task.key, time.monotonic() - started, _failure_kind(err))
        raise
    events.fetched(task.key, time.monotonic() - started)
    log.debug(
        "prefetch key %s: %d resources in %.0f ms",
        task.key,
        len(out.resources),
        (time.monotonic() - started) * 1000,
    )
    return out


def _failure_kind(err: FhirFetchError) -> str:
    """Why a fetch failed, as one of the kinds of :mod:`service.fhir.events`."""
    if isinstance(err, FhirStatusError):
        return "status"
    if isinstance(err, FhirDeadlineExceeded):
        return "deadline"
    if isinstance(err, FhirRefused):
        return "refused"
    return "error"


def _fetch(
    task: _Task,
    access: _Access,
    settings: FetchSettings,
    session: requests.Session | None,
    cancel: threading.Event,
) -> _Result:
    # Tasks are only started once the gate is open; an explicit check (not an assert, which
    # python -O strips) turns a broken invariant into an ordinary fetch failure.
    if access.server is None:
        raise FhirFetchError("no fhirServer to fetch from")
    with FhirClient(
        access.server,
        policy=settings.policy,
        extra_allowed=access.extra_allowed,
        access_token=access.token,
        session=session,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        max_response_bytes=settings.max_response_bytes,
        deadline=access.deadline,
        cancel=cancel,
    ) as client:
        if task.first is not None:
            result = client.follow(task.first, max_pages=settings.max_pages)
            out = _Result(_pages_resources(result), result.complete)
        elif task.ref is not None and _is_read(task.ref):
            resource = client.read(task.ref)
            out = _Result((resource,) if resource else (), True, found=resource is not None)
        elif task.ref is not None:
            result = client.search(task.ref, max_pages=settings.max_pages)
            out = _Result(_pages_resources(result), result.complete)
        else:
            raise FhirFetchError("prefetch task has neither a first page nor a query")
    return out


class _Resolution:
    """Mutable bookkeeping for one resolve_prefetch call."""

    def __init__(self) -> None:
        self.resources: dict[str, Resources] = {}
        self.origin: dict[str, str] = {}
        self.partial: set[str] = set()

    def set(
        self, key: str, origin: str, resources: Resources = (), *, partial: bool = False
    ) -> None:
        self.resources[key] = resources
        self.origin[key] = origin
        if partial:
            self.partial.add(key)

    def frozen(self, order: Sequence[str]) -> ResolvedPrefetch:
        return ResolvedPrefetch(
            resources=MappingProxyType({k: self.resources[k] for k in order}),
            origin=MappingProxyType({k: self.origin[k] for k in order}),
            partial=frozenset(self.partial),
        )


def _classify_prefetch(key: str, prefetch: Mapping[str, Any]) -> tuple[str, Any, Resources]:
    """``(kind, value, resources)`` for one prefetch key.

    ``kind`` is "absent", "none", "data" or "bundle"; ``resources`` are the data it holds (the
    Bundle's entries are read once, here).
    """
    if key not in prefetch:
        return "absent", None, ()
    value = prefetch[key]
    if value is None:
        return "none", None, ()
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        log.warning("prefetch key %s is not a FHIR resource; treating it as absent", key)
        return "absent", None, ()
    if _is_outcome(value):
        return "absent", None, ()
    if value["resourceType"] != "Bundle":
        return "data", value, (value,)
    entries = value.get("entry")
    if not isinstance(entries, list) or not entries:
        return "none", None, ()
    resources = bundle_resources(value)
    if not resources:
        return "absent", None, ()  # only OperationOutcomes: the client could not provide the data
    return "bundle", value, resources


def resolve_prefetch(
    request: Mapping[str, Any],
    templates: Sequence[PrefetchTemplate],
    settings: FetchSettings,
    *,
    session: requests.Session | None = None,
    received_at: float | None = None,
    extra_allowed: tuple[str, ...] = (),
) -> ResolvedPrefetch:
    """Resolve every prefetch template of a (validated) hook request; see the module docstring.

    ``received_at`` is the ``time.monotonic()`` value when the hook request arrived; the token's
    ``expires_in`` counts from it (default: now). ``session`` lets the caller share a connection
    pool; it is used from worker threads and must come from
    :func:`service.fhir.outbound.new_session` (``ValueError`` otherwise). ``extra_allowed`` adds
    FHIR base URLs allowed for this call only (e.g. those configured for the authenticated
    issuer) to ``settings.policy.allowed_servers``. Raises :class:`PrefetchUnavailable` (HTTP 412)
    as soon as a required key is known to be unobtainable, without waiting for other fetches.
    """
    start = time.monotonic()
    if received_at is None:
        received_at = start
    elif received_at > start + 1.0:
        raise ValueError("received_at must be a time.monotonic() value, not wall-clock time")
    keys = [t.key for t in templates]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate prefetch template keys")
    if isinstance(extra_allowed, str):
        raise TypeError("extra_allowed must be a tuple of URLs, not a single string")
    if session is not None and not session_is_guarded(session, settings.policy):
        raise ValueError("the session must come from service.fhir.outbound.new_session()")

    prefetch_raw = request.get("prefetch")
    prefetch: Mapping[str, Any] = prefetch_raw if isinstance(prefetch_raw, Mapping) else {}
    context_raw = request.get("context")
    context: Mapping[str, Any] = context_raw if isinstance(context_raw, Mapping) else {}
    access = _access(request, settings, start, received_at, tuple(extra_allowed))
    gate = _Gate(access, settings.policy)
    state = _Resolution()
    tasks: list[_Task] = []

    for tpl in templates:
        kind, value, resources = _classify_prefetch(tpl.key, prefetch)
        if kind == "none":
            state.set(tpl.key, ORIGIN_NONE)
        elif kind == "data":
            state.set(tpl.key, ORIGIN_PREFETCH, resources)
        elif kind == "bundle":
            state.set(tpl.key, ORIGIN_PREFETCH, resources)
            if next_link(value) is None:
                continue
            if gate.open():
                tasks.append(_Task(tpl.key, tpl.required, first=value))
            elif tpl.required:
                raise gate.failure(tpl.key, "prefetched data has more pages: ")
            else:
                state.partial.add(tpl.key)
        else:  # absent
            if not gate.open():
                if tpl.required:
                    raise gate.failure(tpl.key, "not prefetched and ")
                state.set(tpl.key, ORIGIN_UNAVAILABLE)
                continue
            try:
                ref = _with_page_size(render_template(tpl.template, context), settings.page_size)
            except PrefetchUnavailable as err:
                if tpl.required:
                    raise _unavailable(tpl.key, err.message) from None
                state.set(tpl.key, ORIGIN_UNAVAILABLE)
                continue
            tasks.append(_Task(tpl.key, tpl.required, ref=ref))

    if tasks:
        _fetch_all(tasks, access, settings, session, state)
    log.debug(
        "prefetch resolved in %.0f ms: %s", (time.monotonic() - start) * 1000, dict(state.origin)
    )
    return state.frozen(keys)


def _fetch_all(
    tasks: list[_Task],
    access: _Access,
    settings: FetchSettings,
    session: requests.Session | None,
    state: _Resolution,
) -> None:
    """Run all tasks in parallel; record results; raise on the first required failure."""
    cancel = threading.Event()
    executor = ThreadPoolExecutor(
        max_workers=min(len(tasks), _MAX_WORKERS), thread_name_prefix="fhir-prefetch"
    )
    try:
        futures: dict[Future[_Result], _Task] = {
            executor.submit(_run_task, task, access, settings, session, cancel): task
            for task in tasks
        }
        pending: set[Future[_Result]] = set(futures)
        while pending:
            remaining = access.deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for fut in done:
                task = futures[fut]
                failure: str | None = None
                try:
                    result = fut.result()
                except FhirFetchError as err:
                    failure = str(err)  # recorded outside `except` so the 412 carries no chain
                if failure is None:
                    _record_success(task, result, state)
                else:
                    _record_failure(task, failure, state)
        for fut in pending:
            _record_failure(futures[fut], "deadline exceeded", state)
    finally:
        # Do not wait for stragglers: their timeouts are clipped to the deadline, and the cancel
        # flag stops them from starting another request (and sending the token again).
        cancel.set()
        executor.shutdown(wait=False, cancel_futures=True)


def _record_success(task: _Task, result: _Result, state: _Resolution) -> None:
    if task.first is not None:
        origin = ORIGIN_PREFETCH  # follow() returns the prefetched first page too
    else:
        origin = ORIGIN_FETCHED if result.found else ORIGIN_NONE
    if not result.complete:
        log.warning("prefetch key %s: page cap reached, more pages remain", task.key)
        if task.required:
            raise _unavailable(task.key, "more result pages than the configured page cap")
    state.set(task.key, origin, result.resources, partial=not result.complete)


def _record_failure(task: _Task, reason: str, state: _Resolution) -> None:
    log.warning("prefetch key %s: FHIR fetch failed: %s", task.key, reason)
    if task.required:
        raise _unavailable(task.key, reason)
    if task.first is not None:
        # Keep the prefetched first page; say that it is incomplete.
        state.set(task.key, ORIGIN_PREFETCH, bundle_resources(task.first), partial=True)
    else:
        state.set(task.key, ORIGIN_UNAVAILABLE)
