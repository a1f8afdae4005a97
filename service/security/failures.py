"""The one exception a failed client authentication becomes, shared by every trust module.

It lives on its own so that the authenticator (:mod:`service.security.auth`) and the key-set
cache (:mod:`service.security.jwks`), which both raise it, need not import each other.
"""

from __future__ import annotations

from service.errors import ServiceError


class AuthFailure(ServiceError):
    """A CDS client could not be authenticated: HTTP 401, with no detail for the caller.

    ``reason`` is a short machine-readable code for logs and metrics (``alg_not_allowed``,
    ``unknown_issuer``, ``bad_signature``...). Neither the reason nor the message ever contains the
    token. It derives from :class:`ServiceError`, so the HTTP layer's existing mapping produces the
    401 with a generic message. The reason stays in ``str()`` for logs, not in ``message``.
    """

    status = 401
    issue_code = "login"

    def __init__(
        self,
        reason: str,
        *,
        expected_audience: str | None = None,
        received_audience: object = None,
    ) -> None:
        super().__init__("authentication failed")
        self.reason = reason
        self.expected_audience = expected_audience
        self.received_audience = received_audience

    def __str__(self) -> str:
        return f"authentication failed: {self.reason}"
