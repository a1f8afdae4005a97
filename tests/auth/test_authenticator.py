"""ClientAuthenticator: every way a CDS client's JWT can be wrong, each with its exact reason.

Each negative test also checks that the token appears neither in the exception nor in the logs.
The ``jku`` tests check the JWKS server's request log, to prove that a URL not on the issuer's
allowlist is never fetched.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.errors import ServiceError
from service.security.auth import (
    AuthFailure,
    ClientAuthenticator,
    InMemoryReplayGuard,
    TrustedIssuer,
    VerifiedClient,
)
from service.security.jwks import JwksCache, find_key
from tests.auth.conftest import (
    AUD,
    DROP,
    ISS_JKU,
    ISS_OOB,
    ISS_TENANT,
    NOW,
    FakeClock,
    JwksServer,
    Signer,
    b64url,
    b64url_json,
    bearer,
    claims,
    mint,
)

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


def expect_failure(
    authenticator: ClientAuthenticator,
    authorization: str | None,
    reason: str,
    caplog: pytest.LogCaptureFixture,
    *,
    audience: str = AUD,
) -> AuthFailure:
    """Authenticate, expect ``reason``, and check that no part of the token leaked."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthFailure) as info:
        authenticator.authenticate(authorization, audience)
    failure = info.value
    assert failure.reason == reason, f"expected {reason}, got {failure.reason}"
    token = (authorization or "").removeprefix("Bearer ").strip()
    if len(token) > 20:
        for text in (str(failure), repr(failure), failure.message, caplog.text):
            assert token not in text
            signature = token.rsplit(".", 1)[-1]
            assert len(signature) < 16 or signature not in text  # not even the signature
    return failure


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand, for tokens PyJWT refuses to produce."""
    return f"{b64url_json(header)}.{b64url_json(payload)}.{b64url(signature)}"


# -- positive paths --------------------------------------------------------------------------------


def test_es384_with_out_of_band_jwks(
    authenticator: ClientAuthenticator, ec_signer: Signer, jwks_server: JwksServer
) -> None:
    token = mint(ec_signer, ISS_OOB, jti="jti-1")
    client = authenticator.authenticate(bearer(token), AUD)
    assert client == VerifiedClient(
        iss=ISS_OOB, jti="jti-1", tenant=None, kid=ec_signer.kid, expires_at=NOW + 300
    )
    assert jwks_server.requests == []  # out-of-band keys need no network


def test_rs384_with_allowlisted_jku(
    authenticator: ClientAuthenticator, rsa_signer: Signer, jwks_server: JwksServer
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    first = mint(rsa_signer, ISS_JKU, headers={"jku": jwks_server.url})
    second = mint(rsa_signer, ISS_JKU, headers={"jku": jwks_server.url})
    assert authenticator.authenticate(bearer(first), AUD).kid == rsa_signer.kid
    assert authenticator.authenticate(bearer(second), AUD).iss == ISS_JKU
    assert jwks_server.requests == ["/jwks.json"]  # fetched once, then cached


def test_issuer_jku_used_when_header_has_none(
    authenticator: ClientAuthenticator, rsa_signer: Signer, jwks_server: JwksServer
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    token = mint(rsa_signer, ISS_JKU)
    assert authenticator.authenticate(bearer(token), AUD).kid == rsa_signer.kid
    assert jwks_server.request_count == 1


def test_aud_as_array(authenticator: ClientAuthenticator, ec_signer: Signer) -> None:
    token = mint(ec_signer, ISS_OOB, aud=["https://other.example.org/cds-services", AUD])
    assert authenticator.authenticate(bearer(token), AUD).iss == ISS_OOB


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(NOW) - 59, "iat": int(NOW) - 359},  # expired, but within leeway
        {"iat": int(NOW) + 59, "exp": int(NOW) + 359},  # issued slightly in the future
        {"nbf": int(NOW) + 59},  # not valid for another 59 s
    ],
    ids=["exp", "iat", "nbf"],
)
def test_leeway_honoured(
    authenticator: ClientAuthenticator, ec_signer: Signer, overrides: dict[str, Any]
) -> None:
    token = mint(ec_signer, ISS_OOB, **overrides)
    assert authenticator.authenticate(bearer(token), AUD).iss == ISS_OOB


def test_scheme_is_case_insensitive_and_typ_optional(
    authenticator: ClientAuthenticator, ec_signer: Signer
) -> None:
    token = mint(ec_signer, ISS_OOB, headers={"typ": DROP})
    assert authenticator.authenticate(f"bEaReR {token}", AUD).iss == ISS_OOB


def test_allowed_tenant(authenticator: ClientAuthenticator, ec_signer: Signer) -> None:
    token = mint(ec_signer, ISS_TENANT, tenant="t2")
    assert authenticator.authenticate(bearer(token), AUD).tenant == "t2"


@pytest.mark.parametrize("alg", ["ES384", "ES256", "RS384", "RS256", "PS384"])
def test_every_default_algorithm(
    alg: str, replay: InMemoryReplayGuard, jwks_cache: JwksCache
) -> None:
    if alg.startswith("ES"):
        curve = ec.SECP384R1() if alg == "ES384" else ec.SECP256R1()
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = ec.generate_private_key(curve)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = Signer(key, f"kid-{alg}", alg)
    auth = ClientAuthenticator(
        [TrustedIssuer(ISS_OOB, jwks={"keys": [signer.public_jwk()]})],
        replay,
        jwks=jwks_cache,
        clock=lambda: NOW,
    )
    assert auth.authenticate(bearer(mint(signer, ISS_OOB)), AUD).kid == f"kid-{alg}"


# -- the negative matrix ---------------------------------------------------------------------------


def test_alg_none(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    for alg in ("none", "None", "NONE"):
        token = unsigned({"alg": alg, "typ": "JWT", "kid": ec_signer.kid}, claims(ISS_OOB))
        expect_failure(authenticator, bearer(token), "alg_not_allowed", caplog)


def test_hs256_signed_with_rsa_public_key_pem(
    authenticator: ClientAuthenticator,
    rsa_signer: Signer,
    jwks_server: JwksServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The key-confusion attack: the public key, which anyone has, used as an HMAC secret."""
    jwks_server.serve(rsa_signer.public_jwk())
    secret = rsa_signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_signer.kid, "jku": jwks_server.url}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims(ISS_JKU))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    expect_failure(authenticator, bearer(token), "alg_not_allowed", caplog)
    assert jwks_server.requests == []  # rejected before any key lookup


