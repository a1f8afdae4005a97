"""Fetching and caching the JSON Web Key Sets (JWKS) that CDS clients publish at their ``jku``.

CDS Hooks 2.0 (§Trusting CDS Clients) lets a client name the URL of its key set in the JWT header
(``jku``) and rotate keys there. That URL is attacker-chosen input until it has been matched against
the issuer's allowlist (done by :mod:`service.security.auth` *before* this module is ever
asked), and even an
allowlisted URL must not become a lever against us. So this module:

* fetches with short connect/read timeouts, an overall deadline, no redirects (a redirect would
  let the allowlisted host send us anywhere) and a response size cap, and accepts only a JSON
  object with a ``keys`` array;
* caches each URL's key set, so a burst of calls costs one fetch;
* refetches when asked for an unknown ``kid`` (so the client can rotate keys without us
  restarting) or when the cached copy is older than ``max_age_s`` (so keys the client withdrew
  stop working), but at most once per ``min_refetch_interval_s`` per URL, so a stream of tokens
  with made-up ``kid`` values cannot make us hammer the client's server;
* keeps serving a stale copy when a periodic refresh fails, because a short outage of the client's
  key server should not lock out a client whose key we already know;
* refuses plain ``http`` URLs unless explicitly allowed (tests), since a key set fetched without TLS
  lets anyone on the path mint tokens;
* indexes each key set by ``kid`` once, when it is fetched (or configured), and keeps a memo of
  the key objects built from it (:class:`KeySet`). Turning a JWK into a usable public key costs
  about as much as the rest of the per-call checks together, so it is done once per key set and
  ``(kid, alg)``, not once per call; a refetch brings a new :class:`KeySet` and so new key objects,
  which is exactly when they may have changed.

It never sees tokens, so it cannot log them. Failures raise
:class:`service.security.failures.AuthFailure` with reason ``"jwks_unavailable"``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import requests

from service.security.failures import AuthFailure

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_BYTES = 256 * 1024
_ACCEPT = "application/jwk-set+json, application/json;q=0.9"

T = TypeVar("T")


def find_key(jwks: Mapping[str, Any], kid: str) -> dict[str, Any] | None:
    """Return the one signing key with this ``kid`` in a JWK Set, or ``None``.

    Keys marked ``"use": "enc"`` are skipped: an encryption key must never verify a signature. A
    ``kid`` that matches more than one signing key is treated as unknown rather than guessing which
    one the client meant. A one-off lookup through :class:`KeySet`, which the authenticator keeps;
    a document that is not a JWK Set has no keys.
    """
    try:
        key_set = KeySet(jwks)
    except ValueError:
        return None
    key = key_set.find(kid)
    return dict(key) if key is not None else None


class KeySet:
    """One JWK Set, indexed by ``kid`` once, plus a memo of the key objects built from its keys.

    Why: the per-call work of authenticating a client should be the signature check and little
    else. Scanning the key list and, above all, building a public key object from a JWK (decoding
    the coordinates, checking the point is on the curve) would otherwise be repeated on every
    call. A :class:`KeySet` is immutable once built; a refetched document gets a new one, so the
    memo can never serve a key the client has withdrawn.

    :meth:`find` gives the one signing key of a ``kid`` (an ambiguous ``kid`` is unknown and
    logged). :meth:`prepared` memoizes whatever the caller builds from one key for
    one algorithm; it is bounded by the number of keys times the number of algorithms, since it is
    only ever asked about keys that :meth:`find` returned. Safe to share between threads: two
    threads may build the same entry at once, and either result is kept (building is pure).
    """

    __slots__ = ("_ambiguous", "_document", "_prepared", "_signing")

    def __init__(self, document: Mapping[str, Any]) -> None:
        """Index ``document``, which must be a JWK Set (raises :class:`ValueError` otherwise)."""
        self._document = validate_jwks(dict(document))
        by_kid: dict[str, list[dict[str, Any]]] = {}
        for key in self._document["keys"]:
            kid = key.get("kid")
            # A kid that is not a string can never equal the header's kid (a non-empty string).
            if isinstance(kid, str) and key.get("use", "sig") == "sig":
                by_kid.setdefault(kid, []).append(key)
        self._signing: dict[str, dict[str, Any]] = {
            kid: dict(keys[0]) for kid, keys in by_kid.items() if len(keys) == 1
        }
        self._ambiguous: dict[str, int] = {
            kid: len(keys) for kid, keys in by_kid.items() if len(keys) > 1
        }
        self._prepared: dict[tuple[str, str], Any] = {}

    @property
    def document(self) -> Mapping[str, Any]:
        """The JWK Set this index was built from."""
        return self._document

    @property
    def kids(self) -> tuple[str, ...]:
        """The ``kid`` of every signing key :meth:`find` answers for (to build keys in advance)."""
        return tuple(self._signing)

    def find(self, kid: str) -> Mapping[str, Any] | None:
        """The one signing key with this ``kid``, or ``None``.

        The mapping is shared: callers must not modify it.
        """
        key = self._signing.get(kid)
        if key is None and kid in self._ambiguous:
            log.warning(
                "JWK Set holds %d signing keys with the same kid %r; ignoring them",
                self._ambiguous[kid],
                kid,
            )
        return key

    def prepared(self, kid: str, alg: str, build: Callable[[Mapping[str, Any]], T]) -> T:
        """``build(key)`` for the key ``kid`` and algorithm ``alg``, computed once per key set.

        ``kid`` must be one :meth:`find` returned a key for; ``build`` must be pure (its result,
        including a result that describes a failure, is reused for every later call). An exception
        from ``build`` is not memoized.
        """
        memo_key = (kid, alg)
        try:
            value: T = self._prepared[memo_key]
        except KeyError:
            key = self._signing[kid]
            value = self._prepared[memo_key] = build(key)
        return value


def validate_jwks(document: Any) -> dict[str, Any]:
    """Check that ``document`` looks like a JWK Set (an object whose ``keys`` is a list of objects).

    Used both for fetched key sets and for key sets configured out of band, so that a broken
    configuration fails at start-up instead of on the first call. Raises :class:`ValueError`.
    """
    if not isinstance(document, dict):
        raise ValueError("a JWK Set must be a JSON object")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("a JWK Set must have a 'keys' array")
    if not all(isinstance(key, dict) for key in keys):
        raise ValueError("every entry of a JWK Set's 'keys' must be an object")
    return document


def _unavailable() -> Exception:
    return AuthFailure("jwks_unavailable")


class FoundKey(NamedTuple):
    """A signing key (a JWK, shared: do not modify) and the indexed key set it was found in."""

    key_set: KeySet
    key: Mapping[str, Any]


@dataclass
class _Entry:
    """What we know about one jku URL. Guarded by its own lock so one slow URL blocks no other."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    key_set: KeySet | None = None
    fetched_at: float = 0.0
    last_attempt: float | None = None


