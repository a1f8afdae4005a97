"""Side-by-side timing of ``handle`` in two checkouts, alternating, so drift cancels out.

On a shared VM a single in-process run can be 1.7x slower than the next one, which hides a
20 % change. This script times the same calls in this checkout and in another one (an older
commit, say), alternately, a few rounds each, and reports the ratio of each adjacent pair and
their median::

    git worktree add /tmp/before <commit>
    .venv/bin/python -m bench.compare /tmp/before --rounds 4

Each measurement is a fresh process (this venv's Python, the checkout's own code first on the
path) that builds the handler as a worker does, warms it up, and reports the median CPU time
(``time.process_time``) of ``handle`` per chart size. It uses only ``bench.charts`` and
``bench.inprocess._handler``, so any checkout that has the in-process benchmark can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.util import ROOT

_MEASURE = """
import json, sys, time
sys.path.insert(0, ".")
from bench import charts, inprocess
handler = inprocess._handler()
out = {}
for size, runs in json.loads(sys.argv[1]):
    body = charts.body(size)
    for _ in range(3):
        handler.handle(charts.SERVICE_ID, body, now=charts.ANCHOR)
    samples = []
    for _ in range(runs):
        t0 = time.process_time()
        handler.handle(charts.SERVICE_ID, body, now=charts.ANCHOR)
        samples.append(time.process_time() - t0)
    out[str(size)] = sorted(samples)[len(samples) // 2] * 1000
print(json.dumps(out))
"""

#: (chart size, timed calls) per measurement.
PLAN = ((100, 200), (5_000, 15))


def measure(checkout: Path, plan: tuple[tuple[int, int], ...] = PLAN) -> dict[str, float]:
    """Median CPU ms of ``handle`` per chart size, measured in a fresh process in ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(plan)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        # Say which checkout failed and why (its traceback), not only the exit status.
        raise RuntimeError(f"measuring {checkout} failed:\n{done.stderr.strip()}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("other", type=Path, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of measurements (4)")
    args = parser.parse_args(argv)
    other = args.other.resolve()
    ratios: dict[str, list[float]] = {}
    for n in range(1, args.rounds + 1):
        theirs = measure(other)
        ours = measure(ROOT)
        for size, ms in ours.items():
            ratios.setdefault(size, []).append(ms / theirs[size])
            print(f"round {n}: {size:>5} resources: other {theirs[size]:8.2f}, this {ms:8.2f} ms")
    for size, values in ratios.items():
        pairs = ", ".join(f"{r:.2f}" for r in values)
        median = statistics.median(values)
        print(f"{size:>5} resources: this/other median {median:.2f}x (pairs: {pairs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
