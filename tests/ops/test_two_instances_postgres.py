"""Two service instances (separate gunicorn masters, as two replicas) on one real PostgreSQL.

Replicas share nothing but the database. Shown here:

* a token accepted by one instance is refused by the other (the replay guard's rows are shared),
  and both instances' audit records land in the one ``audit_records`` table;
* each instance's metrics are scrapeable on its own metrics port and count its own calls;
* when PostgreSQL stops, ``/readyz`` of both says "degraded" (still 200: hook calls keep being
  answered, which a load balancer must not stop; with authentication on the replay guard falls
  back to each worker's memory, tests/outcomes/test_store_down.py) and the store "unreachable";
  when PostgreSQL is back, both are plainly ready again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.auth.conftest import Signer
from tests.security.conftest import ISS_ES, SERVICE_ID, mint, s1_hook_body, write_issuers
from tests.support import serve
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration

PUBLIC = "https://cds.example.org/cds/epidural"
SERVICE_PATH = f"/cds/epidural/cds-services/{SERVICE_ID}"


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                total += found.value
    return total


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def replicas(
    tmp_path: Path, postgres: PostgresServer, ec_signer: Signer
) -> Iterator[tuple[serve.Served, serve.Served, int, int, str]]:
    issuers = write_issuers(
        tmp_path / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}}]
    )
    database = postgres.create_database(f"replicas_{os.getpid()}_{serve.free_port()}")
    metrics_ports = serve.free_port(), serve.free_port()
    started = []
    try:
        for name, metrics_port in zip("ab", metrics_ports, strict=True):
            env = {
                "EPIDURAL_CDS_PROFILE": "production",
                "EPIDURAL_CDS_ISSUERS_FILE": str(issuers),
                "EPIDURAL_CDS_PUBLIC_BASE_URL": PUBLIC,
                "EPIDURAL_CDS_DATABASE_URL": database,
                "EPIDURAL_CDS_AUDIT_STORE": "true",
                "EPIDURAL_CDS_METRICS_PORT": str(metrics_port),
            }
            started.append(serve.start(tmp_path / f"{name}.log", env, workers=1))
        yield started[0], started[1], metrics_ports[0], metrics_ports[1], database
    finally:
        for served in started:
            served.stop()


def test_a_jti_used_on_one_instance_is_refused_on_the_other(
    replicas: tuple[serve.Served, serve.Served, int, int, str], ec_signer: Signer
) -> None:
    a, b, metrics_a, metrics_b, database = replicas
    token = mint(ec_signer, ISS_ES, aud=f"{PUBLIC}/cds-services/{SERVICE_ID}")
    headers = {"Authorization": f"Bearer {token}"}
    with serve.session() as http:
        first = http.post(
            f"{a.base}{SERVICE_PATH}", json=s1_hook_body(), headers=headers, timeout=30
        )
        replay = http.post(
            f"{b.base}{SERVICE_PATH}", json=s1_hook_body(), headers=headers, timeout=30
        )
        scraped_a = http.get(f"http://127.0.0.1:{metrics_a}/metrics", timeout=10).text
        scraped_b = http.get(f"http://127.0.0.1:{metrics_b}/metrics", timeout=10).text
    assert first.status_code == 200, first.text
    assert replay.status_code == 401, replay.text
    assert any(r.get("reason") == "replayed_jti" for r in b.records())

    name = "epidural_cds_http_request_seconds_count"
    assert sample(scraped_a, name, endpoint="hook_endpoint", status="200") == 1
    assert sample(scraped_a, name, endpoint="hook_endpoint", status="401") == 0
    assert sample(scraped_b, name, endpoint="hook_endpoint", status="401") == 1
    assert sample(scraped_b, "epidural_cds_auth_failures_total", reason="replayed_jti") == 1

    engine = create_engine(_sqlalchemy_url(database))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, issuer, jti_sha256 FROM audit_records ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    assert [row.status for row in rows] == [200, 401]
    assert rows[0].issuer == ISS_ES and rows[1].issuer is None  # a replay is not a verified call
    assert token not in a.output + b.output


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone: it is stopped and started again."""
    with PostgresServer() as server:
        yield server


def _ready(http: requests.Session, served: serve.Served) -> str:
    """``/readyz``'s status ("ready", "degraded"), or the HTTP status when it is not 200."""
    response = http.get(f"{served.base}/readyz", timeout=15)
    if response.status_code != 200:
        return str(response.status_code)
    return str(response.json()["status"])


def _wait_for(expected: str, http: requests.Session, *instances: serve.Served) -> list[str]:
    deadline = time.monotonic() + 30
    while True:
        statuses = [_ready(http, served) for served in instances]
        if all(status == expected for status in statuses) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def test_readiness_follows_postgresql_while_hook_calls_keep_answering(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    env = {
        "EPIDURAL_CDS_PROFILE": "development",
        "EPIDURAL_CDS_AUTH_DISABLED": "true",
        "EPIDURAL_CDS_PUBLIC_BASE_URL": PUBLIC,
        "EPIDURAL_CDS_DATABASE_URL": own_postgres.url,
        "EPIDURAL_CDS_AUDIT_STORE": "true",
    }
    a = serve.start(tmp_path / "a.log", env, workers=1)
    b = serve.start(tmp_path / "b.log", env, workers=1)
    try:
        with serve.session() as http:
            assert _wait_for("ready", http, a, b) == ["ready", "ready"]
            own_postgres.pause()
            assert _wait_for("degraded", http, a, b) == ["degraded", "degraded"]
            body = http.get(f"{a.base}/readyz", timeout=15).json()
            assert body["checks"] == {"content": "ok", "store": "unreachable"}, body
            for served in (a, b):
                call = http.post(f"{served.base}{SERVICE_PATH}", json=s1_hook_body(), timeout=30)
                assert call.status_code == 200, call.text
                assert call.json()["cards"]
            scraped = http.get(f"{a.base}/metrics", timeout=10).text
            assert sample(scraped, "epidural_cds_audit_store_failures_total") == 1
            own_postgres.resume()
            assert _wait_for("ready", http, a, b) == ["ready", "ready"]
    finally:
        a.stop()
        b.stop()
    for served in (a, b):
        audits = [r for r in served.records() if r["logger"] == "epidural_cds.audit"]
        assert [r["record"]["status"] for r in audits] == [200]  # in the log though not stored
