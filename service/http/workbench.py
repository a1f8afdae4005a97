"""The card workbench's routes: ``/workbench/`` and its small JSON API (docs/workbench.md).

Served only when ``Settings.workbench_enabled`` (on in development, off in production unless
``EPIDURAL_CDS_WORKBENCH=true``). The page itself (HTML, CSS, one script, shipped in the package)
holds no data and is public. Every API call is authenticated exactly when hook calls are: with
authentication on (always, in production) it needs ``Authorization: Bearer <JWT>`` from one of the
service's trusted issuers, signed and checked as a hook token is, with ``aud`` =
``{public base URL}/workbench``. Unlike a hook token it may be reused until it expires (at most
an hour): it is a person's session, pasted into the page and kept only in the page's memory.

Feedback from the page's cards follows the same split. Without authentication the page posts to
the CDS Hooks endpoint ``/cds-services/{id}/feedback``, as an EHR does. With it, that endpoint
would refuse the session token (it wants ``aud`` = its own URL and a fresh ``jti`` per call), so
the page posts to ``POST /workbench/api/feedback/{id}``, checked like every workbench API call,
which hands the body to the endpoint's own validation and recording
(:func:`service.cdshooks.feedback.receive`): the same reports in the same store, the same
answers. ``GET /workbench/api/config`` tells the page which URL to use.

``POST /workbench/api/evaluate`` runs the hook request through the service's own
:class:`~service.cdshooks.handler.HookHandler` (parse, validate, resolve prefetch, evaluate,
render), passing only the chosen ``now``, so its cards are exactly those of a hook call. The
workbench never fetches FHIR data on the server: in FHIR-server mode the browser does it, as an
EHR would, and a request carrying ``fhirAuthorization`` is refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

import orjson
from flask import Blueprint, Flask, Response, request

from service.cdshooks import feedback
from service.cdshooks.handler import HookHandler, parse_json
from service.cdshooks.outcome import FHIR_JSON
from service.config import Settings
from service.content import Content
from service.errors import ConfigError, InvalidRequest, NotFound
from service.fhir.record import PatientRecord
from service.outcomes.setup import Outcomes
from service.security.auth import ClientAuthenticator
from service.security.jwks import JwksCache
from service.security.trust import ClientTrust
from service.workbench_analysis import analyse
from service.workbench_explain import explain
from service.workbench_input import (
    Examples,
    default_examples_dir,
    hook_request,
    patient_of,
    validate_bundle,
)
from service.workbench_timeline import timeline

AUDIENCE_PATH = "/workbench"
_STATIC = {
    "workbench.css": "text/css",
    "workbench.js": "text/javascript",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' http: https:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class WorkbenchHost(Protocol):
    """What the workbench needs of the app's state (``service.http.app.ServiceState``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def content(self) -> Content: ...
    @property
    def handler(self) -> HookHandler: ...
    @property
    def discovery(self) -> bytes: ...
    @property
    def trust(self) -> ClientTrust: ...


class _SessionTokens:
    """A replay guard that lets one workbench token serve a whole (at most hour-long) session."""

    def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        return True


def _page(name: str) -> bytes:
    return resources.files("service.http").joinpath("workbench_static", name).read_bytes()


def _json(document: Any, status: int = 200, mimetype: str = "application/json") -> Response:
    return Response(orjson.dumps(document), status=status, mimetype=mimetype)


