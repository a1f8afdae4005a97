"""Counts, rates and the review listing of a false-alarm run, as JSON and Markdown.

Rates are cards per 100 chart openings of the set, by indicator and by card pattern (with its
rule). The miss set is reported as flagged / not flagged per finding and chart variant, and a
finding that is flagged once its older history is removed but not with it is a "miss caused by
older history", the defect of issue 12 this set looks for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from bench.falsealarm.sets import MISS_PATTERNS, MISS_VARIANTS, SETS

INDICATORS = ("critical", "warning", "info")


def _rate(count: int, opens: int) -> float:
    return round(100.0 * count / opens, 2) if opens else 0.0


def flagged(record: Mapping[str, Any]) -> bool:
    """Whether a miss-set opening has a warning or critical card for its finding."""
    wanted = MISS_PATTERNS[record["finding"]]
    return any(
        card["indicator"] in ("warning", "critical") and set(card["pattern"].split("/")) & wanted
        for card in record["cards"]
    )


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number of the report, from the per-opening records."""
    out: dict[str, Any] = {"sets": {}}
    for name in SETS:
        rows = [r for r in records if r["set"] == name]
        groups: dict[str, list[dict[str, Any]]] = {"all": rows}
        if name == "placed-before-event":
            for row in rows:
                groups.setdefault(f"before {row['finding']}", []).append(row)
        for group, members in groups.items():
            key = name if group == "all" else f"{name} / {group}"
            out["sets"][key] = _set_summary(members)
    out["miss"] = _miss_summary([r for r in records if r["set"] == "miss"])
    out["by_offset"] = _by_offset(records)
    return out


