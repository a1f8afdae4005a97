"""``bench.compare`` measures a checkout in a fresh process and reads its answer back."""

from __future__ import annotations

from bench import compare
from bench.util import ROOT


def test_measure_times_every_size_of_the_plan_in_a_checkout() -> None:
    result = compare.measure(ROOT, plan=((10, 2), (100, 2)))
    assert set(result) == {"10", "100"}
    assert all(ms > 0 for ms in result.values())
