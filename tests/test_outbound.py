"""Tests for the outbound policy (service.fhir.outbound): which FHIR servers may be contacted.

Three parts: the allowlist rules on URL text, the address classification, and SSRF tests that
are judged at the *listener*: a real TCP socket on 127.0.0.1 counts the connections it accepts,
so "nothing was sent" is observed on the wire instead of being taken from our own code. Every
negative SSRF test has a positive control that shows the same listener does receive a
connection when the policy allows it, so a zero count means "refused", not "test broken".
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from service.errors import PrefetchUnavailable
from service.fhir.outbound import (
    OutboundPolicy,
    OutboundRefused,
    blocked_by_transport,
    canonical_server,
    is_forbidden_address,
    new_session,
)
from service.fhir.prefetch import (
    NOT_ALLOWED_MESSAGE,
    FetchSettings,
    PrefetchTemplate,
    resolve_prefetch,
)
from tests.support.fhir_server import StubFhirServer

TOKEN = "s3cr3t-token-value"
ALLOWED = "https://ehr.example.org/fhir"
PROCEDURES = PrefetchTemplate("procedures", "Procedure?patient={{context.patientId}}", True)
OPTIONAL = PrefetchTemplate("procedures", PROCEDURES.template, required=False)
REBIND_HOST = "ehr.rebind.test"  # .test is reserved (RFC 6761): never a real DNS name
PUBLIC_IP = "93.184.215.14"  # a public address; only ever handed out by FakeDns, never dialled
SETTLE_S = 0.2


def bundle(ids: list[str], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {"resource": {"resourceType": "Procedure", "id": i}, "search": {"mode": "match"}}
            for i in ids
        ],
    }


def hook_request(server: str, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": server,
        "fhirAuthorization": {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "epidural-cds",
        },
        "context": {"userId": "Practitioner/example", "patientId": "pat-1"},
    }
    if prefetch is not None:
        req["prefetch"] = prefetch
    return req


def dev_policy(*servers: str) -> OutboundPolicy:
    """Allowlist ``servers`` over plain http on 127.0.0.1, as a test or dev deployment would."""
    return OutboundPolicy(
        allowed_servers=servers, require_https=False, allow_private_addresses=True
    )


def settings(policy: OutboundPolicy) -> FetchSettings:
    return FetchSettings(deadline_s=3.0, connect_timeout_s=1.0, read_timeout_s=2.0, policy=policy)


def reason_of(policy: OutboundPolicy, url: str, **kwargs: Any) -> str | None:
    try:
        policy.check(url, **kwargs)
    except OutboundRefused as err:
        return err.reason
    return None


# -- fixtures: a counting listener and fake DNS ---------------------------------------------------


class CountingListener:
    """A real TCP listener on 127.0.0.1 that counts accepted connections.

    Each connection gets one canned FHIR searchset Bundle so that positive controls can also
    check that data arrived; the ``Host`` header of each request is recorded.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.02)
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted = 0
        self._hosts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="counting-listener")
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def hosts(self) -> list[str]:
        with self._lock:
            return list(self._hosts)

    def accepted(self) -> int:
        """Connections accepted so far, after a short pause for any in-flight connect."""
        time.sleep(SETTLE_S)
        with self._lock:
            return self._accepted

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._accepted += 1
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        data = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        for line in data.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"host":
                with self._lock:
                    self._hosts.append(value.strip().decode("latin-1"))
        body = json.dumps(bundle(["from-listener"])).encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            conn.sendall(head + body)


