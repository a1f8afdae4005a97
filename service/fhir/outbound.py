"""Which FHIR servers the service may contact, and a transport that cannot be tricked past that.

Why this module exists (SSRF): a hook request names its own ``fhirServer`` and the service then
makes HTTP requests there. Without a policy anyone who can call a hook could make the service
connect to internal systems (admin consoles, databases speaking HTTP, the cloud metadata service at
169.254.169.254) and, via ``Bundle.link[next]`` or redirects, bounce the EHR's bearer token
elsewhere. So the hospital configures the FHIR servers it trusts and everything else is refused
*before a single packet leaves*: the allowlist is checked on the URL text first, so a foreign
server does not even get a DNS query.

Three layers, each closing a gap the previous one leaves open:

1. :meth:`OutboundPolicy.check` (once per hook call, before any fetch): URL syntax, no userinfo,
   https, allowlist at a path-segment boundary, and (unless private addresses are allowed) every
   address the host resolves to must be public.
2. :meth:`OutboundPolicy.check_request` (every request URL, e.g. each ``next`` page): the same
   URL rules without DNS.
3. The transport (:func:`new_session`): DNS rebinding defeats layer 1 on its own, because the
   name is resolved again when the connection is opened and a hostile DNS server can then answer
   ``127.0.0.1`` (time-of-check/time-of-use). The chosen fix is to make resolution and connection
   one step: our urllib3 connection classes replace ``_new_conn`` so that they call
   ``getaddrinfo`` themselves, refuse the connection if *any* returned address is not public,
   and then ``connect()`` only to those exact, checked ``sockaddr`` values. The connected peer is
   therefore always an address that was checked in the same breath; nothing resolves the name a
   second time behind our back. Because only socket creation is replaced, urllib3 still uses the
   hostname for the ``Host`` header, TLS SNI and certificate verification, so nothing about TLS
   changes (unlike "pin the IP in the URL", which breaks SNI and certificate checks unless each
   is patched separately). Checking ``getpeername()`` *after* connecting was rejected: the TCP
   handshake with the internal host would already have happened. Proxies are refused by the
   adapter (a proxy would make the connection, and the address check, be about the proxy), and
   our sessions ignore the environment (``HTTP(S)_PROXY``, ``.netrc``).

URL parsing differentials are a classic SSRF bypass (one parser sees ``ehr.example.org``, the
one that connects sees ``evil.com``). The URL is therefore parsed with both
:func:`urllib.parse.urlsplit` and urllib3's parser (the one that connects) and refused unless they
agree; backslashes, control characters, whitespace, dot segments (also percent-encoded or
``..;``) and userinfo are refused outright rather than interpreted.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import idna
import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util import parse_url
from urllib3.util.connection import allowed_gai_family

log = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refusal reasons (OutboundRefused.reason); stable strings, used as 412 diagnostics.
NOT_ALLOWLISTED: Final = "not_allowlisted"
NOT_HTTPS: Final = "not_https"
PRIVATE_ADDRESS: Final = "private_address"
BAD_URL: Final = "bad_url"
CREDENTIALS_IN_URL: Final = "credentials_in_url"
UNRESOLVABLE: Final = "unresolvable"

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MAX_URL_CHARS: Final = 4096
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: embeds an IPv4


class OutboundRefused(Exception):
    """A URL the service must not contact; ``reason`` is one of the module's reason constants.

    The message holds only the reason, never the URL: request URLs carry patient ids and a
    refused URL may carry credentials.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"outbound request refused ({reason})")
        self.reason = reason


class BlockedAddressError(NewConnectionError):
    """The transport refused to connect because the host resolved to a non-public address."""


@dataclass(frozen=True)
class _Target:
    """A URL reduced to what the policy compares: scheme, normalised host, port, raw path."""

    scheme: str
    host: str  # lower-case ASCII (IDNA), no trailing dot; IPv6 compressed without brackets
    port: int
    path: str  # raw (still percent-encoded), trailing slashes removed
    ip: IpAddress | None  # set when the host is an IP literal


# -- address classification -----------------------------------------------------------------------


def is_forbidden_address(address: str | IpAddress) -> bool:
    """True for addresses a FHIR fetch must never reach: anything not plainly public.

    Loopback, RFC 1918/ULA private, link-local (incl. 169.254.169.254 cloud metadata), multicast,
    reserved, unspecified, CGNAT/benchmark/documentation ranges (``not is_global``) are forbidden.
    IPv6 forms that embed an IPv4 address are judged by that address (IPv4-mapped ``::ffff:a.b.c.d``
    and NAT64 ``64:ff9b::/96``; 6to4 must pass both tests), because the packet ends up there.
    Anything unparsable is forbidden (fail closed).
    """
    if isinstance(address, str):
        try:
            ip: IpAddress = ipaddress.ip_address(address)
        except ValueError:
            return True
    else:
        ip = address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_forbidden_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_forbidden_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and is_forbidden_address(ip.sixtofour):
            return True
        if ip.teredo is not None and is_forbidden_address(ip.teredo[1]):
            return True
        if ip.is_site_local:
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


