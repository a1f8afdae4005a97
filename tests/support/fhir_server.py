"""Run a real FHIR R4 server (sekmet-fhir) as a subprocess for integration tests.

Why a real server: our FHIR client must interoperate with real search semantics (``patient=``,
``code=system|code``), real paging (``Bundle.link[next]``) and real content negotiation, which a
canned stub cannot prove. sekmet-fhir is the only pure-Python R4 server that passed our search
checks (see ``shared/research/test-infrastructure.md``).

It also holds :class:`StubFhirServer`, a canned FHIR server in a thread for fast protocol tests.

Why a separate venv: sekmet pins its own fastapi/pydantic/fhir.resources versions, which must not
leak into the project's venv. The venv is created once under ``$EPIDURAL_CDS_TEST_CACHE``
(default ``<repo>/.cache``) and reused by later sessions; every server instance gets a fresh
temporary data directory so test sessions never share state.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

SEKMET_VERSION = "0.1.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 600.0


def cache_dir() -> Path:
    """Where slow-to-build test dependencies live; overridable so CI can cache it between runs."""
    env = os.environ.get("EPIDURAL_CDS_TEST_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_sekmet_venv(venv_dir: Path | None = None) -> Path:
    """Return the ``sekmet`` executable, creating its dedicated venv only if it is missing.

    A marker file is written only after a successful install, so an interrupted install is
    repaired on the next run instead of leaving a half-built venv that looks usable. A file lock
    serialises concurrent test sessions that share one cache.
    """
    venv = venv_dir or cache_dir() / "sekmet-venv"
    exe = venv / "bin" / "sekmet"
    marker = venv / f".sekmet-fhir-{SEKMET_VERSION}.installed"
    if marker.exists() and exe.exists():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / "sekmet-venv.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.exists() and exe.exists():
                return exe
            python = shutil.which("python3") or sys.executable
            if not (venv / "bin" / "python").exists():
                subprocess.run(
                    [python, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT_S
                )
            subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    f"sekmet-fhir=={SEKMET_VERSION}",
                ],
                check=True,
                timeout=INSTALL_TIMEOUT_S,
            )
            if not exe.exists():
                raise RuntimeError(f"sekmet-fhir installed but {exe} is missing")
            marker.write_text(SEKMET_VERSION + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return exe


class SekmetServer:
    """A sekmet FHIR R4 server on 127.0.0.1 with a fresh data directory; use as a context manager.

    By default sekmet ignores ``Authorization`` headers (``server_auth.types: [none]``). With
    ``bearer_token`` set it answers 401 to any FHIR request without exactly that token
    (``/metadata`` stays open), which lets tests prove the token is sent on every request;
    :meth:`request` and :meth:`load` then send it themselves.

    ``install_s`` and ``startup_s`` record how long the venv install (0 when cached) and the
    server startup took, so slow CI can be diagnosed from test output.
    """

    def __init__(
        self,
        *,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        venv_dir: Path | None = None,
        bearer_token: str | None = None,
    ) -> None:
        self._startup_timeout_s = startup_timeout_s
        self._bearer_token = bearer_token
        self._venv_dir = venv_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self.port = 0
        self.install_s = 0.0
        self.startup_s = 0.0

    @property
    def base_url(self) -> str:
        """The FHIR base, ``http://127.0.0.1:PORT/fhir`` (what a CDS client sends as fhirServer)."""
        if not self.port:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def bearer_token(self) -> str | None:
        """The only token the server accepts, or None when it ignores Authorization."""
        return self._bearer_token

    def __enter__(self) -> SekmetServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Install (if needed), configure and launch sekmet; wait until ``/metadata`` answers."""
        t0 = time.monotonic()
        exe = ensure_sekmet_venv(self._venv_dir)
        self.install_s = time.monotonic() - t0

        self._tmp = tempfile.TemporaryDirectory(prefix="sekmet-")
        run_dir = Path(self._tmp.name)
        self.port = _free_port()
        settings = run_dir / "settings.yaml"
        # A JSON string is a valid YAML scalar, so json.dumps quotes the path safely.
        lines = [
            f"base_url: {self.base_url}",
            "host: 127.0.0.1",
            f"port: {self.port}",
            f"data_dir: {json.dumps(str(run_dir / 'data'))}",
            "simulator:",
            "  enabled: false",
        ]
        if self._bearer_token is not None:
            lines += [
                "server_auth:",
                "  types: [bearer]",
                f"  tokens: [{json.dumps(self._bearer_token)}]",
            ]
        settings.write_text("\n".join(lines) + "\n")
        self._log_path = run_dir / "sekmet.log"
        t1 = time.monotonic()
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(exe),
                    "serve",
                    "--config",
                    str(settings),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=run_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t1

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        url = f"{self.base_url}/metadata"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"sekmet exited with {self._proc.returncode} during startup:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(
            f"sekmet not ready after {self._startup_timeout_s} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's combined stdout/stderr, for failure messages."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s) and delete its data."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        """Send one request (``path`` relative to base_url); return status and parsed JSON."""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Accept": "application/fhir+json"}
        if data is not None:
            hdrs["Content-Type"] = "application/fhir+json"
        if self._bearer_token is not None:
            hdrs["Authorization"] = f"Bearer {self._bearer_token}"
        hdrs.update(headers or {})
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
        parsed = json.loads(raw) if raw else None
        return status, parsed

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction/batch Bundle to the base URL; assert that every entry succeeded."""
        status, resp = self.request("POST", self.base_url, bundle)
        assert status == 200, f"transaction failed with HTTP {status}: {resp}"
        assert resp is not None
        entries = resp.get("entry", [])
        assert len(entries) == len(bundle.get("entry", [])), "response entry count differs"
        for i, entry in enumerate(entries):
            entry_status = str(entry.get("response", {}).get("status", ""))
            assert entry_status[:1] == "2", f"entry {i} failed: {entry.get('response')}"
        return resp


