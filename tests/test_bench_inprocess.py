"""The in-process phase's control workload: fixed work, sized like a call.

The control is what lets a reader of the report tell a slow tail of ``handle`` from a noisy
machine, so it must do the same work every time and be sized from the call's duration. No
assertion here depends on how fast this machine is.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import inprocess, report


def test_control_is_sized_from_the_measured_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in for the clock: the 20,000-iteration probe "takes" 2 ms, i.e. 0.1 µs/iteration.
    monkeypatch.setattr(inprocess, "_time", lambda fn, runs, warmup: [2.5, 2.0, 2.2])
    control: Any = inprocess.control_workload(3.0)
    assert control.func is inprocess._spin
    assert control.args == (30_000,)
    assert inprocess.control_workload(0.0).args == (1,)


def test_spin_does_the_same_work_every_time() -> None:
    expected = sum(len(str(i)) for i in range(1_000))
    assert inprocess._spin(1_000) == inprocess._spin(1_000) == expected


def test_report_shows_both_tails_and_copes_with_older_runs() -> None:
    size: dict[str, Any] = {"p99_over_median": 1.42, "control": {"p99_over_median": 1.21}}
    assert report._tails(size) == "1.42 (1.21)"
    assert report._tails({}) == "n/a"
