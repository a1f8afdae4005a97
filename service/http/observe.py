"""The bookkeeping around every request: latency metrics, the hook call's audit record, and the
correlation id handed to the access log.

Routes stay about their own work: the hook route only says what it learned
(:func:`begin_call`, then :class:`service.http.audit.CallFacts`), and the ``after_request``
function registered here turns that into metrics and the audit record once the final status is
known, including responses made by the error handlers (401, 404, 412, 500...), which Flask also
passes through ``after_request``.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from service import correlation
from service.http import metrics
from service.http.audit import AuditTrail, CallFacts
from service.http.gunicorn_logging import HOOK_INSTANCE_ENVIRON

_FACTS = "epidural_cds_call"
_STARTED = "epidural_cds_started"
UNKNOWN_SERVICE = "unknown"


def begin_call(service_id: str, known: bool) -> CallFacts:
    """Start the record of a hook call to ``service_id`` (``known``: a configured service)."""
    facts = CallFacts(service=service_id, known_service=known)
    setattr(g, _FACTS, facts)
    return facts


def register(app: Flask, trail: AuditTrail) -> None:
    """Time every request; record metrics and, for hook calls, the audit record."""

    @app.before_request
    def start_clock() -> None:
        setattr(g, _STARTED, time.perf_counter())

    @app.after_request
    def observe(response: Response) -> Response:
        started = getattr(g, _STARTED, None)
        duration = 0.0 if started is None else time.perf_counter() - started
        facts: CallFacts | None = getattr(g, _FACTS, None)
        service = ""
        if facts is not None:
            service = facts.service if facts.known_service else UNKNOWN_SERVICE
        status = response.status_code
        endpoint = request.endpoint or "unmatched"
        metrics.child(metrics.REQUEST_SECONDS, endpoint, service, str(status)).observe(duration)
        if facts is not None:
            hook_instance = correlation.hook_instance()
            request.environ[HOOK_INSTANCE_ENVIRON] = hook_instance
            for topic, indicator in zip(facts.topics, facts.indicators, strict=True):
                metrics.child(metrics.CARDS, topic, indicator).inc()
            for key, origin in facts.origins.items():
                metrics.child(metrics.PREFETCH_KEYS, service, key, origin).inc()
            trail.record(facts, status, duration, hook_instance)
        return response

    @app.teardown_request
    def forget(_error: BaseException | None) -> None:
        correlation.clear()