class FakeDns:
    """Stands in for DNS for a few made-up names; every other name goes to the real resolver.

    This monkeypatch of ``socket.getaddrinfo`` is the one fake in these tests, and it is there
    only because there is no real DNS here to point a name at 127.0.0.1 (or to change its answer
    between two lookups, as a rebinding attacker does). Everything after name resolution,
    sockets and the listener included, is real. ``answers[name]`` is a list of answer sets used
    one per lookup; the last set repeats.
    """

    def __init__(self, answers: dict[str, list[list[str]]], delay_s: float = 0.0) -> None:
        self.answers = answers
        self.delay_s = delay_s  # a slow resolver
        self.lookups: list[str] = []
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return self._real(host, port, *args, **kwargs)
        self.lookups.append(name)
        time.sleep(self.delay_s)
        sets = self.answers[name]
        nth = self.lookups.count(name) - 1
        addresses = sets[min(nth, len(sets) - 1)]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out: list[tuple[Any, ...]] = []
        for ip in addresses:
            if ":" in ip:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, int(port), 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port))))
        return out


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    server = CountingListener()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def stub() -> Iterator[StubFhirServer]:
    with StubFhirServer() as server:
        yield server


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything resolves a name: URL-only checks must not touch DNS."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unexpected DNS lookup of {args[0] if args else '?'}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def fake_dns(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]], delay_s: float = 0.0
) -> FakeDns:
    dns = FakeDns(answers, delay_s)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


# -- allowlist matching (URL text only, no DNS) ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir",
        "https://ehr.example.org/fhir/",
        "https://ehr.example.org/fhir/r4",
        "https://ehr.example.org/fhir/r4/",
        "https://EHR.Example.ORG/fhir",
        "HTTPS://ehr.example.org/fhir",
        "https://ehr.example.org:443/fhir",
        "https://ehr.example.org./fhir",  # FQDN form of the same name
    ],
)
def test_allowed_urls(url: str, no_dns: None) -> None:
    policy = OutboundPolicy(allowed_servers=(ALLOWED,), allow_private_addresses=True)
    assert reason_of(policy, url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://ehr.example.org/fhirx", "not_allowlisted"),
        ("https://ehr.example.org/fhir-admin", "not_allowlisted"),
        ("https://ehr.example.org/", "not_allowlisted"),
        ("https://ehr.example.org", "not_allowlisted"),
        ("https://ehr.example.org/FHIR", "not_allowlisted"),  # paths are case-sensitive
        ("https://ehr.example.org/other/fhir", "not_allowlisted"),
        ("https://ehr.example.org.evil.com/fhir", "not_allowlisted"),
        ("https://evil.com/ehr.example.org/fhir", "not_allowlisted"),
        ("https://xehr.example.org/fhir", "not_allowlisted"),
        ("https://sub.ehr.example.org/fhir", "not_allowlisted"),
        ("https://example.org/fhir", "not_allowlisted"),
        ("https://ehr.example.org:8443/fhir", "not_allowlisted"),
        ("https://ehr.example.org:80/fhir", "not_allowlisted"),
        ("https://ehr.ex\u0430mple.org/fhir", "not_allowlisted"),  # Cyrillic a (homograph)
        ("http://ehr.example.org/fhir", "not_https"),
        ("http://ehr.example.org:443/fhir", "not_https"),
        ("https://user:pass@ehr.example.org/fhir", "credentials_in_url"),
        ("https://ehr.example.org@evil.com/fhir", "credentials_in_url"),
        ("https://user@ehr.example.org/fhir", "credentials_in_url"),
        ("https://:@ehr.example.org/fhir", "credentials_in_url"),
        ("https://ehr.example.org\\@evil.com/fhir", "bad_url"),
        ("https://ehr.example.org/fhir/../admin", "bad_url"),
        ("https://ehr.example.org/fhir/./r4", "bad_url"),
        ("https://ehr.example.org/fhir/%2e%2e/admin", "bad_url"),
        ("https://ehr.example.org/fhir/%2E%2E%2Fadmin", "bad_url"),
        ("https://ehr.example.org/fhir/..;/admin", "bad_url"),
        ("https://ehr.example.org/fhir?x=1", "bad_url"),
        ("https://ehr.example.org/fhir?", "bad_url"),
        ("https://ehr.example.org/fhir#frag", "bad_url"),
        ("https://ehr.example.org:99999/fhir", "bad_url"),
        ("https://ehr.example.org:0/fhir", "bad_url"),
        ("https://ehr.example.org:https/fhir", "bad_url"),
        ("https://ehr exa.org/fhir", "bad_url"),
        (" https://ehr.example.org/fhir", "bad_url"),
        ("https://ehr.example.org/fhir\n", "bad_url"),
        ("https://ehr.example.org/fh\tir", "bad_url"),
        ("https://ehr%2eexample.org/fhir", "bad_url"),
        ("https://[::1/fhir", "bad_url"),
        ("https://[fe80::1%25eth0]/fhir", "bad_url"),
        ("ftp://ehr.example.org/fhir", "bad_url"),
        ("javascript:alert(1)", "bad_url"),
        ("//ehr.example.org/fhir", "bad_url"),
        ("ehr.example.org/fhir", "bad_url"),
        ("https://", "bad_url"),
        ("", "bad_url"),
        ("https://ehr.example.org/" + "a" * 5000, "bad_url"),
    ],
)
def test_refused_urls(url: str, reason: str, no_dns: None) -> None:
    policy = OutboundPolicy(allowed_servers=(ALLOWED,), allow_private_addresses=True)
    assert reason_of(policy, url) == reason


