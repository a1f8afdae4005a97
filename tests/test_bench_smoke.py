"""The benchmark's smoke-run checks (``bench.report.checks``) and where a smoke run writes.

The smoke run itself (``make bench-smoke``, ~30 s) runs in CI after the test suite; these tests
pin down what makes it fail, without starting anything: a crashed phase, a non-200 response, a
chart without a card or a dead worker fail it, slowness and refused token replays do not.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from bench import __main__ as bench_main
from bench import report
from bench.util import ROOT


def _run(**over: Any) -> dict[str, Any]:
    run = {
        "requests": 100,
        "non200": 0,
        "non200_statuses": {},
        "reused_tokens": 0,
        "socket_errors": 0,
    }
    run.update(over)
    return run


def _results() -> dict[str, Any]:
    """A quick run where everything worked (and every target was missed: slow machine)."""
    missed = [{"name": "x", "target": "fast", "value": "slow", "met": False}]
    return {
        "mode": "quick",
        "phases": ["inprocess", "http", "fetch", "memory"],
        "errors": {},
        "inprocess": {
            "sizes": [{"resources": 10, "cards": ["critical"]}],
            "targets": missed,
        },
        "http": {
            "sanity": {
                "service": {"status": 200, "cards": ["critical"], "replay_status": 401},
                "ceiling": {"status": 200, "cards": [], "replay_status": 401},
                "baseline": {"status": 200, "cards": []},
            },
            "service_runs": [_run()],
            "ceiling_runs": [_run()],
            "baseline_runs": [_run()],
            "warmup": {"service": _run(), "baseline": _run()},
            "tokens": {
                "answered_200": 5,
                "stored_in_replay_table": 5,
                "sent": 6,
                "consistent": True,
            },
            "targets": missed,
        },
        "memory": {
            **_run(),
            "workers": [{"pid": 1}, {"pid": 2}],
            "workers_replaced": [],
            "targets": missed,
        },
        "fetch": {
            "direct": {"fetched_resources": 100, "cards": ["critical"]},
            "with_latency": {"fetched_resources": 100, "cards": ["critical"]},
            "deadline": {
                "cases": [
                    {
                        "held_key": "conditions (required)",
                        "expected": "PrefetchUnavailable (412)",
                        "as_expected": True,
                        "runs": [{"outcome": "PrefetchUnavailable (412)"}],
                    }
                ]
            },
            "targets": missed,
        },
    }


def _failed(results: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report.checks(results) if not c["ok"]]


def test_a_working_run_passes_every_check_whatever_the_targets() -> None:
    results = _results()
    assert _failed(results) == []
    assert all(not t["met"] for t in report.targets(results))
    header = {
        "mode": "quick",
        "started": "now",
        "command": "python -m bench --quick",
        "loadavg_start": "0",
        "machine": {"nproc": 2, "cpu_model": "x", "memory_gib": 1, "python": "3", "platform": "y"},
    }
    rendered = report.render({**header, "checks": report.checks(results)})
    assert f"## Checks ({len(report.checks(results))} passed, 0 failed)" in rendered


@pytest.mark.parametrize(
    ("mutate", "failing"),
    [
        (lambda r: r["http"]["service_runs"][0].update(non200=3, non200_statuses={"500": 3}),
         "http: every load response was 200"),
        (lambda r: r["http"]["warmup"]["baseline"].update(non200=1, non200_statuses={"404": 1}),
         "http: every load response was 200"),
        (lambda r: r["http"]["sanity"]["service"].update(status=500, cards=[]),
         "http: service answers a card for the chart"),
        (lambda r: r["http"]["sanity"]["service"].update(replay_status=200),
         "http: a replayed token is refused (401)"),
        (lambda r: r["http"]["sanity"]["ceiling"].update(replay_status=200),
         "http: ceiling (service without evaluation) answers 200 and refuses a replay"),
        (lambda r: r["http"]["ceiling_runs"][0].update(non200=1, non200_statuses={"500": 1}),
         "http: every load response was 200"),
        (lambda r: r["inprocess"]["sizes"][0].update(cards=[]),
         "inprocess: cards for the 10-resource chart"),
        (lambda r: r["fetch"]["direct"].update(cards=[]),
         "fetch: direct: resources fetched and a card answered"),
        (lambda r: r["fetch"]["deadline"]["cases"][0].update(as_expected=False),
         "fetch: deadline with conditions (required) held ends as PrefetchUnavailable (412)"),
        (lambda r: r["memory"].update(non200=2, non200_statuses={"503": 2}),
         "memory: every soak response was 200"),
        (lambda r: r["memory"].update(workers_replaced=[1, 3]), "memory: no worker died"),
        (lambda r: r["memory"].update(socket_errors=4), "memory: no socket errors"),
        (lambda r: (r.pop("fetch"), r["errors"].update(fetch="RuntimeError: boom")),
         "fetch: phase ran"),
    ],
)  # fmt: skip
def test_rot_fails_a_check(mutate: Any, failing: str) -> None:
    results = copy.deepcopy(_results())
    mutate(results)
    assert failing in _failed(results)


def test_401s_for_reused_tokens_are_not_a_failure() -> None:
    results = _results()
    results["http"]["warmup"]["service"].update(
        non200=7, non200_statuses={"401": 7}, reused_tokens=7
    )
    assert _failed(results) == []
    # ... but 401s beyond the reused tokens are.
    results["http"]["warmup"]["service"].update(reused_tokens=2)
    assert _failed(results) == ["http: every load response was 200"]


def test_smoke_run_never_writes_into_the_repository() -> None:
    args = bench_main._parser().parse_args(["--smoke", "--load-generator", "python"])
    assert args.quick and args.load_generator == "python"
    assert not bench_main.QUICK_RESULTS_DIR.resolve().is_relative_to(ROOT)


class _LoadsInOrder:
    """Stands in for ``http_load.Bench`` (a real load run needs servers and wrk, tens of
    seconds): hands out the given load results one per ``load`` call."""

    def __init__(self, *runs: dict[str, Any]) -> None:
        self.runs = list(runs)
        self.log = lambda message: None

    def load(self, target: Any, duration: float, **_: Any) -> dict[str, Any]:
        return self.runs.pop(0)


_SERVICE = SimpleNamespace(name="service")


def test_a_run_repeated_for_lack_of_tokens_is_still_counted() -> None:
    from bench import http_load

    short = _run(reused_tokens=3, rps=100.0, ok=90, sent=93)
    again = _run(rps=110.0, ok=1100, sent=1101)
    runs = http_load._measure_auth(_LoadsInOrder(short, again), _SERVICE, 10.0, 50.0)  # type: ignore[arg-type]
    # The measurement is the second run; the first one's accepted tokens are in the replay
    # table too, so both are returned for the token accounting.
    assert runs == [short, again]
    assert http_load._measure_auth(_LoadsInOrder(again), _SERVICE, 10.0, 50.0) == [again]  # type: ignore[arg-type]
