"""The HTTP edge in process (Flask test client): path prefix, forwarded headers, readiness,
audit records in the store, the gunicorn configuration and the new settings.

Real parts where they matter (SQLite store, Alembic migrations, the shipped gunicorn
configuration); the proxy and gunicorn themselves are in the integration tests of this package.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from service.config import Settings
from service.errors import ConfigError
from service.http import gunicorn_conf, metrics
from service.http.app import create_app
from service.http.audit import jti_hash
from service.http.forwarded import url_prefix
from service.http.server import DEFAULT_CONFIG, load_config
from service.store import default_database_url
from tests.security.conftest import SERVICE_ID, s1_hook_body
from tests.support.apps import dev_app

ROOT = Path(__file__).resolve().parents[2]
HOOK = f"/cds-services/{SERVICE_ID}"


def _dev(tmp_path: Path, **settings: Any) -> Any:
    return create_app(
        {"profile": "development", "auth_disabled": True, "data_dir": str(tmp_path), **settings}
    )


# -- path prefix ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("https://engine.hospital.org/cds/epidural", "/cds/epidural"),
        ("https://engine.hospital.org/cds/epidural/", "/cds/epidural"),
        ("https://cds.example.org", ""),
        (None, ""),
    ],
)
def test_the_prefix_is_the_public_url_s_path(url: str | None, prefix: str) -> None:
    assert url_prefix(url) == prefix


def test_the_service_answers_under_the_prefix_and_at_the_root(tmp_path: Path) -> None:
    app = _dev(tmp_path, public_base_url="https://engine.hospital.org/cds/epidural")
    client = app.test_client()
    for path in (f"/cds/epidural{HOOK}", HOOK):
        response = client.post(path, json=s1_hook_body())
        assert response.status_code == 200, (path, response.get_data(as_text=True))
    assert client.get("/cds/epidural/cds-services").status_code == 200
    assert client.get("/cds/epidural/healthz").status_code == 200
    assert client.get("/cds/epidurals/cds-services").status_code == 404  # not a prefix match
    assert client.get("/other/cds-services").status_code == 404


# -- forwarded headers ----------------------------------------------------------------------------

FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example.org",
    "X-Forwarded-Prefix": "/cds/epidural",
}


def _seen(app: Any) -> dict[str, str]:
    """What the app believes about the request, from a route added for this test."""
    from flask import request

    @app.get("/_seen")
    def seen() -> Any:
        return {"remote": request.remote_addr, "url": request.url}

    body: dict[str, str] = app.test_client().get("/_seen", headers=FORWARDED).get_json()
    return body


def test_forwarded_headers_are_ignored_by_default(tmp_path: Path) -> None:
    seen = _seen(_dev(tmp_path))
    assert seen == {"remote": "127.0.0.1", "url": "http://localhost/_seen"}


def test_forwarded_headers_are_honoured_from_the_configured_hops(tmp_path: Path) -> None:
    seen = _seen(_dev(tmp_path, trusted_proxy_hops="1"))
    assert seen == {"remote": "203.0.113.9", "url": "https://evil.example.org/cds/epidural/_seen"}


@pytest.mark.parametrize("hops", ["-1", "6", "two"])
def test_trusted_proxy_hops_out_of_range_are_refused(hops: str) -> None:
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_HOPS"):
        Settings.from_env({"EPIDURAL_CDS_TRUSTED_PROXY_HOPS": hops})


@pytest.mark.parametrize(
    ("name", "value"),
    [("METRICS_PORT", "0"), ("METRICS_PORT", "70000"), ("WORKERS", "0"), ("AUDIT_STORE", "maybe")],
)
def test_the_new_settings_are_validated(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({f"EPIDURAL_CDS_{name}": value})


# -- readiness ------------------------------------------------------------------------------------


def test_readyz_is_200_with_content_and_store(tmp_path: Path) -> None:
    response = _dev(tmp_path).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"content": "ok", "store": "ok"}}


def _without_store(data: Path, app: Any) -> Any:
    database = Path(default_database_url(data).removeprefix("sqlite:///"))
    assert database.parent == data
    shutil.rmtree(data)  # the store and everything beside it: SQLite cannot even create a file now
    return app.test_client().get("/readyz")


def test_readyz_is_degraded_but_ready_when_hooks_answer_without_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    response = _without_store(data, _dev(data))
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "degraded",
        "checks": {"content": "ok", "store": "unreachable"},
    }


def test_readyz_is_503_when_the_store_is_gone_and_hooks_would_be_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = _dev(
        data,
        auth_disabled=False,
        trust_sandbox=True,
        public_base_url="https://cds.example.org",
        replay_guard_when_store_down="refuse",
    )
    response = _without_store(data, app)
    assert response.status_code == 503
    assert response.mimetype == "application/fhir+json"
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"] == "not ready: the store is unreachable"


# -- audit ----------------------------------------------------------------------------------------


def test_audit_records_go_to_the_store_when_configured(tmp_path: Path) -> None:
    app = _dev(tmp_path, audit_store="true")
    body = s1_hook_body()
    assert app.test_client().post(HOOK, json=body).status_code == 200
    assert app.test_client().post("/cds-services/nope", json=body).status_code == 404
    engine = create_engine(default_database_url(tmp_path))
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT service, status, topics, indicators, hook_instance FROM audit_records")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        (SERVICE_ID, 200, "possible-spinal-epidural-hematoma", "critical", body["hookInstance"]),
        ("nope", 404, "", "", None),
    ]


def test_without_the_setting_no_audit_row_is_written(tmp_path: Path) -> None:
    app = _dev(tmp_path)
    assert app.test_client().post(HOOK, json=s1_hook_body()).status_code == 200
    engine = create_engine(default_database_url(tmp_path))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_records")).scalar() == 0
    engine.dispose()


def test_the_jti_is_stored_only_as_its_sha256() -> None:
    assert jti_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_migration_0002_follows_0001_and_stands_alone() -> None:
    module = importlib.import_module("service.migrations.versions.0002_audit_records")
    assert (module.revision, module.down_revision) == ("0002", "0001")


# -- metrics in process ---------------------------------------------------------------------------


def test_metrics_count_cards_prefetch_and_auth_failures() -> None:
    app = dev_app()
    before = metrics.exposition().decode()
    assert app.test_client().post(HOOK, json=s1_hook_body()).status_code == 200
    after = app.test_client().get("/metrics").get_data(as_text=True)

    def value(text_: str, line_start: str) -> float:
        lines = [ln for ln in text_.splitlines() if ln.startswith(line_start)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    cards = (
        'epidural_cds_cards_total{indicator="critical",topic="possible-spinal-epidural-hematoma"}'
    )
    assert value(after, cards) == value(before, cards) + 1


# -- the gunicorn configuration -------------------------------------------------------------------


def test_deploy_gunicorn_conf_is_the_packaged_configuration() -> None:
    from_file = load_config(str(ROOT / "deploy" / "gunicorn.conf.py"))
    from_module = load_config(DEFAULT_CONFIG)
    assert from_file == from_module
    assert {"workers", "timeout", "graceful_timeout", "max_requests", "max_requests_jitter"} <= set(
        from_module
    )


def test_the_configuration_s_timeouts_drain_calls_and_stay_below_the_ehr_s() -> None:
    conf = load_config(DEFAULT_CONFIG)
    settings = Settings()
    assert settings.fhir_deadline < conf["timeout"] < conf["graceful_timeout"] <= 10
    assert 0 < conf["max_requests_jitter"] < conf["max_requests"]
    assert conf["preload_app"] is True
    assert conf["forwarded_allow_ips"] == ""  # only ProxyFix, from the configured hops
    assert conf["logger_class"] == "service.http.gunicorn_logging.JsonGunicornLogger"
    assert conf["workers"] == gunicorn_conf.default_workers() >= 2


def test_the_readme_lists_the_operations_endpoints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")  # settings: test_cli_and_content
    for endpoint in ("GET /readyz", "GET /metrics", "GET /healthz"):
        assert endpoint in readme, endpoint


def test_audit_record_shape_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from service.http.logjson import JsonFormatter

    caplog.set_level(logging.INFO, logger="epidural_cds.audit")
    app = _dev(tmp_path)
    assert app.test_client().post(HOOK, json=s1_hook_body()).status_code == 200
    (record,) = [r for r in caplog.records if r.name == "epidural_cds.audit"]
    audit = json.loads(JsonFormatter().format(record))["record"]
    assert set(audit) == {
        "time", "hookInstance", "issuer", "tenant", "jtiSha256", "service", "status",
        "topics", "indicators", "durationMs",
    }  # fmt: skip
    assert audit["issuer"] is None and audit["jtiSha256"] is None  # authentication was off


def test_the_migrations_create_exactly_the_audit_table_the_code_writes(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from service.store import create_store_engine, metadata, migrate

    engine = create_store_engine(default_database_url(tmp_path))
    migrate(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
        )
    engine.dispose()
