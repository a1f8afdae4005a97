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

How it stays cheap (the signature check should be nearly the whole cost of a call):

* The compact token is parsed exactly once (:func:`_parse`), by PyJWT's own loader with the
  signature check deferred, so a token is malformed here exactly when PyJWT calls it malformed.
  The header, the payload and the signature then come from that one parse; PyJWT used to parse
  each token three times.
* Key objects are built once per key set and ``(kid, alg)``, not once per call: out-of-band key
  sets when the authenticator is built, fetched ones once per fetch
  (:class:`service.security.jwks.KeySet`).
  The signature is verified with PyJWT's own algorithm object (``Algorithm.verify``), on the key
  PyJWT's ``PyJWK`` built and ``prepare_key`` accepted, after the same minimum-key-length check.
* The claim checks PyJWT made for us (required claims, ``iss``, ``aud``, ``sub`` and ``jti``
  types) are made by :func:`_claims_refusal` with PyJWT's rules and in PyJWT's order, giving the
  reason each PyJWT exception used to map to. ``tests/auth/test_pyjwt_parity.py`` holds the
  parser to PyJWT's loader, and the whole authenticator to the PyJWT pipeline it replaced, on
  generated tokens.

The module is framework-free: the HTTP layer passes the ``Authorization`` header and the expected
audience, which it computes from the configured public base URL (never from the request URL,
which differs behind a TLS-terminating proxy). Every failure is an :class:`AuthFailure` whose
``reason`` goes to logs and metrics. The caller gets a bare 401. Tokens are never logged and never
put into exceptions. Logging ``iss``, ``kid``, ``tenant`` and ``jti`` is fine.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import jwt
from jwt.algorithms import Algorithm

from service.security.failures import AuthFailure
from service.security.jwks import FoundKey, JwksCache, KeySet, validate_jwks

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

#: Claims that must be present, checked in this order; each missing one is ``missing_<claim>``.
_REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")

#: The smallest RSA modulus we verify with: PyJWT's own floor (``RSAAlgorithm._MIN_KEY_SIZE``,
#: NIST SP 800-131A), enforced here too so it does not depend on the PyJWT version.
MIN_RSA_KEY_BITS = 2048


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


@runtime_checkable
class ReleasingReplayGuard(ReplayGuard, Protocol):
    """A :class:`ReplayGuard` that can also forget a pair, for a call that took no effect."""

    def release(self, iss: str, jti: str) -> None:
        """Forget ``(iss, jti)`` so the same token may be sent once more."""
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


