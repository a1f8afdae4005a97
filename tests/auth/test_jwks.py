"""JwksCache against a real local HTTP server: caching, rate-limited refetch, hostile answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from service.security.failures import AuthFailure
from service.security.jwks import DEFAULT_MAX_BYTES, JwksCache, find_key, validate_jwks
from tests.auth.conftest import FakeClock, JwksServer, Signer


def unavailable(cache: JwksCache, url: str, kid: str = "any") -> None:
    with pytest.raises(AuthFailure) as info:
        cache.get_key(url, kid)
    assert info.value.reason == "jwks_unavailable"


def test_fetches_once_and_caches(
    jwks_cache: JwksCache, jwks_server: JwksServer, rsa_signer: Signer
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    for _ in range(3):
        key = jwks_cache.get_key(jwks_server.url, rsa_signer.kid)
        assert key is not None and key["kid"] == rsa_signer.kid
    assert jwks_server.requests == ["/jwks.json"]


def test_unknown_kid_refetch_is_rate_limited(
    jwks_cache: JwksCache,
    jwks_server: JwksServer,
    jwks_clock: FakeClock,
    rsa_signer: Signer,
    rsa_signer_b: Signer,
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    assert jwks_cache.get_key(jwks_server.url, rsa_signer.kid) is not None
    jwks_server.serve(rsa_signer.public_jwk(), rsa_signer_b.public_jwk())

    for _ in range(10):  # a flood of unknown kids inside the interval: no fetch
        assert jwks_cache.get_key(jwks_server.url, rsa_signer_b.kid) is None
        jwks_clock.advance(5)
    assert jwks_server.request_count == 1

    jwks_clock.advance(10)  # 60 s since the last fetch
    assert jwks_cache.get_key(jwks_server.url, rsa_signer_b.kid) is not None
    assert jwks_server.request_count == 2
    assert jwks_cache.get_key(jwks_server.url, "made-up") is None
    assert jwks_cache.get_key(jwks_server.url, rsa_signer.kid) is not None  # still cached
    assert jwks_server.request_count == 2


def test_stale_set_is_refreshed_so_withdrawn_keys_stop_working(
    http_session: requests.Session,
    jwks_server: JwksServer,
    jwks_clock: FakeClock,
    rsa_signer: Signer,
    rsa_signer_b: Signer,
) -> None:
    cache = JwksCache(
        session=http_session, allow_insecure_http=True, clock=jwks_clock, max_age_s=600
    )
    jwks_server.serve(rsa_signer.public_jwk())
    assert cache.get_key(jwks_server.url, rsa_signer.kid) is not None
    jwks_server.serve(rsa_signer_b.public_jwk())
    jwks_clock.advance(599)
    assert cache.get_key(jwks_server.url, rsa_signer.kid) is not None  # fresh: no fetch
    assert jwks_server.request_count == 1
    jwks_clock.advance(1)
    assert cache.get_key(jwks_server.url, rsa_signer.kid) is None  # refreshed: A is gone
    assert jwks_server.request_count == 2


def test_stale_set_is_used_while_the_server_is_down(
    http_session: requests.Session,
    jwks_server: JwksServer,
    jwks_clock: FakeClock,
    rsa_signer: Signer,
) -> None:
    cache = JwksCache(
        session=http_session, allow_insecure_http=True, clock=jwks_clock, max_age_s=600
    )
    jwks_server.serve(rsa_signer.public_jwk())
    assert cache.get_key(jwks_server.url, rsa_signer.kid) is not None
    jwks_server.status = 500
    jwks_clock.advance(700)
    assert cache.get_key(jwks_server.url, rsa_signer.kid) is not None
    assert jwks_server.request_count == 2
    jwks_clock.advance(60)
    unavailable(cache, jwks_server.url, "unknown-kid")  # cannot answer from the stale copy
    assert jwks_server.request_count == 3


def test_failed_fetch_is_rate_limited_too(
    jwks_cache: JwksCache, jwks_server: JwksServer, jwks_clock: FakeClock, rsa_signer: Signer
) -> None:
    jwks_server.status = 500
    unavailable(jwks_cache, jwks_server.url)
    unavailable(jwks_cache, jwks_server.url)
    assert jwks_server.request_count == 1
    jwks_server.status = 200
    jwks_server.serve(rsa_signer.public_jwk())
    jwks_clock.advance(60)
    assert jwks_cache.get_key(jwks_server.url, rsa_signer.kid) is not None
    assert jwks_server.request_count == 2


def test_redirect_is_not_followed(jwks_cache: JwksCache, jwks_server: JwksServer) -> None:
    jwks_server.redirect_to = f"{jwks_server.base}/elsewhere.json"
    unavailable(jwks_cache, jwks_server.url)
    assert jwks_server.requests == ["/jwks.json"]


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b"[]",
        b'{"keys": {}}',
        b'{"no_keys": []}',
        b'{"keys": ["not an object"]}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
    ids=["html", "array", "keys-object", "no-keys", "keys-strings", "binary", "deep"],
)
def test_not_a_jwk_set(jwks_cache: JwksCache, jwks_server: JwksServer, body: bytes) -> None:
    jwks_server.raw_body = body
    unavailable(jwks_cache, jwks_server.url)


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "no-length"])
def test_oversized_response(
    jwks_cache: JwksCache, jwks_server: JwksServer, rsa_signer: Signer, send_length: bool
) -> None:
    padding = "x" * DEFAULT_MAX_BYTES
    jwks_server.raw_body = json.dumps({"keys": [rsa_signer.public_jwk()], "pad": padding}).encode()
    jwks_server.send_length = send_length
    unavailable(jwks_cache, jwks_server.url, rsa_signer.kid)


def test_just_under_the_size_cap_is_fine(
    jwks_cache: JwksCache, jwks_server: JwksServer, rsa_signer: Signer
) -> None:
    document = {"keys": [rsa_signer.public_jwk()], "pad": ""}
    document["pad"] = "x" * (DEFAULT_MAX_BYTES - len(json.dumps(document)))
    jwks_server.raw_body = json.dumps(document).encode()
    assert len(jwks_server.raw_body) == DEFAULT_MAX_BYTES
    assert jwks_cache.get_key(jwks_server.url, rsa_signer.kid) is not None


def test_read_timeout(
    http_session: requests.Session, jwks_server: JwksServer, jwks_clock: FakeClock
) -> None:
    cache = JwksCache(
        session=http_session, allow_insecure_http=True, clock=jwks_clock, timeout_s=0.2
    )
    jwks_server.delay_s = 1.0
    unavailable(cache, jwks_server.url)


def test_connection_refused(jwks_cache: JwksCache) -> None:
    unavailable(jwks_cache, "http://127.0.0.1:9/jwks.json")


def test_plain_http_refused_unless_allowed(
    http_session: requests.Session, jwks_server: JwksServer
) -> None:
    cache = JwksCache(session=http_session)
    with pytest.raises(ValueError):
        cache.check_url(jwks_server.url)
    unavailable(cache, jwks_server.url)
    assert jwks_server.requests == []
    for bad in ("ftp://example.org/jwks.json", "/jwks.json", "https://user:pw@example.org/j"):
        with pytest.raises(ValueError):
            cache.check_url(bad)
    cache.check_url("https://example.org/.well-known/jwks.json")


def test_request_options(rsa_signer: Signer) -> None:
    """2 s connect/read timeouts, no redirects, streamed so the size cap applies while reading."""
    calls: list[tuple[str, dict[str, Any]]] = []
    body = json.dumps({"keys": [rsa_signer.public_jwk()]}).encode()

    class Response:
        status_code = 200
        headers: dict[str, str] = {}  # noqa: RUF012

        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def iter_content(self, chunk_size: int) -> list[bytes]:
            return [body]

    class Session(requests.Session):
        def get(self, url: str | bytes, **kwargs: Any) -> Any:
            calls.append((str(url), kwargs))
            return Response()

    cache = JwksCache(session=Session())
    assert cache.get_key("https://ehr.example.org/jwks.json", rsa_signer.kid) is not None
    [(url, kwargs)] = calls
    assert url == "https://ehr.example.org/jwks.json"
    assert kwargs["timeout"] == (2.0, 2.0)
    assert kwargs["allow_redirects"] is False
    assert kwargs["stream"] is True


def test_find_key_skips_encryption_keys_and_ambiguous_kids(rsa_signer: Signer) -> None:
    sig = rsa_signer.public_jwk()
    enc = rsa_signer.public_jwk(use="enc")
    assert find_key({"keys": [enc, sig]}, rsa_signer.kid) == sig
    assert find_key({"keys": [enc]}, rsa_signer.kid) is None
    assert find_key({"keys": [sig, dict(sig)]}, rsa_signer.kid) is None
    assert find_key({"keys": "nope"}, rsa_signer.kid) is None
    assert find_key({}, rsa_signer.kid) is None


def test_validate_jwks() -> None:
    assert validate_jwks({"keys": []}) == {"keys": []}
    bad_documents: list[Any] = [[], {"keys": None}, {"keys": [1]}, "keys"]
    for bad in bad_documents:
        with pytest.raises(ValueError):
            validate_jwks(bad)


def test_construction_rejects_inconsistent_intervals() -> None:
    with pytest.raises(ValueError):
        JwksCache(min_refetch_interval_s=120, max_age_s=60)
