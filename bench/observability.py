"""What metrics and the audit record cost a worker, per authenticated 100-resource call.

Measured side by side in one process, so the machine's drift cancels out: the production app as
deployed (JWT, SQLite replay guard, metrics in multiprocess mode, the audit record formatted as
a JSON line) and the same app with the metrics-and-audit bookkeeping taken out (the
``before_request``/``after_request`` functions of :mod:`service.http.observe`), and optionally
a third with the audit record also written to the store (``EPIDURAL_CDS_AUDIT_STORE=true``).
Each variant is driven through its WSGI callable with prebuilt environs, as ``bench.layers``
does, the variants taking turns call by call; logging is set up as ``epidural-cds serve``
does (JSON lines at INFO) and written to ``/dev/null``. Gunicorn's own work is not included
(it is the same for all variants).

    .venv/bin/python -m bench.observability [--requests 100] [--rounds 10] [--store]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import charts, tokens


def _without_observation(app: Any) -> Any:
    """``app`` minus the request hooks of :mod:`service.http.observe` (metrics and audit)."""
    for table in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        for functions in table.values():
            functions[:] = [f for f in functions if f.__module__ != "service.http.observe"]
    return app


def measure(requests: int = 100, rounds: int = 10, store: bool = False) -> dict[str, Any]:
    """CPU ms per call of each variant (median and mean over ``rounds`` x ``requests`` calls,
    the variants taking turns call by call), and each one's total CPU over the variant without
    metrics and audit."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-metrics-"))
    from bench import layers
    from service.http.logjson import configure_root

    configure_root("INFO", open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    directory = Path(tempfile.mkdtemp(prefix="epidural-cds-observability-"))
    client = tokens.create_client(directory, tokens.ALG)
    names = ["without", "service", *(["service+store"] if store else [])]
    apps: dict[str, Any] = {}
    with layers._production_env(directory, client):
        apps["without"] = _without_observation(layers._variant("service"))
        apps["service"] = layers._variant("service")
        if store:
            os.environ["EPIDURAL_CDS_AUDIT_STORE"] = "true"
            try:
                apps["service+store"] = layers._variant("service")
            finally:
                del os.environ["EPIDURAL_CDS_AUDIT_STORE"]
    import gc

    gc.freeze()
    body = charts.body(charts.BENCH_SIZE)
    warmup = 20
    bearer = iter(tokens.mint(client, (requests * rounds + warmup) * len(names)))
    for app in apps.values():
        layers._cpu_ms_per_request(app, layers._environs(body, bearer, warmup))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        # One call of each variant in turn, so that the machine's drift hits them all alike.
        environs = {name: layers._environs(body, bearer, requests) for name in names}
        for index in range(requests):
            for name in names:
                start = time.process_time()
                for _chunk in apps[name](environs[name][index], layers._start_response):
                    pass
                samples[name].append((time.process_time() - start) * 1000)
    total = {name: sum(values) for name, values in samples.items()}
    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "cpu_ms_median": {name: round(statistics.median(v), 3) for name, v in samples.items()},
        "cpu_ms_mean": {name: round(total[name] / len(v), 3) for name, v in samples.items()},
        "ratio_to_without": {
            name: round(total[name] / total["without"], 4) for name in names if name != "without"
        },
    }


def render(result: dict[str, Any]) -> str:
    """One line per variant: CPU ms per call and its cost over ``without``."""
    lines = [
        f"CPU ms per 100-resource call, {result['rounds']} x {result['requests_per_round']} "
        "calls per variant, taking turns:",
        f"  {'variant':14s} {'median':>7s} {'mean':>7s}",
    ]
    for name, ms in result["cpu_ms_median"].items():
        ratio = result["ratio_to_without"].get(name)
        extra = "" if ratio is None else f"  total CPU {(ratio - 1) * 100:+.1f} % over without"
        lines.append(f"  {name:14s} {ms:7.3f} {result['cpu_ms_mean'][name]:7.3f}{extra}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.observability", description=__doc__)
    parser.add_argument("--requests", type=int, default=100, help="calls per variant and round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--store", action="store_true", help="also time the audit store variant")
    args = parser.parse_args()
    print(render(measure(args.requests, args.rounds, args.store)))


if __name__ == "__main__":
    main()
