"""The Markdown report of one benchmark run (printed, and saved next to ``latest.json``)."""

from __future__ import annotations

from typing import Any


def _status(target: dict[str, Any], quick: bool) -> str:
    if quick:
        return "n/a (quick)"
    return "MET" if target["met"] else "**NOT MET**"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for phase in ("http", "inprocess", "fetch", "memory"):
        section = results.get(phase)
        if isinstance(section, dict):
            out.extend(section.get("targets", []))
    return out


def _replays_only(run: dict[str, Any]) -> bool:
    """True when every non-200 of a load run is a 401 for a token the generator had to reuse.

    A run that ran out of tokens sends some again and the service rightly refuses them (401);
    that is the benchmark's token estimate, not the service. Anything else is a real failure.
    """
    non200 = int(run.get("non200", 0))
    if non200 == 0:
        return True
    statuses = run.get("non200_statuses") or {}
    return set(statuses) <= {"401"} and non200 <= int(run.get("reused_tokens", 0))


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What must hold however slow or busy the machine is: the suite still works (no targets).

    Every phase that was asked for ran; the service answered 200 to every request (apart from
    refused token replays) and with at least one card for the chart, in process, over HTTP and
    with fallback fetching; the replay guard refused a replayed token; no worker died; the fetch
    deadline ended the held query as it should. ``python -m bench`` exits 1 if one fails.
    """
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str = "") -> None:
        out.append({"name": name, "ok": bool(ok), "detail": detail})

    errors = results.get("errors", {})
    for phase in results.get("phases", []):
        ran = phase in results
        detail = (
            ""
            if ran
            else (
                errors.get(phase)
                or errors.get("setup")
                or errors.get("service start")
                or "see errors"
            )
        )
        add(f"{phase}: phase ran", ran, detail)

    inproc = results.get("inprocess")
    if isinstance(inproc, dict):
        for size in inproc.get("sizes", []):
            add(
                f"inprocess: cards for the {size['resources']}-resource chart",
                bool(size.get("cards")),
                ", ".join(size.get("cards", [])) or "no card",
            )

    http = results.get("http")
    if isinstance(http, dict):
        sanity = http.get("sanity", {})
        service, baseline = sanity.get("service", {}), sanity.get("baseline", {})
        add("http: service answers 200", service.get("status") == 200, f"{service.get('status')}")
        add(
            "http: service answers a card for the chart",
            bool(service.get("cards")),
            ", ".join(service.get("cards", [])) or "no card",
        )
        add(
            "http: a replayed token is refused (401)",
            service.get("replay_status") == 401,
            f"{service.get('replay_status')}",
        )
        add(
            "http: baseline answers 200", baseline.get("status") == 200, f"{baseline.get('status')}"
        )
        if "ceiling" in sanity:
            ceiling = sanity["ceiling"]
            add(
                "http: ceiling (service without evaluation) answers 200 and refuses a replay",
                ceiling.get("status") == 200 and ceiling.get("replay_status") == 401,
                f"{ceiling.get('status')}, replay {ceiling.get('replay_status')}",
            )
        runs = [
            *[("service", r) for r in http.get("service_runs", [])],
            *[("ceiling", r) for r in http.get("ceiling_runs", [])],
            *[("baseline", r) for r in http.get("baseline_runs", [])],
            *[(f"{name} warm-up", r) for name, r in http.get("warmup", {}).items()],
        ]
        bad = [
            f"{name}: {r['non200']} non-200 {r.get('non200_statuses')}"
            for name, r in runs
            if not _replays_only(r)
        ]
        add(
            "http: every load response was 200",
            bool(runs) and not bad,
            "; ".join(bad) or f"{sum(r['requests'] for _, r in runs)} requests",
        )
        errs = sum(int(r.get("socket_errors", 0)) for _, r in runs)
        add("http: no socket errors", errs == 0, f"{errs}")
        tokens = http.get("tokens", {})
        add(
            "http: accepted tokens match the replay table",
            bool(tokens.get("consistent")),
            f"{tokens.get('answered_200')} <= {tokens.get('stored_in_replay_table')} "
            f"<= {tokens.get('sent')}",
        )

    memory = results.get("memory")
    if isinstance(memory, dict):
        add(
            "memory: every soak response was 200",
            _replays_only(memory) and memory.get("requests", 0) > 0,
            f"{memory.get('requests')} requests, {memory.get('non200')} non-200 "
            f"{memory.get('non200_statuses') or ''}".strip(),
        )
        errs = int(memory.get("socket_errors", 0))
        add("memory: no socket errors", errs == 0, f"{errs}")
        add(
            "memory: no worker died",
            not memory.get("workers_replaced") and bool(memory.get("workers")),
            f"replaced {memory.get('workers_replaced')}" if memory.get("workers_replaced") else "",
        )

    fetch = results.get("fetch")
    if isinstance(fetch, dict):
        for key, label in (("direct", "direct"), ("with_latency", "through the latency proxy")):
            part = fetch.get(key, {})
            add(
                f"fetch: {label}: resources fetched and a card answered",
                part.get("fetched_resources", 0) > 0 and bool(part.get("cards")),
                f"{part.get('fetched_resources')} resources, cards "
                f"{', '.join(part.get('cards', [])) or 'none'}",
            )
        for case in fetch.get("deadline", {}).get("cases", []):
            add(
                f"fetch: deadline with {case['held_key']} held ends as {case['expected']}",
                bool(case.get("as_expected")),
                ", ".join(str(r["outcome"]) for r in case.get("runs", [])),
            )
    return out


def render(results: dict[str, Any]) -> str:
    quick = results["mode"] == "quick"
    m = results["machine"]
    lines = [
        f"# epidural-cds benchmark ({results['mode']}) — {results['started']}",
        "",
        f"- Command: `{results['command']}`",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB RAM, "
        f"Python {m['python']}, {m['platform']}",
        f"- Load average at start / end: {results['loadavg_start']} / {results.get('loadavg_end')}",
        f"- Total time: {results.get('elapsed_s', 0):.0f} s",
    ]
    if quick:
        lines.append(
            "- Quick smoke run: tiny runs, thresholds are not applied; only the checks below "
            "decide the exit status."
        )
    if results.get("load_generator"):
        lines.append(f"- Load generator: {results['load_generator']}")
    if results.get("phase_seconds"):
        lines.append(
            "- Phase times: "
            + ", ".join(f"{name} {sec:.1f} s" for name, sec in results["phase_seconds"].items())
        )
    if results.get("errors"):
        lines += ["", "**Errors:**", ""]
        lines += [f"- {phase}: {message}" for phase, message in results["errors"].items()]
    found = results.get("checks")
    if found:
        failed = [c for c in found if not c["ok"]]
        lines += [
            "",
            f"## Checks ({len(found) - len(failed)} passed, {len(failed)} failed)",
            "",
            "| Check | Result | Detail |",
            "|---|---|---|",
        ]
        for c in found:
            result = "ok" if c["ok"] else "**FAILED**"
            lines.append(f"| {c['name']} | {result} | {c['detail'].replace('|', '/')} |")
    rows = targets(results)
    if rows:
        lines += ["", "## Targets", "", "| Target | Goal | Measured | Status |"]
        lines.append("|---|---|---|---|")
        for t in rows:
            lines.append(f"| {t['name']} | {t['target']} | {t['value']} | {_status(t, quick)} |")
    if "inprocess" in results:
        lines += _inprocess(results["inprocess"])
    if "http" in results:
        lines += _http(results["http"])
    if "fetch" in results:
        lines += _fetch(results["fetch"])
    if "memory" in results:
        lines += _memory(results["memory"])
    if results.get("profile"):
        lines += [
            "",
            "## Where the time goes (cProfile, `handle` on the 100-resource chart, "
            "top 10 cumulative)",
            "",
            "```",
            results["profile"].strip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


def _inprocess(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## a. In-process: `HookHandler.handle` (parse + validate + evaluate + render)",
        "",
        "| Resources | Body | Runs | Median ms | p99 ms | Cold median ms | Cold p99 ms | JSON ms "
        "| Parse+validate ms | Resolve ms | Evaluate ms | No-parse ms | Cards | Other CPU "
        "| p99/median (control) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for s in r["sizes"]:
        st = s["stages_median_ms"]
        cold = s.get("cold") or {"median_ms": float("nan"), "p99_ms": float("nan")}
        lines.append(
            f"| {s['resources']:,} | {s['body_bytes'] / 1024:,.0f} KiB | {s['runs']} "
            f"| {s['median_ms']:.2f} | {s['p99_ms']:.2f} | {cold['median_ms']:.2f} "
            f"| {cold['p99_ms']:.2f} | {st['json']:.2f} | {st['parse']:.2f} "
            f"| {st['resolve']:.2f} | {st['evaluate']:.2f} | {st['no_parse']:.2f} "
            f"| {', '.join(s['cards']) or 'none'} | {s.get('other_cpu_cores', 0):.2f} "
            f"| {_tails(s)} |"
        )
    lines += [
        "",
        f"Per-resource slope (least squares over the sizes, medians): "
        f"**{r['slope_us_per_resource']:.1f} µs/resource** "
        f"(intercept {r['intercept_ms']:.2f} ms); without parsing "
        f"{r['slope_no_parse_us_per_resource']:.1f} µs/resource; parse+validate alone "
        f"{r['slope_parse_us_per_resource']:.1f} µs/resource. "
        "p99 is nearest-rank: with fewer than 100 runs it is the slowest run. "
        '"Cold": the same call with every text memo emptied before it (a chart the worker has '
        "never seen); the targets are judged on the slower of the two p99s. "
        "Stages are medians of separate runs on the same body, so they need not add up. "
        '"Other CPU": cores used by other processes while the size was timed. '
        '"p99/median (control)": the length of the slow calls in typical ones, and in brackets '
        "the same for a fixed workload of about the call's median duration, timed as often "
        "right after the calls: when the two are close, the tail is the machine's, not the call's.",
    ]
    return lines


def _tails(size: dict[str, Any]) -> str:
    """``handle``'s p99/median with the control workload's in brackets (older runs: none)."""
    if "control" not in size:
        return "n/a"
    return f"{size['p99_over_median']:.2f} ({size['control']['p99_over_median']:.2f})"


def _http(r: dict[str, Any]) -> list[str]:
    b, s = r["baseline"], r["service"]
    tok = r["tokens"]
    ceiling_rows, ceiling_lines = [], []
    if "ceiling" in r:
        ceiling_rows = [_http_row("ceiling: epidural-cds without evaluation", r["ceiling"])]
        ceiling_lines = [
            "",
            f"Ceiling ratio (the service with its clinical evaluation taken out, "
            f"bench/ceiling_app.py)/baseline: **{r['ceiling_ratio']:.2f}x** "
            f"(per run: {', '.join(f'{x:.2f}' for x in r['ceiling_pair_ratios'])}): the most "
            "the service could reach if evaluating the chart cost nothing.",
        ]
    return [
        "",
        f"## b. HTTP: service (production profile, JWT {r.get('jwt_alg', 'ES384')}) "
        "vs bare Flask baseline",
        "",
        f"{r['tool']}, {r['threads']} threads, {r['connections']} connections, "
        f"{r['duration_s']:.0f} s per run, medians of {r['runs_counted']} alternating "
        f"rounds ({r['runs_disturbed']} more were disturbed by other "
        f"processes, > {r['other_cpu_limit_cores']} cores, and left out); "
        f"body: {r['chart_resources']}-resource chart with full prefetch "
        f"({r['body_bytes'] / 1024:.0f} KiB); all under gunicorn with 2 sync workers.",
        "",
        "| Server | Requests/s | p50 ms | p99 ms | Requests | Non-200 | Socket errors "
        "| Server CPU (cores) | CPU ms/request | Load gen. CPU | Other CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        _http_row("baseline (json.loads + fixed reply)", b),
        *ceiling_rows,
        _http_row("epidural-cds", s),
        "",
        "CPU columns are medians over the runs, in cores (2 = the whole machine); "
        '"Other" is CPU taken by processes outside the benchmark during the run.',
        "",
        f"Throughput ratio service/baseline: **{r['ratio']:.2f}x** "
        f"(per run: {', '.join(f'{x:.2f}' for x in r['pair_ratios'])}). "
        f"Tokens: {tok['answered_200']} answered 200, {tok['stored_in_replay_table']} stored "
        f"in the replay table, {tok['sent']} sent, none reused "
        f"({'consistent' if tok['consistent'] else 'INCONSISTENT'}); a replayed token got "
        f"HTTP {r['sanity']['service'].get('replay_status')}.",
        *ceiling_lines,
    ]


def _http_row(name: str, x: dict[str, Any]) -> str:
    per_request = x["server_cpu_cores"] * 1000 / x["rps"] if x["rps"] else 0.0
    return (
        f"| {name} | {x['rps']:.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['requests']} "
        f"| {x['non200']} | {x['socket_errors']} | {x['server_cpu_cores']:.2f} "
        f"| {per_request:.1f} | {x['load_generator_cpu_cores']:.2f} | {x['other_cpu_cores']:.2f} |"
    )


def _fetch(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## c. Fallback fetching ({r['fhir_server']}, {r['chart_resources']}-resource chart)",
        "",
        "| FHIR server | Wall ms (median) | Slowest query ms | Sum of queries ms "
        "| Raw parallel control ms | Wall/slowest | Wall/sum | HTTP requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, c in (
        ("sekmet direct", r["direct"]),
        (f"sekmet + {r['latency_ms']:.0f} ms latency", r["with_latency"]),
    ):
        lines.append(
            f"| {label} | {c['wall_ms']:.1f} | {c['slowest_ms']:.1f} ({c['slowest_query']}) "
            f"| {c['sum_ms']:.1f} | {c['control_parallel_ms']:.1f} | {c['wall_over_slowest']:.2f} "
            f"| {c['wall_over_sum']:.2f} | {c['requests_per_call']} |"
        )
    d = r["deadline"]
    lines += [
        "",
        "The raw parallel control fires the same queries at once from plain threads: when it is "
        "no faster than the sum, the FHIR server (one CPU-bound process) is what serialises them.",
        "",
        f"Deadline {d['deadline_s']} s, one query held {d['hold_s']:.0f} s by a local proxy:",
        "",
    ]
    for case in d["cases"]:
        runs = ", ".join(f"{x['elapsed_s']:.3f} s ({x['outcome']})" for x in case["runs"])
        lines.append(f"- {case['held_key']}: {runs}")
    return lines


def _memory(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## d. Memory: gunicorn worker RSS over a {r['soak_s']:.0f} s soak",
        "",
        f"Soak at {r['achieved_rps']:.0f} requests/s ({r['achieved_fraction']:.0%} of the "
        f"measured {r['capacity_rps']:.0f}; target {r['target_rps']:.0f}), {r['requests']} "
        f"requests, {r['non200']} non-200, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        + (
            f" (p50: median of the {len(r['segments'])} segments'; p99: the highest). Segment "
            "rates, requests/s: " + ", ".join(f"{g['rps']:.0f}" for g in r["segments"]) + "."
            if len(r.get("segments", ())) > 1
            else "."
        ),
        "",
        "| Worker | Cold MiB | Warm MiB | After soak MiB | Growth from warm | From cold |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for w in r["workers"]:
        lines.append(
            f"| {w['pid']} | {w['cold_mib']:.1f} | {w['warm_mib']:.1f} | {w['end_mib']:.1f} "
            f"| {w['growth_pct']:+.2f} % | {w['growth_from_cold_pct']:+.2f} % |"
        )
    if r["workers_replaced"]:
        lines.append(f"\nWorkers replaced during the run: {r['workers_replaced']}")
    return lines
