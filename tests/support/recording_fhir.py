"""A FHIR server that records what it is asked, to prove whether the service went there at all.

Shared by the protocol and security tests: it answers every search with an empty searchset and
every read with 404, and records ``(path?query, Authorization)`` of each request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecordingFhirServer:
    """A real HTTP server on 127.0.0.1 that answers every GET under ``/fhir/`` with an empty
    searchset Bundle (or 404 for a read) and records ``(path?query, Authorization)``. Tests use it
    to prove whether the service went to ``fhirServer`` at all."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorded.append((self.path, self.headers.get("Authorization")))
                path = self.path.partition("?")[0].removeprefix("/fhir/")
                if "/" in path:  # a read: nothing is stored here
                    status = 404
                    body: dict[str, Any] = {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "not-found"}],
                    }
                else:
                    status = 200
                    body = {"resourceType": "Bundle", "type": "searchset", "total": 0}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/fhir"

    def start(self) -> None:
        """Begin answering requests."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RecordingFhirServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
