"""Prometheus metrics of the service, counted across every gunicorn worker.

What is counted, and why each one:

* ``epidural_cds_http_request_seconds{endpoint,service,status}``: latency of every request by
  endpoint, CDS service and status; its ``_count`` is the number of calls, so error rates and
  tail latency by service come from one histogram;
* ``epidural_cds_cards_total{topic,indicator}``: cards answered, by the card's topic (the rule
  that produced it, as named in ``cards/rules.yaml``) and indicator: a change in content
  shows up as a change in this mix;
* ``epidural_cds_prefetch_keys_total{service,key,origin}``: for each prefetch key of each call,
  whether the EHR supplied it (``prefetch``), we fetched it (``fetched``), it was empty
  (``none``) or could not be had (``unavailable``): how well an EHR's prefetch is configured;
* ``epidural_cds_fhir_fetch_seconds{key}`` and ``epidural_cds_fhir_fetch_failures_total{key,kind}``:
  fallback FHIR queries and why they failed (:mod:`service.fhir.events`);
* ``epidural_cds_auth_failures_total{reason}``: refused callers by reason code;
* ``epidural_cds_audit_store_failures_total``: audit records the store could not take;
* ``epidural_cds_replay_guard_store_events_total{event}``: the JWT replay guard and store
  outages (:mod:`service.replay_fallback`): ``down`` and ``up`` transitions, tokens
  ``accepted_in_memory`` meanwhile, calls ``refused`` with 503, and tokens found
  ``used_elsewhere`` when written to the store afterwards (a replay that got through).

Every label value comes from a fixed set (endpoint names, configured services and prefetch keys,
content topics, reason codes), never from the request as sent, so no caller can create series.

Gunicorn runs several worker processes; :mod:`service.http.multiproc` puts prometheus-client in
multiprocess mode before this module is imported, and a scrape (:func:`exposition`) sums every
worker's file. In production the scrape is served by a separate listener in the gunicorn master
(:func:`start_listener`, ``EPIDURAL_CDS_METRICS_PORT``), not on the port EHRs reach: metrics
tell an outsider which rules fire and how often, and the scrape should not be one more public
endpoint behind the TLS proxy. The development profile also serves ``GET /metrics`` on the
service port, for a developer to look.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client import values as _values

from service.fhir import events

#: Whether prometheus-client chose multiprocess mode when it was imported (it reads
#: ``PROMETHEUS_MULTIPROC_DIR`` once, then; see :mod:`service.http.multiproc`).
MULTIPROCESS: bool = bool(getattr(_values.ValueClass, "_multiprocess", False))

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "epidural_cds_http_request_seconds",
    "Time to answer a request, by endpoint, CDS service and HTTP status.",
    ("endpoint", "service", "status"),
    buckets=_LATENCY_BUCKETS,
)
CARDS = Counter(
    "epidural_cds_cards",
    "Cards answered, by card topic (the rule's topic in cards/rules.yaml) and indicator.",
    ("topic", "indicator"),
)
PREFETCH_KEYS = Counter(
    "epidural_cds_prefetch_keys",
    "Prefetch keys of hook calls, by where the data came from (prefetch, fetched, none, "
    "unavailable).",
    ("service", "key", "origin"),
)
FHIR_FETCH_SECONDS = Histogram(
    "epidural_cds_fhir_fetch_seconds",
    "Duration of fallback FHIR queries, by prefetch key (success or failure).",
    ("key",),
    buckets=_LATENCY_BUCKETS,
)
FHIR_FETCH_FAILURES = Counter(
    "epidural_cds_fhir_fetch_failures",
    "Failed fallback FHIR queries, by prefetch key and kind (status, deadline, refused, error).",
    ("key", "kind"),
)
AUTH_FAILURES = Counter(
    "epidural_cds_auth_failures",
    "Refused client authentications, by reason code.",
    ("reason",),
)
AUDIT_STORE_FAILURES = Counter(
    "epidural_cds_audit_store_failures",
    "Audit records that could not be written to the store (they still went to the audit log).",
)

REPLAY_STORE_EVENTS = Counter(
    "epidural_cds_replay_guard_store_events",
    "JWT replay guard events while the store is unreachable (down, up, accepted_in_memory, "
    "refused, used_elsewhere).",
    ("event",),
)


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: ``labels`` takes a lock and checks its arguments
    on every call, and a hook call records a dozen series. The label sets are bounded (see the
    module docstring), so the cache is too."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def _fetch_observed(key: str, seconds: float, failure: str | None) -> None:
    FHIR_FETCH_SECONDS.labels(key).observe(seconds)
    if failure is not None:
        FHIR_FETCH_FAILURES.labels(key, failure).inc()


events.subscribe(_fetch_observed)


def replay_store_event(event: str) -> None:
    """Count one event of :class:`service.replay_fallback.FallbackReplayGuard` (a fixed name)."""
    child(REPLAY_STORE_EVENTS, event).inc()


def registry() -> CollectorRegistry:
    """What a scrape reports: every worker's counts in multiprocess mode, else this process's."""
    if not MULTIPROCESS:
        return REGISTRY
    collecting = CollectorRegistry()
    multiprocess.MultiProcessCollector(collecting)  # type: ignore[no-untyped-call]
    return collecting


def exposition() -> bytes:
    """The metrics in Prometheus's text format."""
    return generate_latest(registry())


def register_endpoint(app: Flask) -> None:
    """``GET /metrics`` on the service port (the development profile only; see the docstring)."""

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(exposition(), content_type=CONTENT_TYPE_LATEST)


def start_listener(host: str, port: int) -> None:
    """Serve the scrape on ``host:port`` from a thread of this process (the gunicorn master)."""
    start_http_server(port, addr=host, registry=registry())


def mark_worker_dead(pid: int) -> None:
    """Tell multiprocess mode that worker ``pid`` has exited (gunicorn's ``child_exit``)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
