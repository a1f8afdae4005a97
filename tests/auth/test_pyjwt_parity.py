"""The one-pass authenticator decides exactly as the PyJWT pipeline it replaced.

:class:`service.security.auth.ClientAuthenticator` parses each token once and checks the claims
PyJWT used to check itself, so that the signature check is nearly the whole cost of a call. These
tests hold it to its predecessor, on generated tokens:

* :func:`service.security.auth._parse` (PyJWT's ``decode_complete``, signature check deferred)
  fails exactly when PyJWT's loader (``PyJWS._load`` plus ``_validate_headers``) fails or the
  payload is unencoded, and otherwise yields the same header, payload, signing input and
  signature;
* :class:`ReferenceAuthenticator` is the previous implementation, kept here as the oracle: it
  parses with ``jwt.get_unverified_header`` and an unverified ``jwt.decode``, builds a ``PyJWK``
  per call and verifies with ``jwt.decode``. For every generated token both must accept the same
  client or refuse with the same reason, and log the same lines.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import string
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS

from service.security.auth import (
    _KEY_REQUIREMENTS,
    _REQUIRED_CLAIMS,
    AuthFailure,
    ClientAuthenticator,
    InMemoryReplayGuard,
    TrustedIssuer,
    VerifiedClient,
    _parse,
    _reason_for,
)
from service.security.jwks import JwksCache, find_key
from tests.auth.conftest import (
    AUD,
    ISS_JKU,
    ISS_OOB,
    ISS_TENANT,
    NOW,
    FakeClock,
    JwksServer,
    Signer,
    b64url,
)

log = logging.getLogger("service.security.auth")

# -- the oracle: the PyJWT pipeline this module used before ----------------------------------------


class ReferenceAuthenticator(ClientAuthenticator):
    """The previous implementation of the steps that changed (parse, key, signature, claims).

    The unchanged steps (``_bearer_token``, ``_check_header``, ``_check_jku``, ``_check_claims``)
    are inherited, so a difference can only come from the parts that were rewritten.
    """

    def authenticate(self, authorization: str | None, audience: str) -> VerifiedClient:
        token = self._bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure("malformed") from None
        alg, kid = self._check_header(header)
        issuer = self._old_issuer(token)
        jku = self._check_jku(issuer, header)
        key = self._old_select_key(issuer, jku, kid, alg)
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
        return self._check_claims(payload, issuer, kid)

    def _old_issuer(self, token: str) -> TrustedIssuer:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthFailure("malformed") from None
        iss = claims.get("iss") if isinstance(claims, dict) else None
        if iss is None:
            raise AuthFailure("missing_iss")
        if not isinstance(iss, str):
            raise AuthFailure("malformed")
        issuer = self.issuers.get(iss)
        if issuer is None:
            log.info("rejected token from unknown issuer %r", iss[:200])
            raise AuthFailure("unknown_issuer")
        return issuer

    def _old_select_key(
        self, issuer: TrustedIssuer, jku: str | None, kid: str, alg: str
    ) -> jwt.PyJWK:
        key = find_key(issuer.jwks, kid) if issuer.jwks is not None else None
        if key is None:
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


# -- keys and issuers ------------------------------------------------------------------------------

ALGS = ["ES384", "ES256", "RS384", "RS256", "PS384", "ES512", "HS256", "none", "EdDSA"]


class Keys:
    """Every kind of key the generated tokens may name, and the issuers that publish them."""

    def __init__(self) -> None:
        self.ec384 = ec.generate_private_key(ec.SECP384R1())
        self.ec384_other = ec.generate_private_key(ec.SECP384R1())
        self.ec256 = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        by_kid: dict[str, Any] = {
            "ec384": (self.ec384, "ES384"),
            "ec256": (self.ec256, "ES256"),
            "rsa": (self.rsa, None),  # no "alg": usable with every RSA algorithm
            "rsa-pinned": (self.rsa, "RS384"),
            "short": (self.rsa_short, "RS384"),
        }
        keys = [Signer(key, kid, alg or "RS384").public_jwk() for kid, (key, alg) in by_kid.items()]
        for jwk in keys:
            if by_kid[jwk["kid"]][1] is None:
                del jwk["alg"]
        broken = Signer(self.ec384, "broken", "ES384").public_jwk()
        broken["x"] = broken["y"]  # not a point on the curve
        twin = Signer(self.ec384, "twin", "ES384").public_jwk()
        enc = Signer(self.ec384, "enc", "ES384").public_jwk(use="enc")
        self.jwks = {"keys": [*keys, broken, twin, dict(twin), enc]}
        self.private = {
            "ec384": self.ec384,
            "ec256": self.ec256,
            "rsa": self.rsa,
            "rsa-pinned": self.rsa,
            "short": self.rsa_short,
            "broken": self.ec384,
            "twin": self.ec384,
            "enc": self.ec384,
        }


KIDS = ["ec384", "ec256", "rsa", "rsa-pinned", "short", "broken", "twin", "enc", "unknown"]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def served(keys: Keys) -> Iterator[JwksServer]:
    server = JwksServer()
    server.document = keys.jwks
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Pair:
    """The new authenticator and the reference, built alike, each with its own state."""

    def __init__(self, keys: Keys, jku: str) -> None:
        issuers = [
            TrustedIssuer(ISS_OOB, jwks=keys.jwks),
            TrustedIssuer(ISS_JKU, jku_allowlist=(jku,)),
            TrustedIssuer(ISS_TENANT, jwks=keys.jwks, jku_allowlist=(jku,), tenants=("t1",)),
        ]
        self.jku = jku
        self.new = self._build(ClientAuthenticator, issuers)
        self.old = self._build(ReferenceAuthenticator, issuers)

    @staticmethod
    def _build(kind: type[ClientAuthenticator], issuers: list[TrustedIssuer]) -> Any:
        import requests

        session = requests.Session()
        session.trust_env = False
        cache = JwksCache(session=session, allow_insecure_http=True, clock=FakeClock())
        algorithms = ("ES384", "ES256", "RS384", "RS256", "PS384")
        return kind(
            issuers,
            InMemoryReplayGuard(clock=lambda: NOW),
            jwks=cache,
            algorithms=algorithms,
            clock=lambda: NOW,
        )


@pytest.fixture(scope="module")
def pair(keys: Keys, served: JwksServer) -> Pair:
    return Pair(keys, served.url)


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def outcome(auth: ClientAuthenticator, authorization: str) -> tuple[Any, list[str]]:
    """What ``auth`` made of the header (the client or the reason) and what it logged."""
    recorder = Recorder()
    logger = logging.getLogger("service")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(recorder)
    try:
        result: Any = auth.authenticate(authorization, AUD)
    except AuthFailure as failure:
        result = failure.reason
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(previous)
    return result, recorder.lines


# -- token generation ------------------------------------------------------------------------------


def b64_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def sign(keys: Keys, alg: str, kid: str, signing_input: bytes, mode: str) -> bytes:
    """A signature over ``signing_input``: with the key ``kid`` names, another key, or junk."""
    if mode == "junk" or not isinstance(kid, str) or kid not in keys.private:
        return b"\x01" * 96
    key = keys.ec384_other if mode == "other" else keys.private[kid]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = {"ES256": hashes.SHA256(), "ES512": hashes.SHA512()}.get(alg, hashes.SHA384())
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    digest = hashes.SHA256() if alg.endswith("256") else hashes.SHA384()
    pad: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        if alg.startswith("PS")
        else padding.PKCS1v15()
    )
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, pad, digest)
    raise AssertionError(key)  # pragma: no cover


ABSENT = object()

JSONISH = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=3),
    st.lists(st.text(max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


class Picker:
    """Weighted choices for the token generator.

    Hypothesis favours unusual branches (and its own ``Random`` favours 0.0), which here would
    make nearly every token malformed. A seeded ``random.Random`` (under Hypothesis, the seed is
    drawn by Hypothesis, so a failure is reproducible) weighs the structure instead and keeps
    most fields sensible, so that the late checks (signature, audience, times, tenant, replay)
    are reached too. ``odd`` supplies the oddly typed values (from Hypothesis, or a fixed list).
    """

    def __init__(self, rnd: random.Random, odd: Callable[[], Any]) -> None:
        self._random = rnd
        self._odd = odd

    def fresh_id(self) -> str:
        return f"{self._random.getrandbits(128):032x}"

    def chance(self, probability: float) -> bool:
        return self._random.random() < probability

    def choice(self, options: list[Any]) -> Any:
        return self._random.choice(options)

    def member(self, good: Any, *others: Any, p_good: float = 0.85) -> Any:
        """Mostly ``good``; else one of ``others``, absent, or an oddly typed JSON value."""
        if self.chance(p_good):
            return good
        if others and self.chance(0.6):
            return self.choice(list(others))
        return ABSENT if self.chance(0.3) else self._odd()

    def rare(self, *values: Any, p: float = 0.1) -> Any:
        """Usually absent; now and then one of ``values`` or an oddly typed JSON value."""
        if not self.chance(p):
            return ABSENT
        return self.choice(list(values)) if values and self.chance(0.5) else self._odd()


#: (alg, kid) pairs that fit together, so the key checks pass and the signature is checked.
FITTING = [
    ("ES384", "ec384"),
    ("ES384", "ec384"),
    ("ES384", "ec384"),
    ("ES256", "ec256"),
    ("RS384", "rsa"),
    ("RS256", "rsa"),
    ("PS384", "rsa"),
    ("RS384", "rsa-pinned"),
    ("RS384", "short"),
    ("ES384", "broken"),
    ("ES384", "twin"),
    ("ES384", "enc"),
]


@st.composite
def tokens(draw: st.DrawFn, keys: Keys, jku: str) -> str:
    """A token from :func:`make_token`, its structure and odd values drawn by Hypothesis."""
    return make_token(
        Picker(draw(st.randoms(use_true_random=True)), lambda: draw(JSONISH)), keys, jku
    )


#: The oddly typed values of the seeded (Hypothesis-free) generator.
ODD_VALUES: list[Any] = [None, True, False, 0, -1, 3, "", "x", [], ["a"], {"a": 1}]


def make_token(pick: Picker, keys: Keys, jku: str) -> str:
    """A compact JWS that is mostly right, and wrong in a few places chosen by ``pick``."""
    if pick.chance(0.75):
        alg, kid = pick.choice(FITTING)
    else:
        alg = pick.member("ES384", *ALGS, p_good=0.3)
        kid = pick.member("ec384", *KIDS, p_good=0.3)
    header = {
        "alg": alg,
        "kid": kid,
        "typ": pick.member("JWT", "jwt", "at+jwt", ABSENT),
        "jku": pick.choice([ABSENT] * 6 + [jku, jku + "x"]),
        "crit": pick.rare(["b64"], ["exp"], [], p=0.05),
        "b64": pick.rare(True, False, p=0.05),
    }
    iat = int(NOW) + pick.choice([0, 0, 0, -10, 61, -3000])
    payload = {
        "iss": pick.member(pick.choice([ISS_OOB, ISS_JKU, ISS_TENANT]), "https://evil"),
        "aud": pick.member(AUD, [AUD], ["x", AUD], ["x"], [], "", "x", [AUD, 1], {"a": AUD}, 0),
        "iat": pick.member(iat, p_good=0.92),
        "exp": pick.member(iat + 300, iat + 4000, iat - 100),
        "nbf": pick.rare(iat + 100, iat),
        "jti": pick.member(pick.fresh_id(), "", p_good=0.92),
        "sub": pick.rare("someone"),
        "tenant": pick.choice([ABSENT, ABSENT, "t1", "t1", "t2", 5]),
    }
    header_part = b64_json({k: v for k, v in header.items() if v is not ABSENT})
    payload_part = b64_json({k: v for k, v in payload.items() if v is not ABSENT})
    if pick.chance(0.05):
        payload_part = pick.choice(["", b64url(b"[1]"), b64url(b"{not json"), b64url(b"\xff\xfe")])
    signing_input = f"{header_part}.{payload_part}"
    signature = sign(
        keys,
        alg if isinstance(alg, str) else "",
        kid,
        signing_input.encode(),
        pick.choice(["key"] * 8 + ["other", "junk"]),
    )
    token = f"{signing_input}.{b64url(signature)}"
    # Now and then damage the compact form itself.
    damage = "none" if pick.chance(0.8) else pick.choice(["pad", "char", "dot", "cut", "bits"])
    if damage == "pad":
        head, _, tail = token.partition(".")
        token = f"{head}{'=' * pick.choice([1, 2, 3])}.{tail}"
    elif damage == "char":
        position = pick.choice(list(range(len(token))))
        token = token[:position] + pick.choice(list("+/=!.A_ é")) + token[position + 1 :]
    elif damage == "dot":
        token = token + "." + pick.choice(["", "AA"])
    elif damage == "cut":
        token = token[: pick.choice(list(range(len(token))))]
    elif damage == "bits":
        # A last character with stray low bits: same bytes, non-canonical encoding.
        last = token[-1]
        alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
        token = token[:-1] + alphabet[(alphabet.index(last) + 1) % 64]
    return token


# -- the tests -------------------------------------------------------------------------------------


def pyjwt_load(token: str) -> tuple[bytes, bytes, dict[str, Any], bytes] | None:
    loader = PyJWS()
    try:
        loaded = loader._load(token)
        loader._validate_headers(loaded[2])
    except jwt.PyJWTError:
        return None
    return loaded


SEGMENT_CHARS = string.ascii_letters + string.digits + "-_=+/.!é "

#: Header member values for the loader test: the ones PyJWT's header checks care about.
HEADER_VALUES = st.one_of(
    JSONISH,
    st.sampled_from(["b64", "exp", "ES384", "kid-1"]),
    st.lists(st.sampled_from(["b64", "exp", 1]), max_size=2),
)


ANY_SEGMENT = st.one_of(
    st.text(SEGMENT_CHARS, max_size=12),
    st.binary(max_size=12).map(lambda data: base64.urlsafe_b64encode(data).decode()),
    st.binary(max_size=12).map(b64url),
)
HEADER_SEGMENT = st.one_of(
    st.builds(
        b64_json,
        st.dictionaries(st.sampled_from(["alg", "kid", "crit", "b64"]), HEADER_VALUES, max_size=3),
    ),
    ANY_SEGMENT,
)


@st.composite
def compact(draw: st.DrawFn) -> str:
    """Mostly three segments with a JSON header (the shape that reaches the header checks)."""
    if draw(st.integers(0, 4)):
        return ".".join([draw(HEADER_SEGMENT), draw(ANY_SEGMENT), draw(ANY_SEGMENT)])
    return ".".join(draw(st.lists(st.one_of(HEADER_SEGMENT, ANY_SEGMENT), min_size=1, max_size=5)))


@settings(max_examples=3000, deadline=None)
@given(compact())
def test_parse_fails_exactly_when_pyjwt_loading_fails(token: str) -> None:
    expected = pyjwt_load(token)
    if expected is not None and expected[2].get("b64", True) is False:
        # An unencoded payload (RFC 7797) loads, but PyJWT's decode refuses it without a
        # detached payload, which a bearer token never has: malformed at parse time.
        expected = None
    try:
        parsed = _parse(token)
    except AuthFailure as failure:
        assert failure.reason == "malformed"
        assert expected is None, token
        return
    assert expected is not None, token
    payload, signing_input, header, signature = expected
    assert (parsed.payload, parsed.signing_input, parsed.header, parsed.signature) == (
        payload,
        signing_input,
        header,
        signature,
    )


def test_parse_handles_characters_pyjwt_cannot_encode() -> None:
    """A lone surrogate made PyJWT's loader raise UnicodeEncodeError (a 500); now malformed."""
    with pytest.raises(AuthFailure) as info:
        _parse("a\udc80.b.c")
    assert info.value.reason == "malformed"


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_same_decision_and_logs_as_the_pyjwt_pipeline(
    pair: Pair, keys: Keys, data: st.DataObject
) -> None:
    token = data.draw(tokens(keys, pair.jku))
    for authorization in (f"Bearer {token}", f"Bearer {token}"):  # the second is a replay
        new, new_logs = outcome(pair.new, authorization)
        old, old_logs = outcome(pair.old, authorization)
        assert new == old, token
        assert new_logs == old_logs, token


