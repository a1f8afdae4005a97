"""One exception tree for the whole service, mapped to HTTP exactly once (in ``service.http``).

Every error a caller can see derives from :class:`ServiceError` and carries the HTTP status, a
FHIR ``OperationOutcome.issue.code`` and a message that is safe to show to the caller: it never
contains patient data, tokens or stack traces. Internal failures that are not a ``ServiceError``
become a 500 with a generic message, never ``200 {"cards": []}``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Root of every error the service reports to a caller."""

    status: int = 500
    issue_code: str = "exception"

    def __init__(self, message: str, *, diagnostics: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.diagnostics = diagnostics


class InvalidRequest(ServiceError):
    """The body is not a valid CDS Hooks request (malformed JSON, schema violation, wrong hook)."""

    status = 400
    issue_code = "invalid"


class NotFound(ServiceError):
    """No CDS service with the requested id."""

    status = 404
    issue_code = "not-found"


class MethodNotAllowed(ServiceError):
    """The endpoint exists but not for this HTTP method."""

    status = 405
    issue_code = "not-supported"


class PayloadTooLarge(ServiceError):
    """The request body is larger than the configured limit."""

    status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(ServiceError):
    """The request body is not JSON."""

    status = 415
    issue_code = "not-supported"


class PrefetchUnavailable(ServiceError):
    """Required data could be neither taken from prefetch nor fetched (CDS Hooks: 412)."""

    status = 412
    issue_code = "incomplete"


class StoreUnavailable(ServiceError):
    """The shared store cannot be reached now; the client should send the same call again.

    Answered with ``Retry-After`` (:attr:`retry_after_s`): feedback that could not be made
    durable, or, with ``EPIDURAL_CDS_REPLAY_GUARD_WHEN_STORE_DOWN=refuse``, a call whose JWT ID
    could not be recorded.
    """

    status = 503
    issue_code = "transient"
    retry_after_s = 5


class FhirFetchError(Exception):
    """A single FHIR query failed (network, timeout, non-2xx, not FHIR JSON).

    Internal to the data-access layer: prefetch resolution turns it into
    :class:`PrefetchUnavailable` when the data was required. The message never holds the token.
    """


class ContentError(Exception):
    """The clinical content in ``cards/`` is invalid; the service refuses to start.

    ``problems`` lists ``(file, json_path, message)`` triples so a content author can fix every
    problem in one pass.
    """

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        lines = [f"{file} {path}: {message}" for file, path, message in problems]
        super().__init__("invalid clinical content:\n" + "\n".join(lines))


class ConfigError(Exception):
    """A setting from the environment is missing or invalid; the service refuses to start."""