def _by_offset(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cards per pattern at each time after the epidural (do cards stop when they should?)."""
    opens: Counter[tuple[str, str]] = Counter()
    cards: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for record in records:
        if record["set"] not in ("unaltered-after-epidural", "placed-random"):
            continue
        key = (record["set"], " ".join(record["what"].split()[-2:]))
        opens[key] += 1
        for card in record["cards"]:
            cards[key][f"{card['indicator']} {card['pattern']}"] += 1

    def hours(offset: str) -> float:
        number, unit = offset.lstrip("+").split()
        return float(number) * (24 if unit == "d" else 1)

    ordered = sorted(opens, key=lambda k: (k[0], hours(k[1])))
    return [
        {"set": s, "offset": o, "opens": opens[(s, o)], "cards": dict(cards[(s, o)])}
        for s, o in ordered
    ]


def _set_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    opens = len(rows)
    indicators = Counter(c["indicator"] for r in rows for c in r["cards"])
    patterns = Counter((c["indicator"], c["rule"], c["pattern"]) for r in rows for c in r["cards"])
    return {
        "opens": opens,
        "patients": len({r["patient"] for r in rows}),
        "opens_with_cards": sum(1 for r in rows if r["cards"]),
        "cards": {i: indicators.get(i, 0) for i in INDICATORS},
        "per_100_opens": {i: _rate(indicators.get(i, 0), opens) for i in INDICATORS},
        "by_pattern": [
            {
                "indicator": i,
                "rule": rule,
                "pattern": p,
                "cards": n,
                "per_100_opens": _rate(n, opens),
            }
            for (i, rule, p), n in sorted(patterns.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


def _miss_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    by_case: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for row in rows:
        hit = flagged(row)
        cell = table[row["finding"]].setdefault(row["variant"], {"opens": 0, "flagged": 0})
        cell["opens"] += 1
        cell["flagged"] += int(hit)
        by_case[(row["patient"], row["finding"])][row["variant"]] = hit
    caused: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {v: 0 for v in MISS_VARIANTS[:2]})
    for (patient, finding), hits in sorted(by_case.items()):
        if not hits.get("history-removed"):
            continue
        which = [v for v in MISS_VARIANTS[:2] if v in hits and not hits[v]]
        for variant in which:
            counts[finding][variant] += 1
        if which:
            caused[finding].append(f"{patient} ({', '.join(which)})")
    return {
        "table": table,
        "missed_because_of_history": caused,
        "missed_because_of_history_counts": counts,
    }


def markdown(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The Markdown report."""
    lines = [
        f"# False-alarm benchmark: {meta['label']}",
        "",
        f"Commit `{meta['commit']}`, content {meta['content_version']}, "
        f"{meta['patients']} patients "
        f"(cohorts {', '.join(meta['cohorts'])}), seed {meta['seed']}; "
        f"{meta['opens']} chart openings evaluated in {meta['evaluate_seconds']:.0f} s.",
        "",
        "| Set | Opens | Patients | Opens with a card | Critical /100 | Warning /100 | Info /100 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary["sets"].items():
        rate = s["per_100_opens"]
        lines.append(
            f"| {name} | {s['opens']} | {s['patients']} | {s['opens_with_cards']} | "
            f"{rate['critical']} ({s['cards']['critical']}) | {rate['warning']} "
            f"({s['cards']['warning']}) | {rate['info']} ({s['cards']['info']}) |"
        )
    lines += ["", "## Cards by pattern (rule), per 100 openings of the set", ""]
    for name, s in summary["sets"].items():
        if not s["by_pattern"]:
            continue
        lines += [
            f"**{name}** ({s['opens']} openings)",
            "",
            "| Indicator | Rule | Pattern | Cards | /100 opens |",
            "|---|---|---|---:|---:|",
        ]
        lines += [
            f"| {p['indicator']} | {p['rule']} | {p['pattern']} | {p['cards']} "
            f"| {p['per_100_opens']} |"
            for p in s["by_pattern"]
        ]
        lines.append("")
    lines += [
        "## Misses: a new finding after an epidural, flagged (warning or critical)?",
        "",
        "| Finding | " + " | ".join(MISS_VARIANTS) + " |",
        "|---|" + "---:|" * len(MISS_VARIANTS),
    ]
    for finding, cells in summary["miss"]["table"].items():
        row = [
            f"{cells[v]['flagged']}/{cells[v]['opens']}" if v in cells else "-"
            for v in MISS_VARIANTS
        ]
        lines.append(f"| {finding} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Missed because of older history (not flagged, but flagged once the older records of "
        "the finding are removed), by chart variant:",
        "",
    ]
    caused = summary["miss"]["missed_because_of_history"]
    counts = summary["miss"].get("missed_because_of_history_counts", {})
    if not caused:
        lines.append("- none")
    for finding, cases in caused.items():
        split = ", ".join(f"{v} {n}" for v, n in counts.get(finding, {}).items())
        lines.append(
            f"- {finding}: {len(cases)} patients ({split}) — "
            + "; ".join(cases[:6])
            + (" ..." if len(cases) > 6 else "")
        )
    lines += [
        "",
        "## Cards by time after the epidural",
        "",
        "| Set | Offset | Opens | Cards by pattern |",
        "|---|---|---:|---|",
    ]
    for row in summary.get("by_offset", []):
        cards = ", ".join(f"{p} {n}" for p, n in row["cards"].items()) or "none"
        lines.append(f"| {row['set']} | {row['offset']} | {row['opens']} | {cards} |")
    return "\n".join(lines) + "\n"


def _evidence(detail: str) -> list[str]:
    """The lines of a card detail worth reading in a review: evidence, procedure and doses."""
    keep = []
    for line in detail.splitlines():
        text = line.strip()
        if (
            text.startswith(("- **", "**Epidural procedure**"))
            or " given " in text
            or (" ordered " in text)
        ):
            keep.append(text[:240])
    return keep[:10]


def review_listing(records: Iterable[Mapping[str, Any]]) -> str:
    """Every warning and critical card, grouped by set, pattern and summary, with its evidence."""
    groups: dict[tuple[str, str, str], list[tuple[Mapping[str, Any], Mapping[str, Any]]]] = (
        defaultdict(list)
    )
    for record in records:
        for card in record["cards"]:
            if card["indicator"] in ("warning", "critical"):
                groups[(record["set"], card["pattern"], card["summary"])].append((record, card))
    out = []
    for (set_name, pattern, summary), items in sorted(groups.items()):
        out.append(f"=== [{set_name}] {items[0][1]['indicator']} {pattern}: {len(items)} cards")
        out.append(f"    {summary}")
        for record, card in items:
            out.append(f"  - {record['patient']} @ {record['now']} | {record['what']}")
            if set_name != "miss":  # miss-set findings are ours: one line each is enough
                out += [f"      {line}" for line in _evidence(card["detail"])]
        out.append("")
    return "\n".join(out) + "\n"
