"""The order-hook benchmark (``bench/orders.py``) runs and compares like with like.

Why: docs/performance.md reports order-sign against patient-view on the same chart; this keeps
the script from rotting and checks that both calls answer cards (a benchmark of a call that
fails fast would prove nothing). No timing threshold: the machine is shared.
"""

from __future__ import annotations

import json

from bench import charts, orders


def test_both_bodies_carry_the_same_chart_and_order_sign_ten_drafts() -> None:
    view, sign = (json.loads(b) for b in orders.bodies(10))
    assert view["hook"] == "patient-view" and sign["hook"] == "order-sign"
    assert len(sign["context"]["draftOrders"]["entry"]) == 10
    assert charts.prefetch_count(sign) <= charts.prefetch_count(view)
    assert sign["context"]["patientId"] == view["context"]["patientId"]


def test_a_short_run_answers_cards_for_both_hooks() -> None:
    result = orders.run(runs=2)
    assert result["cards"]["patient-view"] >= 1 and result["cards"]["order-sign"] >= 1
    assert result["ratio_median"] > 0