def test_non_string_server_is_a_bad_url(no_dns: None) -> None:
    policy = OutboundPolicy(allowed_servers=(ALLOWED,), allow_private_addresses=True)
    assert reason_of(policy, None) == "bad_url"  # type: ignore[arg-type]
    assert reason_of(policy, ["https://ehr.example.org/fhir"]) == "bad_url"  # type: ignore[arg-type]


def test_idna_hosts_match_their_punycode_form(no_dns: None) -> None:
    unicode_entry = OutboundPolicy(
        allowed_servers=("https://bücher.example/fhir",), allow_private_addresses=True
    )
    punycode_entry = OutboundPolicy(
        allowed_servers=("https://xn--bcher-kva.example/fhir",), allow_private_addresses=True
    )
    for policy in (unicode_entry, punycode_entry):
        assert reason_of(policy, "https://xn--bcher-kva.example/fhir") is None
        assert reason_of(policy, "https://bücher.example/fhir/r4") is None
        assert reason_of(policy, "https://BÜCHER.Example/fhir") is None
        assert reason_of(policy, "https://bucher.example/fhir") == "not_allowlisted"
    assert canonical_server("https://BÜCHER.example:443/fhir/") == (
        "https://xn--bcher-kva.example/fhir"
    )


def test_trailing_slash_in_the_allowlist_entry(no_dns: None) -> None:
    policy = OutboundPolicy(allowed_servers=(ALLOWED + "/",), allow_private_addresses=True)
    assert reason_of(policy, ALLOWED) is None
    assert reason_of(policy, ALLOWED + "/r4") is None
    assert reason_of(policy, ALLOWED + "x") == "not_allowlisted"


def test_origin_only_entry_allows_every_path_on_that_origin_only(no_dns: None) -> None:
    policy = OutboundPolicy(
        allowed_servers=("https://ehr.example.org",), allow_private_addresses=True
    )
    assert reason_of(policy, "https://ehr.example.org/fhir") is None
    assert reason_of(policy, "https://ehr.example.org/") is None
    assert reason_of(policy, "https://ehr.example.org:444/fhir") == "not_allowlisted"
    assert reason_of(policy, "https://ehr.example.org.evil.com/") == "not_allowlisted"


