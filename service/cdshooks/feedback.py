"""``POST {base}/cds-services/{id}/feedback``: what the clinician did with our cards.

CDS Hooks 2.0 §Feedback (https://cds-hooks.hl7.org/2.0/#feedback). The call is authenticated
exactly like a hook call, with the feedback URL as the JWT audience; the body is validated with
``schemas/feedback-request.schema.json``, which is lenient where real clients are (a reason with
only a ``code``). Each report is stored once: its id is a digest of its content, so a client
that retries (the spec says it may) changes nothing. A report about a card uuid we never issued
(say, from before a restore) is stored and marked unknown. The answer is 200 only after the
commit; when the store cannot be reached it is 503 with ``Retry-After``, so the client retries
and nothing it was told we kept is lost. The token of such a call is released (not used up), so
a retry with the same token is not refused as a replay. ``userComment`` is dropped unless
``EPIDURAL_CDS_STORE_USER_COMMENTS`` is on (free text may hold PHI).

A production card workbench cannot use this URL (its token's ``aud`` is the workbench and it
is reused for a session, where this endpoint wants a fresh token for this URL), so it posts to
its own authenticated route, which hands the body to the same :func:`receive`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, request
from sqlalchemy.exc import SQLAlchemyError

from service.cdshooks import schemas
from service.cdshooks.handler import parse_json
from service.errors import (
    InvalidRequest,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
)
from service.outcomes.records import FeedbackReport
from service.outcomes.setup import Outcomes

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "application/fhir+json")


def _timestamp(value: str) -> float:
    text = value.replace("z", "Z").replace("t", "T")
    if ":60" in text[17:20]:  # a leap second: the instant just before the next minute
        text = text[:17] + "59.999999" + text[20:].lstrip("0123456789.")
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"outcomeTimestamp {value[:40]!r} is not a date-time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _digest(item: Mapping[str, Any]) -> str:
    """The report's id: the same card, outcome, suggestions, reason and time give the same id."""
    reason = item.get("overrideReason") or {}
    coding = reason.get("reason") or {}
    canonical = {
        "card": item["card"],
        "outcome": item["outcome"],
        "accepted": sorted({s["id"] for s in item.get("acceptedSuggestions", ())}),
        "code": coding.get("code"),
        "system": coding.get("system"),
        "comment": reason.get("userComment"),
        "at": _timestamp(item["outcomeTimestamp"]),
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse(document: Any, *, keep_comments: bool) -> list[FeedbackReport]:
    """The validated reports of a feedback request; :class:`InvalidRequest` when malformed."""
    try:
        schemas.validate(schemas.FEEDBACK_REQUEST, document)
    except InvalidRequest as exc:
        message = exc.message.replace("CDS Hooks 2.0 request", "feedback request")
        raise InvalidRequest(message) from None
    reports = []
    for item in document["feedback"]:
        reason = item.get("overrideReason") or {}
        coding = reason.get("reason") or {}
        comment = reason.get("userComment") if keep_comments else None
        reports.append(
            FeedbackReport(
                feedback_id=_digest(item),
                card_uuid=item["card"],
                outcome=item["outcome"],
                reason_code=(coding.get("code") or None) and str(coding["code"])[:128],
                reason_system=(str(coding["system"])[:256] if coding.get("system") else None),
                accepted_ids=tuple(
                    dict.fromkeys(s["id"] for s in item.get("acceptedSuggestions", ()))
                ),
                user_comment=comment if isinstance(comment, str) and comment else None,
                outcome_at=_timestamp(item["outcomeTimestamp"]),
            )
        )
    return reports


def receive(
    service_id: str,
    outcomes: Outcomes,
    max_body_bytes: int,
    *,
    release: Callable[[], None] | None = None,
) -> Response:
    """Validate and store the feedback body of the current request, for an authenticated caller.

    The one place feedback is checked and recorded: the CDS Hooks endpoint below and the card
    workbench's own route (``service/http/workbench.py``) differ only in how the caller is
    authenticated, so both call this after their own check and answer alike (200 after the
    commit, 400/415/413 with an OperationOutcome, 503 with ``Retry-After``). ``release`` is
    called when nothing could be stored (503), to give the caller's token back.
    """
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaType("send the feedback as application/json")
    body = request.get_data(cache=False)
    if len(body) > max_body_bytes:
        raise PayloadTooLarge(f"the request body is larger than {max_body_bytes} bytes")
    reports = parse(parse_json(body), keep_comments=outcomes.store_user_comments)
    try:
        outcomes.tracker.writer.flush()  # cards this process sent are in the store first
        result = outcomes.store.record_feedback(service_id, reports, outcomes.policy)
    except SQLAlchemyError as exc:
        log.warning("feedback not stored, store unavailable (%s)", type(exc).__name__)
        if release is not None:
            # Nothing was kept, so the token is not used up: a retry with it is not a replay.
            release()
        raise StoreUnavailable("feedback could not be stored now; send it again") from None
    log.info(
        "feedback service=%s received=%d stored=%d duplicates=%d unknown=%d",
        service_id,
        result.received,
        result.stored,
        result.duplicates,
        result.unknown,
    )
    document = {
        "received": result.received,
        "stored": result.stored,
        "duplicates": result.duplicates,
        "unknownCards": result.unknown,
    }
    return Response(orjson.dumps(document), mimetype="application/json")


def register(app: Flask, outcomes: Outcomes) -> None:
    """Add the feedback route to ``app`` (the app maps :class:`StoreUnavailable` to 503)."""
    from service.http.app import state

    @app.post("/cds-services/<service_id>/feedback")
    def feedback_endpoint(service_id: str) -> Response:
        current = state()
        current.handler.service(service_id)  # 404 before looking at the body
        client = current.trust.verify(
            request.headers.get("Authorization"), f"/cds-services/{service_id}/feedback"
        )
        release = functools.partial(current.trust.release, client)
        return receive(service_id, outcomes, current.settings.max_body_bytes, release=release)