def _now(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest("now must be an ISO 8601 date and time with an offset") from None
    if moment.tzinfo is None:
        raise InvalidRequest("now needs a UTC offset, e.g. 2026-03-10T20:00:00+00:00")
    return moment


def _body() -> dict[str, Any]:
    if request.mimetype not in ("application/json", "application/fhir+json"):
        raise InvalidRequest("send application/json")
    document = parse_json(request.get_data(cache=False))
    if not isinstance(document, dict):
        raise InvalidRequest("the body must be a JSON object")
    return document


def feedback_url(service_id: str, authenticated: bool) -> str:
    """Where the page sends feedback, relative to ``/workbench/`` (see the module docstring)."""
    if authenticated:
        return f"api/feedback/{service_id}"
    return f"../cds-services/{service_id}/feedback"


def register(app: Flask, host: WorkbenchHost, outcomes: Outcomes) -> None:
    """Add the workbench's routes to ``app`` when the settings enable it."""
    if not host.settings.workbench_enabled:
        return
    blueprint = Blueprint("workbench", __name__, url_prefix="/workbench")
    authenticator = _authenticator(host)
    if authenticator is None and not host.settings.development:
        # Unreachable while production refuses EPIDURAL_CDS_AUTH_DISABLED; kept so it stays so.
        raise ConfigError("the workbench needs authentication outside the development profile")
    examples = Examples(host.settings.workbench_examples_dir or default_examples_dir())
    service = host.content.services[0]
    page = _page("index.html")

    def authorize() -> None:
        if authenticator is None:
            return
        audience = f"{host.trust.public_base_url}{AUDIENCE_PATH}"
        authenticator.authenticate(request.headers.get("Authorization"), audience)

    @blueprint.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @blueprint.get("/static/<name>")
    def static_file(name: str) -> Response:
        if name not in _STATIC:
            raise NotFound("no such workbench file")
        return Response(_page(name), mimetype=_STATIC[name])

    @blueprint.get("/api/config")
    def config() -> Response:
        return _json(
            {
                "authRequired": authenticator is not None,
                "serviceId": service.id,
                "profile": host.settings.profile,
                "examplesAvailable": examples.directory is not None,
                "feedbackUrl": feedback_url(service.id, authenticator is not None),
            }
        )

    @blueprint.post("/api/feedback/<service_id>")
    def send_feedback(service_id: str) -> Response:
        """CDS Hooks feedback under the workbench's token, recorded as the endpoint records it."""
        host.handler.service(service_id)  # 404 before looking at the body or the token
        authorize()
        return feedback.receive(service_id, outcomes, host.settings.max_body_bytes)

    @blueprint.get("/api/discovery")
    def discovery() -> Response:
        authorize()
        return Response(host.discovery, mimetype="application/json")

    @blueprint.get("/api/examples")
    def example_list() -> Response:
        authorize()
        return _json({"examples": examples.listing()})

    @blueprint.get("/api/examples/<example_id>")
    def example(example_id: str) -> Response:
        authorize()
        found = examples.get(example_id)
        if found is None:
            raise NotFound(f"no example {example_id!r}")
        return _json(found)

    @blueprint.post("/api/request")
    def build_request() -> Response:
        """A Bundle (and patient id) in; the hook request an EHR would send out, or 422."""
        authorize()
        body = _body()
        bundle = body.get("bundle")
        problems = validate_bundle(bundle)
        if problems:
            outcome = {"resourceType": "OperationOutcome", "issue": [p.issue() for p in problems]}
            return _json(outcome, 422, FHIR_JSON)
        if not isinstance(bundle, dict):  # validate_bundle reports a non-object; never reached
            raise InvalidRequest("give the FHIR Bundle as a JSON object")
        patient = patient_of(bundle, str(body.get("patientId") or "") or None)
        if patient is None:
            raise InvalidRequest("give the patient id: the Bundle has no single Patient")
        return _json({"request": hook_request(bundle, patient, service)})

    @blueprint.post("/api/evaluate")
    def evaluate() -> Response:
        """The hook request through the service's own handler at ``now``, plus the panels."""
        authorize()
        body = _body()
        hook = body.get("request")
        if not isinstance(hook, dict):
            raise InvalidRequest("give the hook request as request")
        if "fhirAuthorization" in hook:
            raise InvalidRequest(
                "the workbench gathers FHIR data in the browser: send prefetch, not "
                "fhirAuthorization"
            )
        at = _now(body.get("now")) or datetime.now(UTC)
        raw = orjson.dumps(hook)
        # The same call a hook gets, rule-book links included (they are built from the base URL).
        outcome = host.handler.handle(service.id, raw, now=at, base_url=request.url_root)
        parsed = host.handler.parse_request(service, raw)
        resolved = host.handler.resolve(service, parsed, time.monotonic())
        record = PatientRecord.from_resources(
            str(parsed["context"]["patientId"]),
            (r for key in resolved.resources for r in resolved.resources[key]),
        )
        analysis = analyse(record, host.content, at)
        cards = outcome.response["cards"]
        return _json(
            {
                "now": at.isoformat(),
                "request": hook,
                "response": outcome.response,
                "explanation": explain(analysis, host.content, record),
                "timeline": timeline(analysis, record, host.content, cards),
            }
        )

    @blueprint.after_request
    def content_security(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = _CSP
        return response

    app.register_blueprint(blueprint)


def _authenticator(host: WorkbenchHost) -> ClientAuthenticator | None:
    """The workbench's own token check, over the same trusted issuers as hook calls."""
    trusted = host.trust.authenticator
    if trusted is None:
        return None
    return ClientAuthenticator(
        list(trusted.issuers.values()),
        _SessionTokens(),
        jwks=JwksCache(allow_insecure_http=host.settings.jwks_allow_http),
        leeway_s=host.settings.jwt_leeway_seconds,
    )
