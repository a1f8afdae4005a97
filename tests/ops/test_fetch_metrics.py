"""FHIR fetch metrics: latency per prefetch key, failures by kind, keys supplied vs fetched.

The app fetches from real local HTTP servers (the protocol tests' recording server, and one
that answers every request with 500); the metrics are read from this process's registry before
and after one call, so other tests' calls do not matter.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from service.http import metrics
from tests.protocol.conftest import RecordingFhirServer, local_fhir_app
from tests.security.conftest import SERVICE_ID, s1_hook_body

HOOK = f"/cds-services/{SERVICE_ID}"


def _value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else float(found)


def _body(server_url: str) -> dict[str, Any]:
    body = s1_hook_body(with_prefetch=False)
    body["fhirServer"] = server_url
    body["fhirAuthorization"] = {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "epidural-cds",
    }
    return body


def test_each_fetched_key_is_timed_and_counted_as_fetched() -> None:
    with RecordingFhirServer() as server:
        app = local_fhir_app(server)
        keys = [spec.key for spec in app.extensions["epidural_cds"].content.services[0].prefetch]
        timed = {k: _value("epidural_cds_fhir_fetch_seconds_count", key=k) for k in keys}
        fetched = _value(
            "epidural_cds_prefetch_keys_total",
            service=SERVICE_ID,
            key="conditions",
            origin="fetched",
        )
        response = app.test_client().post(HOOK, json=_body(server.base_url))
        assert response.status_code == 200, response.get_data(as_text=True)
    for key in keys:
        assert _value("epidural_cds_fhir_fetch_seconds_count", key=key) == timed[key] + 1, key
    assert (
        _value(
            "epidural_cds_prefetch_keys_total",
            service=SERVICE_ID,
            key="conditions",
            origin="fetched",
        )
        == fetched + 1
    )


def test_a_failing_fhir_server_is_counted_by_kind() -> None:
    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    try:

        class Stub:
            base_url = base

        app = local_fhir_app(Stub())  # type: ignore[arg-type]
        keys = [spec.key for spec in app.extensions["epidural_cds"].content.services[0].prefetch]
        before = sum(
            _value("epidural_cds_fhir_fetch_failures_total", key=k, kind="status") for k in keys
        )
        response = app.test_client().post(HOOK, json=_body(base))
    finally:
        httpd.shutdown()
    assert response.status_code == 412  # a required key could not be had
    # At least the failure that made it 412; the other keys' fetches may still be finishing.
    after = sum(
        _value("epidural_cds_fhir_fetch_failures_total", key=k, kind="status") for k in keys
    )
    assert after >= before + 1
