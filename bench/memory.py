"""Benchmark d: resident memory of each gunicorn worker before and after a soak.

RSS (``VmRSS`` of ``/proc/<pid>/status``) of every child of the master is read when the service
has just started ("cold"), after the first load has warmed it up ("warm": lazy imports, caches,
allocator arenas) and during and after a soak at about 70 % of the measured capacity. Growth is
measured from warm to the end of the soak, since cold-to-warm growth is start-up, not a leak.
The soak is paced: every connection waits ``delay`` ms after each response, calibrated with a
short probe so the achieved rate lands near the target.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bench import http_load
from bench.util import worker_rss

SOAK_FRACTION = 0.7
TARGET_GROWTH_PCT = 5.0


def _cycle_delay_ms(target_rps: float, capacity_rps: float) -> float:
    """Per-connection pause so ``CONNECTIONS`` paced connections offer ``target_rps``."""
    service_time_s = 2 / capacity_rps  # two workers share the capacity
    cycle_s = http_load.CONNECTIONS / target_rps
    return max(0.0, (cycle_s - service_time_s) * 1000)


def _sampler(pid: int, every_s: float, stop: threading.Event, out: list[dict[str, Any]]) -> None:
    started = time.monotonic()
    while not stop.wait(every_s):
        out.append({"t_s": round(time.monotonic() - started, 1), "rss_kib": worker_rss(pid)})


def run(
    bench: http_load.Bench,
    service: http_load.Target,
    *,
    cold: dict[int, int],
    soak_s: float,
    capacity_rps: float | None,
    quick: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    pid = service.server.pid
    if capacity_rps is None:
        probe = bench.load(service, 2.0 if quick else 5.0, expected_rps=300, label="cap")
        capacity_rps = probe["rps"]
        log(f"  capacity probe: {capacity_rps:.0f} rps")
    warm = worker_rss(pid)
    target = SOAK_FRACTION * capacity_rps
    delay = _cycle_delay_ms(target, capacity_rps)
    calibration: dict[str, Any] | None = None
    if not quick and soak_s >= 30:
        calibration = bench.load(
            service, 5.0, expected_rps=target * 1.5, delay_ms=delay, label="cal"
        )
        achieved = max(calibration["rps"], 1.0)
        cycle_now = http_load.CONNECTIONS / achieved
        delay = max(0.0, delay + (http_load.CONNECTIONS / target - cycle_now) * 1000)
        log(
            f"  soak calibration: {achieved:.0f} rps at {calibration['delay_ms']:.0f} ms pause; "
            f"now {delay:.0f} ms for {target:.0f} rps"
        )
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    sampler = threading.Thread(
        target=_sampler, args=(pid, max(1.0, soak_s / 20), stop, samples), daemon=True
    )
    log(f"  soak: {soak_s:.0f} s at ~{target:.0f} rps ({SOAK_FRACTION:.0%} of {capacity_rps:.0f})")
    sampler.start()
    try:
        soak = bench.load(service, soak_s, expected_rps=target * 1.3, delay_ms=delay, label="soak")
    finally:
        stop.set()
        sampler.join(timeout=5)
    time.sleep(0.5)
    end = worker_rss(pid)
    workers = []
    for worker in sorted(end):
        w_cold, w_warm, w_end = cold.get(worker, 0), warm.get(worker, 0), end[worker]
        workers.append(
            {
                "pid": worker,
                "cold_mib": round(w_cold / 1024, 1),
                "warm_mib": round(w_warm / 1024, 1),
                "end_mib": round(w_end / 1024, 1),
                "growth_pct": round((w_end - w_warm) / w_warm * 100, 2) if w_warm else None,
                "growth_from_cold_pct": round((w_end - w_cold) / w_cold * 100, 2)
                if w_cold
                else None,
            }
        )
    replaced = sorted(set(cold) ^ set(end))
    growths = [w["growth_pct"] for w in workers if w["growth_pct"] is not None]
    worst = max(growths) if growths else float("nan")
    return {
        "soak_s": soak_s,
        "capacity_rps": round(capacity_rps, 1),
        "target_rps": round(target, 1),
        "achieved_rps": soak["rps"],
        "achieved_fraction": round(soak["rps"] / capacity_rps, 3) if capacity_rps else None,
        "delay_ms": round(delay, 1),
        "requests": soak["requests"],
        "non200": soak["non200"],
        "non200_statuses": soak["non200_statuses"],
        "socket_errors": soak["socket_errors"],
        "reused_tokens": soak["reused_tokens"],
        "tool": soak["tool"],
        "p50_ms": soak["p50_ms"],
        "p99_ms": soak["p99_ms"],
        "workers": workers,
        "workers_replaced": replaced,
        "max_growth_pct": worst,
        "samples": [
            {
                "t_s": s["t_s"],
                "rss_mib": {str(k): round(v / 1024, 1) for k, v in s["rss_kib"].items()},
            }
            for s in samples
        ],
        "calibration": calibration,
        "targets": [
            {
                "name": f"worker RSS growth over a {soak_s:.0f} s soak",
                "target": f"<= {TARGET_GROWTH_PCT:g} %",
                "value": f"{worst:+.1f} %",
                "met": bool(growths) and worst <= TARGET_GROWTH_PCT and not replaced,
            }
        ],
    }