def test_ports_are_normalised(no_dns: None) -> None:
    https = OutboundPolicy(
        allowed_servers=("https://ehr.example.org:443/fhir",), allow_private_addresses=True
    )
    assert reason_of(https, "https://ehr.example.org/fhir") is None
    http = OutboundPolicy(
        allowed_servers=("http://ehr.example.org/fhir",),
        require_https=False,
        allow_private_addresses=True,
    )
    assert reason_of(http, "http://ehr.example.org:80/fhir") is None
    assert reason_of(http, "https://ehr.example.org/fhir") == "not_allowlisted"  # scheme differs
    assert reason_of(http, "http://ehr.example.org:8080/fhir") == "not_allowlisted"
    explicit = OutboundPolicy(
        allowed_servers=("https://ehr.example.org:8443/fhir",), allow_private_addresses=True
    )
    assert reason_of(explicit, "https://ehr.example.org:8443/fhir/r4") is None
    assert reason_of(explicit, "https://ehr.example.org/fhir") == "not_allowlisted"


def test_ipv6_literals(no_dns: None) -> None:
    policy = OutboundPolicy(
        allowed_servers=("https://[2001:db8::1]/fhir",), allow_private_addresses=True
    )
    assert reason_of(policy, "https://[2001:db8::1]/fhir") is None
    assert reason_of(policy, "https://[2001:DB8:0:0:0:0:0:1]/fhir") is None
    assert reason_of(policy, "https://[2001:db8::1]:443/fhir/r4") is None
    assert reason_of(policy, "https://[2001:db8::2]/fhir") == "not_allowlisted"
    assert reason_of(policy, "https://[2001:db8::1]:8443/fhir") == "not_allowlisted"
    assert canonical_server("https://[2001:DB8::0:1]:443/fhir") == "https://[2001:db8::1]/fhir"


def test_http_is_refused_when_https_is_required_even_if_listed(no_dns: None) -> None:
    policy = OutboundPolicy(
        allowed_servers=("http://ehr.example.org/fhir",), allow_private_addresses=True
    )
    assert reason_of(policy, "http://ehr.example.org/fhir") == "not_https"


def test_empty_allowlist_allows_nothing(no_dns: None) -> None:
    policy = OutboundPolicy()
    assert reason_of(policy, ALLOWED) == "not_allowlisted"
    assert reason_of(OutboundPolicy(allow_private_addresses=True), ALLOWED) == "not_allowlisted"


def test_extra_allowed_is_a_second_allowlist(no_dns: None) -> None:
    policy = OutboundPolicy(allowed_servers=(ALLOWED,), allow_private_addresses=True)
    other = "https://other.example.org/fhir"
    assert reason_of(policy, other) == "not_allowlisted"
    assert reason_of(policy, other, extra_allowed=(other,)) is None
    assert reason_of(policy, ALLOWED, extra_allowed=(other,)) is None
    assert reason_of(policy, other, extra_allowed=(other + "x",)) == "not_allowlisted"
    with pytest.raises(ValueError, match="extra_allowed"):
        policy.check(other, extra_allowed=("https://u:p@other.example.org/fhir",))


def test_check_request_allows_queries_but_keeps_the_other_rules(no_dns: None) -> None:
    policy = OutboundPolicy(allowed_servers=(ALLOWED,))
    policy.check_request(ALLOWED + "/Procedure?patient=1&_count=5")
    policy.check_request(ALLOWED + "/Patient/a%2Fb")  # an encoded slash inside one segment
    for url, reason in [
        (ALLOWED + "x/Procedure?patient=1", "not_allowlisted"),
        (ALLOWED + "/../admin?x=1", "bad_url"),
        (ALLOWED + "/Procedure?x=1#frag", "bad_url"),
        ("http://ehr.example.org/fhir/Procedure?x=1", "not_https"),
    ]:
        with pytest.raises(OutboundRefused) as info:
            policy.check_request(url)
        assert info.value.reason == reason