@dataclass(frozen=True, slots=True)
class _Token:
    """A compact JWS split and decoded once; nothing in it is trusted yet."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


_JWS = jwt.PyJWS()


def _parse(token: str) -> _Token:
    """Split and decode a compact JWS once, with PyJWT's own loader; nothing is verified yet.

    ``PyJWS.decode_complete`` without the signature check runs PyJWT's loading and header
    rules (base64url segments, JSON header object, ``kid`` type, ``crit``, ``b64``); anything it
    refuses is ``malformed``. The signature is checked later, once the issuer and key are known,
    with PyJWT's algorithm object; the payload's JSON is decoded after the header checks.
    """
    try:
        loaded = _JWS.decode_complete(token, options={"verify_signature": False})
        signing_input = token.encode("utf-8").rsplit(b".", 1)[0]
    except (jwt.PyJWTError, UnicodeError):
        raise AuthFailure("malformed") from None
    return _Token(loaded["header"], loaded["payload"], signing_input, loaded["signature"])


def _decode_payload(token: _Token) -> dict[str, Any]:
    """The payload as a JSON object (PyJWT's ``_decode_payload`` rules); else ``malformed``."""
    try:
        payload = json.loads(token.payload)
    except (ValueError, RecursionError):
        raise AuthFailure("malformed") from None
    if not isinstance(payload, dict):
        raise AuthFailure("malformed")
    return payload


def _claims_refusal(payload: Mapping[str, Any], iss: str, audience: str) -> str | None:
    """What PyJWT's ``_validate_claims`` said about a verified payload, as our reason code.

    The same checks, in the same order, as ``jwt.decode`` with the options this module used
    (``require`` = :data:`_REQUIRED_CLAIMS`; ``verify_iss``, ``verify_aud`` (not strict),
    ``verify_sub`` and ``verify_jti`` on; the time claims checked by the caller against its own
    clock). ``None`` when the payload passes.
    """
    for claim in _REQUIRED_CLAIMS:
        if payload.get(claim) is None:
            return f"missing_{claim}"
    if payload["iss"] != iss:  # pragma: no cover - the issuer was looked up by this very iss
        return "unknown_issuer"
    claimed = payload["aud"]
    if not claimed:
        return "missing_aud"
    if isinstance(claimed, str):
        claimed = [claimed]
    if not isinstance(claimed, list) or any(not isinstance(aud, str) for aud in claimed):
        return "wrong_audience"
    if audience not in claimed:
        return "wrong_audience"
    if "sub" in payload and not isinstance(payload["sub"], str):
        return "malformed"
    if not isinstance(payload["jti"], str):
        return "malformed"
    return None


def _claimed_audience(claimed: Any) -> str | list[str] | None:
    """A verified token's ``aud`` for the log: at most 5 audiences of at most 300 characters."""
    if claimed is None:
        return None
    if isinstance(claimed, list):
        return [str(aud)[:300] for aud in claimed[:5]]
    return str(claimed)[:300]


@dataclass(frozen=True, slots=True)
class _Verifier:
    """What one key of a key set, used with one algorithm, comes to; built once, then reused.

    ``select_refusal`` is a refusal found while choosing the key (``key_alg_mismatch``, or
    ``bad_key`` when PyJWT cannot build a key from the JWK); ``verify_refusal`` one that PyJWT
    used to raise when verifying (``bad_key``: a key that ``prepare_key`` refuses, or one below
    the minimum length). Otherwise ``algorithm`` and ``key`` verify signatures.
    """

    select_refusal: str | None = None
    verify_refusal: str | None = None
    algorithm: Algorithm | None = None
    key: Any = None


def _build_verifier(jwk: Mapping[str, Any], alg: str) -> _Verifier:
    """The :class:`_Verifier` for ``jwk`` under ``alg``: the key checks that used to run per call.

    Pure (the result depends only on its arguments), so :meth:`KeySet.prepared` may keep it.
    """
    kty, crv = _KEY_REQUIREMENTS[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return _Verifier(select_refusal="key_alg_mismatch")
    key_alg = jwk.get("alg")
    if key_alg is not None and key_alg != alg:
        return _Verifier(select_refusal="key_alg_mismatch")
    try:
        built = jwt.PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWTError:
        return _Verifier(select_refusal="bad_key")
    algorithm: Algorithm = built.Algorithm
    try:
        # What PyJWS._verify_signature did with a PyJWK before checking the signature.
        key = algorithm.prepare_key(built.key)
        check_key_length = getattr(algorithm, "check_key_length", None)  # PyJWT >= 2.10
        too_short = check_key_length(key) if check_key_length is not None else None
        if not too_short and kty == "RSA" and key.key_size < MIN_RSA_KEY_BITS:
            too_short = f"RSA key of {key.key_size} bits"  # pragma: no cover - PyJWT checks too
        if too_short:
            raise jwt.InvalidKeyError(too_short)
    except jwt.PyJWTError as error:
        return _Verifier(verify_refusal=_reason_for(error))
    return _Verifier(algorithm=algorithm, key=key)


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
        self._algorithms = frozenset(algorithms)
        self._clock = clock
        # Indexed once here rather than scanned per call; their key objects are memoized on them.
        self._key_sets: dict[str, KeySet] = {
            iss: KeySet(issuer.jwks)
            for iss, issuer in self._issuers.items()
            if issuer.jwks is not None
        }
        # One builder per algorithm, so that no callable is created per call.
        self._builders: dict[str, Callable[[Mapping[str, Any]], _Verifier]] = {
            alg: functools.partial(_build_verifier, alg=alg) for alg in self._algorithms
        }
        # Build the out-of-band key objects now: this runs in gunicorn's master before it forks,
        # so every worker starts with them instead of building its own on its first calls.
        for key_set in self._key_sets.values():
            for kid in key_set.kids:
                for alg in self._algorithms:
                    key_set.prepared(kid, alg, self._builders[alg])
        self._issuers_view: Mapping[str, TrustedIssuer] = MappingProxyType(self._issuers)

    @property
    def issuers(self) -> Mapping[str, TrustedIssuer]:
        """The configured issuers by ``iss`` (e.g. for the per-issuer ``fhirServer`` allowlist).

        A read-only view, made once: this is looked up on every hook call.
        """
        return self._issuers_view

    def authenticate(self, authorization: str | None, audience: str) -> VerifiedClient:
        """Verify the ``Authorization`` header of a call to the endpoint whose URL is ``audience``.

        Returns the verified client, or raises :class:`AuthFailure`. A token is accepted at most
        once: a successful call records its ``jti``.
        """
        token = _parse(self._bearer_token(authorization))
        alg, kid = self._check_header(token.header)
        payload = _decode_payload(token)
        issuer = self._issuer(payload)
        jku = self._check_jku(issuer, token.header)
        verifier = self._select_key(issuer, jku, kid, alg)
        self._verify(token, payload, verifier, issuer, audience, kid)
        return self._check_claims(payload, issuer, kid)

    def release(self, client: VerifiedClient) -> None:
        """Let ``client``'s token be used once more: its call was authenticated but took no
        effect (feedback the store could not keep, answered 503), so the client's retry with
        the same token must not be refused as a replay. A no-op for guards that cannot forget.
        """
        if isinstance(self._replay, ReleasingReplayGuard):
            self._replay.release(client.iss, client.jti)

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

    def _issuer(self, payload: Mapping[str, Any]) -> TrustedIssuer:
        iss = payload.get("iss")
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

    def _select_key(self, issuer: TrustedIssuer, jku: str | None, kid: str, alg: str) -> _Verifier:
        found: FoundKey | None = None
        own = self._key_sets.get(issuer.iss)
        if own is not None:
            key = own.find(kid)
            if key is not None:
                found = FoundKey(own, key)
        if found is None:
            # With a header jku, only that (allowlisted) URL; without one, the issuer's configured
            # URLs. Each is rate-limited by the cache, and none came from the token.
            urls = (jku,) if jku is not None else issuer.jku_allowlist
            for url in urls:
                found = self._jwks.find(url, kid)
                if found is not None:
                    break
        if found is None:
            log.info("no key %r for issuer %r", kid, issuer.iss)
            raise AuthFailure("unknown_kid")
        verifier = found.key_set.prepared(kid, alg, self._builders[alg])
        if verifier.select_refusal is not None:
            if verifier.select_refusal == "bad_key":
                log.warning("unusable key %r for issuer %r", kid, issuer.iss)
            raise AuthFailure(verifier.select_refusal)
        return verifier

    @staticmethod
    def _verify(
        token: _Token,
        payload: Mapping[str, Any],
        verifier: _Verifier,
        issuer: TrustedIssuer,
        audience: str,
        kid: str,
    ) -> None:
        """The signature, then the claims PyJWT used to check, as ``jwt.decode`` ordered them."""
        reason = verifier.verify_refusal
        if reason is None:
            algorithm = verifier.algorithm
            if algorithm is None:  # pragma: no cover - set whenever there is no refusal
                raise AuthFailure("bad_key")
            if not algorithm.verify(token.signing_input, verifier.key, token.signature):
                reason = "bad_signature"
            else:
                reason = _claims_refusal(payload, issuer.iss, audience)
        if reason is not None:
            log.info("rejected token from %r (kid %r): %s", issuer.iss, kid, reason)
            if reason in ("wrong_audience", "missing_aud"):
                raise AuthFailure(
                    reason,
                    expected_audience=audience,
                    received_audience=_claimed_audience(payload.get("aud")),
                )
            raise AuthFailure(reason)

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
