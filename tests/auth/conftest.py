"""Fixtures for the client-authentication tests: real keys, a real JWKS server and a token minter.

Keys are generated with ``cryptography`` (EC P-256/P-384 and RSA 2048), never hard-coded. The
key-set server is a real ``http.server`` on 127.0.0.1 in a thread. It records every request, so
tests can prove that a rejected ``jku`` was never fetched and that the refetch rate limit holds.
Time is fixed: the authenticator's wall clock is always :data:`NOW`, and the key-set cache gets a
:class:`FakeClock` that tests advance by hand.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service.security.auth import ClientAuthenticator, InMemoryReplayGuard, TrustedIssuer
from service.security.jwks import JwksCache

DATA = Path(__file__).resolve().parent / "data"
SANDBOX_JWKS_FILE = DATA / "cds-hooks-sandbox-jwks.json"

NOW = 1_700_000_000.0
AUD = "https://cds.example.org/cds-services/epidural-complications"
ISS_OOB = "https://ehr.example.org"  # keys configured out of band
ISS_JKU = "https://rs-ehr.example.org"  # keys fetched from an allowlisted jku
ISS_TENANT = "https://multi-tenant.example.org"  # out of band, tenant allowlist

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Signer:
    """A private key with the ``kid`` and ``alg`` a client would put in the JWT header."""

    key: PrivateKey
    kid: str
    alg: str

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        """The public half as a JWK, the way a client publishes it in its key set."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        jwk.update(extra)
        return jwk

    def with_kid(self, kid: str) -> Signer:
        return Signer(self.key, kid, self.alg)


DROP = object()
"""Pass as a claim or header value to :func:`mint` to leave that member out."""


def claims(issuer: str, **overrides: Any) -> dict[str, Any]:
    """A valid CDS Hooks payload (5-minute lifetime, fresh jti) with overrides applied."""
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": AUD,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": uuid.uuid4().hex,
    }
    payload.update(overrides)
    return {name: value for name, value in payload.items() if value is not DROP}


def mint(
    signer: Signer,
    issuer: str,
    *,
    headers: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """Sign a token like a CDS client: header ``alg``/``kid``/``typ`` plus ``headers``."""
    header: dict[str, Any] = {"typ": "JWT", "kid": signer.kid}
    header.update(headers or {})
    header = {name: value for name, value in header.items() if value is not DROP}
    return jwt.encode(claims(issuer, **overrides), signer.key, algorithm=signer.alg, headers=header)


def bearer(token: str) -> str:
    return f"Bearer {token}"


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- keys ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ec_signer() -> Signer:
    return Signer(ec.generate_private_key(ec.SECP384R1()), "ec-384-a", "ES384")


@pytest.fixture(scope="session")
def ec_other() -> Signer:
    """A second P-384 key, for forgeries that reuse a trusted ``kid``."""
    return Signer(ec.generate_private_key(ec.SECP384R1()), "ec-384-a", "ES384")


@pytest.fixture(scope="session")
def ec256_signer() -> Signer:
    return Signer(ec.generate_private_key(ec.SECP256R1()), "ec-256", "ES256")


@pytest.fixture(scope="session")
def rsa_signer() -> Signer:
    return Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-a", "RS384")


@pytest.fixture(scope="session")
def rsa_signer_b() -> Signer:
    """The key an RSA client rotates to."""
    return Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-b", "RS384")


# -- the JWKS server -------------------------------------------------------------------------------


class JwksServer:
    """A real HTTP server on 127.0.0.1 that serves a JWK Set and records every request path.

    Tests change what it answers by setting ``document`` (served as JSON), or ``raw_body`` /
    ``status`` / ``redirect_to`` / ``delay_s`` / ``send_length`` for misbehaviour.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.document: Any = {"keys": []}
        self.raw_body: bytes | None = None
        self.status = 200
        self.redirect_to: str | None = None
        self.delay_s = 0.0
        self.send_length = True
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base}/jwks.json"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def serve(self, *jwks: Mapping[str, Any]) -> None:
        """Answer with a key set holding exactly these keys."""
        self.document = {"keys": [dict(key) for key in jwks]}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(self.path)
                if server.delay_s:
                    time.sleep(server.delay_s)
                if server.redirect_to is not None and self.path == "/jwks.json":
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.raw_body
                if body is None:
                    body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                if server.send_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def jwks_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    """A session that ignores proxy settings from the environment, so 127.0.0.1 is reached."""
    session = requests.Session()
    session.trust_env = False
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def jwks_cache(http_session: requests.Session, jwks_clock: FakeClock) -> JwksCache:
    return JwksCache(session=http_session, allow_insecure_http=True, clock=jwks_clock)


# -- the authenticator -----------------------------------------------------------------------------


@pytest.fixture
def sandbox_jwks() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SANDBOX_JWKS_FILE.read_text(encoding="utf-8"))
    return document


@pytest.fixture
def issuers(
    ec_signer: Signer, ec256_signer: Signer, jwks_server: JwksServer
) -> list[TrustedIssuer]:
    return [
        TrustedIssuer(ISS_OOB, jwks={"keys": [ec_signer.public_jwk(), ec256_signer.public_jwk()]}),
        TrustedIssuer(ISS_JKU, jku_allowlist=(jwks_server.url,)),
        TrustedIssuer(ISS_TENANT, jwks={"keys": [ec_signer.public_jwk()]}, tenants=("t1", "t2")),
    ]


@pytest.fixture
def replay() -> InMemoryReplayGuard:
    return InMemoryReplayGuard(clock=lambda: NOW)


@pytest.fixture
def authenticator(
    issuers: list[TrustedIssuer], replay: InMemoryReplayGuard, jwks_cache: JwksCache
) -> ClientAuthenticator:
    return ClientAuthenticator(issuers, replay, jwks=jwks_cache, clock=lambda: NOW)