def test_policy_configuration_errors_fail_at_construction() -> None:
    with pytest.raises(TypeError):
        OutboundPolicy(allowed_servers=ALLOWED)  # type: ignore[arg-type]
    for bad in ("ehr.example.org/fhir", "https://u:p@ehr.example.org/fhir", ALLOWED + "?x=1"):
        with pytest.raises(ValueError, match="allowed_servers"):
            OutboundPolicy(allowed_servers=(bad,))
    from_list = OutboundPolicy(allowed_servers=[ALLOWED])  # type: ignore[arg-type]
    assert from_list.allowed_servers == (ALLOWED,)
    assert from_list == OutboundPolicy(allowed_servers=(ALLOWED,))
    hash(from_list)


def test_refusal_message_never_contains_the_url() -> None:
    err = OutboundRefused("credentials_in_url")
    assert str(err) == "outbound request refused (credentials_in_url)"
    assert err.reason == "credentials_in_url"


# -- address classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata service
        "169.254.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "fec0::1",  # deprecated site-local
        "ff02::1",
        "ff0e::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2001:db8::1",  # documentation
        "not-an-address",
        "",
    ],
)
def test_forbidden_addresses(address: str) -> None:
    assert is_forbidden_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        PUBLIC_IP,
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82a::200e",
        "::ffff:8.8.8.8",  # judged by the IPv4 address it maps to
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses(address: str) -> None:
    assert not is_forbidden_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/fhir",
        "https://10.1.2.3/fhir",
        "https://172.16.5.4/fhir",
        "https://192.168.0.10/fhir",
        "https://169.254.169.254/fhir",
        "https://0.0.0.0/fhir",
        "https://[::1]/fhir",
        "https://[fc00::1]/fhir",
        "https://[::ffff:127.0.0.1]/fhir",
        "https://[::ffff:7f00:1]/fhir",
    ],
)
def test_private_ip_literals_are_refused_without_dns(url: str, no_dns: None) -> None:
    policy = OutboundPolicy(allowed_servers=(url,))
    assert reason_of(policy, url) == "private_address"
    assert (
        reason_of(OutboundPolicy(allowed_servers=(url,), allow_private_addresses=True), url) is None
    )


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
def test_odd_ipv4_spellings_resolve_to_loopback_and_are_refused(host: str) -> None:
    """inet_aton accepts these; the real resolver maps them to 127.0.0.1 without any DNS query."""
    url = f"https://{host}/fhir"
    assert reason_of(OutboundPolicy(allowed_servers=(url,)), url) == "private_address"


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ([PUBLIC_IP], None),
        (["2606:4700:4700::1111", PUBLIC_IP], None),
        ([PUBLIC_IP, "10.0.0.1"], "private_address"),  # every address is checked
        (["2606:4700:4700::1111", "::1"], "private_address"),
        (["169.254.169.254"], "private_address"),
        (["::ffff:127.0.0.1"], "private_address"),
        ([], "unresolvable"),
    ],
)
def test_every_resolved_address_is_checked(
    monkeypatch: pytest.MonkeyPatch, answers: list[str], reason: str | None
) -> None:
    url = f"https://{REBIND_HOST}/fhir"
    dns = fake_dns(monkeypatch, {REBIND_HOST: [answers]})
    assert reason_of(OutboundPolicy(allowed_servers=(url,)), url) == reason
    assert dns.lookups == [REBIND_HOST]


def test_refused_servers_are_never_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    dns = fake_dns(monkeypatch, {REBIND_HOST: [[PUBLIC_IP]]})
    policy = OutboundPolicy(allowed_servers=(ALLOWED,))
    assert reason_of(policy, f"https://{REBIND_HOST}/fhir") == "not_allowlisted"
    assert reason_of(policy, f"http://{REBIND_HOST}/fhir") == "not_https"
    assert dns.lookups == []


# -- SSRF, judged at the listener -----------------------------------------------------------------


def test_control_an_allowed_listener_does_receive_the_fetch(listener: CountingListener) -> None:
    resolved = resolve_prefetch(
        hook_request(listener.base_url), [PROCEDURES], settings(dev_policy(listener.base_url))
    )
    assert [r["id"] for r in resolved.resources["procedures"]] == ["from-listener"]
    assert listener.accepted() == 1


