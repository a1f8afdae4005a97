"""The Flask application factory: routes, CORS, and the one place errors become HTTP.

``create_app(config=None)`` builds everything once at startup (content loaded and validated,
discovery document built, validators compiled) so a request only parses, evaluates and answers.
The HTTP layer holds no clinical logic; it maps :class:`ServiceError` subclasses to their status
with a FHIR OperationOutcome body, and any other exception to a 500 — never to
``200 {"cards": []}``, which a client would read as "no concerns".
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from flask import Flask, Response, request
from flask_cors import CORS
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service import content as content_module
from service.audit_store import SqlAuditSink
from service.cdshooks import discovery, feedback
from service.cdshooks.handler import HookHandler
from service.cdshooks.outcome import FHIR_JSON, operation_outcome
from service.config import Settings
from service.content import Content
from service.errors import (
    ConfigError,
    PayloadTooLarge,
    ServiceError,
    StoreUnavailable,
    UnsupportedMediaType,
)
from service.http import forwarded, metrics, observe, readiness, workbench
from service.http.audit import AuditTrail
from service.http.logjson import FIELDS
from service.http.rule_book import register_rule_book
from service.outcomes import setup as outcome_setup
from service.outcomes.writer import CardWriter
from service.replay_fallback import FallbackReplayGuard
from service.security.failures import AuthFailure
from service.security.trust import ClientTrust, build_trust
from service.store import SqlReplayGuard, create_store_engine, default_database_url, migrate

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "application/fhir+json")
_HTTP_ISSUE = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
EXTENSION_KEY = "epidural_cds"


@dataclass(frozen=True)
class ServiceState:
    """What the routes need, built once per app."""

    settings: Settings
    content: Content
    handler: HookHandler
    discovery: bytes
    trust: ClientTrust


def _json(document: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(orjson.dumps(document), status=status, mimetype=mimetype)


def _outcome(status: int, issue_code: str, message: str) -> Response:
    return _json(operation_outcome(issue_code, message), status, FHIR_JSON)


def _settings(config: Settings | Mapping[str, Any] | None) -> Settings:
    if isinstance(config, Settings):
        return config
    if config is None:
        return Settings.from_env()
    return Settings.from_mapping(config)


def _store_engine(settings: Settings) -> Engine:
    """The shared store (replay guard, audit records, card outcomes), migrated to the current
    schema.

    Connections opened here are closed again before gunicorn forks its workers, which then open
    their own.
    """
    url = settings.database_url
    if url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = default_database_url(settings.data_dir)
    engine = create_store_engine(
        url,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout,
    )
    try:
        migrate(engine)
    except OperationalError as exc:
        # Refuse to start, quickly (the connect timeout bounds this) and without a traceback.
        shown = make_url(url).render_as_string(hide_password=True)
        raise ConfigError(f"the store {shown} cannot be reached ({type(exc).__name__})") from None
    finally:
        engine.dispose()
    return engine


def state() -> ServiceState:
    """The current app's :class:`ServiceState`."""
    from flask import current_app

    found: ServiceState = current_app.extensions[EXTENSION_KEY]
    return found


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the app; raises ``ConfigError`` or ``ContentError`` rather than start half-valid."""
    settings = _settings(config)
    problems = settings.profile_problems()
    if problems:
        raise ConfigError("configuration not allowed:\n" + "\n".join(problems))
    content = content_module.load(settings.content_dir)
    engine = _store_engine(settings)
    replay = FallbackReplayGuard(
        SqlReplayGuard(engine),
        mode=settings.replay_guard_when_store_down,
        on_event=metrics.replay_store_event,
    )
    trust = build_trust(settings, replay)
    outcomes = outcome_setup.build(settings, content, engine)
    if trust.notice:
        log.warning("%s", trust.notice)
    app = Flask("epidural_cds", static_folder=None)
    # urllib3 logs every FHIR request URL at DEBUG, query string (patient id) included.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, logging.getLogger().level))
    # One byte of headroom: a streamed (chunked) body is cut at this length by Werkzeug, so a
    # body longer than the limit shows up as limit + 1 bytes and is refused with 413 below.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]
    document = discovery.document(content, notice=trust.notice)
    discovery_body = json.dumps(document, separators=(",", ":")).encode()
    app.extensions[EXTENSION_KEY] = ServiceState(
        settings, content, HookHandler(content, settings, outcomes.tracker), discovery_body, trust
    )
    CORS(
        app,
        resources={r"/cds-services*": {"origins": list(settings.cors_origins)}},
        methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    _register_routes(app)
    _write_cards_after_responses(app, outcomes.tracker.writer)
    register_rule_book(app, content)
    feedback.register(app, outcomes)
    _register_openapi(app, openapi_document())
    _register_errors(app)
    workbench.register(app, app.extensions[EXTENSION_KEY], outcomes)

    _register_operations(app, settings, content, engine)
    return app


def _write_cards_after_responses(app: Flask, writer: CardWriter) -> None:
    """Write the buffered issued cards, when due, once each response has been sent.

    Werkzeug runs ``call_on_close`` callbacks when the server closes the response, after its
    last byte went out, so the writes cost no caller any latency and never run beside a hook
    call in this process (see :mod:`service.outcomes.writer` for why that matters).
    """

    @app.after_request
    def write_cards_when_closed(response: Response) -> Response:
        response.call_on_close(writer.flush_if_due)
        return response


def _register_operations(app: Flask, settings: Settings, content: Content, engine: Engine) -> None:
    """Readiness, metrics, the audit trail, and serving under the public URL's path prefix."""
    memory_fallback = settings.replay_guard_when_store_down == "memory"
    hooks_without_store = settings.auth_disabled or memory_fallback
    readiness.register(app, content, engine, hooks_without_store=hooks_without_store)
    observe.register(app, AuditTrail(SqlAuditSink(engine) if settings.audit_store else None))
    if settings.development:
        metrics.register_endpoint(app)
    app.wsgi_app = forwarded.wrap(  # type: ignore[method-assign,assignment]
        app.wsgi_app, settings.public_base_url, settings.trusted_proxy_hops
    )


