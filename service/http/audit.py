"""The audit record of a hook call: who called which service, what came back, how long it took.

One record per hook call, whatever its outcome (200, 4xx, 401, 500), written to its own logger,
``epidural_cds.audit`` (a JSON line like every other log line; a site can route that logger to
its audit pipeline), and, with ``EPIDURAL_CDS_AUDIT_STORE=true``, to the shared store
(:mod:`service.audit_store`).

Fields: ``time`` (UTC), ``hookInstance``, ``issuer`` and ``tenant`` of the verified caller
(``null`` when authentication is off or failed: an unverified ``iss`` is only a claim),
``jtiSha256`` (the SHA-256 of the token's ``jti``: it matches the EHR's record of the token
without being usable to replay it), ``service``, ``status``, the card ``topics`` and
``indicators``, and ``durationMs``. No patient data, no token.

A store that cannot take the record (the database is down) does not fail the call: clinical
decision support stays available, the record still goes to the audit log, and
``epidural_cds_audit_store_failures_total`` counts the miss, so an alert can say that the store's
trail has a gap and where to find the records (in the log).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from service.http import metrics
from service.http.logjson import FIELDS
from service.security.auth import VerifiedClient

AUDIT_LOGGER = "epidural_cds.audit"
log = logging.getLogger(__name__)
audit_log = logging.getLogger(AUDIT_LOGGER)

#: Longest service id kept from a path naming an unknown service.
_MAX_SERVICE_CHARS = 128


class AuditSink(Protocol):
    """Somewhere besides the log that keeps audit records (the store)."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Keep one record; raise on failure."""


@dataclass
class CallFacts:
    """What the hook route learns about its call, step by step, for the audit and the metrics."""

    service: str
    known_service: bool
    client: VerifiedClient | None = None
    topics: tuple[str, ...] = ()
    indicators: tuple[str, ...] = ()
    origins: Mapping[str, str] = field(default_factory=dict)

    def answered(self, cards: list[dict[str, Any]], origins: Mapping[str, str]) -> None:
        """Note the cards and where each prefetch key came from."""
        self.topics = tuple(str(card["source"]["topic"]["code"]) for card in cards)
        self.indicators = tuple(str(card["indicator"]) for card in cards)
        self.origins = origins


def jti_hash(jti: str) -> str:
    """The SHA-256 of a ``jti`` as lowercase hex."""
    return hashlib.sha256(jti.encode("utf-8")).hexdigest()


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class AuditTrail:
    """Writes each call's record to the audit logger and, if given, to ``sink``."""

    def __init__(self, sink: AuditSink | None = None) -> None:
        """``sink``: the store's audit table, when the site keeps records there."""
        self.sink = sink

    def record(
        self, facts: CallFacts, status: int, duration_s: float, hook_instance: str | None
    ) -> dict[str, Any]:
        """Build, log and store the record of one call; return it."""
        client = facts.client
        record: dict[str, Any] = {
            "time": _now(),
            "hookInstance": hook_instance,
            "issuer": client.iss if client else None,
            "tenant": client.tenant if client else None,
            "jtiSha256": jti_hash(client.jti) if client else None,
            "service": facts.service[:_MAX_SERVICE_CHARS],
            "status": status,
            "topics": list(facts.topics),
            "indicators": list(facts.indicators),
            "durationMs": round(duration_s * 1000, 2),
        }
        audit_log.info("audit", extra={FIELDS: {"event": "audit", "record": record}})
        if self.sink is not None:
            try:
                self.sink.write(record)
            except SQLAlchemyError as exc:
                metrics.AUDIT_STORE_FAILURES.inc()
                log.error(
                    "audit record not stored (%s); it is in the audit log only",
                    type(exc).__name__,
                )
        return record
