"""The worker CPU that recording cards and looking up suppression add to a hook call.

Two handlers in one process, built as a worker builds them: the plain one, and one with the
outcome tracker on a real SQLite store in a temporary data directory (the default deployment).
They are timed alternately, a block of calls each, so machine drift hits both alike; each call
is ``time.process_time`` of ``handle`` (user + system CPU of this process, which includes
SQLite's own work since it runs in-process). After each tracked call the bench calls the batch
writer's ``flush_if_due``, as the HTTP layer does once a response has been sent, so the cards
are written where the server writes them. On a shared machine the difference of the two is
within the noise, so the CPU spent inside the outcome code itself is also metered: the
tracker's ``apply`` on the request path and the batch writer's ``flush``
(``time.thread_time`` around each), per timed call and as a share of the tracked call. The
store's suppression table is seeded with other patients' rows so the lookup is an index search,
not a scan of an empty table::

    .venv/bin/python -m bench.outcomes --size 100 --rounds 6 --calls 60
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import charts


def _handlers(data_dir: Path) -> tuple[Any, Any]:
    from service import content as content_module
    from service.cdshooks.handler import HookHandler
    from service.config import Settings
    from service.outcomes import setup
    from service.outcomes.tables import suppression_state
    from service.store import create_store_engine, default_database_url, migrate

    content = content_module.load(None)
    settings = Settings(data_dir=data_dir)
    engine = create_store_engine(default_database_url(data_dir))
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            suppression_state.insert(),
            [
                {"patient_key": f"{n:064x}", "service_id": charts.SERVICE_ID,
                 "subject": f"card:{n:064x}", "indicator": "warning", "reason": "seed",
                 "card_uuid": f"{n}", "acted_at": charts.ANCHOR.timestamp()}
                for n in range(5000)
            ],
        )  # fmt: skip
    outcomes = setup.build(settings, content, engine)
    plain = HookHandler(content, settings)
    tracked = HookHandler(content, settings, outcomes.tracker)
    gc.freeze()
    return plain, tracked


def _block(handler: Any, body: bytes, calls: int) -> list[float]:
    # What the server does after sending a response (service.http.app): write the buffered
    # cards when due. The plain handler has no writer.
    after = handler.outcomes.writer.flush_if_due if handler.outcomes is not None else None
    samples = []
    for _ in range(calls):
        t0 = time.process_time()
        handler.handle(charts.SERVICE_ID, body, now=charts.ANCHOR)
        if after is not None:
            after()
        samples.append((time.process_time() - t0) * 1000)
    return samples


class _Meter:
    """CPU time spent inside one function, summed (``thread_time``: an idle-time flush by the
    writer's thread must not count the hook calls running meanwhile)."""

    def __init__(self, fn: Any, clock: Any) -> None:
        self.fn, self.clock, self.total = fn, clock, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = self.clock()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.total += self.clock() - t0


def run(size: int, rounds: int, calls: int) -> dict[str, Any]:
    """Median CPU ms per call of both handlers over ``rounds`` alternating blocks, and the CPU
    spent in the outcome code itself (``apply`` on the request path, ``flush`` in the writer)."""
    with tempfile.TemporaryDirectory(prefix="epidural-bench-outcomes-") as tmp:
        plain, tracked = _handlers(Path(tmp))
        tracker = tracked.outcomes
        apply_meter = _Meter(tracker.apply, time.thread_time)
        flush_meter = _Meter(tracker.writer.flush, time.thread_time)
        tracker.apply = apply_meter
        tracker.writer.flush = flush_meter
        body = charts.body(size)
        cards = len(tracked.handle(charts.SERVICE_ID, body, now=charts.ANCHOR).response["cards"])
        for handler in (plain, tracked):
            _block(handler, body, 5)
        medians: dict[str, list[float]] = {"plain": [], "tracked": []}
        apply_meter.total = flush_meter.total = 0.0
        for _ in range(rounds):
            medians["plain"].append(statistics.median(_block(plain, body, calls)))
            medians["tracked"].append(statistics.median(_block(tracked, body, calls)))
        # The cards not yet due are written now (as atexit does; metered like every flush),
        # before the store's directory is removed.
        tracker.writer.flush()
        timed_calls = rounds * calls
        in_code_ms = (apply_meter.total + flush_meter.total) / timed_calls * 1000
    ratios = [t / p for p, t in zip(medians["plain"], medians["tracked"], strict=True)]
    return {
        "size": size,
        "cards": cards,
        "plain_ms": round(statistics.median(medians["plain"]), 3),
        "tracked_ms": round(statistics.median(medians["tracked"]), 3),
        "added_ms": round(
            statistics.median(medians["tracked"]) - statistics.median(medians["plain"]), 3
        ),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "apply_ms_per_call": round(apply_meter.total / timed_calls * 1000, 4),
        "flush_ms_per_call": round(flush_meter.total / timed_calls * 1000, 4),
        "outcome_share_of_tracked_call": round(
            in_code_ms / statistics.median(medians["tracked"]), 4
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outcomes", description=__doc__)
    parser.add_argument("--size", type=int, default=100, help="chart size in resources (100)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating blocks per handler")
    parser.add_argument("--calls", type=int, default=60, help="calls per block")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.size, args.rounds, args.calls), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
