"""The report as one self-contained HTML page: inline CSS and inline SVG charts, no script.

Hospital networks are often closed, so the page loads nothing: no CDN, no fonts, no JavaScript.
A clinical lead sees at a glance, per rule, how many cards were shown, held back, accepted and
overridden (one horizontal stacked bar per rule), and why cards were overridden (a bar per
reason). Every value written into the page is HTML-escaped, even though it comes from coded
columns, because reason codes arrive from clients.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from service.outcomes.report import Report
from service.outcomes.report_formats import since_label

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1d2733;
background:#fff;max-width:70rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
p.meta{color:#556;margin:0 0 1.5rem}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{border-bottom:1px solid #d5dbe3;padding:.4rem .6rem;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{background:#f1f4f8}
.legend span{display:inline-block;margin-right:1.2rem}
.legend i{display:inline-block;width:.9rem;height:.9rem;margin-right:.35rem;vertical-align:-.1rem}
svg text{font-family:inherit;font-size:13px;fill:#1d2733}
"""
_SERIES = (
    ("shown", "#3b6fb6", "shown"),
    ("suppressed", "#9aa7b8", "held back"),
    ("accepted", "#2e8b57", "accepted"),
    ("overridden", "#d17a22", "overridden"),
)
_LABEL_W = 150
_BAR_W = 520
_ROW_H = 30


def _bars(report: Report) -> str:
    """One row per rule: a bar for each series, scaled to the largest value."""
    rows = report.rows
    biggest = max([1, *(getattr(r, key) for r in rows for key, _, _ in _SERIES)])
    height = max(1, len(rows)) * _ROW_H * 2 + 10
    parts = [
        f'<svg role="img" aria-label="cards per rule" width="{_LABEL_W + _BAR_W + 60}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, row in enumerate(rows):
        top = i * _ROW_H * 2 + 5
        label = escape(f"{row.rule} ({row.content_version})")
        parts.append(f'<text x="0" y="{top + 16}">{label}</text>')
        step = (_ROW_H * 2 - 8) / len(_SERIES)
        for j, (key, colour, name) in enumerate(_SERIES):
            value = getattr(row, key)
            width = round(_BAR_W * value / biggest, 1)
            y = round(top + j * step, 1)
            parts.append(
                f'<rect x="{_LABEL_W}" y="{y}" width="{width}" height="{round(step - 2, 1)}" '
                f'fill="{colour}"><title>{escape(name)}: {value}</title></rect>'
            )
            parts.append(
                f'<text x="{_LABEL_W + width + 6}" y="{round(y + step - 4, 1)}">{value}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _reasons(report: Report) -> str:
    totals: Counter[str] = Counter()
    for row in report.rows:
        totals.update(row.override_reasons)
    if not totals:
        return "<p>No overrides recorded.</p>"
    items = totals.most_common()
    biggest = items[0][1]
    parts = [
        f'<svg role="img" aria-label="override reasons" width="{_LABEL_W * 2 + _BAR_W}" '
        f'height="{len(items) * _ROW_H + 10}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (code, count) in enumerate(items):
        y = i * _ROW_H + 5
        width = round(_BAR_W * count / biggest, 1)
        parts.append(f'<text x="0" y="{y + 17}">{escape(code)}</text>')
        parts.append(
            f'<rect x="{_LABEL_W * 2 - 20}" y="{y}" width="{width}" height="{_ROW_H - 8}" '
            f'fill="#d17a22"><title>{escape(code)}: {count}</title></rect>'
        )
        parts.append(f'<text x="{_LABEL_W * 2 - 14 + width}" y="{y + 17}">{count}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(report: Report) -> str:
    head = ("Rule", "Content", "Shown", "Held back", "Accepted", "Overridden",
            "Suggestions accepted", "Median min to feedback")  # fmt: skip
    rows = []
    for r in report.rows:
        median = "-" if r.median_minutes is None else f"{r.median_minutes:g}"
        cells = (r.rule, r.content_version, r.shown, r.suppressed, r.accepted, r.overridden,
                 r.suggestions_accepted, median)  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    return f"<table><thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>"


def as_html(report: Report) -> str:
    """The whole page."""
    legend = "".join(
        f'<span><i style="background:{colour}"></i>{name}</span>' for _, colour, name in _SERIES
    )
    since = escape(since_label(report))
    body = (
        f"<h1>Epidural CDS: what happened to the cards</h1>"
        f'<p class="meta">Since {since}. Feedback about cards not in the store: '
        f"{report.unknown_feedback}.</p>"
        f'<h2>Cards per rule</h2><p class="legend">{legend}</p>{_bars(report)}'
        f"<h2>Why cards were overridden</h2>{_reasons(report)}"
        f"<h2>Numbers</h2>{_table(report)}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Epidural CDS card outcomes</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
