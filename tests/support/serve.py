"""``epidural-cds serve`` (real gunicorn) as a subprocess, for the operations tests.

Each :class:`Served` process writes its whole output (JSON log lines, one per record) to a file,
so a test can read what gunicorn and the app logged, parse every line, and stop the master with
the signal it wants to test. The environment is the test's own, minus every ``EPIDURAL_CDS_*``
and ``PROMETHEUS_MULTIPROC_DIR`` variable, plus what the test passes: no setting of one
server leaks into another.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session() -> requests.Session:
    """A requests session that ignores proxy settings (everything here is on 127.0.0.1)."""
    new = requests.Session()
    new.trust_env = False
    return new


@dataclass
class Served:
    """One running ``epidural-cds serve`` master."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        """Everything the master and its workers wrote so far."""
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every output line parsed as JSON; fails naming the first line that is not one object."""
        parsed = []
        for number, line in enumerate(self.output.split("\n"), 1):
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"output line {number} is not JSON: {line[:300]!r}") from None
            assert isinstance(record, dict), f"output line {number} is not an object: {line!r}"
            parsed.append(record)
        return parsed

    def wait_for_record(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        """The last record matching ``predicate``, waiting for it: gunicorn writes a request's
        access line after the response has gone out, so it may lag behind the answer."""
        deadline = time.monotonic() + timeout
        while True:
            found = [record for record in self.records() if predicate(record)]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no such log record:\n{self.output[-3000:]}")
            time.sleep(0.05)

    def worker_pids(self) -> set[int]:
        """Pids of the workers gunicorn booted so far."""
        return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.output)}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the master and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return int(self.process.returncode)


def start(
    log_path: Path,
    env: dict[str, str],
    *,
    workers: int = 2,
    port: int | None = None,
    ready_timeout: float = 60,
) -> Served:
    """Start ``epidural-cds serve`` on 127.0.0.1 and wait until every worker has booted."""
    port = port or free_port()
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EPIDURAL_CDS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    clean.update(env)
    command = [
        sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", str(workers)
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=clean, stdout=log, stderr=subprocess.STDOUT
        )
    served = Served(process, port, log_path)
    deadline = time.monotonic() + ready_timeout
    with session() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"epidural-cds serve exited:\n{served.output[-4000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if http.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            served.stop(signal.SIGKILL)
            raise AssertionError(f"epidural-cds serve did not start:\n{served.output[-4000:]}")
    while len(served.worker_pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    return served
