"""The report as text (for a terminal), JSON (for tools) and CSV (for a spreadsheet).

One row per rule and content version in every format; override reasons are a column each in
CSV (``overridden:<code>``) so a spreadsheet can sum them.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from service.outcomes.report import Report, RuleStats

FORMATS = ("text", "json", "csv", "html")


def since_label(report: Report) -> str:
    """``all time`` or the ISO date-time the report starts at."""
    if report.since is None:
        return "all time"
    return datetime.fromtimestamp(report.since, UTC).isoformat(timespec="seconds")


def _median(row: RuleStats) -> str:
    return "-" if row.median_minutes is None else f"{row.median_minutes:g}"


def as_text(report: Report) -> str:
    """A fixed-width table plus the override reasons of each row."""
    header = ("rule", "content", "shown", "suppressed", "accepted", "overridden",
              "sugg. accepted", "median min")  # fmt: skip
    lines = [f"Card outcomes since {since_label(report)}", ""]
    table = [header] + [
        (r.rule, r.content_version, str(r.shown), str(r.suppressed), str(r.accepted),
         str(r.overridden), str(r.suggestions_accepted), _median(r))
        for r in report.rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for r in report.rows:
        if r.override_reasons:
            reasons = ", ".join(f"{code} {n}" for code, n in sorted(r.override_reasons.items()))
            lines.append(f"{r.rule} {r.content_version} overridden by reason: {reasons}")
    if not report.rows:
        lines.append("(no cards recorded)")
    lines.append(f"feedback about unknown cards: {report.unknown_feedback}")
    return "\n".join(lines) + "\n"


def as_json(report: Report) -> str:
    """The report as one JSON document."""
    document = {
        "since": None if report.since is None else since_label(report),
        "rules": [r.as_dict() for r in report.rows],
        "unknownFeedback": report.unknown_feedback,
    }
    return json.dumps(document, indent=2) + "\n"


def as_csv(report: Report) -> str:
    """One CSV row per rule and content version; one column per override reason."""
    reasons = sorted({code for r in report.rows for code in r.override_reasons})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["rule", "content_version", "shown", "suppressed", "accepted", "overridden",
         *(f"overridden:{code}" for code in reasons), "suggestions_accepted",
         "median_minutes_to_feedback"]
    )  # fmt: skip
    for r in report.rows:
        writer.writerow(
            [r.rule, r.content_version, r.shown, r.suppressed, r.accepted, r.overridden,
             *(r.override_reasons.get(code, 0) for code in reasons), r.suggestions_accepted,
             "" if r.median_minutes is None else r.median_minutes]
        )  # fmt: skip
    return out.getvalue()
