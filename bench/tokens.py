"""A benchmark CDS client: a signing key, the issuers file that trusts it, pre-minted JWTs.

The key is ES384 (P-384, what the CDS Hooks sandbox signs with) unless RS384 is asked for
(RSA 2048, what Epic signs with); the spec requires services to accept both.

The service refuses a replayed ``jti`` (401), and wrk cannot sign per request, so every request
of a load run needs its own token, signed beforehand. Tokens are minted in parallel processes
(about 0.3 ms each) and written one per line, split into one file per wrk thread, so no two
connections ever send the same token.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://ehr.bench.example"
PUBLIC_BASE_URL = "https://epidural-cds.bench.example"
ALG = "ES384"
ALGORITHMS = ("ES384", "RS384")
LIFETIME_S = 3000  # the service accepts at most 3600 s between iat and exp


def _kid(alg: str) -> str:
    return f"bench-{alg.lower()}"


@dataclass(frozen=True)
class Client:
    """The benchmark's CDS client: its private key (PEM) and where its issuers file is."""

    private_pem: bytes
    issuers_file: Path
    alg: str = ALG

    @property
    def audience(self) -> str:
        return f"{PUBLIC_BASE_URL}/cds-services/epidural-complications"


def create_client(directory: Path, alg: str = ALG) -> Client:
    """Generate a key for ``alg`` and write ``issuers.yaml`` trusting its public half."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    jwk: dict[str, Any]
    if alg == "ES384":
        key = ec.generate_private_key(ec.SECP384R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif alg == "RS384":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        raise ValueError(f"signing algorithm {alg!r}: choose from {ALGORITHMS}")
    jwk.update({"kid": _kid(alg), "alg": alg, "use": "sig"})
    directory.mkdir(parents=True, exist_ok=True)
    issuers = directory / "issuers.yaml"
    issuers.write_text(yaml.safe_dump({"issuers": [{"iss": ISSUER, "jwks": {"keys": [jwk]}}]}))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Client(pem, issuers, alg)


def _mint_batch(args: tuple[bytes, str, str, str, int]) -> list[str]:
    pem, alg, audience, prefix, count = args
    key = serialization.load_pem_private_key(pem, password=None)
    now = int(time.time())
    headers = {"kid": _kid(alg), "typ": "JWT"}
    out = []
    for _ in range(count):
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME_S,
            "jti": f"{prefix}-{uuid.uuid4().hex}",
        }
        out.append(jwt.encode(claims, key, algorithm=alg, headers=headers))  # type: ignore[arg-type]
    return out


def mint(client: Client, count: int, label: str = "run") -> list[str]:
    """``count`` distinct tokens for the hook endpoint (unique jti each), minted in parallel."""
    if count <= 0:
        return []
    workers = max(1, min(os.cpu_count() or 1, 4))
    if count < 2000 or workers == 1:
        return _mint_batch((client.private_pem, client.alg, client.audience, label, count))
    share, rest = divmod(count, workers)
    jobs = [
        (client.private_pem, client.alg, client.audience, label, share + (1 if i < rest else 0))
        for i in range(workers)
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        batches = list(pool.map(_mint_batch, jobs))
    tokens = [t for batch in batches for t in batch]
    assert len(set(tokens)) == count
    return tokens


def write_token_files(tokens: list[str], prefix: Path, threads: int) -> list[Path]:
    """Split ``tokens`` into ``prefix.0`` .. ``prefix.<threads-1>`` (one per wrk thread)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(threads):
        path = prefix.with_name(f"{prefix.name}.{i}")
        path.write_text("\n".join(tokens[i::threads]) + "\n")
        paths.append(path)
    return paths


def describe(token: str) -> dict[str, Any]:
    """The unverified header and claims of a token (for the report; no secret in them)."""
    return {
        "header": jwt.get_unverified_header(token),
        "claims": json.loads(json.dumps(jwt.decode(token, options={"verify_signature": False}))),
    }