def test_generated_tokens_reach_every_outcome(keys: Keys, served: JwksServer) -> None:
    """The generator is only useful if it reaches deep: acceptance and every late refusal.

    Seeded and Hypothesis-free, on its own authenticator: this asserts on a distribution, which
    must not depend on what ran before or on Hypothesis's settings.
    """
    rnd = random.Random(20240601)
    pick = Picker(rnd, lambda: rnd.choice(ODD_VALUES))
    auth = Pair(keys, served.url).new
    seen: set[str] = set()
    expected = {
        "accepted",
        "malformed",
        "alg_not_allowed",
        "missing_kid",
        "wrong_typ",
        "missing_iss",
        "unknown_issuer",
        "jku_not_allowed",
        "unknown_kid",
        "key_alg_mismatch",
        "bad_key",
        "bad_signature",
        "missing_aud",
        "wrong_audience",
        "missing_jti",
        "expired",
        "lifetime_too_long",
        "wrong_tenant",
    }
    for _ in range(4000):
        result, _ = outcome(auth, f"Bearer {make_token(pick, keys, served.url)}")
        seen.add(result if isinstance(result, str) else "accepted")
        if expected <= seen:
            break
    assert expected <= seen, expected - seen


def test_key_objects_are_built_once_per_key_set(
    pair: Pair, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JWK -> key work is not done per call: out-of-band keys are built with the
    authenticator (before gunicorn forks), fetched ones on first use, once per fetched set."""
    built: list[tuple[str, str | None]] = []
    original = jwt.PyJWK.__init__

    def counting(self: jwt.PyJWK, data: Any, algorithm: str | None = None) -> None:
        built.append((data["kid"], algorithm))
        original(self, data, algorithm)

    monkeypatch.setattr(jwt.PyJWK, "__init__", counting)
    auth = Pair(keys, pair.jku).new
    # ec384, ec256, rsa (x3 RSA algorithms), rsa-pinned, short, broken: 8 per out-of-band key
    # set, 2 issuers with one, and a Pair builds 2 authenticators (the reference shares __init__).
    assert len(built) == 8 * 2 * 2
    built.clear()

    def call(issuer: str, n: int) -> None:
        header = b64_json({"alg": "ES384", "kid": "ec384", "typ": "JWT"})
        body = b64_json(
            {"iss": issuer, "aud": AUD, "iat": int(NOW), "exp": int(NOW) + 60, "jti": f"j{n}"}
        )
        signature = sign(keys, "ES384", "ec384", f"{header}.{body}".encode(), "key")
        client = auth.authenticate(f"Bearer {header}.{body}.{b64url(signature)}", AUD)
        assert (client.iss, client.kid) == (issuer, "ec384")

    for n in range(5):
        call(ISS_OOB, n)
    assert built == []
    for n in range(5):
        call(ISS_JKU, n)  # from the jku key set, fetched on the first call
    assert built == [("ec384", "ES384")]
