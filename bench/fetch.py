"""Benchmark c: fallback fetching from a real FHIR server, and the fetch deadline.

A sekmet FHIR R4 server (``tests.support.fhir_server.SekmetServer``, its own venv) is loaded
with the 100-resource chart. A hook request with no prefetch, a ``fhirServer`` and a
``fhirAuthorization`` then makes the service fetch every template key itself through
``service.fhir.prefetch.resolve_prefetch``, with the outbound policy of a HookHandler built in
the development profile that allows exactly that server (plain http, loopback).

* Parallelism: the wall time of ``resolve_prefetch`` is compared with each template query timed
  alone with ``requests`` (fresh connection, following ``next`` pages like the service does).
  If the queries really run in parallel, wall ~ slowest query; if serially, wall ~ their sum.
  sekmet is one CPU-bound Python process, so it answers one query at a time whoever asks: a
  control (the same queries fired at once from plain threads) shows that limit. The target is
  therefore judged through a proxy that adds 50 ms to every request, as a remote EHR's network
  and database would; there the service's own parallelism is what decides the wall time.
* Deadline: a small local proxy forwards to sekmet but holds one query for 5 s.
  ``resolve_prefetch`` must give up at the deadline (``fhir_deadline``, default 1.5 s): raise
  412 when the held key is required, return it as "unavailable" when it is optional.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from bench import charts
from bench.util import median, settle

FHIR_TOKEN = "bench-fhir-token"
TARGET_WALL_OVER_SLOWEST = 1.3
DEADLINE_TOLERANCE = 0.10
HOLD_S = 5.0
# Per-request latency added by the proxy for the parallelism measurement (a remote EHR).
LATENCY_S = 0.05


# -- the delaying proxy -----------------------------------------------------------------------


class DelayingProxy:
    """``http://127.0.0.1:PORT/...`` forwarding GETs to ``upstream``, holding matching ones.

    ``hold(path_and_query) -> bool`` picks the requests to delay by ``delay_s`` before they are
    forwarded; ``latency_s`` delays every request (a remote EHR's network and database latency,
    which a local CPU-bound FHIR server does not have). The upstream's own base URL in response
    bodies (``Bundle.link`` URLs) is rewritten to the proxy's, so ``next`` pages stay on the
    origin the client was given.
    """

    def __init__(
        self,
        upstream: str,
        hold: Callable[[str], bool] = lambda path: False,
        delay_s: float = 0.0,
        *,
        latency_s: float = 0.0,
    ) -> None:
        self.upstream = urlsplit(upstream)
        self.hold = hold
        self.delay_s = delay_s
        self.latency_s = latency_s
        self.held = 0
        self._released = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DelayingProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        upstream_origin = f"{self.upstream.scheme}://{self.upstream.netloc}".encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if proxy.hold(self.path):
                    proxy.held += 1
                    proxy._released.wait(proxy.delay_s)
                elif proxy.latency_s:
                    proxy._released.wait(proxy.latency_s)
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port or 80, timeout=30
                )
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("accept", "authorization")
                    }
                    conn.request("GET", self.path, headers=headers)
                    upstream = conn.getresponse()
                    raw = upstream.read().replace(upstream_origin, proxy.origin.encode())
                    status = upstream.status
                    content_type = upstream.getheader("Content-Type", "application/fhir+json")
                finally:
                    conn.close()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the service gave up at its deadline

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# -- helpers ----------------------------------------------------------------------------------


def _transaction(chart: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for entry in chart["entry"]:
        r = entry["resource"]
        entries.append(
            {
                "fullUrl": entry["fullUrl"],
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _request(fhir_base: str) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "5b0a3c1e-bench-fetch",
        "fhirServer": fhir_base,
        "fhirAuthorization": {
            "access_token": FHIR_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "epidural-cds",
        },
        "context": {"userId": "Practitioner/bench", "patientId": charts.PATIENT_ID},
    }


def _handler(fhir_base: str, deadline_s: float | None = None) -> Any:
    from service import content as content_module
    from service.cdshooks.handler import HookHandler
    from service.config import Settings

    mapping: dict[str, Any] = {
        "profile": "development",
        "auth_disabled": True,
        "fhir_allowed_servers": fhir_base,
        "fhir_allow_http": True,
        "fhir_allow_private_addresses": True,
    }
    if deadline_s is not None:
        mapping["fhir_deadline"] = deadline_s
    return HookHandler(content_module.load(None), Settings.from_mapping(mapping))


def _resolve(handler: Any, request: dict[str, Any]) -> tuple[float, Any, str | None]:
    """(seconds, resolved or None, error class name or None) of one resolve_prefetch call."""
    from service.errors import ServiceError
    from service.fhir.prefetch import resolve_prefetch

    started = time.monotonic()
    try:
        resolved = resolve_prefetch(
            request,
            handler.templates[charts.SERVICE_ID],
            handler.fetch,
            received_at=started,
        )
    except ServiceError as err:
        return time.monotonic() - started, None, f"{type(err).__name__} ({err.status})"
    return time.monotonic() - started, resolved, None


def _query_alone(fhir_base: str, rendered: str) -> tuple[float, int, int]:
    """(seconds, resources, pages) of one template query, fresh connection, all pages."""
    headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {FHIR_TOKEN}"}
    url: str | None = f"{fhir_base}/{rendered}"
    started = time.monotonic()
    count = pages = 0
    with requests.Session() as session:
        session.trust_env = False
        while url:
            response = session.get(url, headers=headers, timeout=10)
            response.raise_for_status()
            document = response.json()
            pages += 1
            if document.get("resourceType") != "Bundle":
                count += 1
                break
            count += len(document.get("entry", []))
            url = next(
                (
                    urljoin(fhir_base + "/", link["url"])
                    for link in document.get("link", [])
                    if link.get("relation") == "next"
                ),
                None,
            )
    return time.monotonic() - started, count, pages


# -- the benchmark ----------------------------------------------------------------------------


def _measure(
    base: str, repeats: int, log: Callable[[str], None], label: str, warmups: int = 2
) -> dict[str, Any]:
    """Wall time of resolve_prefetch against ``base`` vs each template query alone.

    Also times a control: all template queries fired at once from plain threads with
    ``requests``, i.e. how parallel the FHIR server itself lets any client be.
    """
    from service.fhir.prefetch import render_template

    handler = _handler(base)
    request = _request(base)
    templates = handler.templates[charts.SERVICE_ID]
    rendered = {t.key: render_template(t.template, request["context"]) for t in templates}
    outcome = handler.handle(charts.SERVICE_ID, _json(request), now=charts.ANCHOR)
    cards = [c["indicator"] for c in outcome.response["cards"]]
    for _ in range(warmups):  # warm-up: connections, sekmet's caches, our imports
        _resolve(handler, request)
        for query in rendered.values():
            _query_alone(base, query)

    settled = settle(log)
    walls: list[float] = []
    controls: list[float] = []
    alone: dict[str, list[float]] = {key: [] for key in rendered}
    counts: dict[str, tuple[int, int]] = {}
    fetched = 0
    with ThreadPoolExecutor(max_workers=len(rendered)) as pool:
        for _ in range(repeats):
            seconds, resolved, error = _resolve(handler, request)
            if error is not None:
                raise RuntimeError(f"fallback fetch failed: {error}")
            walls.append(seconds)
            fetched = len(
                {(r["resourceType"], r["id"]) for rs in resolved.resources.values() for r in rs}
            )
            for key, query in rendered.items():
                s, n, pages = _query_alone(base, query)
                alone[key].append(s)
                counts[key] = (n, pages)
            started = time.monotonic()
            list(pool.map(lambda q: _query_alone(base, q), rendered.values()))
            controls.append(time.monotonic() - started)
    per_query = {
        key: {
            "median_ms": round(median(v) * 1000, 2),
            "resources": counts[key][0],
            "pages": counts[key][1],
        }
        for key, v in alone.items()
    }
    wall_ms = median(walls) * 1000
    slowest_key = max(per_query, key=lambda k: per_query[k]["median_ms"])
    slowest_ms = per_query[slowest_key]["median_ms"]
    sum_ms = sum(q["median_ms"] for q in per_query.values())
    control_ms = median(controls) * 1000
    log(
        f"  fetch ({label}): wall {wall_ms:.1f} ms, slowest query {slowest_ms:.1f} ms "
        f"({slowest_key}), sum {sum_ms:.1f} ms, raw parallel control {control_ms:.1f} ms; "
        f"{fetched} resources, cards {cards}"
    )
    return {
        "settle": settled,
        "fetched_resources": fetched,
        "cards": cards,
        "repeats": repeats,
        "wall_ms": round(wall_ms, 2),
        "wall_max_ms": round(max(walls) * 1000, 2),
        "queries": per_query,
        "requests_per_call": sum(q["pages"] for q in per_query.values()),
        "slowest_query": slowest_key,
        "slowest_ms": slowest_ms,
        "sum_ms": round(sum_ms, 2),
        "control_parallel_ms": round(control_ms, 2),
        "wall_over_slowest": round(wall_ms / slowest_ms, 3),
        "wall_over_sum": round(wall_ms / sum_ms, 3),
        "control_over_slowest": round(control_ms / slowest_ms, 3),
    }


def run(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    from tests.support.fhir_server import SekmetServer

    # Quick (smoke) run: every step once or twice, just enough to show the phase still works.
    repeats = 2 if quick else 20
    warmups = 1 if quick else 2
    deadline_repeats = 1 if quick else 3
    chart = charts.build_chart(charts.BENCH_SIZE)
    with SekmetServer(bearer_token=FHIR_TOKEN) as fhir:
        log(f"  sekmet up in {fhir.startup_s:.1f} s (venv install {fhir.install_s:.1f} s)")
        fhir.load(_transaction(chart))
        direct = _measure(fhir.base_url, repeats, log, "sekmet direct", warmups)
        path = urlsplit(fhir.base_url).path
        with DelayingProxy(fhir.base_url, latency_s=LATENCY_S) as proxy:
            latency = _measure(
                f"{proxy.origin}{path}",
                repeats,
                log,
                f"+{LATENCY_S * 1000:.0f} ms latency",
                warmups,
            )
        deadline = _deadline(
            fhir.base_url,
            _handler(fhir.base_url).fetch.deadline_s,
            deadline_repeats,
            log,
            warmup=not quick,
        )

    ratio = latency["wall_over_slowest"]
    worst = max(d["elapsed_s"] for case in deadline["cases"] for d in case["runs"])
    limit = deadline["deadline_s"] * (1 + DEADLINE_TOLERANCE)
    deadline_ok = worst <= limit and all(case["as_expected"] for case in deadline["cases"])
    return {
        "fhir_server": "sekmet-fhir (tests.support.fhir_server.SekmetServer)",
        "chart_resources": charts.BENCH_SIZE,
        "latency_ms": LATENCY_S * 1000,
        "direct": direct,
        "with_latency": latency,
        "deadline": deadline,
        "targets": [
            {
                "name": (
                    f"fallback fetch wall vs slowest single query "
                    f"(sekmet + {LATENCY_S * 1000:.0f} ms latency)"
                ),
                "target": f"<= {TARGET_WALL_OVER_SLOWEST}x",
                "value": f"{ratio:.2f}x",
                "met": ratio <= TARGET_WALL_OVER_SLOWEST,
            },
            {
                "name": "fetch deadline honoured (one query held 5 s)",
                "target": f"<= deadline + {DEADLINE_TOLERANCE:.0%} ({limit:.2f} s)",
                "value": f"{worst:.3f} s worst",
                "met": deadline_ok,
            },
        ],
    }


def _json(document: dict[str, Any]) -> bytes:
    import json

    return json.dumps(document).encode()


def _deadline(
    fhir_base: str,
    deadline_s: float,
    repeats: int,
    log: Callable[[str], None],
    *,
    warmup: bool = True,
) -> dict[str, Any]:
    cases = [
        # A required key: the call must fail (412) at the deadline, not wait for the server.
        ("conditions (required)", "/Condition?", "PrefetchUnavailable (412)"),
        # An optional key: the call must return at the deadline with that key "unavailable".
        ("medication-administrations (optional)", "/MedicationAdministration?", "unavailable"),
    ]
    out = []
    path_prefix = urlsplit(fhir_base).path
    for label, marker, expected in cases:

        def hold(path: str, marker: str = marker) -> bool:
            return path.startswith(path_prefix + marker)

        with DelayingProxy(fhir_base, hold, HOLD_S) as proxy:
            proxy_base = f"{proxy.origin}{path_prefix}"
            handler = _handler(proxy_base)
            request = _request(proxy_base)
            if warmup:
                _resolve(handler, request)  # warm-up (also held: costs one deadline)
            runs: list[dict[str, Any]] = []
            for _ in range(repeats):
                seconds, resolved, error = _resolve(handler, request)
                if error is not None:
                    outcome = error
                else:
                    unavailable = [k for k, o in resolved.origin.items() if o == "unavailable"]
                    outcome = "unavailable: " + ",".join(unavailable) if unavailable else "ok"
                runs.append({"elapsed_s": round(seconds, 3), "outcome": outcome})
            held = proxy.held
        as_expected = all(expected.split()[0] in str(r["outcome"]) for r in runs)
        log(
            f"  deadline, {label} held {HOLD_S:.0f} s: "
            + ", ".join(f"{r['elapsed_s']:.3f} s -> {r['outcome']}" for r in runs)
        )
        out.append(
            {
                "held_key": label,
                "held_requests": held,
                "expected": expected,
                "as_expected": as_expected,
                "runs": runs,
            }
        )
    return {"deadline_s": deadline_s, "hold_s": HOLD_S, "cases": out}