class JwksCache:
    """A per-URL, rate-limited cache of fetched JWK Sets; safe to share between threads.

    One instance is meant to live for the whole process (created next to the
    :class:`service.security.auth.ClientAuthenticator`). ``clock`` is a monotonic clock and is
    injectable so tests can step through the rate limit without sleeping.
    """

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        min_refetch_interval_s: float = 60.0,
        max_age_s: float = 3600.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        total_timeout_s: float = 5.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_refetch_interval_s < 0 or max_age_s < min_refetch_interval_s:
            raise ValueError("need 0 <= min_refetch_interval_s <= max_age_s")
        self._session = session if session is not None else requests.Session()
        self._min_refetch_interval_s = min_refetch_interval_s
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._total_timeout_s = total_timeout_s
        self._max_bytes = max_bytes
        self._allow_insecure_http = allow_insecure_http
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._entries_lock = threading.Lock()

    def check_url(self, url: str) -> None:
        """Raise :class:`ValueError` unless ``url`` is one this cache is willing to fetch.

        Called for every configured ``jku`` when the authenticator is built, so a typo or an
        ``http`` URL in production configuration stops the service at start-up.
        """
        parts = urlsplit(url)
        schemes = ("https", "http") if self._allow_insecure_http else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(
                f"not an acceptable jku URL (must be absolute {'/'.join(schemes)}): {url!r}"
            )
        if parts.username or parts.password:
            raise ValueError(f"a jku URL must not carry credentials: {parts.hostname!r}")

    def get_key(self, url: str, kid: str) -> dict[str, Any] | None:
        """Return the signing key ``kid`` from the key set at ``url``, or ``None`` if it has none.

        A copy of the key found by :meth:`find`, with the same fetching and rate limiting.
        """
        found = self.find(url, kid)
        return dict(found.key) if found is not None else None

    def find(self, url: str, kid: str) -> FoundKey | None:
        """The signing key ``kid`` from the key set at ``url`` and that (indexed) set, or ``None``.

        Fetches on first use, when the cached set is older than ``max_age_s``, and when ``kid`` is
        not in the cached set, in each case only if the last attempt for this URL was at least
        ``min_refetch_interval_s`` ago. Raises ``AuthFailure("jwks_unavailable")`` when the key
        set cannot be obtained and no cached copy answers the question. The returned
        :class:`KeySet` is the one the key came from, so callers can memoize key objects on it.
        """
        entry = self._entry(url)
        with entry.lock:
            now = self._clock()
            cached = entry.key_set
            key = cached.find(kid) if cached is not None else None
            if cached is not None and key is not None and now - entry.fetched_at < self._max_age_s:
                return FoundKey(cached, key)  # cached and fresh: the common case, no I/O
            may_fetch = (
                entry.last_attempt is None
                or now - entry.last_attempt >= self._min_refetch_interval_s
            )
            if not may_fetch:
                if cached is None:
                    # The last attempt failed moments ago: do not retry on every request.
                    raise _unavailable()
                return FoundKey(cached, key) if key is not None else None
            entry.last_attempt = now
            try:
                fetched = KeySet(self._fetch(url))
            except FetchError as error:
                log.warning("could not fetch JWK Set from %s: %s", url, error)
                if cached is not None and key is not None:
                    log.warning("still using the cached key %r from %s", kid, url)
                    return FoundKey(cached, key)
                raise _unavailable() from None
            entry.key_set = fetched
            entry.fetched_at = now
            log.info("fetched JWK Set from %s (%d keys)", url, len(fetched.document["keys"]))
            key = fetched.find(kid)
            return FoundKey(fetched, key) if key is not None else None

    def _entry(self, url: str) -> _Entry:
        with self._entries_lock:
            entry = self._entries.get(url)
            if entry is None:
                entry = self._entries[url] = _Entry()
            return entry

    def _fetch(self, url: str) -> dict[str, Any]:
        try:
            self.check_url(url)
        except ValueError as error:
            raise FetchError(str(error)) from None
        deadline = time.monotonic() + self._total_timeout_s
        body = bytearray()
        try:
            with self._session.get(
                url,
                timeout=(self._timeout_s, self._timeout_s),
                allow_redirects=False,
                stream=True,
                headers={"Accept": _ACCEPT},
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code}")
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                    raise FetchError(f"response larger than {self._max_bytes} bytes")
                for chunk in response.iter_content(chunk_size=16 * 1024):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise FetchError(f"response larger than {self._max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise FetchError(f"response took longer than {self._total_timeout_s} s")
        except requests.RequestException as error:
            raise FetchError(type(error).__name__) from None
        try:
            return validate_jwks(json.loads(bytes(body)))
        except (ValueError, RecursionError) as error:
            raise FetchError(f"not a JWK Set: {error}") from None


class FetchError(Exception):
    """One fetch of a key set failed; internal, turned into ``AuthFailure("jwks_unavailable")``."""