# -- URL parsing ----------------------------------------------------------------------------------


def _normalise_host(hostname: str, bracketed: bool) -> tuple[str, IpAddress | None]:
    """Lower-case ASCII host (IDNA as ``requests`` encodes it) and its IP if it is a literal."""
    if bracketed:
        if "%" in hostname:
            raise OutboundRefused(BAD_URL)  # zone ids only make sense for link-local anyway
        try:
            ip6 = ipaddress.IPv6Address(hostname)
        except ValueError:
            raise OutboundRefused(BAD_URL) from None
        return ip6.compressed, ip6
    try:
        ip4 = ipaddress.IPv4Address(hostname)
    except ValueError:
        pass
    else:
        return str(ip4), ip4
    host = hostname[:-1] if hostname.endswith(".") else hostname
    if not host.isascii():
        try:
            # The same call requests makes before connecting, so the name we compare is the
            # name that is looked up (UTS 46 mapping folds case and full-width characters).
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise OutboundRefused(BAD_URL) from None
    host = host.lower()
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise OutboundRefused(BAD_URL)
    return host, None


def _parse(url: object, *, allow_query: bool) -> _Target:
    """Parse and normalise ``url`` or raise :class:`OutboundRefused`; see the module docstring."""
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_CHARS:
        raise OutboundRefused(BAD_URL)
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise OutboundRefused(BAD_URL)
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        raise OutboundRefused(BAD_URL) from None
    if "@" in parts.netloc:
        raise OutboundRefused(CREDENTIALS_IN_URL)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not hostname or port == 0:
        raise OutboundRefused(BAD_URL)
    if parts.fragment or "#" in url or (not allow_query and (parts.query or "?" in url)):
        raise OutboundRefused(BAD_URL)
    path = parts.path
    if ";" in path or any(seg in (".", "..") for seg in unquote(path).split("/")):
        raise OutboundRefused(BAD_URL)  # traversal, also encoded or as Tomcat's "..;"
    host, ip = _normalise_host(hostname, parts.netloc.startswith("["))
    # Second opinion from the parser that will actually connect: any disagreement is refused.
    try:
        other = parse_url(url)
    except LocationParseError:
        raise OutboundRefused(BAD_URL) from None
    if other.auth is not None:
        raise OutboundRefused(CREDENTIALS_IN_URL)
    other_raw = other.host or ""
    other_host, _ = _normalise_host(other_raw.strip("[]"), other_raw.startswith("["))
    if other_host != host or other.port != port or (other.scheme or "").lower() != scheme:
        raise OutboundRefused(BAD_URL)
    return _Target(scheme, host, port or _DEFAULT_PORTS[scheme], path.rstrip("/"), ip)


def canonical_server(url: str) -> str:
    """The normalised form of an allowlist entry; :class:`OutboundRefused` if it is unusable.

    Lets configuration loaders validate (and log) allowlist entries at startup.
    """
    t = _parse(url, allow_query=False)
    host = f"[{t.host}]" if isinstance(t.ip, ipaddress.IPv6Address) else t.host
    port = "" if _DEFAULT_PORTS[t.scheme] == t.port else f":{t.port}"
    return f"{t.scheme}://{host}{port}{t.path}"


def _parse_allowlist(entries: Iterable[str], what: str) -> tuple[_Target, ...]:
    if isinstance(entries, str):
        raise TypeError(f"{what} must be a tuple of URLs, not a single string")
    parsed: list[_Target] = []
    for entry in entries:
        try:
            parsed.append(_parse(entry, allow_query=False))
        except OutboundRefused as err:
            raise ValueError(
                f"{what}: {entry!r} is not a usable FHIR base URL ({err.reason})"
            ) from None
    return tuple(parsed)


def _covers(allowed: _Target, target: _Target) -> bool:
    """Same scheme/host/port, and the target path equals or is below the allowed path."""
    if (allowed.scheme, allowed.host, allowed.port) != (target.scheme, target.host, target.port):
        return False
    return target.path == allowed.path or target.path.startswith(allowed.path + "/")


