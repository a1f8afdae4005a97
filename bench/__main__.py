"""``python -m bench``: run the performance suite and write ``bench/results/latest.json``.

    python -m bench                         # everything, 600 s soak (about 15 minutes)
    python -m bench --soak-seconds 60       # everything, shorter soak
    python -m bench --quick                 # CI smoke run: ~30 s, checks only, no thresholds
    python -m bench --only inprocess,fetch  # some phases only

Phases: ``inprocess`` (a), ``http`` (b), ``fetch`` (c), ``memory`` (d). The suite installs
nothing: it uses wrk when it is on PATH and otherwise says how to get it and falls back to a
Python load generator (``--load-generator python`` forces it). The fetch phase needs the sekmet
FHIR server's private venv, which ``tests.support.fhir_server`` creates on first use
(``make test`` does it; ~40 s once).

``--quick`` (alias ``--smoke``) runs every phase once with tiny parameters so that the suite
cannot rot: it never fails because a target is missed, and writes its results to a temporary
directory (``--results-dir`` to change it), never over ``bench/results/``.
Exit status: 1 if a phase failed to run or a check failed (``report.checks``: a non-200
response, no card for the chart, a dead worker...); with ``--strict`` (full runs) also 1 if a
target was not met.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.loadgen import CHOICES as LOAD_GENERATORS
from bench.util import RESULTS_DIR, ROOT, SETTLE, machine, worker_rss

PHASES = ("inprocess", "http", "fetch", "memory")
#: Runs of the quick run's cProfile (it only has to work).
QUICK_PROFILE_RUNS = 5
#: Where a quick run writes ``latest.json``/``latest.md`` unless ``--results-dir`` is given.
QUICK_RESULTS_DIR = Path(tempfile.gettempdir()) / "epidural-cds-bench-smoke"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        "--smoke",
        dest="quick",
        action="store_true",
        help=(
            "smoke run for CI (~30 s): every phase once with tiny parameters, no thresholds; "
            f"results go to {QUICK_RESULTS_DIR} unless --results-dir is given"
        ),
    )
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run (default: all of {','.join(PHASES)})",
    )
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="length of the memory soak (default 600; 3 with --quick)",
    )
    parser.add_argument(
        "--load-generator",
        choices=LOAD_GENERATORS,
        default="auto",
        help="wrk, the Python fallback, or auto: wrk when it is on PATH (default)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=(
            f"where to write latest.json and latest.md (default {RESULTS_DIR.relative_to(ROOT)}; "
            "with --quick a temporary directory)"
        ),
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="add a cProfile of handle() on the 100-resource chart (default in full runs)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is not met (full runs)"
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=None,
        help=(
            "before each measurement wait up to this long for other processes to stop using "
            "the CPU (default 180; 0 with --quick)"
        ),
    )
    parser.add_argument(
        "--jwt-alg",
        choices=("ES384", "RS384"),
        default="ES384",
        help=(
            "how the benchmark client signs its tokens: ES384 (P-384, as the CDS Hooks sandbox; "
            "default) or RS384 (RSA 2048, as Epic); both are required by the spec"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    return parser


def _phase(name: str) -> Any:
    """Import a phase's module late, so a broken one fails only its own phase."""
    import importlib

    return importlib.import_module(f"bench.{name}")