# -- a canned FHIR server for fast protocol tests -----------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub server received it (headers with lower-case names)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]

    @property
    def params(self) -> dict[str, list[str]]:
        """The query string parsed into name -> values."""
        return parse_qs(self.query, keep_blank_values=True)


@dataclass
class CannedResponse:
    """What the stub answers for one route; ``body`` dicts are sent as FHIR JSON."""

    status: int = 200
    body: dict[str, Any] | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    omit_length: bool = False  # close-delimited body (no Content-Length), to test streaming caps


class StubFhirServer:
    """A real HTTP server on 127.0.0.1 (ephemeral port, own thread) serving canned FHIR responses.

    Why not mock ``requests``: timeouts, redirects, streaming, headers on the wire and parallelism
    are exactly what the FHIR client must get right, and only a real socket tests them. Routes are
    matched on ``path?query`` first, then on ``path`` alone; unknown routes answer 404 with an
    OperationOutcome. Every request is recorded in :attr:`requests`.
    """

    def __init__(self) -> None:
        self._routes: dict[str, CannedResponse] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), daemon=True, name="stub-fhir"
        )
        self.port: int = self._httpd.server_address[1]

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The FHIR base a CDS client would send as ``fhirServer``."""
        return f"{self.origin}/fhir"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far."""
        with self._lock:
            return list(self._requests)

    def route(
        self,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
        omit_length: bool = False,
    ) -> None:
        """Answer ``GET path`` (relative to base_url unless it starts with ``/``)."""
        full = path if path.startswith("/") else f"/fhir/{path}"
        self._routes[full] = CannedResponse(status, body, dict(headers or {}), delay_s, omit_length)

    def __enter__(self) -> StubFhirServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                with stub._lock:
                    stub._requests.append(
                        RecordedRequest(
                            "GET", path, query, {k.lower(): v for k, v in self.headers.items()}
                        )
                    )
                canned = stub._routes.get(self.path) or stub._routes.get(path)
                if canned is None:
                    canned = CannedResponse(
                        404,
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": "not-found"}],
                        },
                    )
                if canned.delay_s:
                    time.sleep(canned.delay_s)
                raw = (
                    canned.body
                    if isinstance(canned.body, bytes)
                    else json.dumps(canned.body).encode()
                    if canned.body is not None
                    else b""
                )
                try:
                    self.send_response(canned.status)
                    self.send_header("Content-Type", "application/fhir+json")
                    if not canned.omit_length:
                        self.send_header("Content-Length", str(len(raw)))
                    for name, value in canned.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the client gave up (deadline); nothing to do

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