def openapi_document() -> bytes:
    """The OpenAPI 3.1 description of the service, as shipped with the package."""
    return resources.files("service.cdshooks").joinpath("openapi.json").read_bytes()


def _register_openapi(app: Flask, document: bytes) -> None:
    """``GET /openapi.json``: public (no JWT), like ``/healthz``; the document holds no secrets."""

    @app.get("/openapi.json")
    def openapi_endpoint() -> Response:
        return Response(document, mimetype="application/json")


def _register_routes(app: Flask) -> None:
    @app.get("/cds-services")
    def discovery_endpoint() -> Response:
        current = state()
        if not current.trust.discovery_open:
            current.trust.verify(request.headers.get("Authorization"), "/cds-services")
        return Response(current.discovery, mimetype="application/json")

    @app.post("/cds-services/<service_id>")
    def hook_endpoint(service_id: str) -> Response:
        started = time.monotonic()
        current = state()
        call = observe.begin_call(service_id, current.content.service(service_id) is not None)
        current.handler.service(service_id)  # 404 before looking at the body
        client = call.client = current.trust.verify(
            request.headers.get("Authorization"), f"/cds-services/{service_id}"
        )
        if request.mimetype not in JSON_TYPES:
            raise UnsupportedMediaType("send the hook request as application/json")
        length = request.content_length
        if length is not None and length > current.settings.max_body_bytes:
            raise PayloadTooLarge(
                f"the request body is larger than {current.settings.max_body_bytes} bytes"
            )
        body = request.get_data(cache=False)
        if len(body) > current.settings.max_body_bytes:
            raise PayloadTooLarge(
                f"the request body is larger than {current.settings.max_body_bytes} bytes"
            )
        outcome = current.handler.handle(
            service_id,
            body,
            received_at=started,
            extra_allowed=current.trust.fhir_servers_for(client),
            base_url=request.url_root,
        )
        call.answered(outcome.response["cards"], outcome.origins)
        log.info(
            "hook call answered",
            extra={
                FIELDS: {
                    "service": service_id,
                    "indicators": list(outcome.indicators),
                    "origins": dict(outcome.origins),
                    "durationMs": round((time.monotonic() - started) * 1000, 1),
                }
            },
        )
        return _json(outcome.response)

    @app.get("/healthz")
    def health() -> Response:
        return _json({"status": "ok", "contentVersion": state().content.version})

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _register_errors(app: Flask) -> None:
    @app.errorhandler(AuthFailure)
    def auth_failure(error: AuthFailure) -> Response:
        # The reason goes to the log (never the token); the caller learns nothing more.
        metrics.AUTH_FAILURES.labels(error.reason).inc()
        fields: dict[str, Any] = {"reason": error.reason, "path": request.path}
        if error.expected_audience is not None:
            fields["expectedAudience"] = error.expected_audience
            fields["receivedAudience"] = error.received_audience
        log.warning(
            "authentication failed on %s: %s", request.path, error.reason, extra={FIELDS: fields}
        )
        response = _outcome(401, error.issue_code, error.message)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        log.info("%s %s -> %d %s", request.method, request.path, error.status, type(error).__name__)
        message = error.message
        if error.diagnostics:
            message = f"{message} ({error.diagnostics})"
        return _outcome(error.status, error.issue_code, message)

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(error: StoreUnavailable) -> Response:
        # The client should send the same call again; nothing of it was kept.
        log.info("%s %s -> 503 StoreUnavailable", request.method, request.path)
        response = _outcome(503, error.issue_code, error.message)
        response.headers["Retry-After"] = str(error.retry_after_s)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> Response:
        limit = state().settings.max_body_bytes
        return _outcome(413, "too-costly", f"the request body is larger than {limit} bytes")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        response = _outcome(status, _HTTP_ISSUE.get(status, "processing"), str(message))
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:
        # The exception's message may quote patient data: log its type and where it happened,
        # never its text.
        frames = "".join(traceback.format_tb(error.__traceback__))
        log.error(
            "internal error on %s %s: %s\n%s",
            request.method,
            request.path,
            type(error).__name__,
            frames,
        )
        return _outcome(
            500, "exception", "internal error; the service could not evaluate this request"
        )
