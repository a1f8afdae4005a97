"""``bench.compare`` measures a checkout in a fresh process and reads its answer back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import compare
from bench.util import ROOT


def test_measure_times_every_size_of_the_plan_in_a_checkout() -> None:
    result = compare.measure(ROOT, plan=((10, 2), (100, 2)))
    assert set(result) == {"10", "100"}
    assert all(ms > 0 for ms in result.values())


def test_a_checkout_that_cannot_be_measured_is_named_with_its_error(tmp_path: Path) -> None:
    expected = rf"(?s)measuring {re.escape(str(tmp_path))} failed:.*No module named 'bench'"
    with pytest.raises(RuntimeError, match=expected):
        compare.measure(tmp_path, plan=((10, 1),))
