"""Benchmark d: resident memory of each gunicorn worker before and after a soak.

RSS (``VmRSS`` of ``/proc/<pid>/status``) of every child of the master is read when the service
has just started ("cold"), after the first load has warmed it up ("warm": lazy imports, caches,
allocator arenas) and during and after a soak at about 70 % of the measured capacity. Growth is
measured from warm to the end of the soak, since cold-to-warm growth is start-up, not a leak.
The soak is paced: every connection waits ``delay`` ms after each response, calibrated with a
short probe so the achieved rate lands near the target, and re-aimed after every segment of
about a minute, because over ten minutes a shared machine speeds up and slows down (a fixed
pause once landed the soak at 64 % instead of 70 %).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench import http_load
from bench.util import worker_rss

SOAK_FRACTION = 0.7
TARGET_GROWTH_PCT = 5.0
#: Longest stretch of the soak run with one pause before the pause is re-aimed.
SEGMENT_S = 60.0


def _cycle_delay_ms(target_rps: float, capacity_rps: float) -> float:
    """Per-connection pause so ``CONNECTIONS`` paced connections offer ``target_rps``."""
    service_time_s = 2 / capacity_rps  # two workers share the capacity
    cycle_s = http_load.CONNECTIONS / target_rps
    return max(0.0, (cycle_s - service_time_s) * 1000)


def reaimed_delay_ms(delay_ms: float, target_rps: float, achieved_rps: float) -> float:
    """The pause that moves a paced run from ``achieved_rps`` to ``target_rps``.

    Each connection's cycle is its pause plus the response time; changing the pause by the
    difference between the target cycle and the achieved one keeps the response time as it was.
    """
    target_cycle_s = http_load.CONNECTIONS / target_rps
    achieved_cycle_s = http_load.CONNECTIONS / max(achieved_rps, 1.0)
    return max(0.0, delay_ms + (target_cycle_s - achieved_cycle_s) * 1000)


def merge_segments(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """One load result for consecutive runs: counts added, rate over the summed duration.

    Percentiles cannot be merged exactly from summaries: p50 is the median of the segments'
    p50s and p99 the highest segment p99 (an upper bound of the whole soak's).
    """
    statuses: Counter[str] = Counter()
    for segment in segments:
        statuses.update(segment.get("non200_statuses") or {})
    requests = sum(s["requests"] for s in segments)
    duration = sum(s["duration_s"] for s in segments)
    return {
        "tool": segments[0]["tool"],
        "rps": round(requests / duration, 1) if duration else 0.0,
        "requests": requests,
        "duration_s": round(duration, 1),
        "non200": sum(s["non200"] for s in segments),
        "non200_statuses": dict(statuses),
        "socket_errors": sum(s["socket_errors"] for s in segments),
        "reused_tokens": sum(s["reused_tokens"] for s in segments),
        "p50_ms": statistics.median(s["p50_ms"] for s in segments),
        "p99_ms": max(s["p99_ms"] for s in segments),
    }


def _paced_soak(
    bench: http_load.Bench,
    service: http_load.Target,
    soak_s: float,
    target_rps: float,
    delay_ms: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The soak in segments of at most ``SEGMENT_S``, the pause re-aimed after each one."""
    count = max(1, round(soak_s / SEGMENT_S))
    segments: list[dict[str, Any]] = []
    for _ in range(count):
        segment = bench.load(
            service, soak_s / count, expected_rps=target_rps * 1.3, delay_ms=delay_ms, label="soak"
        )
        segments.append(segment)
        delay_ms = reaimed_delay_ms(delay_ms, target_rps, segment["rps"])
    return merge_segments(segments), segments


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
        delay = reaimed_delay_ms(delay, target, achieved)
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
        soak, segments = _paced_soak(bench, service, soak_s, target, delay)
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
        # Every segment's pause and achieved rate, to show the pacing held the target.
        "segments": [{"delay_ms": g["delay_ms"], "rps": g["rps"]} for g in segments],
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