def test_server_off_the_allowlist_gets_no_connection(
    listener: CountingListener, stub: StubFhirServer
) -> None:
    policy = dev_policy(stub.base_url)  # private addresses allowed: only the allowlist blocks
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(listener.base_url), [PROCEDURES], settings(policy))
    assert info.value.status == 412
    assert info.value.message == NOT_ALLOWED_MESSAGE
    assert info.value.diagnostics == "not_allowlisted"
    resolved = resolve_prefetch(hook_request(listener.base_url), [OPTIONAL], settings(policy))
    assert resolved.origin["procedures"] == "unavailable"
    assert listener.accepted() == 0


def test_production_default_settings_send_nothing(listener: CountingListener) -> None:
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(listener.base_url), [PROCEDURES], FetchSettings())
    assert info.value.message == NOT_ALLOWED_MESSAGE
    assert listener.accepted() == 0


def test_allowlisted_private_address_gets_no_connection(listener: CountingListener) -> None:
    policy = OutboundPolicy(allowed_servers=(listener.base_url,), require_https=False)
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(listener.base_url), [PROCEDURES], settings(policy))
    assert info.value.message == NOT_ALLOWED_MESSAGE
    assert info.value.diagnostics == "private_address"
    assert listener.accepted() == 0


def test_prefetched_next_link_to_another_origin_gets_no_connection(
    listener: CountingListener, stub: StubFhirServer
) -> None:
    # Both servers are allowlisted: only the same-origin rule stands between the token and it.
    policy = dev_policy(stub.base_url, listener.base_url)
    first = bundle(["p1"], f"{listener.base_url}/Procedure?page=2")
    req = hook_request(stub.base_url, prefetch={"procedures": first})
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(req, [PROCEDURES], settings(policy))
    resolved = resolve_prefetch(req, [OPTIONAL], settings(policy))
    assert [r["id"] for r in resolved.resources["procedures"]] == ["p1"]
    assert resolved.partial == frozenset({"procedures"})
    assert listener.accepted() == 0
    assert stub.requests == []


def test_fetched_next_link_to_another_origin_gets_no_connection(
    listener: CountingListener, stub: StubFhirServer
) -> None:
    stub.route("Procedure", bundle(["p1"], f"{listener.base_url}/Procedure?page=2"))
    policy = dev_policy(stub.base_url, listener.base_url)
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub.base_url), [PROCEDURES], settings(policy))
    assert len(stub.requests) == 1
    assert listener.accepted() == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_the_listener_gets_no_connection(
    listener: CountingListener, stub: StubFhirServer, status: int
) -> None:
    stub.route(
        "Procedure", None, status=status, headers={"Location": f"{listener.base_url}/Procedure"}
    )
    policy = dev_policy(stub.base_url, listener.base_url)
    with pytest.raises(PrefetchUnavailable):
        resolve_prefetch(hook_request(stub.base_url), [PROCEDURES], settings(policy))
    assert len(stub.requests) == 1
    assert listener.accepted() == 0


