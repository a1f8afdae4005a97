"""The "why" panel's steroid rules: R-08 (glucose in diabetes) and R-09 (repeat injections).

They follow :func:`service.clinical.steroids.steroid_glucose` and
:func:`service.clinical.steroids.repeat_injections` step by step, with the diabetes and
long-window tests the rule itself calls. R-09 looks at every injection of the record, so its
entries belong to the whole record, not to one episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.clinical import model, steroids
from service.clinical.medications import INSULIN
from service.clinical.model import Episode
from service.content import Content
from service.workbench_conditions import (
    Condition,
    Entry,
    Why,
    condition,
    finding_text,
    headline,
    hours_text,
    line,
    plain,
    statement,
    time_text,
)

_R08 = statement(steroids.steroid_glucose)
_R09 = statement(steroids.repeat_injections)


def glucose(why: Why) -> list[Entry]:
    """R-08's info card (diabetes, recent steroid) and its warning (a glucose of 300 or more)."""
    ep, settings, now = why.episode, why.settings, why.now
    found = why.findings
    esi = plain(
        "The procedure is an epidural steroid injection",
        ep.procedure_class == model.ESI,
        ep.procedure_class,
    )
    cut = settings.hba1c_diabetes_percent
    diabetes_lines = [
        line(str(f.source), finding_text(f), {"diagnosis": True})
        for f in found.of(*steroids.DIABETES)
    ] + [
        line(
            str(f.source),
            finding_text(f),
            {"atOrAboveCutOff": f.amount is not None and f.amount >= cut},
        )
        for f in found.of("hba1c")
    ]
    diabetes = condition(
        f"Diabetes: a diagnosis, or an HbA1c of {cut:g} % or more",
        steroids.has_diabetes(found, settings),
        diabetes_lines,
    )
    long = steroids.long_glucose_window(found, why.meds, settings)
    length = settings.glucose_window_insulin if long else settings.glucose_window
    given = ep.punctured
    why_long = []
    if found.of("diabetes_insulin_treated"):
        why_long.append("insulin-treated diabetes recorded")
    if any(INSULIN in m.classes for m in why.meds):
        why_long.append("insulin in the medications")
    if any(
        f.amount is not None and f.amount > settings.hba1c_poor_control_percent
        for f in found.of("hba1c")
    ):
        why_long.append(f"HbA1c above {settings.hba1c_poor_control_percent:g} %")
    recent = condition(
        f"The injection was in the last {hours_text(settings.glucose_window)} "
        f"({hours_text(settings.glucose_window_insulin)} with insulin or HbA1c above "
        f"{settings.hba1c_poor_control_percent:g} %)",
        now <= given.latest + length,
        (),
        f"procedure {time_text(given)}; window {hours_text(length)}"
        + (f" ({', '.join(why_long)})" if why_long else ""),
    )
    limit = settings.glucose_high_mg_per_dl
    high = [
        f
        for f in found.of("glucose")
        if f.amount is not None
        and f.amount >= limit
        and given.earliest <= f.when.latest
        and f.when.earliest <= given.latest + length
    ]
    glucose_lines = [
        line(
            str(f.source),
            finding_text(f),
            {
                "sinceInjection": given.earliest <= f.when.latest
                and f.when.earliest <= given.latest + length,
                "atOrAboveLimit": f.amount is not None and f.amount >= limit,
            },
        )
        for f in found.of("glucose")
    ]
    high_text = f"A glucose of {limit:g} mg/dL or more since the injection"
    high_c = condition(high_text, bool(high), glucose_lines)
    none_high = dict(
        high_c,
        met=not high,
        text=f"No glucose of {limit:g} mg/dL or more since the injection (else the warning)",
    )
    return [
        _entry(why, "steroid_glucose", (esi, diabetes, recent, none_high)),
        _entry(why, "steroid_glucose_high", (esi, diabetes, recent, high_c)),
    ]


def _entry(why: Why, pattern: str, conditions: tuple[Condition, ...]) -> Entry:
    return Entry("R-08", pattern, headline(why.content, pattern), _R08, conditions)


def repeat(episodes: Sequence[Episode], content: Content, now: datetime) -> list[Entry]:
    """R-09 over the record: the latest injection's interval and the year's count by region."""
    settings = content.settings
    esis = sorted(
        (e for e in episodes if e.procedure_class == model.ESI and e.time_known),
        key=lambda e: e.punctured.latest,
    )
    listing = [
        line(str(e.source), f"{e.label}, {time_text(e.punctured)}, region {e.region or '?'}", {})
        for e in esis
    ]
    two = condition(
        "At least two epidural steroid injections with known dates",
        len(esis) >= 2,
        listing,
        f"{len(esis)} found",
    )
    latest = esis[-1] if esis else None
    relevant = latest is not None and now - latest.punctured.latest <= settings.esi_repeat_relevant
    recent = plain(
        f"The latest injection was in the last {hours_text(settings.esi_repeat_relevant)}",
        relevant,
        f"latest {time_text(latest.punctured)}" if latest is not None else "none",
    )
    minimum = hours_text(settings.esi_minimum_interval)
    gap_text = f"It followed the previous one by less than {minimum}"
    year = [
        e
        for e in esis
        if latest is not None
        and latest.punctured.latest - e.punctured.latest <= settings.esi_year
        and e.region == latest.region
    ]
    if len(esis) >= 2 and latest is not None:
        gap = latest.punctured.earliest - esis[-2].punctured.latest
        interval = plain(gap_text, gap < settings.esi_minimum_interval, f"{hours_text(gap)} apart")
    else:
        interval = plain(gap_text, False, "no previous injection")
    count = plain(
        f"At least {settings.esi_sessions_per_year} sessions in the same spinal region within "
        f"{hours_text(settings.esi_year)}",
        len(esis) >= 2 and len(year) >= settings.esi_sessions_per_year,
        f"{len(year)} in the region of the latest",
    )
    return [
        Entry(
            "R-09",
            "repeat_esi_interval",
            headline(content, "repeat_esi_interval"),
            _R09,
            (two, recent, interval),
        ),
        Entry(
            "R-09",
            "repeat_esi_count",
            headline(content, "repeat_esi_count"),
            _R09,
            (two, recent, count),
        ),
    ]


def episode_entries(why: Why) -> list[Entry]:
    """R-08 for one episode."""
    return glucose(why)
