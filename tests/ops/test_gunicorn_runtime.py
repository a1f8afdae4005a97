"""Real gunicorn under ``epidural-cds serve``: metrics add up across workers, and SIGTERM drains.

* Metrics: N hook calls, sent concurrently over new connections to three sync workers, are
  answered by more than one worker, and the scrape (the master's separate metrics listener, and
  ``/metrics`` on the service port in the development profile) counts exactly N calls, N cards
  and N supplied prefetch keys per key. A worker killed with SIGKILL is replaced and its counts
  stay in the total.
* Graceful shutdown: a call held up by a slow FHIR server is in flight when the master gets
  SIGTERM; it still completes with 200, and the master then exits cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.ops.test_two_instances_postgres import sample
from tests.security.conftest import SERVICE_ID, s1_hook_body
from tests.support import serve

pytestmark = pytest.mark.integration

SERVICE_PATH = f"/cds-services/{SERVICE_ID}"
DEV = {"EPIDURAL_CDS_PROFILE": "development", "EPIDURAL_CDS_AUTH_DISABLED": "true"}
CALLS = 24


def _calls(served: serve.Served, count: int) -> list[int]:
    body = s1_hook_body()

    def one(_: int) -> int:
        with serve.session() as http:  # a new connection per call
            return http.post(f"{served.base}{SERVICE_PATH}", json=body, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(one, range(count)))


def _scrape(url: str) -> str:
    with serve.session() as http:
        response = http.get(url, timeout=10)
    assert response.status_code == 200
    return response.text


def _hook_count(text: str) -> float:
    return sample(
        text, "epidural_cds_http_request_seconds_count", endpoint="hook_endpoint", status="200"
    )


@pytest.fixture
def three_workers(tmp_path: Path) -> Iterator[tuple[serve.Served, int]]:
    metrics_port = serve.free_port()
    env = {
        **DEV,
        "EPIDURAL_CDS_DATA_DIR": str(tmp_path / "data"),
        "EPIDURAL_CDS_METRICS_PORT": str(metrics_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    served = serve.start(tmp_path / "serve.log", env, workers=3)
    try:
        yield served, metrics_port
    finally:
        served.stop()


def test_counters_add_up_across_workers_and_survive_a_killed_worker(
    three_workers: tuple[serve.Served, int], tmp_path: Path
) -> None:
    served, metrics_port = three_workers
    assert len(served.worker_pids()) == 3
    assert _calls(served, CALLS) == [200] * CALLS
    deadline = time.monotonic() + 15  # access lines are written after the responses
    while (
        len(access := [r for r in served.records() if r.get("path") == SERVICE_PATH]) < CALLS
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    answered_by = {r["pid"] for r in access}
    assert len(answered_by) > 1, "the calls were spread over several workers"

    listener = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    on_service_port = _scrape(f"{served.base}/metrics")
    for text in (listener, on_service_port):
        assert _hook_count(text) == CALLS
        assert sample(text, "epidural_cds_cards_total", indicator="critical") == CALLS
        assert (
            sample(text, "epidural_cds_prefetch_keys_total", key="patient", origin="prefetch")
            == CALLS
        )
    assert sorted(p.name for p in (tmp_path / "metrics").glob("*.db"))  # multiprocess files

    victim = next(iter(answered_by))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(served.worker_pids()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(served.worker_pids()) == 4, "gunicorn replaced the killed worker"
    assert _calls(served, 6) == [200] * 6
    assert _hook_count(_scrape(f"http://127.0.0.1:{metrics_port}/metrics")) == CALLS + 6


def test_production_serves_no_metrics_on_the_service_port(tmp_path: Path) -> None:
    from tests.test_openapi import production_app

    app = production_app(tmp_path)
    assert app.test_client().get("/metrics").status_code == 404


# -- graceful shutdown ---------------------------------------------------------------------------


class SlowFhir:
    """A FHIR server that takes ``delay`` seconds per request; ``asked`` is set on the first."""

    def __init__(self, delay: float) -> None:
        self.asked = threading.Event()
        asked = self.asked

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.set()
                time.sleep(delay)
                path = self.path.partition("?")[0].removeprefix("/fhir/")
                if "/" in path:
                    kind, _, ident = path.partition("/")
                    body: dict[str, Any] = {"resourceType": kind, "id": ident}
                else:
                    body = {"resourceType": "Bundle", "type": "searchset", "total": 0}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"


def test_a_slow_in_flight_call_completes_after_sigterm(tmp_path: Path) -> None:
    fhir = SlowFhir(delay=3.0)
    env = {
        **DEV,
        "EPIDURAL_CDS_DATA_DIR": str(tmp_path / "data"),
        "EPIDURAL_CDS_FHIR_ALLOWED_SERVERS": fhir.base_url,
        "EPIDURAL_CDS_FHIR_ALLOW_HTTP": "true",
        "EPIDURAL_CDS_FHIR_ALLOW_PRIVATE_ADDRESSES": "true",
        "EPIDURAL_CDS_ALLOW_UNAUTHENTICATED_FHIR": "true",
        "EPIDURAL_CDS_FHIR_DEADLINE": "6",
        "EPIDURAL_CDS_FHIR_READ_TIMEOUT": "6",
    }
    served = serve.start(tmp_path / "serve.log", env, workers=1)
    body = s1_hook_body(with_prefetch=False)
    body["fhirServer"] = fhir.base_url
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            with serve.session() as http:
                response = http.post(f"{served.base}{SERVICE_PATH}", json=body, timeout=60)
            result["status"], result["body"] = response.status_code, response.json()
        except requests.RequestException as error:
            result["error"] = repr(error)

    caller = threading.Thread(target=call)
    try:
        caller.start()
        assert fhir.asked.wait(20), "the call reached the FHIR server"
        signalled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        caller.join(timeout=30)
        exit_status = served.stop(timeout=30)
    finally:
        served.stop(signal.SIGKILL)
        fhir.httpd.shutdown()
    assert result.get("status") == 200, (result, served.output[-3000:])
    assert result["body"] == {"cards": []}  # the slow server holds no epidural
    assert exit_status == 0
    assert time.monotonic() - signalled < 15  # drained within graceful_timeout, not killed
    assert "Shutting down: Master" in served.output


def test_plain_gunicorn_runs_the_packaged_configuration(tmp_path: Path) -> None:
    """``gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:application``, as a
    site without our command line (or the repository) would start it."""
    import subprocess
    import sys

    port = serve.free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EPIDURAL_CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update({**DEV, "EPIDURAL_CDS_DATA_DIR": str(tmp_path / "data")})
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf",
        "-b", f"127.0.0.1:{port}", "-w", "1", "service.http.wsgi:application",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=serve.ROOT, env=env, stdout=out, stderr=out)
    served = serve.Served(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, served.output[-3000:]
            try:
                with serve.session() as http:
                    if http.get(f"{served.base}/readyz", timeout=2).status_code == 200:
                        break
            except requests.RequestException:
                time.sleep(0.1)
        with serve.session() as http:
            call = http.post(f"{served.base}{SERVICE_PATH}", json=s1_hook_body(), timeout=30)
        assert call.status_code == 200 and call.json()["cards"]
        served.wait_for_record(lambda r: r["logger"] == "gunicorn.access")
    finally:
        assert served.stop() == 0
    assert served.records()  # JSON lines throughout, gunicorn's own included
