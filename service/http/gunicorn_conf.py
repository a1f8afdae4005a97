"""The gunicorn configuration of the service (``deploy/gunicorn.conf.py`` loads this module).

``epidural-cds serve`` uses it; so can gunicorn itself, from an installed wheel, without the
repository::

    gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:application

Why each value:

* ``workers``: ``EPIDURAL_CDS_WORKERS``, else one sync worker per CPU this process may use,
  plus one. A hook call is CPU-bound (JSON, evaluation, rendering) except while it waits for the
  EHR's FHIR server; more workers than that only queue for the same cores.
* ``timeout`` 8 s: a worker silent for that long is killed and restarted. A call needs well
  under a second plus at most the FHIR deadline (``EPIDURAL_CDS_FHIR_DEADLINE``, 1.5 s), and an
  answer later than the EHR's hook timeout is thrown away by the EHR, so a stuck worker is freed
  before the EHR's next call has to wait for it. Keep the EHR's timeout above 8 s (and the FHIR
  deadline well below it).
* ``graceful_timeout`` 10 s: on ``SIGTERM`` (Kubernetes stopping a pod, ``docker stop``,
  Ctrl-C) the master stops accepting, each worker finishes the call it is in, and only workers
  still busy after 10 s are killed: longer than ``timeout``, so an in-flight call always gets to
  finish; shorter than Kubernetes' default 30 s termination grace period.
* ``max_requests`` 5000 with ``max_requests_jitter`` 500: each worker is replaced after about
  5,000 calls, which bounds any slow growth of its memory; the jitter keeps the workers from
  restarting at the same moment.
* ``preload_app``: the app (content, schemas, keys) is built once in the master, so invalid
  content stops the service before it binds, and workers share those pages.
* ``forwarded_allow_ips`` empty: gunicorn would otherwise trust ``X-Forwarded-Proto`` from
  loopback by itself; forwarded headers are honoured by ``ProxyFix`` only, from
  ``EPIDURAL_CDS_TRUSTED_PROXY_HOPS`` hops (:mod:`service.http.forwarded`).
* Logs: access and error logs to standard output and error, as JSON lines
  (:mod:`service.http.gunicorn_logging`).
* Metrics: the Prometheus directory is prepared at import (:mod:`service.http.multiproc`); with
  ``EPIDURAL_CDS_METRICS_PORT`` the master serves the scrape on that port once it is ready;
  ``child_exit`` tells prometheus-client that a worker is gone.
"""

from __future__ import annotations

import os
from typing import Any

from service.config import Settings
from service.http import multiproc

multiproc.prepare()
_settings = Settings.from_env()


def default_workers() -> int:
    """One worker per CPU this process may run on, plus one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cpus + 1


bind = "127.0.0.1:8080"
workers = _settings.workers or default_workers()
worker_class = "sync"
timeout = 8
graceful_timeout = 10
max_requests = 5000
max_requests_jitter = 500
preload_app = True
forwarded_allow_ips = ""
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
logger_class = "service.http.gunicorn_logging.JsonGunicornLogger"
proc_name = "epidural-cds"


def when_ready(server: Any) -> None:
    """Start the separate metrics listener (``EPIDURAL_CDS_METRICS_PORT``) in the master."""
    if _settings.metrics_port is None:
        if not _settings.development:
            server.log.info("no metrics listener: set EPIDURAL_CDS_METRICS_PORT to serve metrics")
        return
    from service.http import metrics

    host = server.cfg.address[0][0] if server.cfg.address else "127.0.0.1"
    if not isinstance(host, str):  # a unix socket: listen on loopback
        host = "127.0.0.1"
    metrics.start_listener(host, _settings.metrics_port)
    server.log.info("metrics listener on %s port %d", host, _settings.metrics_port)


def child_exit(server: Any, worker: Any) -> None:
    """Mark an exited worker's metrics files as dead (prometheus-client multiprocess mode)."""
    from service.http import metrics

    metrics.mark_worker_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics directory if it was a temporary one we created."""
    multiproc.cleanup()
