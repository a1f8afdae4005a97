"""Handling one hook call: bytes in, a CDS Hooks response document out.

The steps follow the spec's order of concerns: which service (404), is the body JSON (400), is
it a valid CDS Hooks 2.0 request for this service's hook (400), can we get the data (412), then
the pure evaluation. Framework-free so the HTTP layer and the CLI share it exactly.
"""

from __future__ import annotations

import gc
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

import orjson

from service import correlation, engine, order_engine
from service.cdshooks import draft_orders, schemas
from service.config import Settings
from service.content import Content, ServiceDefinition
from service.errors import InvalidRequest, NotFound
from service.fhir.outbound import OutboundPolicy
from service.fhir.prefetch import (
    FetchSettings,
    PrefetchTemplate,
    ResolvedPrefetch,
    resolve_prefetch,
)
from service.fhir.record import PatientRecord
from service.outcomes.tracker import OutcomeTracker
from service.render import RenderContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HookOutcome:
    """The response document plus facts for logs and metrics (no patient data)."""

    response: dict[str, Any]
    hook_instance: str
    indicators: tuple[str, ...]
    origins: Mapping[str, str]


def fetch_settings(settings: Settings) -> FetchSettings:
    """Fallback-fetch limits from the service settings."""
    return FetchSettings(
        connect_timeout_s=settings.fhir_connect_timeout,
        read_timeout_s=settings.fhir_read_timeout,
        deadline_s=settings.fhir_deadline,
        max_pages=settings.fhir_max_pages,
        max_response_bytes=settings.fhir_max_response_bytes,
        page_size=settings.fhir_page_size,
        allow_unauthenticated=settings.allow_unauthenticated_fhir,
        policy=OutboundPolicy(
            allowed_servers=settings.fhir_allowed_servers,
            require_https=not settings.fhir_allow_http,
            allow_private_addresses=settings.fhir_allow_private_addresses,
        ),
    )


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_MARKS = bytes(sorted(set(range(256)).difference(b'"[]{}')))
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")


_MANY_ESCAPES = 4096


