"""JWT bearer authentication of CDS clients (CDS Hooks 2.0, "Trusting CDS Clients").

Every discovery, hook and feedback call carries ``Authorization: Bearer <JWT>``, signed with the
client's private key. Anyone can produce a well-formed JWT, so everything in it is attacker input
until the signature has been verified against a key *we* chose to trust. The order of the checks in
:meth:`ClientAuthenticator.authenticate` follows from that:

1. Parse the header without trusting it. Accept only an explicit allowlist of asymmetric
   algorithms: never ``none`` and never HMAC, whatever the header says, because an HMAC "signature"
   made with our copy of a client's *public* key (the classic algorithm-confusion attack) would
   otherwise verify.
2. Find the issuer in configuration *before any network I/O*, and fetch a header ``jku`` only if
   it is exactly on that issuer's allowlist. Otherwise anyone could host a key set and mint
   tokens, and we would fetch arbitrary URLs (SSRF).
3. Pick the key by ``kid``, from the issuer's out-of-band key set and/or its allowed ``jku``. Check
   that the key type fits the algorithm, then let PyJWT verify the signature with exactly that one
   algorithm.
4. Only then trust the claims: ``aud`` must name this endpoint's URL, and ``exp``/``iat``/``nbf``
   must be current (with a small leeway for clock skew). The lifetime is bounded, because we must
   remember every ``jti`` for that long. ``tenant`` must be allowlisted where configured. Last,
   ``jti`` must be new, which stops replay of a captured token.

The module is framework-free: the HTTP layer passes the ``Authorization`` header and the expected
audience, which it computes from the configured public base URL (never from the request URL,
which differs behind a TLS-terminating proxy). Every failure is an :class:`AuthFailure` whose
``reason`` goes to logs and metrics. The caller gets a bare 401. Tokens are never logged and never
put into exceptions. Logging ``iss``, ``kid``, ``tenant`` and ``jti`` is fine.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from service.errors import ServiceError
from service.jwks import JwksCache, find_key, validate_jwks

log = logging.getLogger(__name__)

#: The asymmetric JWS algorithms this module knows how to check, with the JWK key type (and, for
#: ECDSA, the curve) each one requires. Anything else (``none``, ``HS*``, ``EdDSA``...) cannot be
#: configured, so a symmetric algorithm cannot slip in through configuration either.
_KEY_REQUIREMENTS: Mapping[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}

DEFAULT_ALGORITHMS: tuple[str, ...] = ("ES384", "RS384", "ES256", "RS256", "PS384")

#: Longest ``Authorization`` header we bother to parse; real client JWTs are well under 2 KiB.
MAX_TOKEN_CHARS = 16 * 1024
#: Longest ``jti`` we store; the spec's clients send a UUID or 64 hex characters.
MAX_JTI_CHARS = 256

#: Claims that must be present. PyJWT reports each missing one as ``missing_<claim>``.
_REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")


@dataclass(frozen=True)
class TrustedIssuer:
    """One CDS client we trust, identified by its ``iss``, and where its public keys come from.

    ``jku_allowlist`` holds the exact key-set URLs we may fetch for this issuer. ``jwks`` is a key
    set agreed out of band (inline, or loaded from a file by the caller). At least one of the two is
    required, otherwise the issuer could never authenticate. ``tenants``, when non-empty, restricts
    the ``tenant`` claim. ``fhir_servers`` is carried for the prefetch layer's per-issuer
    ``fhirServer`` allowlist.
    """

    iss: str
    jku_allowlist: tuple[str, ...] = ()
    jwks: Mapping[str, Any] | None = None
    tenants: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.iss:
            raise ValueError("a trusted issuer needs a non-empty iss")
        if self.jwks is None and not self.jku_allowlist:
            raise ValueError(f"trusted issuer {self.iss!r} has neither jwks nor jku_allowlist")
        if self.jwks is not None:
            try:
                validate_jwks(dict(self.jwks))
            except ValueError as error:
                raise ValueError(f"trusted issuer {self.iss!r}: {error}") from None


@dataclass(frozen=True)
class VerifiedClient:
    """The caller, once its token has passed every check: safe to log and to authorize on."""

    iss: str
    jti: str
    tenant: str | None
    kid: str
    expires_at: float


class AuthFailure(ServiceError):
    """A CDS client could not be authenticated: HTTP 401, with no detail for the caller.

    ``reason`` is a short machine-readable code for logs and metrics (``alg_not_allowed``,
    ``unknown_issuer``, ``bad_signature``...). Neither the reason nor the message ever contains the
    token. It derives from :class:`ServiceError`, so the HTTP layer's existing mapping produces the
    401 with a generic message. The reason stays in ``str()`` for logs, not in ``message``.
    """

    status = 401
    issue_code = "login"

    def __init__(self, reason: str) -> None:
        super().__init__("authentication failed")
        self.reason = reason

    def __str__(self) -> str:
        return f"authentication failed: {self.reason}"


class ReplayGuard(Protocol):
    """Remembers which ``(iss, jti)`` pairs have been accepted, until they expire.

    Production uses an implementation shared by all worker processes (a database table), since a
    per-process memory lets a token be replayed against a sibling worker.
    """

    def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record the pair; return ``False`` if it was already recorded (a replay).

        ``expires_at`` is the epoch second after which the token can no longer be accepted, so
        the pair may be forgotten then.
        """
        ...


