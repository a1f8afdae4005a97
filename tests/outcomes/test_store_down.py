"""A real ``epidural-cds serve`` (gunicorn, 2 workers) whose PostgreSQL stops mid-run.

While the database is down, hook calls still answer with their cards (suppression reads as
"show", recording is skipped) and feedback answers 503 with ``Retry-After``; after the database
is back, the retried feedback is stored and what was acknowledged before is still there. A dead
database at startup makes ``serve`` exit with a message within the connect timeout instead of
hanging. Development profile, first with authentication off, then on (signed ES384 tokens):
the JWT replay table lives in the same database, and while it is down a token is remembered by
the worker that accepted it (a replay to that worker is 401) and written to the table once the
database is back, after which the other worker refuses it too. Which worker answers is steered
by pinning the other one (tests/support/pinning.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from service.replay_fallback import RETRY_S
from tests.auth.conftest import Signer
from tests.security.conftest import (
    ISS_ES,
    ROOT,
    SERVICE_PATH,
    free_port,
    mint,
    s1_hook_body,
    write_issuers,
)
from tests.support import pinning
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration
FEEDBACK_PATH = f"{SERVICE_PATH}/feedback"


def _env(
    tmp_path: Path, port: int, database_url: str, issuers: Path | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPIDURAL_CDS_")}
    if issuers is None:
        env["EPIDURAL_CDS_AUTH_DISABLED"] = "true"
    else:
        env["EPIDURAL_CDS_ISSUERS_FILE"] = str(issuers)
    env.update(
        {
            "EPIDURAL_CDS_PROFILE": "development",
            "EPIDURAL_CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "EPIDURAL_CDS_DATA_DIR": str(tmp_path / "data"),
            "EPIDURAL_CDS_DATABASE_URL": database_url,
            "EPIDURAL_CDS_DATABASE_CONNECT_TIMEOUT": "2",
        }
    )
    return env


@dataclass
class Served:
    base: str
    port: int
    log_path: Path

    def worker_pids(self) -> set[int]:
        output = self.log_path.read_text(errors="replace")
        return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", output)}


@contextlib.contextmanager
def _serve(tmp_path: Path, database_url: str, issuers: Path | None = None) -> Iterator[Served]:
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_env(tmp_path, port, database_url, issuers), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    served = Served(base, port, log_path)
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
        while len(served.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield served
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _headers(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def _hook(base: str, token: str | None = None) -> requests.Response:
    return requests.post(
        f"{base}{SERVICE_PATH}", json=s1_hook_body(), headers=_headers(token), timeout=20
    )


def _feedback(base: str, card: str, code: str, token: str | None = None) -> requests.Response:
    item: dict[str, Any] = {
        "card": card,
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": code}},
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    return requests.post(
        f"{base}{FEEDBACK_PATH}", json={"feedback": [item]}, headers=_headers(token), timeout=20
    )


def _stored_reasons(server: PostgresServer, dbname: str) -> list[str]:
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user=server.user, dbname=dbname
    ) as conn:
        rows = conn.execute("SELECT reason_code FROM card_feedback ORDER BY reason_code").fetchall()
    return [row[0] for row in rows]


def test_postgres_stopped_mid_run_then_restarted(tmp_path: Path) -> None:
    with PostgresServer() as server, _serve(tmp_path, server.url) as served:
        base = served.base
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


def _recorded_jtis(server: PostgresServer) -> set[str]:
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user=server.user, dbname=server.dbname
    ) as conn:
        return {row[0] for row in conn.execute("SELECT jti FROM used_jwt_ids").fetchall()}


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_with_authentication_postgres_stopped_mid_run_then_restarted(tmp_path: Path) -> None:
    ec_signer = Signer(ec.generate_private_key(ec.SECP384R1()), "store-down", "ES384")
    issuers = write_issuers(
        tmp_path / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}}]
    )
    with PostgresServer() as server, _serve(tmp_path, server.url, issuers) as served:
        base = served.base
        hook_aud, feedback_aud = f"{base}{SERVICE_PATH}", f"{base}{FEEDBACK_PATH}"
        first = _hook(base, mint(ec_signer, ISS_ES, aud=hook_aud))
        assert first.status_code == 200, first.text
        card = first.json()["cards"][0]["uuid"]
        workers = served.worker_pids()
        assert len(workers) == 2
        y = min(workers)
        x = max(workers)

        server.pause()
        pins = pinning.pin_all_but(served.port, workers, free=y)  # every call below goes to y
        try:
            token = mint(ec_signer, ISS_ES, aud=hook_aud)
            down = _hook(base, token)
            assert down.status_code == 200, down.text
            assert [c["indicator"] for c in down.json()["cards"]] == ["critical"]
            replay = _hook(base, token)
            assert replay.status_code == 401
            assert replay.headers["WWW-Authenticate"] == "Bearer"
            refused = _feedback(
                base, card, "imaging-arranged", mint(ec_signer, ISS_ES, aud=feedback_aud)
            )
            assert refused.status_code == 503
            assert refused.headers["Retry-After"].isdigit()
            assert refused.json()["resourceType"] == "OperationOutcome"
            # Still ready (degraded): hooks are answered, so the load balancer must keep it.
            ready = requests.get(f"{base}/readyz", timeout=15)
            assert ready.status_code == 200, ready.text
            assert ready.json() == {
                "status": "degraded",
                "checks": {"content": "ok", "store": "unreachable"},
            }
        finally:
            for pin in pins:
                pinning.release(pin)

        server.resume()
        time.sleep(RETRY_S)  # a store found down is tried again after this interval
        pins = pinning.pin_all_but(served.port, workers, free=y)
        try:
            retried = _feedback(
                base, card, "imaging-arranged", mint(ec_signer, ISS_ES, aud=feedback_aud)
            )
            assert retried.status_code == 200, retried.text
            assert retried.json()["stored"] == 1
        finally:
            for pin in pins:
                pinning.release(pin)
        assert _jti(token) in _recorded_jtis(server)

        pins = pinning.pin_all_but(served.port, workers, free=x)
        try:
            sibling = _hook(base, token)  # the other worker learnt it from the store
        finally:
            for pin in pins:
                pinning.release(pin)
        assert sibling.status_code == 401
        assert token not in served.log_path.read_text(errors="replace")


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
