"""Settings, read from environment variables with one prefix: ``EPIDURAL_CDS_``.

Every setting has a safe embedded default so ``epidural-cds serve`` starts on a fresh machine.
Values are validated when the app is created; all problems are reported together, naming the
variable, and the service refuses to start until they are fixed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.errors import ConfigError

PREFIX = "EPIDURAL_CDS_"
PRODUCTION = "production"
DEVELOPMENT = "development"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """The service's configuration. Field ``x_y`` is read from ``EPIDURAL_CDS_X_Y``; each field's
    ``help`` metadata documents it (README and ``epidural-cds --help`` are built from it)."""

    profile: str = field(
        default="production",
        metadata={
            "help": (
                "`production` (authentication required, at least one trusted issuer, https "
                "everywhere) or `development` (may trust the public sandbox or turn "
                "authentication off, loopback only; says so loudly)."
            )
        },
    )
    public_base_url: str | None = field(
        default=None,
        metadata={
            "help": (
                "The URL EHRs use to reach the service (e.g. https://cds.example.org), as seen "
                "through any TLS proxy; JWT `aud` is checked against it. Required in production."
            )
        },
    )
    issuers_file: Path | None = field(
        default=None,
        metadata={"help": "YAML/JSON file of trusted CDS clients (see docs/security.md)."},
    )
    trust_sandbox: bool = field(
        default=False,
        metadata={"help": "Development only: trust the public CDS Hooks sandbox's published key."},
    )
    auth_disabled: bool = field(
        default=False,
        metadata={"help": "Development only: accept calls without a JWT."},
    )
    discovery_open: bool = field(
        default=False,
        metadata={"help": "Answer discovery without a JWT."},
    )
    jwks_allow_http: bool = field(
        default=False,
        metadata={"help": "Development only: allow http `jku` key-set URLs (local test servers)."},
    )
    jwt_leeway_seconds: float = field(
        default=60.0,
        metadata={"help": "Clock skew allowed on JWT `exp`, `iat` and `nbf`."},
    )
    data_dir: Path = field(
        default=Path("var"),
        metadata={"help": "Directory for the embedded SQLite store (created if missing)."},
    )
    database_url: str | None = field(
        default=None,
        metadata={
            "help": (
                "SQLAlchemy URL of the shared store (e.g. postgresql://user@host/db); "
                "default: SQLite in the data directory."
            )
        },
    )
    database_pool_size: int = field(
        default=3,
        metadata={
            "help": (
                "Store connections per worker process: at least `--threads` + 2 (each request "
                "thread and the card writer keep one); workers x (size + 1) must stay below "
                "the database's max_connections."
            )
        },
    )
    database_connect_timeout: int = field(
        default=3,
        metadata={
            "help": "Seconds to connect to PostgreSQL; startup fails rather than hang past it."
        },
    )
    replay_guard_when_store_down: str = field(
        default="memory",
        metadata={
            "help": (
                "JWT replay protection while the store cannot be reached: `memory` (each worker "
                "remembers the token IDs it accepted and writes them to the store once it is "
                "back; a token may then be replayed once against another worker until it "
                "expires) or `refuse` (authenticated calls get 503 with Retry-After)."
            )
        },
    )
    patient_key_secret: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": (
                "Secret for the pseudonymous patient key (HMAC-SHA256 of the patient id) in the "
                "outcome store; the same on every replica. Unset: a random one is kept in the "
                "data directory (then suppression does not carry across hosts)."
            )
        },
    )
    suppression_window_hours: float = field(
        default=24.0,
        metadata={
            "help": (
                "Hours a warning or info card stays held back after a 'plan in place' override "
                "for the same evidence; 0 = never."
            )
        },
    )
    suppression_critical_window_hours: float = field(
        default=0.0,
        metadata={
            "help": "The same for critical cards; 0 (the default) = critical cards always show."
        },
    )
    accepted_suggestion_hours: float = field(
        default=72.0,
        metadata={
            "help": (
                "Hours an accepted suggestion is not offered again for the patient (the card "
                "says it was accepted instead); 0 = offer it again."
            )
        },
    )
    store_user_comments: bool = field(
        default=False,
        metadata={"help": "Keep feedback `userComment` free text (may hold PHI); off by default."},
    )
    retention_days: int = field(
        default=400,
        metadata={
            "help": (
                "Days issued cards and feedback are kept; `epidural-cds purge` deletes older "
                "rows (defaults to this)."
            )
        },
    )
    allow_dev_on_network: bool = field(
        default=False,
        metadata={"help": "Let the development profile bind an address other than loopback."},
    )
    content_dir: Path | None = field(
        default=None,
        metadata={
            "help": "Directory of clinical content; default: the content shipped with the package."
        },
    )
    max_body_bytes: int = field(
        default=5_000_000,
        metadata={"help": "Largest accepted request body; larger bodies get 413."},
    )
    cors_origins: tuple[str, ...] = field(
        default=("*",),
        metadata={"help": "Origins allowed to call from a browser (comma-separated), `*` for any."},
    )
    fhir_connect_timeout: float = field(
        default=1.0, metadata={"help": "Seconds to connect to the EHR's FHIR server."}
    )
    fhir_read_timeout: float = field(
        default=2.0, metadata={"help": "Seconds to wait for a FHIR response."}
    )
    fhir_deadline: float = field(
        default=1.5,
        metadata={
            "help": "Overall seconds for all fallback FHIR queries of one call, paging included."
        },
    )
    fhir_max_pages: int = field(
        default=10, metadata={"help": "Most `next` pages followed per query."}
    )
    fhir_page_size: int | None = field(
        default=None,
        metadata={"help": "If set, `_count` added to fallback searches that have none."},
    )
    fhir_max_response_bytes: int = field(
        default=20_000_000, metadata={"help": "Largest FHIR response accepted."}
    )
    allow_unauthenticated_fhir: bool = field(
        default=False,
        metadata={
            "help": (
                "Query `fhirServer` without `fhirAuthorization` (open test servers such as "
                "the public sandbox's). Never for real patient data."
            )
        },
    )
    fhir_allowed_servers: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": (
                "FHIR servers the service may query (comma-separated base URLs); a hook naming "
                "any other `fhirServer` gets 412 without a connection."
            )
        },
    )
    fhir_allow_http: bool = field(
        default=False,
        metadata={"help": "Allow plain-http FHIR servers (test servers only)."},
    )
    fhir_allow_private_addresses: bool = field(
        default=False,
        metadata={
            "help": "Allow FHIR servers on loopback or private addresses (local test servers only)."
        },
    )
    log_level: str = field(default="INFO", metadata={"help": "Python logging level."})
    workbench: bool | None = field(
        default=None,
        metadata={
            "help": (
                "Serve the card workbench at `/workbench/` (docs/workbench.md); unset: on in "
                "development, off in production. Its API calls need a JWT from a trusted issuer "
                "whenever hook calls do."
            )
        },
    )
    workbench_examples_dir: Path | None = field(
        default=None,
        metadata={
            "help": (
                "Directory of example patients the workbench offers; default: `fhir_examples/` "
                "of the source checkout, when there is one (they are not in the wheel)."
            )
        },
    )
    workers: int | None = field(
        default=None,
        metadata={
            "help": (
                "gunicorn worker processes; default: one per CPU available to the process, "
                "plus one (the work is CPU-bound; the extra one covers FHIR fetch waits)."
            )
        },
    )
    trusted_proxy_hops: int = field(
        default=0,
        metadata={
            "help": (
                "How many reverse proxies in front of the service may set X-Forwarded-For, "
                "-Proto, -Host, -Port and -Prefix (werkzeug ProxyFix); 0 ignores them all."
            )
        },
    )
    metrics_port: int | None = field(
        default=None,
        metadata={
            "help": (
                "Port of a separate Prometheus listener (same address as the service), so "
                "metrics stay off the port EHRs reach; unset: none. The development profile "
                "also serves /metrics on the service port."
            )
        },
    )
    audit_store: bool = field(
        default=False,
        metadata={
            "help": (
                "Also write each call's audit record to the store (table audit_records); it "
                "always goes to the `epidural_cds.audit` logger."
            )
        },
    )

    facility_timezone: str = field(
        default="UTC",
        metadata={
            "help": (
                "IANA time zone of the facility (e.g. America/Chicago): every time on every card "
                "is shown in it, with its UTC offset."
            )
        },
    )

    @property
    def zone(self) -> tzinfo:
        """The facility's time zone (validated at startup)."""
        return ZoneInfo(self.facility_timezone)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``EPIDURAL_CDS_*`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        raw = {
            f.name: env[PREFIX + f.name.upper()]
            for f in fields(cls)
            if PREFIX + f.name.upper() in env
        }
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from a mapping of field names to values (strings are parsed)."""
        problems: list[str] = []
        known = {f.name for f in fields(cls)}
        parsed: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                problems.append(f"{name}: unknown setting")
                continue
            try:
                parsed[name] = _PARSERS[name](value)
            except (TypeError, ValueError) as exc:
                problems.append(f"{PREFIX}{name.upper()}: {exc}")
        if problems:
            raise ConfigError("invalid configuration:\n" + "\n".join(problems))
        return cls(**parsed)

    @property
    def development(self) -> bool:
        """Whether the development profile is active."""
        return self.profile == DEVELOPMENT

    @property
    def workbench_enabled(self) -> bool:
        """Whether ``/workbench/`` is served: as configured, else only in development."""
        return self.development if self.workbench is None else self.workbench

    def profile_problems(self) -> list[str]:
        """What this configuration may not do in its profile (empty when it is consistent)."""
        problems = []
        name = PREFIX
        if self.profile == PRODUCTION:
            if self.auth_disabled:
                problems.append(f"{name}AUTH_DISABLED is not allowed in the production profile")
            if self.trust_sandbox:
                problems.append(
                    f"{name}TRUST_SANDBOX is not allowed in production: the sandbox's private "
                    "key is public"
                )
            if self.issuers_file is None:
                problems.append(
                    f"production needs at least one trusted issuer: set {name}ISSUERS_FILE "
                    f"(or {name}PROFILE=development for local testing)"
                )
            if not (self.public_base_url or "").startswith("https://"):
                problems.append(f"production needs an https {name}PUBLIC_BASE_URL (JWT aud)")
            if self.fhir_allow_http:
                problems.append(f"{name}FHIR_ALLOW_HTTP is not allowed in production")
            if self.jwks_allow_http:
                problems.append(f"{name}JWKS_ALLOW_HTTP is not allowed in production")
            if self.allow_unauthenticated_fhir:
                problems.append(f"{name}ALLOW_UNAUTHENTICATED_FHIR is not allowed in production")
        elif (
            not self.auth_disabled
            and (self.trust_sandbox or self.issuers_file)
            and self.public_base_url is None
        ):
            problems.append(f"set {name}PUBLIC_BASE_URL so JWT aud can be checked")
        return problems

    @staticmethod
    def describe() -> list[tuple[str, str, str]]:
        """``(variable, default, meaning)`` rows, for the README and ``--help``."""
        return [
            (PREFIX + f.name.upper(), _show(f.default), f.metadata["help"])
            for f in fields(Settings)
        ]


def _show(default: Any) -> str:
    if default is None:
        return "unset"
    if isinstance(default, tuple):
        return ",".join(default) or "none"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def _positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        number = kind(value)
        if number <= 0:
            raise ValueError(f"must be greater than 0, got {value!r}")
        return number

    return parse


def _optional_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    number: int = _positive(int)(value)
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _origins(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    origins = tuple(str(o).strip().rstrip("/") for o in items if str(o).strip())
    if not origins:
        raise ValueError("give at least one origin, or *")
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"origin {origin!r} must start with http:// or https://")
    return origins


def _profile(value: Any) -> str:
    profile = str(value).strip().lower()
    if profile not in (PRODUCTION, DEVELOPMENT):
        raise ValueError(f"expected production or development, got {value!r}")
    return profile


def _base_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    url = str(value).strip().rstrip("/")
    if not url.startswith(("https://", "http://")) or "?" in url or "#" in url:
        raise ValueError(f"{value!r} is not an absolute http(s) base URL")
    return url


def _file(value: Any) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{value!r} is not a file")
    return path


def _non_negative(value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


def _database_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    url = str(value).strip()
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
        raise ValueError("only SQLite and PostgreSQL URLs are supported")
    return url


def _replay_fallback(value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in ("memory", "refuse"):
        raise ValueError(f"expected memory or refuse, got {value!r}")
    return mode


def _secret(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    if len(text) < 16:
        raise ValueError("use at least 16 characters")
    return text


def _servers(value: Any) -> tuple[str, ...]:
    from service.fhir.outbound import OutboundRefused, canonical_server

    items = value if isinstance(value, list | tuple) else str(value).split(",")
    servers = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        try:
            servers.append(canonical_server(item))
        except OutboundRefused as exc:
            raise ValueError(f"{item!r} is not a usable FHIR server URL ({exc.reason})") from None
    return tuple(servers)


def _path(value: Any) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(value)
    if not path.is_dir():
        raise ValueError(f"{value!r} is not a directory")
    return path


def _optional_bool(value: Any) -> bool | None:
    if value in (None, ""):
        return None
    return _bool(value)


def _level(value: Any) -> str:
    level = str(value).upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"unknown log level {value!r}")
    return level


def _hops(value: Any) -> int:
    number = int(value)
    if not 0 <= number <= 5:
        raise ValueError(f"expected 0 to 5 trusted proxy hops, got {value!r}")
    return number


def _port(value: Any) -> int | None:
    if value in (None, ""):
        return None
    number = int(value)
    if not 1 <= number <= 65535:
        raise ValueError(f"expected a TCP port (1-65535), got {value!r}")
    return number


def _timezone(value: Any) -> str:
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone name (e.g. Europe/Paris)") from None
    return name


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "facility_timezone": _timezone,
    "content_dir": _path,
    "max_body_bytes": _positive(int),
    "cors_origins": _origins,
    "fhir_connect_timeout": _positive(float),
    "fhir_read_timeout": _positive(float),
    "fhir_deadline": _positive(float),
    "fhir_max_pages": _positive(int),
    "fhir_page_size": _optional_int,
    "fhir_max_response_bytes": _positive(int),
    "allow_unauthenticated_fhir": _bool,
    "profile": _profile,
    "public_base_url": _base_url,
    "issuers_file": _file,
    "trust_sandbox": _bool,
    "auth_disabled": _bool,
    "discovery_open": _bool,
    "jwt_leeway_seconds": _non_negative,
    "jwks_allow_http": _bool,
    "data_dir": Path,
    "database_url": _database_url,
    "allow_dev_on_network": _bool,
    "database_pool_size": _positive(int),
    "database_connect_timeout": _positive(int),
    "replay_guard_when_store_down": _replay_fallback,
    "patient_key_secret": _secret,
    "suppression_window_hours": _non_negative,
    "suppression_critical_window_hours": _non_negative,
    "accepted_suggestion_hours": _non_negative,
    "store_user_comments": _bool,
    "retention_days": _positive(int),
    "fhir_allowed_servers": _servers,
    "fhir_allow_http": _bool,
    "fhir_allow_private_addresses": _bool,
    "log_level": _level,
    "workbench": _optional_bool,
    "workbench_examples_dir": _path,

    "workers": _optional_int,
    "trusted_proxy_hops": _hops,
    "metrics_port": _port,
    "audit_store": _bool,
}