# -- the policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundPolicy:
    """Where FHIR fetches may go. The default allows nothing, so a forgotten setting fails closed.

    ``allowed_servers`` are FHIR base URLs; a ``fhirServer`` is allowed when it equals one or lies
    below one at a path-segment boundary (``/fhir`` allows ``/fhir/r4``, not ``/fhirx``). Scheme,
    host and port must match exactly (host case-insensitively, IDNA-normalised, default ports
    filled in); paths are compared case-sensitively, as servers do. ``require_https`` is the
    production setting (CDS Hooks requires TLS); ``allow_private_addresses`` exists for tests and
    local development against ``127.0.0.1`` and must stay False in production.
    """

    allowed_servers: tuple[str, ...] = ()
    require_https: bool = True
    allow_private_addresses: bool = False
    _allowed: tuple[_Target, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        servers = self.allowed_servers
        if isinstance(servers, str):
            raise TypeError("allowed_servers must be a tuple of URLs, not a single string")
        object.__setattr__(self, "allowed_servers", tuple(servers))
        object.__setattr__(self, "_allowed", _parse_allowlist(servers, "allowed_servers"))

    def check(self, fhir_server: str, *, extra_allowed: tuple[str, ...] = ()) -> None:
        """Raise :class:`OutboundRefused` unless ``fhir_server`` may be contacted at all.

        ``extra_allowed`` is a per-issuer allowlist: a server on either list is allowed. Order
        matters: the URL-only checks run first, so a refused server never causes a DNS query.
        Invalid ``extra_allowed`` entries are a configuration error (``ValueError``).
        """
        target = self._check_url(fhir_server, extra_allowed, allow_query=False)
        if self.allow_private_addresses:
            return
        for ip in _resolve(target):
            if is_forbidden_address(ip):
                raise OutboundRefused(PRIVATE_ADDRESS)

    def check_request(self, url: str, *, extra_allowed: tuple[str, ...] = ()) -> None:
        """URL checks for one request URL (query allowed), without DNS.

        Why no DNS here: this runs for every page; the address check of the connection itself
        happens in the transport (see :func:`new_session`), atomically with connecting.
        """
        self._check_url(url, extra_allowed, allow_query=True)

    def _check_url(self, url: str, extra_allowed: tuple[str, ...], *, allow_query: bool) -> _Target:
        target = _parse(url, allow_query=allow_query)
        if self.require_https and target.scheme != "https":
            raise OutboundRefused(NOT_HTTPS)
        allowed = self._allowed + (
            _parse_allowlist(extra_allowed, "extra_allowed") if extra_allowed else ()
        )
        if not any(_covers(a, target) for a in allowed):
            raise OutboundRefused(NOT_ALLOWLISTED)
        if (
            target.ip is not None
            and not self.allow_private_addresses
            and is_forbidden_address(target.ip)
        ):
            raise OutboundRefused(PRIVATE_ADDRESS)
        return target


def _resolve(target: _Target) -> list[str]:
    """Every address the host resolves to (both families: a superset of what may be used)."""
    if target.ip is not None:
        return [str(target.ip)]
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise OutboundRefused(UNRESOLVABLE) from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise OutboundRefused(UNRESOLVABLE)
    return addresses


# -- the transport --------------------------------------------------------------------------------


def _connect_public_only(conn: HTTPConnection) -> socket.socket:
    """Resolve, check every address, connect only to checked addresses (replaces ``_new_conn``).

    Mirrors urllib3's own ``create_connection`` (family choice, socket options, timeout, source
    address, error types) so that behaviour differs only in the refusal.
    """
    dns_host = str(getattr(conn, "_dns_host", conn.host)).strip("[]")
    try:
        infos = socket.getaddrinfo(dns_host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise NameResolutionError(conn.host, conn, err) from None
    if not infos:
        raise NewConnectionError(conn, "Failed to establish a new connection: no addresses")
    if any(is_forbidden_address(str(info[4][0])) for info in infos):
        raise BlockedAddressError(
            conn, "Refused to connect: the FHIR server resolves to a non-public address"
        )
    timeout = conn.timeout
    last: OSError | None = None
    for family, socktype, proto, _canon, sockaddr in infos:
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, socktype, proto)
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
        except OSError as err:
            last = err
            if sock is not None:
                sock.close()
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(last, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={timeout})"
        ) from None
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last}") from None


class _PublicOnlyHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_public_only(self)


class _PublicOnlyHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_public_only(self)


class _PublicOnlyHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicOnlyHTTPConnection


class _PublicOnlyHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections only reach public addresses (when ``public_only``)
    and which never uses a proxy. ``max_retries`` is 0: a retry would be a new, unbudgeted request.
    """

    def __init__(self, *, public_only: bool) -> None:
        self.public_only = public_only  # set before super().__init__, which builds the pools
        super().__init__(max_retries=0)

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        if self.public_only:
            self.poolmanager.pool_classes_by_scheme = {
                "http": _PublicOnlyHTTPPool,
                "https": _PublicOnlyHTTPSPool,
            }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise requests.ConnectionError("proxies are not used for FHIR fetches")


def new_session(policy: OutboundPolicy) -> requests.Session:
    """A session for FHIR fetches under ``policy``: guarded transport, no environment settings.

    ``trust_env = False`` because environment proxies would bypass the address check and a
    ``.netrc`` entry would replace our bearer token with other credentials.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedAdapter(public_only=not policy.allow_private_addresses)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def session_is_guarded(session: requests.Session, policy: OutboundPolicy) -> bool:
    """Whether ``session`` enforces ``policy``'s address rule (for caller-supplied sessions)."""
    if policy.allow_private_addresses:
        return True
    for prefix in ("http://", "https://"):
        adapter = session.get_adapter(prefix)
        if not isinstance(adapter, GuardedAdapter) or not adapter.public_only:
            return False
    return True


def blocked_by_transport(exc: BaseException) -> bool:
    """Whether a ``requests`` exception was caused by the guarded transport refusing an address."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, BlockedAddressError):
            return True
        todo.extend(item.args)
        todo.extend((getattr(item, "reason", None), item.__cause__, item.__context__))
    return False
