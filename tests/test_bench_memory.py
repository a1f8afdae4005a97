"""The memory soak's pacing: the pause is re-aimed per segment and segments merge into one run.

A fixed pause drifted over ten minutes of a shared machine (round 3 of docs/performance.md
landed at 64 % of capacity instead of 70 %), so the soak runs in segments of about a minute.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import http_load, memory


def test_pause_grows_when_too_fast_and_shrinks_when_too_slow() -> None:
    assert memory.reaimed_delay_ms(20.0, 150.0, 150.0) == pytest.approx(20.0)
    assert memory.reaimed_delay_ms(20.0, 150.0, 200.0) > 20.0
    assert memory.reaimed_delay_ms(20.0, 150.0, 120.0) < 20.0
    # The cycle of each connection (pause + response) is moved by exactly the gap.
    target_cycle = http_load.CONNECTIONS / 150.0
    achieved_cycle = http_load.CONNECTIONS / 200.0
    expected = 20.0 + (target_cycle - achieved_cycle) * 1000
    assert memory.reaimed_delay_ms(20.0, 150.0, 200.0) == pytest.approx(expected)


def test_pause_never_goes_negative_and_a_dead_run_does_not_divide_by_zero() -> None:
    assert memory.reaimed_delay_ms(1.0, 150.0, 20.0) == 0.0
    assert memory.reaimed_delay_ms(5.0, 150.0, 0.0) == 0.0


def _segment(**over: Any) -> dict[str, Any]:
    run = {
        "tool": "wrk",
        "rps": 100.0,
        "requests": 6000,
        "duration_s": 60.0,
        "non200": 0,
        "non200_statuses": {},
        "socket_errors": 0,
        "reused_tokens": 0,
        "p50_ms": 10.0,
        "p99_ms": 20.0,
    }
    run.update(over)
    return run


def test_segments_merge_into_one_run() -> None:
    merged = memory.merge_segments(
        [
            _segment(),
            _segment(requests=9000, p50_ms=12.0, p99_ms=35.0, non200=2, non200_statuses={"401": 2}),
            _segment(requests=3000, duration_s=30.0, p50_ms=11.0, reused_tokens=2),
        ]
    )
    assert merged["requests"] == 18000
    assert merged["duration_s"] == 150.0
    assert merged["rps"] == 120.0
    assert (merged["non200"], merged["non200_statuses"], merged["reused_tokens"]) == (
        2,
        {"401": 2},
        2,
    )
    assert (merged["p50_ms"], merged["p99_ms"]) == (11.0, 35.0)
