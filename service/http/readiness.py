"""``GET /readyz``: may this instance take calls now? (``/healthz`` only says it is alive.)

An orchestrator (Kubernetes, a load balancer) sends traffic only to ready instances and
restarts only dead ones, so the two probes must differ. Ready means: the clinical content is
loaded (it is validated before the app exists, so an app that answers has it) and hook calls
can be answered. With the store reachable (one ``SELECT 1``) that is plain ``ready``.

With the store unreachable the instance is still alive (restarting it would not help, and would
lose its warm caches). Whether it can still answer hook calls depends on the replay guard
(:mod:`service.replay_fallback`): in its default ``memory`` mode (or with authentication off)
hooks are answered correctly, suppression reads as "show" and feedback answers 503 for a retry,
so the instance answers 200 with ``"status": "degraded"`` and ``"store": "unreachable"``;
taking every replica out of the load balancer during a database outage would turn "hooks still
answer" (issue 15) into no answer at all. In ``refuse`` mode with authentication on, every hook
call would get 503, so the instance is not ready: 503 with an OperationOutcome (as every error
answer of the service) saying which check failed; never the database's error text, which may
name hosts and users.
"""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from service.cdshooks.outcome import FHIR_JSON, operation_outcome
from service.content import Content

log = logging.getLogger(__name__)


def store_reachable(engine: Engine) -> bool:
    """Whether one trivial query on the store succeeds."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("readiness: the store is not reachable (%s)", type(exc).__name__)
        return False
    return True


def register(app: Flask, content: Content, engine: Engine, *, hooks_without_store: bool) -> None:
    """Add ``GET /readyz`` to ``app`` (public, like ``/healthz``: it reveals no data).

    ``hooks_without_store``: whether hook calls are still answered while the store is down
    (replay guard in ``memory`` mode, or authentication off); then a lost store is "degraded".
    """

    @app.get("/readyz")
    def readiness() -> Response:
        failed = [name for name, ok in _checks(content, engine) if not ok]
        if not failed:
            body = {"status": "ready", "checks": {"content": "ok", "store": "ok"}}
            return Response(orjson.dumps(body), mimetype="application/json")
        if failed == ["store"] and hooks_without_store:
            body = {"status": "degraded", "checks": {"content": "ok", "store": "unreachable"}}
            return Response(orjson.dumps(body), mimetype="application/json")
        # Like every error answer of the service, an OperationOutcome.
        message = "not ready: " + ", ".join(_FAILURES[name] for name in failed)
        return Response(
            orjson.dumps(operation_outcome("transient", message)), status=503, mimetype=FHIR_JSON
        )


_FAILURES = {"content": "the clinical content is not loaded", "store": "the store is unreachable"}


def _checks(content: Content, engine: Engine) -> list[tuple[str, bool]]:
    return [("content", bool(content.version)), ("store", store_reachable(engine))]
