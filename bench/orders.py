"""Order-sign with 10 draft orders against patient-view, on the same 100-resource chart (issue 17).

``python -m bench.orders [--runs 200]`` builds the benchmark's 100-resource labour chart once, a
patient-view request with the patient-view prefetch, and an order-sign request with the order
service's (narrower) prefetch and ten draft antithrombotic orders, then calls
``HookHandler.handle`` on both in alternation and records the CPU time of each call
(``time.process_time``: the worker's CPU, whatever else the machine does). Alternating keeps
both measurements in the same stretch of the machine's weather. It prints the medians and the
ratio; the question it answers is whether the order hook costs a worker more than patient-view.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench import charts
from bench.util import median, percentile

ORDERS_SERVICE = "epidural-anticoagulant-orders"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# (RxNorm code, text, dose, unit, doses per day): ten common antithrombotic drafts.
DRAFTS = (
    ("854235", "enoxaparin 40 mg subcutaneously once daily", 40, "mg", 1),
    ("1364445", "apixaban 5 mg by mouth twice daily", 5, "mg", 2),
    ("5224", "heparin 5,000 units subcutaneously twice daily", 5000, "[iU]", 2),
    ("11289", "warfarin 5 mg by mouth once daily", 5, "mg", 1),
    ("1114198", "rivaroxaban 10 mg by mouth once daily", 10, "mg", 1),
    ("1037045", "dabigatran 150 mg by mouth twice daily", 150, "mg", 2),
    ("861360", "fondaparinux 2.5 mg subcutaneously once daily", 2.5, "mg", 1),
    ("309362", "clopidogrel 75 mg by mouth once daily", 75, "mg", 1),
    ("1191", "aspirin 81 mg by mouth once daily", 81, "mg", 1),
    ("978725", "dalteparin 2,500 units subcutaneously once daily", 2500, "[iU]", 1),
)


def draft_orders() -> dict[str, Any]:
    """The ten drafts as an order-sign ``draftOrders`` Bundle, each starting an hour from now."""
    start = (charts.ANCHOR + timedelta(hours=1)).isoformat()
    entries = []
    for i, (code, text, dose, unit, per_day) in enumerate(DRAFTS):
        entries.append(
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": f"bench-draft-{i}",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": f"Patient/{charts.PATIENT_ID}"},
                    "medicationCodeableConcept": {
                        "coding": [{"system": RXNORM, "code": code}],
                        "text": text,
                    },
                    "dosageInstruction": [
                        {
                            "text": text,
                            "timing": {
                                "repeat": {
                                    "frequency": per_day,
                                    "period": 1,
                                    "periodUnit": "d",
                                    "boundsPeriod": {"start": start},
                                }
                            },
                            "doseAndRate": [{"doseQuantity": {"value": dose, "code": unit}}],
                        }
                    ],
                }
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def bodies(size: int = charts.BENCH_SIZE) -> tuple[bytes, bytes]:
    """``(patient-view body, order-sign body)`` for the same chart of ``size`` resources."""
    from service import content as content_module

    chart = charts.build_chart(size, now=charts.ANCHOR)
    view = charts.hook_request(chart)
    service = content_module.load(None).service(ORDERS_SERVICE, "order-sign")
    if service is None:
        raise RuntimeError(f"no {ORDERS_SERVICE} service for order-sign")
    sign = charts.hook_request(chart, {spec.key: spec.query for spec in service.prefetch})
    sign["hook"] = "order-sign"
    sign["context"]["draftOrders"] = draft_orders()
    return _encode(view), _encode(sign)


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def run(runs: int = 200, size: int = charts.BENCH_SIZE) -> dict[str, Any]:
    """CPU ms per call of both hooks, alternating, after a warm-up of each."""
    from bench.inprocess import _handler

    handler = _handler()
    view, sign = bodies(size)
    calls: dict[str, Callable[[], Any]] = {
        "patient-view": lambda: handler.handle(charts.SERVICE_ID, view, now=charts.ANCHOR),
        "order-sign": lambda: handler.handle(ORDERS_SERVICE, sign, now=charts.ANCHOR),
    }
    cards = {name: len(call().response["cards"]) for name, call in calls.items()}
    for _ in range(10):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            t0 = time.process_time_ns()
            call()
            samples[name].append((time.process_time_ns() - t0) / 1e6)
    out: dict[str, Any] = {"size": size, "runs": runs, "drafts": len(DRAFTS), "cards": cards}
    for name, values in samples.items():
        out[name] = {"median_ms": median(values), "p90_ms": percentile(values, 90)}
    out["ratio_median"] = out["order-sign"]["median_ms"] / out["patient-view"]["median_ms"]
    return out


def main() -> None:
    """Print the comparison as a small Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--size", type=int, default=charts.BENCH_SIZE)
    args = parser.parse_args()
    result = run(args.runs, args.size)
    print(f"{result['size']} resources, {result['drafts']} drafts, {result['runs']} calls each")
    print("| hook | cards | CPU median ms | CPU p90 ms |")
    print("|---|---|---|---|")
    for name in ("patient-view", "order-sign"):
        row = result[name]
        print(
            f"| {name} | {result['cards'][name]} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} |"
        )
    print(f"order-sign / patient-view (median CPU): {result['ratio_median']:.2f}")


if __name__ == "__main__":
    main()
