"""``python -m bench.falsealarm``: generate, open every chart of every set, report and list cards.

Writes ``<results-dir>/<label>.json`` (every number and every opening's cards),
``<label>.md`` (the tables) and ``<label>-review.txt`` (every warning and critical card with its
evidence, grouped, for the hand review in docs/clinical-validation.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.falsealarm import place, report, resolve, sets, synthea

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "results" / "falsealarm"


def cohorts(seed: int, women: int, others: int) -> list[synthea.Cohort]:
    """Women of 25-40 (so that births, and labour epidurals, occur) and a mixed group."""
    out = [synthea.Cohort("women", women, seed, "f", "25-40")]
    if others:
        out.append(synthea.Cohort("others", others, seed + 1, None, "18-80"))
    return out


def load_patients(groups: list[synthea.Cohort], log: Any = print) -> list[sets.Patient]:
    """Generate (or reuse) every cohort and resolve each Bundle into a :class:`sets.Patient`."""
    patients: list[sets.Patient] = []
    for cohort in groups:
        for path in synthea.generate(cohort, log):
            label = f"{cohort.name}:{path.name.removesuffix('.json.gz').rsplit('_', 1)[0]}"
            resolution = resolve.resolve_bundle(synthea.load(path))
            patients.append(sets.make_patient(len(patients), label, resolution.resources))
    return patients


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when a card could not be attributed to a pattern."""
    parser = argparse.ArgumentParser(prog="python -m bench.falsealarm", description=__doc__)
    parser.add_argument("--seed", type=int, default=7, help="generator and placement seed (7)")
    parser.add_argument("--women", type=int, default=100, help="women aged 25-40 (100)")
    parser.add_argument("--others", type=int, default=20, help="patients of any sex, 18-80 (20)")
    parser.add_argument("--quick", action="store_true", help="5 women, no others")
    parser.add_argument("--label", default="latest", help="name of the result files (latest)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--sets", help=f"comma-separated subset of {','.join(sets.SETS)}")
    parser.add_argument(
        "--from-json", type=Path, help="only re-render the report of an earlier run's JSON"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        return _write(args, saved["meta"], saved["records"])
    women, others = (5, 0) if args.quick else (args.women, args.others)
    wanted = set(args.sets.split(",")) if args.sets else set(sets.SETS)

    from bench.falsealarm.evaluate import Evaluator

    started = time.monotonic()
    groups = cohorts(args.seed, women, others)
    patients = load_patients(groups)
    loaded = time.monotonic()
    evaluator = Evaluator()
    concepts = place.Concepts.from_content(evaluator.content)
    records: list[dict[str, Any]] = []
    for patient in patients:
        for opening in sets.openings(patient, args.seed, concepts):
            if opening.set not in wanted:
                continue
            cards = evaluator.open(opening.resources, patient.id, opening.now)
            records.append(
                {
                    "set": opening.set,
                    "patient": patient.label,
                    "now": opening.now.isoformat(),
                    "what": opening.what,
                    "finding": opening.finding,
                    "variant": opening.variant,
                    "cards": [
                        c.as_dict() if c.indicator != "info" else {**c.as_dict(), "detail": ""}
                        for c in cards
                    ],
                }
            )
        print(f"  {patient.label}: {len(records)} openings so far", file=sys.stderr)
    finished = time.monotonic()
    meta = {
        "label": args.label,
        "commit": _commit(),
        "content_version": evaluator.version,
        "seed": args.seed,
        "patients": len(patients),
        "opens": len(records),
        "cohorts": [c.key() for c in groups],
        "generated_epidurals": sum(len(p.epidurals) for p in patients),
        "patients_with_epidural": sum(1 for p in patients if p.epidurals),
        "generation_seconds": {c.name: synthea.generation_seconds(c) for c in groups},
        "load_seconds": round(loaded - started, 1),
        "evaluate_seconds": round(finished - loaded, 1),
    }
    return _write(args, meta, records)


def _write(args: argparse.Namespace, meta: dict[str, Any], records: list[dict[str, Any]]) -> int:
    summary = report.summarise(records)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    base = args.results_dir / args.label
    base.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "summary": summary, "records": records}, indent=1) + "\n"
    )
    text = report.markdown(summary, meta)
    base.with_suffix(".md").write_text(text)
    (args.results_dir / f"{args.label}-review.txt").write_text(report.review_listing(records))
    print(text)
    unmatched = sum(1 for r in records for c in r["cards"] if c["pattern"] == "unmatched")
    if unmatched:
        print(f"{unmatched} cards matched no card pattern", file=sys.stderr)
    return 1 if unmatched else 0


if __name__ == "__main__":
    sys.exit(main())
