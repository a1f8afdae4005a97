"""Replay protection across gunicorn worker processes: one token, one success, whoever answers.

``epidural-cds serve --workers 2`` runs as a subprocess with an ES384 issuer, on the embedded
SQLite store and on a real PostgreSQL server. Two things are shown for each store:

* a burst: the same token sent 20 times at once over new connections gets exactly one 200;
* the cross-worker case, deterministically: each sync worker handles one connection at a time,
  so a connection whose request headers are left unfinished pins whichever worker accepted it.
  With worker X pinned, the token is accepted (by the other worker, Y). With Y pinned and X
  released, the replay can only be answered by X, and is refused. Which worker holds each pinned
  connection is read from ``/proc`` (the socket inode in the worker's file descriptors), so the
  test asserts two distinct worker pids, taken from gunicorn's "Booting worker" log lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

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

BURST = 20


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    port: int
    log_path: Path

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.output)}


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path, ec_signer: Signer) -> Iterator[Served]:
    issuers = write_issuers(
        tmp_path / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}}]
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPIDURAL_CDS_")}
    env.update(
        {
            "EPIDURAL_CDS_PROFILE": "development",
            "EPIDURAL_CDS_ISSUERS_FILE": str(issuers),
            "EPIDURAL_CDS_PUBLIC_BASE_URL": base,
            "EPIDURAL_CDS_DATA_DIR": str(tmp_path / "data"),
        }
    )
    if request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        database = f"replay_{os.getpid()}_{port}"
        env["EPIDURAL_CDS_DATABASE_URL"] = postgres.create_database(database)
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Served(process, base, port, log_path)
    try:
        _wait_until_ready(served)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy for 127.0.0.1
    return session


def _wait_until_ready(served: Served) -> None:
    deadline = time.monotonic() + 30
    with _session() as session:
        while time.monotonic() < deadline:
            assert served.process.poll() is None, served.output
            # A timeout too means "not ready yet": on a busy machine the socket accepts before
            # a worker has booted to answer.
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if session.get(f"{served.base}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"epidural-cds serve did not start:\n{served.output}")
    # Both workers have booted (preload: the app is built before the fork).
    while len(served.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(served.worker_pids()) == 2, served.output


def _post(served: Served, token: str, body: dict[str, Any]) -> requests.Response:
    # A new session per call: a new TCP connection (sync workers close it after each response).
    with _session() as session:
        return session.post(
            f"{served.base}{SERVICE_PATH}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        )


def _aud(served: Served) -> str:
    return f"{served.base}{SERVICE_PATH}"


def test_same_token_in_a_concurrent_burst_succeeds_exactly_once(
    served: Served, ec_signer: Signer
) -> None:
    token = mint(ec_signer, ISS_ES, aud=_aud(served))
    body = s1_hook_body()
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(BURST)

    def send() -> None:
        try:
            start.wait(timeout=10)
            response = _post(served, token, body)
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 401:
                    assert response.headers["WWW-Authenticate"] == "Bearer"
        except BaseException as error:  # reported below, in the test's thread
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=send) for _ in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(statuses) == [200] + [401] * (BURST - 1), statuses
    assert served.output.count(": replayed_jti") == BURST - 1
    assert token not in served.output


# -- the cross-worker case ------------------------------------------------------------------------


def _pin_a_worker(served: Served) -> socket.socket:
    return pinning.pin_a_worker(served.port)


def _holder(served: Served, pin: socket.socket) -> int:
    return pinning.holder(served.port, served.worker_pids(), pin)


def test_a_token_accepted_by_one_worker_is_refused_by_the_other(
    served: Served, ec_signer: Signer
) -> None:
    workers = served.worker_pids()
    token = mint(ec_signer, ISS_ES, aud=_aud(served))
    body = s1_hook_body()

    first_pin = _pin_a_worker(served)
    x = _holder(served, first_pin)
    first = _post(served, token, body)  # only the other worker is free
    assert first.status_code == 200, first.text
    assert first.json()["cards"], "the accepted call is evaluated"

    second_pin = _pin_a_worker(served)
    y = _holder(served, second_pin)
    assert {x, y} == workers, "each worker holds one pinned connection"
    pinning.release(first_pin)  # now only worker x is free
    replay = _post(served, token, body)
    pinning.release(second_pin)

    assert replay.status_code == 401, replay.text
    assert replay.headers["WWW-Authenticate"] == "Bearer"
    assert served.output.count(f"authentication failed on {SERVICE_PATH}: replayed_jti") == 1
    assert token not in served.output
