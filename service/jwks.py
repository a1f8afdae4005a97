"""Fetching and caching the JSON Web Key Sets (JWKS) that CDS clients publish at their ``jku``.

CDS Hooks 2.0 (§Trusting CDS Clients) lets a client name the URL of its key set in the JWT header
(``jku``) and rotate keys there. That URL is attacker-chosen input until it has been matched against
the issuer's allowlist (done by :mod:`service.auth` *before* this module is ever asked), and even an
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
  lets anyone on the path mint tokens.

It never sees tokens, so it cannot log them. Failures raise
:class:`service.auth.AuthFailure` with reason ``"jwks_unavailable"``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_BYTES = 256 * 1024
_ACCEPT = "application/jwk-set+json, application/json;q=0.9"


def find_key(jwks: Mapping[str, Any], kid: str) -> dict[str, Any] | None:
    """Return the one signing key with this ``kid`` in a JWK Set, or ``None``.

    Keys marked ``"use": "enc"`` are skipped: an encryption key must never verify a signature. A
    ``kid`` that matches more than one signing key is treated as unknown rather than guessing which
    one the client meant.
    """
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return None
    matches = [
        key
        for key in keys
        if isinstance(key, dict) and key.get("kid") == kid and key.get("use", "sig") == "sig"
    ]
    if len(matches) > 1:
        log.warning(
            "JWK Set holds %d signing keys with the same kid %r; ignoring them", len(matches), kid
        )
        return None
    return dict(matches[0]) if matches else None


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
    # Imported here: service.auth imports this module for JwksCache.
    from service.auth import AuthFailure

    return AuthFailure("jwks_unavailable")


@dataclass
class _Entry:
    """What we know about one jku URL. Guarded by its own lock so one slow URL blocks no other."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    jwks: dict[str, Any] | None = None
    fetched_at: float = 0.0
    last_attempt: float | None = None


class JwksCache:
    """A per-URL, rate-limited cache of fetched JWK Sets; safe to share between threads.

    One instance is meant to live for the whole process (created next to the
    :class:`service.auth.ClientAuthenticator`). ``clock`` is a monotonic clock and is injectable
    so tests can step through the rate limit without sleeping.
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

        Fetches on first use, when the cached set is older than ``max_age_s``, and when ``kid`` is
        not in the cached set, in each case only if the last attempt for this URL was at least
        ``min_refetch_interval_s`` ago. Raises ``AuthFailure("jwks_unavailable")`` when the key
        set cannot be obtained and no cached copy answers the question.
        """
        entry = self._entry(url)
        with entry.lock:
            now = self._clock()
            key = find_key(entry.jwks, kid) if entry.jwks is not None else None
            fresh = entry.jwks is not None and now - entry.fetched_at < self._max_age_s
            if key is not None and fresh:
                return key
            may_fetch = (
                entry.last_attempt is None
                or now - entry.last_attempt >= self._min_refetch_interval_s
            )
            if not may_fetch:
                if entry.jwks is None:
                    # The last attempt failed moments ago: do not retry on every request.
                    raise _unavailable()
                return key
            entry.last_attempt = now
            try:
                entry.jwks = self._fetch(url)
            except FetchError as error:
                log.warning("could not fetch JWK Set from %s: %s", url, error)
                if key is not None:
                    log.warning("still using the cached key %r from %s", kid, url)
                    return key
                raise _unavailable() from None
            entry.fetched_at = now
            log.info("fetched JWK Set from %s (%d keys)", url, len(entry.jwks["keys"]))
            return find_key(entry.jwks, kid)

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
