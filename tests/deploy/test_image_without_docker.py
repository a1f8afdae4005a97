"""What the container image does, done without Docker: build, install, run unprivileged.

No Docker engine runs on our machines or in CI, so the image itself is never built here. This
test repeats its steps on the host instead: ``pip wheel . --no-deps`` as the build stage does;
the wheel (which must carry ``cards/``, the schemas and the migrations) installed into a clean
virtual environment as the final stage does; then ``epidural-cds serve`` started as an
unprivileged user (``nobody`` when the tests run as root, else the current non-root user) from
a read-only copy of the project, with one writable data directory and one writable TMPDIR (the
image's volume and tmpfs). It must answer ``/healthz`` (also through the Dockerfile's own
HEALTHCHECK command), discovery and a hook call with the built-in content.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.deploy.test_container import final_stage, instructions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
EXAMPLE = "s1-labour-epidural-lmwh-weakness"
SERVICE = "epidural-complications"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


def _package_files() -> set[str]:
    """Every non-Python file of the two packages, as the wheel must hold them."""
    found = set()
    for package in ("service", "cards"):
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found.add(path.relative_to(ROOT).as_posix())
    return found


def _interpreter() -> str:
    """A Python >= 3.11 that the unprivileged user can run, for the clean venv.

    The venv links to its base interpreter, so that interpreter must be readable by ``nobody``:
    a pyenv Python under root's 0700 home is not. Debian's ``/usr/bin/python3`` (with
    ``python3-venv``, which scripts/ensure-test-deps installs) then stands in, as the image's
    own system Python does.
    """
    tried = []
    for candidate in (sys.executable, "/usr/bin/python3"):
        if not Path(candidate).exists():
            continue
        try:
            probe = subprocess.run(
                [
                    candidate,
                    "-c",
                    "import sys, venv, ensurepip; assert sys.version_info >= (3, 11)",
                ],
                cwd="/",
                capture_output=True,
                timeout=60,
                check=False,
                **_as_unprivileged(),
            )
            if probe.returncode == 0:
                return candidate
        except OSError:
            pass  # not executable by that user
        tried.append(candidate)
    pytest.fail(
        f"no Python >= 3.11 with venv runnable as nobody (tried {tried}); "
        "run scripts/ensure-test-deps"
    )


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """A clean venv with the project's wheel (and its dependencies) installed; yields its bin/."""
    # World-readable (not pytest's 0700 tmp_path), so the unprivileged user can run from it.
    work = Path(tempfile.mkdtemp(prefix="epidural-cds-image-"))
    try:
        work.chmod(0o755)
        _run(
            [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--wheel-dir", str(work)],
            cwd=ROOT,
            timeout=300,
        )
        (wheel,) = work.glob("epidural_cds-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
        missing = sorted(_package_files() - names)
        assert not missing, f"the wheel lacks {missing}"
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
        venv = work / "venv"
        _run([_interpreter(), "-m", "venv", str(venv)], timeout=120)
        _run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"{wheel}[postgres]",
            ],
            cwd=work,
            timeout=600,
        )
        yield venv / "bin"
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def read_only_project() -> Iterator[Path]:
    """A copy of the project's tracked content with every write bit removed."""
    parent = Path(tempfile.mkdtemp(prefix="epidural-cds-ro-"))
    copy = parent / "project"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(".venv", ".cache", ".git", "__pycache__", "*.pyc", "var"),
    )
    for path in [copy, *copy.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod((mode & ~0o222) | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
    parent.chmod(0o755)
    try:
        yield copy
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(parent, ignore_errors=True)


def _writable_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return path


def _as_unprivileged() -> dict[str, Any]:
    """``Popen`` arguments that drop root to nobody (no-op for a non-root test run)."""
    if os.geteuid() != 0:
        return {}
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def test_installed_wheel_serves_unprivileged_from_a_read_only_project(
    installed: Path, read_only_project: Path
) -> None:
    data_dir = _writable_dir("epidural-cds-data-")
    tmp_dir = _writable_dir("epidural-cds-tmp-")
    port = _free_port()
    final = final_stage(instructions(ROOT / "deploy" / "Dockerfile"))
    # The image's command, on loopback and a free port instead of 0.0.0.0:8080.
    command = json.loads(next(a for k, a in final if k == "CMD"))
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    env = {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "TMPDIR": str(tmp_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "EPIDURAL_CDS_PROFILE": "development",
        "EPIDURAL_CDS_AUTH_DISABLED": "true",
        "EPIDURAL_CDS_DATA_DIR": str(data_dir),
    }
    log = tmp_dir.parent / f"epidural-cds-image-{port}.log"
    try:
        with log.open("w") as output:
            process = subprocess.Popen(
                [str(installed / "epidural-cds"), *command],
                cwd=read_only_project,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_unprivileged(),
            )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, process, log)
            _check_service(base, installed, read_only_project, port)
            if os.geteuid() == 0:
                owners = {p.stat().st_uid for p in data_dir.iterdir()}
                assert owners == {NOBODY}, "the service did not run as nobody"
            assert any(p.name.endswith(".sqlite3") for p in data_dir.iterdir())
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        assert "Traceback" not in log.read_text()
    finally:
        log.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the service exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"no /healthz within 60 s:\n{log.read_text()}")


def _check_service(base: str, installed: Path, project: Path, port: int) -> None:
    # The Dockerfile's HEALTHCHECK, run by the installed interpreter against this port.
    final = final_stage(instructions(ROOT / "deploy" / "Dockerfile"))
    check = next(a for k, a in final if k == "HEALTHCHECK")
    probe = json.loads(check[check.index("CMD") + 3 :])
    probe[2] = probe[2].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert subprocess.run([str(installed / "python"), *probe[1:]], timeout=30).returncode == 0

    discovery = requests.get(f"{base}/cds-services", timeout=10)
    assert discovery.status_code == 200
    assert next(s["id"] for s in discovery.json()["services"]) == SERVICE  # order hooks follow

    example = project / "fhir_examples" / EXAMPLE
    hook = _run(
        [str(installed / "epidural-cds"), "example-request", str(example)],
        cwd=project,
        env={"PATH": "/usr/bin:/bin", "EPIDURAL_CDS_PROFILE": "development"},
        timeout=60,
    )
    response = requests.post(
        f"{base}/cds-services/{SERVICE}",
        data=hook.stdout.encode(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    expected = json.loads((example / "scenario.json").read_text())["expected"]["cards"]
    cards = response.json()["cards"]
    assert [(c["indicator"], c["summary"]) for c in cards] == [
        (e["indicator"], e["summary"]) for e in expected
    ]