def test_control_fake_dns_steers_real_connections(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the fake name really leads to the listener, so the zero counts below mean refusal.

    Also shows the connection keeps the name in ``Host`` (only the socket's peer is chosen by us).
    """
    dns = fake_dns(monkeypatch, {REBIND_HOST: [["127.0.0.1"]]})
    server = f"http://{REBIND_HOST}:{listener.port}/fhir"
    resolved = resolve_prefetch(hook_request(server), [PROCEDURES], settings(dev_policy(server)))
    assert [r["id"] for r in resolved.resources["procedures"]] == ["from-listener"]
    assert listener.accepted() == 1
    assert listener.hosts == [f"{REBIND_HOST}:{listener.port}"]
    assert REBIND_HOST in dns.lookups


def test_allowlisted_name_resolving_to_loopback_gets_no_connection(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {REBIND_HOST: [["127.0.0.1"]]})
    server = f"http://{REBIND_HOST}:{listener.port}/fhir"
    policy = OutboundPolicy(allowed_servers=(server,), require_https=False)
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(server), [PROCEDURES], settings(policy))
    assert info.value.diagnostics == "private_address"
    assert listener.accepted() == 0


def test_dns_rebinding_between_check_and_connect_gets_no_connection(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is public when the policy checks it and 127.0.0.1 when the transport connects."""
    dns = fake_dns(monkeypatch, {REBIND_HOST: [[PUBLIC_IP], ["127.0.0.1"]]})
    server = f"http://{REBIND_HOST}:{listener.port}/fhir"
    policy = OutboundPolicy(allowed_servers=(server,), require_https=False)
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(server), [PROCEDURES], settings(policy))
    assert info.value.diagnostics is not None and "private_address" in info.value.diagnostics
    assert len(dns.lookups) >= 2, "the transport must resolve (and check) at connect time"
    assert listener.accepted() == 0


@pytest.mark.parametrize("answers", [["127.0.0.1"], [PUBLIC_IP, "127.0.0.1"]])
def test_guarded_transport_refuses_before_connecting(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch, answers: list[str]
) -> None:
    """The transport on its own, without any policy check in front of it."""
    fake_dns(monkeypatch, {REBIND_HOST: [answers]})
    session = new_session(OutboundPolicy())
    try:
        for url in (
            f"http://{REBIND_HOST}:{listener.port}/fhir/Patient/1",
            f"http://127.0.0.1:{listener.port}/fhir/Patient/1",
            f"http://[::ffff:127.0.0.1]:{listener.port}/fhir/Patient/1",
            f"https://{REBIND_HOST}:{listener.port}/fhir/Patient/1",
        ):
            with pytest.raises(requests.ConnectionError) as info:
                session.get(url, timeout=2, allow_redirects=False)
            assert blocked_by_transport(info.value)
    finally:
        session.close()
    assert listener.accepted() == 0


def test_guarded_transport_refuses_proxies(listener: CountingListener) -> None:
    session = new_session(dev_policy())
    proxy = f"http://127.0.0.1:{listener.port}"
    try:
        with pytest.raises(requests.ConnectionError, match="proxies"):
            session.get("http://ehr.example.org/fhir", proxies={"http": proxy}, timeout=2)
    finally:
        session.close()
    assert listener.accepted() == 0


def test_environment_proxies_are_ignored(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StubFhirServer() as dead:
        closed_port_url = f"{dead.base_url}/Patient/1"
    proxy = f"http://127.0.0.1:{listener.port}"
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    session = new_session(dev_policy())
    try:
        with pytest.raises(requests.ConnectionError):
            session.get(closed_port_url, timeout=2)
    finally:
        session.close()
    assert listener.accepted() == 0
    # Control: a plain session honours the environment and would have gone to the "proxy".
    with requests.Session() as plain:
        plain.get(closed_port_url, timeout=2)
    assert listener.accepted() == 1


def test_slow_dns_cannot_hold_the_call_past_its_deadline(
    listener: CountingListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {REBIND_HOST: [[PUBLIC_IP]]}, delay_s=2.0)
    server = f"https://{REBIND_HOST}:{listener.port}/fhir"
    policy = OutboundPolicy(allowed_servers=(server,))
    fast = FetchSettings(deadline_s=0.3, policy=policy)
    started = time.monotonic()
    with pytest.raises(PrefetchUnavailable) as info:
        resolve_prefetch(hook_request(server), [PROCEDURES], fast)
    assert time.monotonic() - started < 0.3 * 1.1 + 0.2
    assert info.value.diagnostics is not None and "deadline" in info.value.diagnostics
    resolved = resolve_prefetch(hook_request(server), [OPTIONAL], fast)
    assert resolved.origin["procedures"] == "unavailable"
    assert listener.accepted() == 0
