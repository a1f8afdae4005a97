"""Epidural steroid rules: R-08 (glucose rise in diabetes) and R-09 (repeat injections).

Epidural corticosteroids raise blood glucose in diabetic patients for a day or two (Even 2012:
mean 160 to 286 mg/dL, back to baseline in about 2 days; longer with insulin-treated or poorly
controlled diabetes). Repeat injections are usually at least two weeks apart, and coverage limits
allow about four sessions per spinal region per year (clinical-spec §2.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.clinical import model
from service.clinical.findings import Findings
from service.clinical.medications import INSULIN
from service.clinical.model import Episode, Match, MedicationEvent
from service.clinical.settings import ClinicalSettings

DIABETES = ("diabetes", "diabetes_insulin_treated")


def has_diabetes(findings: Findings, settings: ClinicalSettings) -> bool:
    """A diabetes diagnosis, or an HbA1c at or above the diagnostic cut-off (R-08)."""
    if findings.of(*DIABETES):
        return True
    return any(
        f.amount is not None and f.amount >= settings.hba1c_diabetes_percent
        for f in findings.of("hba1c")
    )


def long_glucose_window(
    findings: Findings, medications: Sequence[MedicationEvent], settings: ClinicalSettings
) -> bool:
    """Insulin-treated or poorly controlled diabetes: the glucose effect lasts longer."""
    if findings.of("diabetes_insulin_treated"):
        return True
    if any(INSULIN in m.classes for m in medications):
        return True
    return any(
        f.amount is not None and f.amount > settings.hba1c_poor_control_percent
        for f in findings.of("hba1c")
    )


def steroid_glucose(
    episode: Episode,
    findings: Findings,
    medications: Sequence[MedicationEvent],
    settings: ClinicalSettings,
    now: datetime,
) -> list[Match]:
    """R-08: an epidural steroid in a patient with diabetes.

    When a patient with diabetes (a diagnosis, or HbA1c of 6.5 % or more) had an epidural steroid
    injection in the last 3 days (7 with insulin treatment or HbA1c above 7 %), then show an info
    card to check glucose more often; when a glucose of 300 mg/dL or more has been measured since
    the injection, raise a warning instead.
    """
    if episode.procedure_class != model.ESI or not has_diabetes(findings, settings):
        return []
    window = (
        settings.glucose_window_insulin
        if long_glucose_window(findings, medications, settings)
        else settings.glucose_window
    )
    given = episode.punctured
    if now > given.latest + window:
        return []
    high = [
        f
        for f in findings.of("glucose")
        if f.amount is not None
        and f.amount >= settings.glucose_high_mg_per_dl
        and given.earliest <= f.when.latest
        and f.when.earliest <= given.latest + window
    ]
    if high:
        worst = max(high, key=lambda f: f.amount or 0.0)
        days = f"{window.days:d}"
        params = (("days", days), ("glucose", f"{worst.amount:.0f}"))
        return [
            Match("steroid_glucose_high", "R-08", model.WARNING, episode, (worst,), params=params)
        ]
    return [Match("steroid_glucose", "R-08", model.INFO, episode, ())]


def repeat_injections(
    episodes: Sequence[Episode], settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-09: epidural steroid injections closer than two weeks, or too many in a year.

    When the most recent ESI (within the last 30 days) followed another less than 14 days
    before, or is the fourth or later session in the same spinal region within 365 days, then
    show an info card about the interval and cumulative steroid exposure.
    """
    esis = sorted(
        (e for e in episodes if e.procedure_class == model.ESI and e.time_known),
        key=lambda e: e.punctured.latest,
    )
    if len(esis) < 2:
        return []
    latest = esis[-1]
    if now - latest.punctured.latest > settings.esi_repeat_relevant:
        return []
    previous = esis[-2]
    gap = latest.punctured.earliest - previous.punctured.latest
    matches: list[Match] = []
    if gap < settings.esi_minimum_interval:
        days = f"{gap.total_seconds() / 86400:.0f}"
        matches.append(
            Match("repeat_esi_interval", "R-09", model.INFO, latest, (), params=(("days", days),))
        )
    year = [
        e
        for e in esis
        if latest.punctured.latest - e.punctured.latest <= settings.esi_year
        and e.region == latest.region
    ]
    if len(year) >= settings.esi_sessions_per_year:
        params = (("count", str(len(year))),)
        matches.append(Match("repeat_esi_count", "R-09", model.INFO, latest, (), params=params))
    return matches