def _quote_escapes(body: bytes) -> bool:
    """Whether an escape pair in ``body`` is ``\\"`` or ``\\\\``: the only ones that matter.

    Other escapes (``\\n``, ``\\/``, ``\\u00b0``) hold no quote or bracket and vanish with every
    other non-mark byte, so most bodies need no escape pass at all. Pairs are walked left to
    right as the decoder reads them; past a few thousand backslashes, the answer is "yes".
    """
    # One memchr-speed find per backslash: cheaper than counting them all first (a count reads
    # the whole body even when, as usual, it holds a handful of backslashes or none).
    at = body.find(b"\\")
    walked = 0
    while at != -1:
        if body[at + 1 : at + 2] in (b'"', b"\\"):
            return True
        walked += 1
        if walked > _MANY_ESCAPES:
            return True
        at = body.find(b"\\", at + 2)
    return False


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether JSON arrays and objects in ``body`` nest deeper than ``limit``, strings ignored.

    Computed with whole-buffer C operations, before the decoder recurses into the body. Escape
    pairs (``\\x``) are removed first when one of them is ``\\"`` or ``\\\\``, so an escaped
    quote or backslash cannot end a string. Then every byte but ``"[]{}`` is dropped and what
    lies between quotes is cut out: nearly all strings hold no bracket and leave a bare ``""``
    that one ``replace`` removes, and only strings that contain brackets (or an unterminated
    string's rest) need the general split. What is left is the bracket structure; removing every
    adjacent ``[]`` pair peels one level off every innermost container, so a structure at most
    ``limit`` deep is empty after ``limit`` peels. Anything left (too deep, or brackets that do
    not balance because the JSON is invalid) is measured exactly on the unpeeled brackets, as
    the highest running sum (+1 open, -1 close). In UTF-8 every byte of a multi-byte character
    is >= 0x80, so the ASCII bytes seen are the JSON text's own. A count made wrong by invalid
    JSON does no harm: the decoder then reports the syntax error.
    """
    if _quote_escapes(body):
        body = _ESCAPE.sub(b"", body)
    marks = body.translate(None, _NOT_MARKS).replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[0::2])
    brackets = peeled = marks.translate(_ONE_KIND)
    for _ in range(limit):
        if not peeled:
            return False
        peeled = peeled.replace(b"[]", b"")
    if not peeled:
        return False
    steps = memoryview(brackets.translate(_STEPS)).cast("b")
    return max(accumulate(steps), default=0) > limit


_BOM = b"\xef\xbb\xbf"


def parse_json(body: bytes, max_depth: int = 64) -> Any:
    """Decode a JSON body; anything unreadable, or nested deeper than ``max_depth``, is a 400.

    The depth is checked on the bytes first (:func:`nested_deeper_than`): a hook request with FHIR
    resources nests about 15 levels, while a few kilobytes of ``[[[[...`` would drive the
    decoder, and anything that walks the result, into deep recursion. The decoder is orjson,
    which reads UTF-8 bytes directly (RFC 8259 requires UTF-8; a leading byte order mark is
    tolerated, UTF-16/32 are refused) and is strict where the standard library is lenient: NaN,
    Infinity and lone surrogates are not JSON and get a 400.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if len(body) > max_depth and nested_deeper_than(body, max_depth):
        raise InvalidRequest(f"the request body is nested deeper than {max_depth} levels")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the request body is not UTF-8 encoded JSON") from None
        raise InvalidRequest(
            f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block without cyclic garbage collection, then restore the collector's state.

    A hook call builds hundreds of thousands of short-lived objects (the decoded body, the
    record's indexes, findings), and the allocation count alone triggers collections that walk
    them all, several times per large call, while none of them is part of a reference cycle:
    reference counting frees them when the call ends. Pausing the collector for one call cut
    the tail latency of large charts (see docs/performance.md). Cycles created meanwhile (an
    exception's traceback, say) are collected by the next collection after the call. Safe with
    threads: a call only re-enables what it found enabled.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class HookHandler:
    """Runs hook calls against one content set and one configuration."""

    def __init__(
        self, content: Content, settings: Settings, outcomes: OutcomeTracker | None = None
    ) -> None:
        """``outcomes``, when given, applies clinicians' feedback and records the cards sent."""
        self.content = content
        self.outcomes = outcomes
        # Compile the request schema now, at startup, not on the first hook call.
        if schemas.fast_check(schemas.HOOK_REQUEST) is None:
            raise RuntimeError("the hook request schema has no fast compiled check")
        self.fetch = fetch_settings(settings)
        self.zone = settings.zone
        self.public_base_url = settings.public_base_url or ""
        self.templates: dict[str, tuple[PrefetchTemplate, ...]] = {
            service.id: tuple(
                PrefetchTemplate(p.key, p.query, p.required) for p in service.prefetch
            )
            for service in content.services
        }

    def service(self, service_id: str) -> ServiceDefinition:
        """The service called ``service_id`` or :class:`NotFound`."""
        service = self.content.service(service_id)
        if service is None:
            raise NotFound(f"no CDS service with id {service_id!r}")
        return service

    def parse_request(self, service: ServiceDefinition, body: bytes) -> dict[str, Any]:
        """The validated request document for ``service``."""
        request = parse_json(body)
        schemas.validate(schemas.HOOK_REQUEST, request)
        if self.content.service(service.id, request["hook"]) is None:
            answers = " and ".join(repr(h) for h in self.content.hooks_of(service.id))
            raise InvalidRequest(
                f"service {service.id!r} answers the {answers} hook, not {request['hook']!r}"
            )
        return dict(request)

    def resolve(
        self,
        service: ServiceDefinition,
        request: Mapping[str, Any],
        received_at: float,
        extra_allowed: tuple[str, ...] = (),
    ) -> ResolvedPrefetch:
        """The service's data for this call (prefetch first, then the EHR's FHIR server).

        ``extra_allowed`` adds the calling issuer's own FHIR servers to the global allowlist.
        """
        return resolve_prefetch(
            request,
            self.templates[service.id],
            self.fetch,
            received_at=received_at,
            extra_allowed=extra_allowed,
        )

    def handle(
        self,
        service_id: str,
        body: bytes,
        *,
        now: datetime | None = None,
        received_at: float | None = None,
        extra_allowed: tuple[str, ...] = (),
        base_url: str = "",
    ) -> HookOutcome:
        """Answer one hook call; raises a :class:`ServiceError` for every non-200 outcome.

        ``base_url`` is the request's own base, used for the cards' rule-book links when no
        ``EPIDURAL_CDS_PUBLIC_BASE_URL`` is set.
        """
        received = time.monotonic() if received_at is None else received_at
        base = self.public_base_url or base_url
        with collector_paused():
            return self._answer(service_id, body, now, received, extra_allowed, base)

    def _answer(
        self,
        service_id: str,
        body: bytes,
        now: datetime | None,
        received: float,
        extra_allowed: tuple[str, ...],
        base_url: str = "",
    ) -> HookOutcome:
        service = self.service(service_id)
        request = self.parse_request(service, body)
        correlation.set_hook_instance(request["hookInstance"])  # the logs' correlation id
        context = request["context"]
        hook = str(request["hook"])
        # Drafts are read before any data is fetched: an unreadable draft list is a 400.
        drafts = draft_orders.judged(hook, context) if hook in draft_orders.ORDER_HOOKS else None
        resolved = self.resolve(service, request, received, extra_allowed)
        patient_id = str(context["patientId"])
        record = PatientRecord.from_resources(
            patient_id, (r for key in resolved.resources for r in resolved.resources[key])
        )
        if record.dropped_other_patient:
            log.warning(
                "hook %s: ignored %d resources that belong to another patient",
                request["hookInstance"],
                record.dropped_other_patient,
            )
        ctx = RenderContext(
            patient_id=patient_id,
            user_id=context.get("userId"),
            encounter_id=context.get("encounterId"),
            now=now or datetime.now(UTC),
            incomplete_data=tuple(sorted({*resolved.unavailable, *resolved.partial})),
            zone=self.zone,
            base_url=base_url.rstrip("/"),
        )
        if drafts is not None:
            cards = order_engine.evaluate_orders(record, drafts, self.content, ctx, self.zone)
        else:
            pairs = engine.evaluate_plans(record, self.content, ctx)
            if self.outcomes is None:
                cards = [card for _, card in pairs]
            else:
                cards = self.outcomes.apply(
                    service_id,
                    str(request["hookInstance"]),
                    record,
                    pairs,
                    now=ctx.now.timestamp(),
                    zone=ctx.zone,
                ).cards
        return HookOutcome(
            response={"cards": cards},
            hook_instance=str(request["hookInstance"]),
            indicators=tuple(card["indicator"] for card in cards),
            origins=dict(resolved.origin),
        )
