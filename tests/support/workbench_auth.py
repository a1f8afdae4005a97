"""A production card workbench for tests: authentication on, the workbench enabled, real tokens.

The app is ``create_app`` in the production profile with one trusted ES384 issuer (an inline key
set) and ``EPIDURAL_CDS_WORKBENCH=true``, so every workbench API call needs a JWT whose ``aud``
is ``{public base URL}/workbench``. Tokens are signed here with the test's own key against the
wall clock, as a hospital's identity provider would issue a person's workbench session.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from service.http.app import create_app
from tests.auth.conftest import Signer
from tests.security.conftest import write_issuers

BASE = "https://cds.example.org/prefix"
ISS = "https://ehr-workbench.example.org"
WORKBENCH_AUD = f"{BASE}/workbench"


def workbench_signer() -> Signer:
    """A fresh ES384 key with the ``kid`` the issuers file names."""
    return Signer(ec.generate_private_key(ec.SECP384R1()), "workbench-es384", "ES384")


def production_workbench_app(directory: Path, signer: Signer, **settings: Any) -> Flask:
    """The production app, workbench on, trusting only ``signer``; its data in ``directory``."""
    issuers = write_issuers(
        directory / "issuers.yaml", [{"iss": ISS, "jwks": {"keys": [signer.public_jwk()]}}]
    )
    return create_app(
        {
            "profile": "production",
            "public_base_url": BASE,
            "issuers_file": str(issuers),
            "data_dir": str(directory / "data"),
            "workbench": True,
            **settings,
        }
    )


def token(signer: Signer, aud: str = WORKBENCH_AUD, lifetime: int = 900) -> str:
    """A signed token for ``aud`` (by default a workbench session) with a fresh ``jti``."""
    now = int(time.time())
    claims = {"iss": ISS, "aud": aud, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, signer.key, algorithm=signer.alg, headers={"kid": signer.kid})


def bearer(value: str) -> dict[str, str]:
    """The ``Authorization`` header for ``value``."""
    return {"Authorization": f"Bearer {value}"}
