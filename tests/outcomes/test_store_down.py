"""A real ``epidural-cds serve`` (gunicorn, 2 workers) whose PostgreSQL stops mid-run.

While the database is down, hook calls still answer with their cards (suppression reads as
"show", recording is skipped) and feedback answers 503 with ``Retry-After``; after the database
is back, the retried feedback is stored and what was acknowledged before is still there. A dead
database at startup makes ``serve`` exit with a message within the connect timeout instead of
hanging. Development profile with authentication off: replay protection, which also lives in
the store, is shown elsewhere (tests/security/test_replay_gunicorn.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.security.conftest import ROOT, SERVICE_PATH, free_port, s1_hook_body
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration
FEEDBACK_PATH = f"{SERVICE_PATH}/feedback"


def _env(tmp_path: Path, port: int, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPIDURAL_CDS_")}
    env.update(
        {
            "EPIDURAL_CDS_PROFILE": "development",
            "EPIDURAL_CDS_AUTH_DISABLED": "true",
            "EPIDURAL_CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "EPIDURAL_CDS_DATA_DIR": str(tmp_path / "data"),
            "EPIDURAL_CDS_DATABASE_URL": database_url,
            "EPIDURAL_CDS_DATABASE_CONNECT_TIMEOUT": "2",
            **extra,
        }
    )
    return env


@contextlib.contextmanager
def _serve(tmp_path: Path, database_url: str) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_env(tmp_path, port, database_url), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(log_path.read_text(errors="replace"))
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _hook(base: str) -> requests.Response:
    return requests.post(f"{base}{SERVICE_PATH}", json=s1_hook_body(), timeout=20)


def _feedback(base: str, card: str, code: str) -> requests.Response:
    item: dict[str, Any] = {
        "card": card,
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": code}},
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    return requests.post(f"{base}{FEEDBACK_PATH}", json={"feedback": [item]}, timeout=20)


def _stored_reasons(server: PostgresServer, dbname: str) -> list[str]:
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user=server.user, dbname=dbname
    ) as conn:
        rows = conn.execute("SELECT reason_code FROM card_feedback ORDER BY reason_code").fetchall()
    return [row[0] for row in rows]


def test_postgres_stopped_mid_run_then_restarted(tmp_path: Path) -> None:
    with PostgresServer() as server, _serve(tmp_path, server.url) as base:
        first = _hook(base)
        assert first.status_code == 200
        card = first.json()["cards"][0]["uuid"]
        assert _feedback(base, card, "record-incorrect").status_code == 200

        server.pause()
        started = time.monotonic()
        down = _hook(base)
        took = time.monotonic() - started
        assert down.status_code == 200
        assert [c["indicator"] for c in down.json()["cards"]] == ["critical"]
        assert took < 10, f"a hook call waited {took:.1f} s on the dead store"
        refused = _feedback(base, card, "imaging-arranged")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"].isdigit()
        assert refused.json()["resourceType"] == "OperationOutcome"

        server.resume()
        retried = _feedback(base, card, "imaging-arranged")
        assert retried.status_code == 200
        assert retried.json()["stored"] == 1
        assert _hook(base).status_code == 200
        assert _stored_reasons(server, server.dbname) == ["imaging-arranged", "record-incorrect"]


def test_startup_does_not_hang_on_a_database_that_never_answers(tmp_path: Path) -> None:
    # A socket that accepts connections (the kernel completes the handshake) but never speaks.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://nobody@127.0.0.1:{silent.getsockname()[1]}/cds"
        port = free_port()
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=ROOT, env=_env(tmp_path, port, url), capture_output=True, timeout=60,
        )  # fmt: skip
        took = time.monotonic() - started
    assert result.returncode != 0
    assert b"cannot be reached" in result.stderr
    assert took < 30, f"startup took {took:.1f} s"
