"""Which CDS clients we trust, from configuration (CDS Hooks 2.0 §Trusting CDS Clients).

The hospital lists its EHR issuers in a YAML or JSON file (``EPIDURAL_CDS_ISSUERS_FILE``): for
each ``iss``, the key set configured out of band (a file or inline) and/or the exact ``jku`` URLs
we may fetch it from, an optional ``tenant`` allowlist, and the FHIR servers that issuer's calls
may send us to. The public CDS Hooks sandbox can be trusted in the development profile only: its
private key is published, so in production anyone could sign as it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from service.config import Settings
from service.errors import ConfigError
from service.fhir.outbound import OutboundRefused, canonical_server
from service.security.auth import ClientAuthenticator, ReplayGuard, TrustedIssuer, VerifiedClient
from service.security.jwks import JwksCache

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
_SANDBOX_JWKS = Path(__file__).resolve().parent / "data" / "cds-hooks-sandbox-jwks.json"

_URLS = {"type": "array", "items": {"type": "string", "pattern": "^https?://\\S+$"}}
ISSUERS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Trusted CDS clients",
    "type": "object",
    "required": ["issuers"],
    "additionalProperties": False,
    "properties": {
        "issuers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["iss"],
                "additionalProperties": False,
                "anyOf": [
                    {"required": ["jwks"]},
                    {"required": ["jwks_file"]},
                    {"required": ["jku"]},
                ],
                "properties": {
                    "iss": {"type": "string", "minLength": 1},
                    "jku": _URLS,
                    "jwks": {"type": "object", "required": ["keys"]},
                    "jwks_file": {"type": "string", "minLength": 1},
                    "tenants": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "fhir_servers": _URLS,
                },
            },
        }
    },
}


def _load_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the issuers file {path}: {exc.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"the issuers file {path} is not valid YAML/JSON: {exc}") from None


def _issuer(entry: Mapping[str, Any], base: Path, index: int) -> TrustedIssuer:
    where = f"issuers[{index}]"
    jwks = entry.get("jwks")
    if "jwks_file" in entry:
        file = Path(entry["jwks_file"])
        document = _load_document(file if file.is_absolute() else base / file)
        jwks = document
    servers = []
    for url in entry.get("fhir_servers", ()):
        try:
            servers.append(canonical_server(url))
        except OutboundRefused as exc:
            raise ConfigError(
                f"{where}.fhir_servers: {url!r} is not usable ({exc.reason})"
            ) from None
    try:
        return TrustedIssuer(
            iss=entry["iss"],
            jku_allowlist=tuple(entry.get("jku", ())),
            jwks=jwks,
            tenants=tuple(entry.get("tenants", ())),
            fhir_servers=tuple(servers),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} ({entry['iss']}): {exc}") from None


def load_issuers(path: Path) -> tuple[TrustedIssuer, ...]:
    """The trusted issuers listed in ``path``; :class:`ConfigError` naming the problem."""
    document = _load_document(path)
    errors = sorted(Draft202012Validator(ISSUERS_SCHEMA).iter_errors(document), key=str)
    if errors:
        lines = [f"{e.json_path}: {e.message}" for e in errors]
        raise ConfigError(f"invalid issuers file {path}:\n" + "\n".join(lines))
    return tuple(_issuer(e, path.parent, i) for i, e in enumerate(document["issuers"]))


def sandbox_issuer() -> TrustedIssuer:
    """The public CDS Hooks sandbox, with its published key set (development only)."""
    return TrustedIssuer(
        iss=SANDBOX_ISSUER,
        jku_allowlist=(SANDBOX_JKU,),
        jwks=json.loads(_SANDBOX_JWKS.read_text(encoding="utf-8")),
    )


DEV_NOTICE_AUTH_OFF = (
    "DEVELOPMENT MODE: authentication is OFF; anyone who can reach this service can call it. "
    "Never use it with real patient data."
)
DEV_NOTICE_SANDBOX = (
    "DEVELOPMENT MODE: the public CDS Hooks sandbox is trusted, and its private key is public. "
    "Never use it with real patient data."
)


@dataclass(frozen=True)
class ClientTrust:
    """How this deployment authenticates callers: an authenticator, or none in dev mode."""

    authenticator: ClientAuthenticator | None
    public_base_url: str | None
    discovery_open: bool
    notice: str | None = None
    """A development-mode warning, also shown in discovery's service descriptions."""

    def verify(self, authorization: str | None, path: str) -> VerifiedClient | None:
        """The verified caller of ``path`` (e.g. ``/cds-services/x``); ``None`` when auth is off.

        ``aud`` is the configured public base URL plus the endpoint path, never the URL Flask
        saw, which differs behind a TLS-terminating proxy.
        """
        if self.authenticator is None:
            return None
        audience = f"{self.public_base_url}{path}"
        return self.authenticator.authenticate(authorization, audience)

    def release(self, client: VerifiedClient | None) -> None:
        """Let the verified caller send the same token again (its call took no effect)."""
        if client is not None and self.authenticator is not None:
            self.authenticator.release(client)

    def fhir_servers_for(self, client: VerifiedClient | None) -> tuple[str, ...]:
        """The per-issuer fhirServer allowlist of the verified caller."""
        if client is None or self.authenticator is None:
            return ()
        issuer = self.authenticator.issuers.get(client.iss)
        return issuer.fhir_servers if issuer else ()


def build_trust(settings: Settings, replay: ReplayGuard) -> ClientTrust:
    """The deployment's trust from validated settings (profile rules already checked)."""
    if settings.auth_disabled:
        return ClientTrust(None, settings.public_base_url, True, DEV_NOTICE_AUTH_OFF)
    issuers = list(load_issuers(settings.issuers_file)) if settings.issuers_file else []
    notice = None
    if settings.trust_sandbox:
        issuers.append(sandbox_issuer())
        notice = DEV_NOTICE_SANDBOX
    if not issuers:
        raise ConfigError(
            "no trusted issuer: set EPIDURAL_CDS_ISSUERS_FILE (or, for development, "
            "EPIDURAL_CDS_TRUST_SANDBOX or EPIDURAL_CDS_AUTH_DISABLED)"
        )
    jwks = JwksCache(allow_insecure_http=settings.jwks_allow_http)
    authenticator = ClientAuthenticator(
        issuers, replay, jwks=jwks, leeway_s=settings.jwt_leeway_seconds
    )
    return ClientTrust(authenticator, settings.public_base_url, settings.discovery_open, notice)