class InMemoryReplayGuard:
    """A :class:`ReplayGuard` for tests and single-process use (thread-safe, self-pruning)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record ``(iss, jti)`` until ``expires_at``; ``False`` if it is already recorded."""
        with self._lock:
            now = self._clock()
            expired = [pair for pair, until in self._seen.items() if until < now]
            for pair in expired:
                del self._seen[pair]
            if (iss, jti) in self._seen:
                return False
            self._seen[(iss, jti)] = expires_at
            return True


# PyJWT exception -> reason. Order matters: subclasses before their bases.
_PYJWT_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "unknown_issuer"),
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAlgorithmError, "alg_not_allowed"),
    (jwt.InvalidKeyError, "bad_key"),
    (jwt.PyJWKError, "bad_key"),
    (jwt.InvalidIssuedAtError, "malformed"),
    (jwt.exceptions.InvalidJTIError, "malformed"),
    (jwt.exceptions.InvalidSubjectError, "malformed"),
    (jwt.DecodeError, "malformed"),
    (jwt.InvalidTokenError, "malformed"),
    (jwt.PyJWTError, "malformed"),
)


def _reason_for(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"missing_{error.claim}" if error.claim in _REQUIRED_CLAIMS else "malformed"
    for kind, reason in _PYJWT_REASONS:
        if isinstance(error, kind):
            return reason
    return "malformed"  # pragma: no cover - every PyJWTError is matched above


def _number(payload: Mapping[str, Any], claim: str) -> float | None:
    """A NumericDate claim as float, ``None`` if absent; ``malformed`` if not a finite number."""
    value = payload.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthFailure("malformed")
    return float(value)


class ClientAuthenticator:
    """Checks the bearer JWT of an incoming CDS Hooks call and says who sent it.

    Build one per process from configuration and share it: it holds the key-set cache. ``issuers``
    are the clients we trust. ``replay`` remembers used ``jti`` values and should be shared by all
    workers. ``jwks`` fetches ``jku`` key sets; a default :class:`JwksCache`, which requires
    https, is created if none is given. ``leeway_s`` absorbs clock skew. ``max_lifetime_s`` bounds
    ``exp - iat``; the spec says tokens live "no more than an hour". ``algorithms`` must be a
    subset of the known asymmetric algorithms. ``clock`` returns epoch seconds and is injectable
    for tests.
    """

    def __init__(
        self,
        issuers: Sequence[TrustedIssuer],
        replay: ReplayGuard,
        *,
        jwks: JwksCache | None = None,
        leeway_s: float = 60,
        max_lifetime_s: float = 3600,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one signing algorithm must be allowed")
        unknown = [alg for alg in algorithms if alg not in _KEY_REQUIREMENTS]
        if unknown:
            raise ValueError(
                f"algorithms {unknown} are not allowed: only asymmetric "
                f"{sorted(_KEY_REQUIREMENTS)} (CDS Hooks forbids 'none' and HMAC)"
            )
        if leeway_s < 0 or max_lifetime_s <= 0:
            raise ValueError("leeway_s must be >= 0 and max_lifetime_s > 0")
        self._issuers: dict[str, TrustedIssuer] = {}
        for issuer in issuers:
            if issuer.iss in self._issuers:
                raise ValueError(f"trusted issuer {issuer.iss!r} is configured twice")
            self._issuers[issuer.iss] = issuer
        self._replay = replay
        self._jwks = jwks if jwks is not None else JwksCache()
        for issuer in self._issuers.values():
            for url in issuer.jku_allowlist:
                self._jwks.check_url(url)
        self._leeway_s = float(leeway_s)
        self._max_lifetime_s = float(max_lifetime_s)
        self._algorithms = tuple(algorithms)
        self._clock = clock

    @property
    def issuers(self) -> Mapping[str, TrustedIssuer]:
        """The configured issuers by ``iss`` (e.g. for the per-issuer ``fhirServer`` allowlist)."""
        return dict(self._issuers)

    def authenticate(self, authorization: str | None, audience: str) -> VerifiedClient:
        """Verify the ``Authorization`` header of a call to the endpoint whose URL is ``audience``.

        Returns the verified client, or raises :class:`AuthFailure`. A token is accepted at most
        once: a successful call records its ``jti``.
        """
        token = self._bearer_token(authorization)
        header = self._unverified_header(token)
        alg, kid = self._check_header(header)
        issuer = self._issuer(token)
        jku = self._check_jku(issuer, header)
        key = self._select_key(issuer, jku, kid, alg)
        payload = self._verify_signature(token, key, alg, issuer, audience, kid)
        return self._check_claims(payload, issuer, kid)

    # -- steps -------------------------------------------------------------------------------

    @staticmethod
    def _bearer_token(authorization: str | None) -> str:
        if authorization is None or not authorization.strip():
            raise AuthFailure("missing_token")
        if len(authorization) > MAX_TOKEN_CHARS:
            raise AuthFailure("malformed")
        parts = authorization.split()
        if parts[0].lower() != "bearer":
            raise AuthFailure("malformed")
        if len(parts) == 1:
            raise AuthFailure("missing_token")
        if len(parts) != 2:
            raise AuthFailure("malformed")
        return parts[1]

    @staticmethod
    def _unverified_header(token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure("malformed") from None
        if not isinstance(header, dict):
            raise AuthFailure("malformed")  # pragma: no cover - PyJWT already insists on an object
        return header

    def _check_header(self, header: Mapping[str, Any]) -> tuple[str, str]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthFailure("alg_not_allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthFailure("wrong_typ")
        if "b64" in header or "crit" in header:
            raise AuthFailure("malformed")  # no JWS extensions in CDS Hooks; never guess
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailure("missing_kid")
        return alg, kid

    def _issuer(self, token: str) -> TrustedIssuer:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthFailure("malformed") from None
        iss = claims.get("iss") if isinstance(claims, dict) else None
        if iss is None:
            raise AuthFailure("missing_iss")
        if not isinstance(iss, str):
            raise AuthFailure("malformed")
        issuer = self._issuers.get(iss)
        if issuer is None:
            log.info("rejected token from unknown issuer %r", iss[:200])
            raise AuthFailure("unknown_issuer")
        return issuer

    @staticmethod
    def _check_jku(issuer: TrustedIssuer, header: Mapping[str, Any]) -> str | None:
        jku = header.get("jku")
        if jku is None:
            return None
        if not isinstance(jku, str) or jku not in issuer.jku_allowlist:
            log.info("rejected jku not allowlisted for issuer %r", issuer.iss)
            raise AuthFailure("jku_not_allowed")
        return jku

    def _select_key(self, issuer: TrustedIssuer, jku: str | None, kid: str, alg: str) -> jwt.PyJWK:
        key = find_key(issuer.jwks, kid) if issuer.jwks is not None else None
        if key is None:
            # With a header jku, only that (allowlisted) URL; without one, the issuer's configured
            # URLs. Each is rate-limited by the cache, and none came from the token.
            urls = (jku,) if jku is not None else issuer.jku_allowlist
            for url in urls:
                key = self._jwks.get_key(url, kid)
                if key is not None:
                    break
        if key is None:
            log.info("no key %r for issuer %r", kid, issuer.iss)
            raise AuthFailure("unknown_kid")
        kty, crv = _KEY_REQUIREMENTS[alg]
        if key.get("kty") != kty or (crv is not None and key.get("crv") != crv):
            raise AuthFailure("key_alg_mismatch")
        key_alg = key.get("alg")
        if key_alg is not None and key_alg != alg:
            raise AuthFailure("key_alg_mismatch")
        try:
            return jwt.PyJWK(key, algorithm=alg)
        except jwt.PyJWTError:
            log.warning("unusable key %r for issuer %r", kid, issuer.iss)
            raise AuthFailure("bad_key") from None

    def _verify_signature(
        self,
        token: str,
        key: jwt.PyJWK,
        alg: str,
        issuer: TrustedIssuer,
        audience: str,
        kid: str,
    ) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "verify_jti": True,
                    # Times are checked below against the injectable clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": list(_REQUIRED_CLAIMS),
                    "strict_aud": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as error:
            reason = _reason_for(error)
            log.info("rejected token from %r (kid %r): %s", issuer.iss, kid, reason)
            raise AuthFailure(reason) from None
        return payload

    def _check_claims(
        self, payload: Mapping[str, Any], issuer: TrustedIssuer, kid: str
    ) -> VerifiedClient:
        now = self._clock()
        leeway = self._leeway_s
        exp = _number(payload, "exp")
        iat = _number(payload, "iat")
        nbf = _number(payload, "nbf")
        if exp is None or iat is None:  # pragma: no cover - required above
            raise AuthFailure("malformed")
        if exp <= now - leeway:
            raise AuthFailure("expired")
        if iat > now + leeway:
            raise AuthFailure("issued_in_future")
        if nbf is not None and nbf > now + leeway:
            raise AuthFailure("not_yet_valid")
        if exp - iat > self._max_lifetime_s:
            raise AuthFailure("lifetime_too_long")

        jti = payload.get("jti")
        if not isinstance(jti, str) or not jti.strip():
            raise AuthFailure("missing_jti")
        if len(jti) > MAX_JTI_CHARS:
            raise AuthFailure("malformed")

        tenant = payload.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise AuthFailure("malformed")
        if issuer.tenants and tenant not in issuer.tenants:
            log.info("rejected tenant for issuer %r", issuer.iss)
            raise AuthFailure("wrong_tenant")

        # Remember until the token can no longer pass the exp check (exp + leeway), so it cannot
        # be replayed in the leeway window after an early purge.
        if not self._replay.remember(issuer.iss, jti, exp + leeway):
            log.warning("replayed jti %r from issuer %r", jti, issuer.iss)
            raise AuthFailure("replayed_jti")
        return VerifiedClient(iss=issuer.iss, jti=jti, tenant=tenant, kid=kid, expires_at=exp)