def _inprocess(quick: bool, log: Any) -> Any:
    """Phase a; a quick run times two small charts only (``bench.inprocess.QUICK_RUNS``)."""
    return _phase("inprocess").run(quick, log)


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        print(f"unknown phase(s) {unknown}; choose from {PHASES}", file=sys.stderr)
        return 2
    soak_s = args.soak_seconds if args.soak_seconds is not None else (3 if args.quick else 600)
    results_dir = args.results_dir or (QUICK_RESULTS_DIR if args.quick else RESULTS_DIR)
    settle_s = args.settle_seconds
    if settle_s is None:
        settle_s = 0 if args.quick else 180
    SETTLE["max_wait_s"] = settle_s
    # Expected warnings (the deadline test makes fetches fail on purpose) stay out of the report.
    logging.basicConfig(level=logging.ERROR)
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "phases": phases,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": _loadavg(),
        "settle_max_wait_s": settle_s,
        "phase_seconds": {},
        "errors": {},
    }
    errors: dict[str, str] = results["errors"]
    phase_seconds: dict[str, float] = results["phase_seconds"]

    def guarded(name: str, fn: Any) -> Any:
        log(f"[{name}]")
        t0 = time.monotonic()
        try:
            return fn()
        except Exception as exc:  # a broken phase must not hide the others' results
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(traceback.format_exc())
            return None
        finally:
            phase_seconds[name] = round(phase_seconds.get(name, 0.0) + time.monotonic() - t0, 1)

    if "inprocess" in phases:
        result = guarded("inprocess", lambda: _inprocess(args.quick, log))
        if result is not None:
            results["inprocess"] = result
        if args.profile or result is not None:
            runs = QUICK_PROFILE_RUNS if args.quick and not args.profile else 200
            results["profile"] = guarded("profile", lambda: _phase("inprocess").profile(runs=runs))

    workdir = None
    if "http" in phases or "memory" in phases:
        workdir = _served(args, phases, soak_s, results, guarded, log)

    if "fetch" in phases:
        result = guarded("fetch", lambda: _phase("fetch").run(args.quick, log))
        if result is not None:
            results["fetch"] = result

    results["loadavg_end"] = _loadavg()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["checks"] = report.checks(results)
    failed = [c for c in results["checks"] if not c["ok"]]
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.render(results)
    (results_dir / "latest.md").write_text(markdown)
    print(markdown)
    log(f"results: {results_dir / 'latest.json'} (and latest.md), {results['elapsed_s']:.0f} s")
    for check in failed:
        log(f"CHECK FAILED: {check['name']}: {check['detail']}")
    for name, message in errors.items():
        log(f"PHASE FAILED: {name}: {message}")
    if workdir is not None:
        if args.keep or errors or failed:
            log(f"work directory (server logs, tokens): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if errors or failed:
        return 1
    if args.strict and not args.quick and any(not t["met"] for t in report.targets(results)):
        return 1
    return 0


def _served(
    args: argparse.Namespace,
    phases: list[str],
    soak_s: float,
    results: dict[str, Any],
    guarded: Any,
    log: Any,
) -> Path | None:
    """Phases b and d share one production-profile service (d reads its cold RSS first).

    Returns the work directory (server logs, tokens); the caller removes it unless it is kept.
    """
    http_load = guarded("setup", lambda: _phase("http_load"))
    memory = guarded("setup", lambda: _phase("memory"))
    if http_load is None or memory is None:
        return None
    bench = guarded("setup", lambda: http_load.Bench.create(log, args.load_generator, args.jwt_alg))
    if bench is None:
        return None
    workdir: Path = bench.workdir
    results["load_generator"] = "wrk" if bench.use_wrk else "python"
    results["jwt_alg"] = bench.client.alg
    service = guarded("service start", bench.start_service)
    try:
        if service is None:
            return workdir
        cold = worker_rss(service.server.pid)
        estimate = 300.0
        inproc = results.get("inprocess") or {}
        median_100 = next(
            (s["median_ms"] for s in inproc.get("sizes", []) if s["resources"] == 100), None
        )
        if median_100 is not None:
            estimate = 2 * 1000 / max(median_100, 0.5) * 1.5
        if "http" in phases:
            result = guarded(
                "http",
                lambda: http_load.run(bench, service, quick=args.quick, estimate_rps=estimate),
            )
            if result is not None:
                results["http"] = result
        if "memory" in phases:
            capacity = results["http"]["service"]["rps"] if "http" in results else None
            result = guarded(
                "memory",
                lambda: memory.run(
                    bench,
                    service,
                    cold=cold,
                    soak_s=soak_s,
                    capacity_rps=capacity,
                    quick=args.quick,
                    log=log,
                ),
            )
            if result is not None:
                results["memory"] = result
        return workdir
    finally:
        if service is not None:
            service.server.stop()


if __name__ == "__main__":
    sys.exit(main())