def test_bad_signature_same_kid_other_key(
    authenticator: ClientAuthenticator, ec_other: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_other, ISS_OOB)  # same kid as the trusted key, different private key
    expect_failure(authenticator, bearer(token), "bad_signature", caplog)


def test_tampered_payload(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    header, _, signature = mint(ec_signer, ISS_OOB).split(".")
    forged = f"{header}.{b64url_json(claims(ISS_OOB, tenant='someone-else'))}.{signature}"
    expect_failure(authenticator, bearer(forged), "bad_signature", caplog)


def test_unknown_issuer_is_rejected_before_any_fetch(
    authenticator: ClientAuthenticator,
    rsa_signer: Signer,
    jwks_server: JwksServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    token = mint(rsa_signer, "https://evil.example.org", headers={"jku": jwks_server.url})
    expect_failure(authenticator, bearer(token), "unknown_issuer", caplog)
    assert jwks_server.requests == []


def test_jku_not_on_allowlist_is_never_fetched(
    authenticator: ClientAuthenticator,
    rsa_signer: Signer,
    jwks_server: JwksServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jwks_server.serve(rsa_signer.public_jwk())
    for jku in (
        f"{jwks_server.base}/attacker/jwks.json",  # same host, other path
        f"{jwks_server.url}?x=1",  # not exactly the allowlisted URL
        jwks_server.url.upper(),
    ):
        token = mint(rsa_signer, ISS_JKU, headers={"jku": jku})
        expect_failure(authenticator, bearer(token), "jku_not_allowed", caplog)
    # An issuer with only out-of-band keys has no jku at all to allow.
    token = mint(rsa_signer, ISS_OOB, headers={"jku": jwks_server.url})
    expect_failure(authenticator, bearer(token), "jku_not_allowed", caplog)
    assert jwks_server.request_count == 0


def test_unknown_kid(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer.with_kid("no-such-kid"), ISS_OOB)
    expect_failure(authenticator, bearer(token), "unknown_kid", caplog)


def test_wrong_audience(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    for aud in (
        "https://cds.example.org/cds-services/other-service",
        AUD + "/",
        "http://cds.example.org/cds-services/epidural-complications",
    ):
        token = mint(ec_signer, ISS_OOB, aud=aud)
        expect_failure(authenticator, bearer(token), "wrong_audience", caplog)


def test_aud_array_without_ours(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, aud=["https://a.example.org", "https://b.example.org"])
    expect_failure(authenticator, bearer(token), "wrong_audience", caplog)


def test_expired(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, iat=int(NOW) - 361, exp=int(NOW) - 61)
    expect_failure(authenticator, bearer(token), "expired", caplog)


def test_issued_in_future(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, iat=int(NOW) + 61, exp=int(NOW) + 361)
    expect_failure(authenticator, bearer(token), "issued_in_future", caplog)


def test_nbf_in_future(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, nbf=int(NOW) + 61)
    expect_failure(authenticator, bearer(token), "not_yet_valid", caplog)


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud"])
def test_missing_required_claim(
    authenticator: ClientAuthenticator,
    ec_signer: Signer,
    claim: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dropped: dict[str, Any] = {claim: DROP}
    token = mint(ec_signer, ISS_OOB, **dropped)
    expect_failure(authenticator, bearer(token), f"missing_{claim}", caplog)


def test_missing_iss(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, iss=DROP)
    expect_failure(authenticator, bearer(token), "missing_iss", caplog)


def test_empty_jti(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, jti="")
    expect_failure(authenticator, bearer(token), "missing_jti", caplog)


def test_replayed_jti(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB)
    authenticator.authenticate(bearer(token), AUD)
    expect_failure(authenticator, bearer(token), "replayed_jti", caplog)


def test_same_jti_from_different_issuers_is_no_replay(
    authenticator: ClientAuthenticator, ec_signer: Signer
) -> None:
    authenticator.authenticate(bearer(mint(ec_signer, ISS_OOB, jti="shared")), AUD)
    client = authenticator.authenticate(
        bearer(mint(ec_signer, ISS_TENANT, jti="shared", tenant="t1")), AUD
    )
    assert client.iss == ISS_TENANT


def test_rejected_token_does_not_burn_its_jti(
    authenticator: ClientAuthenticator, ec_signer: Signer, ec_other: Signer
) -> None:
    """A forgery that reuses a legitimate jti must not lock the legitimate token out."""
    with pytest.raises(AuthFailure):
        authenticator.authenticate(bearer(mint(ec_other, ISS_OOB, jti="victim")), AUD)
    assert authenticator.authenticate(bearer(mint(ec_signer, ISS_OOB, jti="victim")), AUD)


@pytest.mark.parametrize("tenant", ["t3", DROP, ""], ids=["other", "absent", "empty"])
def test_wrong_tenant(
    authenticator: ClientAuthenticator,
    ec_signer: Signer,
    tenant: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = mint(ec_signer, ISS_TENANT, tenant=tenant)
    expect_failure(authenticator, bearer(token), "wrong_tenant", caplog)


def test_lifetime_too_long(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, iat=int(NOW), exp=int(NOW) + 3601)
    expect_failure(authenticator, bearer(token), "lifetime_too_long", caplog)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("   ", "missing_token"),
        ("Bearer", "missing_token"),
        ("Bearer   ", "missing_token"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer a b", "malformed"),
        ("Bearer not-a-jwt", "malformed"),
        ("Bearer a.b.c", "malformed"),
        ("Bearer " + b64url_json({"alg": "ES384", "kid": "ec-384-a"}) + "..", "malformed"),
        ("Bearer " + "a" * 20_000, "malformed"),
    ],
)
def test_missing_or_garbled_authorization(
    authenticator: ClientAuthenticator,
    authorization: str | None,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expect_failure(authenticator, authorization, reason, caplog)


# -- header and key checks beyond the matrix -------------------------------------------------------


def test_wrong_typ(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, headers={"typ": "at+jwt"})
    expect_failure(authenticator, bearer(token), "wrong_typ", caplog)


def test_missing_kid(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, headers={"kid": DROP})
    expect_failure(authenticator, bearer(token), "missing_kid", caplog)


def test_alg_not_in_configured_allowlist(
    issuers: list[TrustedIssuer],
    replay: InMemoryReplayGuard,
    jwks_cache: JwksCache,
    ec_signer: Signer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = ClientAuthenticator(
        issuers, replay, jwks=jwks_cache, algorithms=("RS384",), clock=lambda: NOW
    )
    expect_failure(auth, bearer(mint(ec_signer, ISS_OOB)), "alg_not_allowed", caplog)


def test_key_type_must_match_alg(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    """An RS384 header naming an EC key must not reach the verifier."""
    header = {"alg": "RS384", "typ": "JWT", "kid": ec_signer.kid}
    token = unsigned(header, claims(ISS_OOB), b"\x00" * 256)
    expect_failure(authenticator, bearer(token), "key_alg_mismatch", caplog)


def test_curve_must_match_alg(
    authenticator: ClientAuthenticator,
    ec_signer: Signer,
    ec256_signer: Signer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ES384 requires a P-384 key, even when the P-256 key's kid is named."""
    token = unsigned(
        {"alg": "ES384", "typ": "JWT", "kid": ec256_signer.kid}, claims(ISS_OOB), b"\x00" * 96
    )
    expect_failure(authenticator, bearer(token), "key_alg_mismatch", caplog)


def test_jwk_alg_must_match_header_alg(
    replay: InMemoryReplayGuard,
    jwks_cache: JwksCache,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    published = Signer(key, "rsa-pinned", "RS384")  # the JWK says RS384 only
    auth = ClientAuthenticator(
        [TrustedIssuer(ISS_OOB, jwks={"keys": [published.public_jwk()]})],
        replay,
        jwks=jwks_cache,
        clock=lambda: NOW,
    )
    token = mint(Signer(key, "rsa-pinned", "PS384"), ISS_OOB)
    expect_failure(auth, bearer(token), "key_alg_mismatch", caplog)


def test_short_rsa_key_is_refused(
    replay: InMemoryReplayGuard, jwks_cache: JwksCache, caplog: pytest.LogCaptureFixture
) -> None:
    signer = Signer(rsa.generate_private_key(public_exponent=65537, key_size=1024), "weak", "RS384")
    auth = ClientAuthenticator(
        [TrustedIssuer(ISS_OOB, jwks={"keys": [signer.public_jwk()]})],
        replay,
        jwks=jwks_cache,
        clock=lambda: NOW,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = mint(signer, ISS_OOB)
    expect_failure(auth, bearer(token), "bad_key", caplog)


@pytest.mark.parametrize(
    "overrides",
    [{"exp": "soon"}, {"iat": True}, {"nbf": "later"}, {"jti": 42}, {"tenant": ["t1"]}],
    ids=["exp", "iat", "nbf", "jti", "tenant"],
)
def test_claims_of_wrong_type(
    authenticator: ClientAuthenticator,
    ec_signer: Signer,
    overrides: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = mint(ec_signer, ISS_OOB, **overrides)
    expect_failure(authenticator, bearer(token), "malformed", caplog)


def test_crit_header_is_refused(
    authenticator: ClientAuthenticator, ec_signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    token = mint(ec_signer, ISS_OOB, headers={"crit": ["exp"], "exp": 1})
    expect_failure(authenticator, bearer(token), "malformed", caplog)


# -- key rotation through a jku --------------------------------------------------------------------


def test_key_rotation_refetches_once_per_interval(
    authenticator: ClientAuthenticator,
    rsa_signer: Signer,
    rsa_signer_b: Signer,
    jwks_server: JwksServer,
    jwks_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jku = {"jku": jwks_server.url}
    jwks_server.serve(rsa_signer.public_jwk())
    authenticator.authenticate(bearer(mint(rsa_signer, ISS_JKU, headers=jku)), AUD)
    assert jwks_server.request_count == 1

    # The client rotates to key B. Moments later our cache may not refetch yet.
    jwks_server.serve(rsa_signer_b.public_jwk())
    jwks_clock.advance(10)
    token_b = mint(rsa_signer_b, ISS_JKU, headers=jku)
    expect_failure(authenticator, bearer(token_b), "unknown_kid", caplog)
    assert jwks_server.request_count == 1

    # Once the interval has passed, the unknown kid triggers one refetch and B works.
    jwks_clock.advance(51)
    client = authenticator.authenticate(bearer(token_b), AUD)
    assert client.kid == rsa_signer_b.kid
    assert jwks_server.request_count == 2

    # A further unknown kid within the interval does not cause another fetch...
    jwks_clock.advance(30)
    for n in range(5):
        token = mint(rsa_signer_b.with_kid(f"made-up-{n}"), ISS_JKU, headers=jku)
        expect_failure(authenticator, bearer(token), "unknown_kid", caplog)
    assert jwks_server.request_count == 2

    # ...and key A, withdrawn from the set, no longer verifies.
    token_a = mint(rsa_signer, ISS_JKU, headers=jku)
    expect_failure(authenticator, bearer(token_a), "unknown_kid", caplog)
    assert jwks_server.request_count == 2


def test_unreachable_jku(
    authenticator: ClientAuthenticator,
    rsa_signer: Signer,
    jwks_server: JwksServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jwks_server.status = 503
    token = mint(rsa_signer, ISS_JKU, headers={"jku": jwks_server.url})
    expect_failure(authenticator, bearer(token), "jwks_unavailable", caplog)


# -- the public CDS Hooks sandbox's key set --------------------------------------------------------


def test_sandbox_jwks_loads_out_of_band(
    sandbox_jwks: dict[str, Any],
    ec_signer: Signer,
    replay: InMemoryReplayGuard,
    jwks_cache: JwksCache,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = find_key(sandbox_jwks, SANDBOX_KID)
    assert key is not None
    assert (key["kty"], key["crv"], key["alg"]) == ("EC", "P-384", "ES384")

    auth = ClientAuthenticator(
        [TrustedIssuer(SANDBOX_ISS, jwks=sandbox_jwks)], replay, jwks=jwks_cache, clock=lambda: NOW
    )
    # We do not hold the sandbox's private key: a token with its kid signed by ours must fail
    # at the signature (which proves the kid was found and the key parsed), not earlier.
    forged = mint(ec_signer.with_kid(SANDBOX_KID), SANDBOX_ISS)
    expect_failure(auth, bearer(forged), "bad_signature", caplog)
    other_kid = mint(ec_signer.with_kid("not-the-sandbox-kid"), SANDBOX_ISS)
    expect_failure(auth, bearer(other_kid), "unknown_kid", caplog)


# -- configuration and the replay guard ------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [("HS256",), ("ES384", "none"), ("HS384",), ()])
def test_symmetric_or_none_algorithms_cannot_be_configured(
    issuers: list[TrustedIssuer], replay: InMemoryReplayGuard, algorithms: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):
        ClientAuthenticator(issuers, replay, algorithms=algorithms)


def test_issuer_without_keys_or_bad_jwks_is_a_config_error() -> None:
    with pytest.raises(ValueError):
        TrustedIssuer(ISS_OOB)
    with pytest.raises(ValueError):
        TrustedIssuer(ISS_OOB, jwks={"keys": "not-a-list"})
    with pytest.raises(ValueError):
        TrustedIssuer("", jwks={"keys": []})


def test_duplicate_issuer_is_a_config_error(replay: InMemoryReplayGuard) -> None:
    issuer = TrustedIssuer(ISS_OOB, jwks={"keys": []})
    with pytest.raises(ValueError):
        ClientAuthenticator([issuer, issuer], replay)


def test_plain_http_jku_refused_by_default_cache(replay: InMemoryReplayGuard) -> None:
    with pytest.raises(ValueError):
        ClientAuthenticator(
            [TrustedIssuer(ISS_JKU, jku_allowlist=("http://ehr.example.org/jwks.json",))], replay
        )
    ClientAuthenticator(
        [TrustedIssuer(ISS_JKU, jku_allowlist=("https://ehr.example.org/jwks.json",))], replay
    )


def test_auth_failure_is_a_generic_401() -> None:
    failure = AuthFailure("bad_signature")
    assert isinstance(failure, ServiceError)
    assert (failure.status, failure.issue_code) == (401, "login")
    assert failure.message == "authentication failed"
    assert failure.diagnostics is None
    assert "bad_signature" in str(failure)


def test_in_memory_replay_guard_forgets_after_expiry() -> None:
    clock = FakeClock(start=NOW)
    guard = InMemoryReplayGuard(clock=clock)
    assert guard.remember("iss", "a", NOW + 100)
    assert not guard.remember("iss", "a", NOW + 100)
    assert guard.remember("other-iss", "a", NOW + 100)
    clock.advance(101)
    assert guard.remember("iss", "a", NOW + 300)


def test_replay_guard_keeps_jti_through_the_leeway(
    authenticator: ClientAuthenticator, ec_signer: Signer
) -> None:
    seen: list[tuple[str, str, float]] = []

    class Recording:
        def remember(self, iss: str, jti: str, expires_at: float) -> bool:
            seen.append((iss, jti, expires_at))
            return True

    auth = ClientAuthenticator(
        [TrustedIssuer(ISS_OOB, jwks={"keys": [ec_signer.public_jwk()]})],
        Recording(),
        clock=lambda: NOW,
    )
    auth.authenticate(bearer(mint(ec_signer, ISS_OOB, jti="j")), AUD)
    assert seen == [(ISS_OOB, "j", NOW + 300 + 60)]
