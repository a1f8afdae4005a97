"""R-04: red flags in a patient with an epidural whose timing does not explain them.

Cauda equina and cord red flags need emergency imaging whatever their cause. When the patient's
epidural is outside every attribution window, or its date is missing or partial, the card still
fires but says plainly that the pattern is not attributed to the procedure (clinical-spec §3.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.clinical import model
from service.clinical.currency import Currency
from service.clinical.findings import Findings
from service.clinical.model import Episode, Finding, Match
from service.clinical.settings import ClinicalSettings

LEG_DEFICITS = ("leg_weakness", "paraplegia", "leg_numbness")
SPHINCTER = ("saddle_anaesthesia", "incontinence", "urinary_retention")
INFECTION = ("fever", "infection_marker")


def attributable(
    finding: Finding, episode: Episode, findings: Findings, settings: ClinicalSettings
) -> bool:
    """Whether an episode with a known time explains when ``finding`` happened.

    Sphincter and saddle findings belong to an epidural for 30 days after the puncture, leg
    deficits until 7 days after the puncture or catheter removal, and any of them for 60 days
    when infection signs are present (R-01's windows). A finding inside the block is explained
    by the block. An episode without a known time explains nothing.
    """
    if not episode.time_known or episode.punctured.partial:
        return False
    opens = episode.punctured.earliest - settings.new_finding_tolerance
    if finding.when.latest < opens:
        return False
    if finding.concept in SPHINCTER:
        closes = episode.punctured.latest + settings.cauda_equina_window
    else:
        closes = episode.reference.latest + settings.hematoma_window
    infected = any(f.when.latest >= opens for f in findings.of(*INFECTION))
    if infected:
        closes = max(closes, episode.punctured.latest + settings.abscess_window)
    return finding.when.earliest <= closes


def _bilateral_weakness(findings: Sequence[Finding], merge_seconds: float) -> list[Finding]:
    both = [f for f in findings if f.concept == "paraplegia" or f.laterality == "bilateral"]
    if both:
        return both
    lefts = [f for f in findings if f.laterality == "left"]
    rights = [f for f in findings if f.laterality == "right"]
    for left in lefts:
        for right in rights:
            if abs((left.when.earliest - right.when.earliest).total_seconds()) <= merge_seconds:
                return [left, right]
    return []


def recent_red_flags(
    findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Finding]:
    """Cauda equina and cord red flags recorded in the last days and still current."""
    since = now - settings.red_flags_recent
    # R-04 has no window end: only the age of the record decides its currency (§3.5).
    cur = Currency.of("R-04", settings, now)

    def recent(found: Sequence[Finding]) -> list[Finding]:
        return [
            f
            for f in found
            if f.when.latest >= since and f.when.earliest <= now and cur.current(f, None)
        ]

    saddle = recent(findings.of("saddle_anaesthesia"))
    incontinence = recent(findings.of("incontinence"))
    retention = recent(findings.of("urinary_retention"))
    legs = recent(findings.of(*LEG_DEFICITS))
    weakness = _bilateral_weakness(
        recent(findings.of("leg_weakness", "paraplegia")), settings.laterality_merge.total_seconds()
    )
    flags = [*saddle, *incontinence, *weakness]
    if retention and (saddle or legs):
        flags += [*retention, *legs]
    return flags


def unattributed_red_flags(
    episodes: Sequence[Episode],
    findings: Findings,
    attributed: bool,
    settings: ClinicalSettings,
    now: datetime,
) -> list[Match]:
    """R-04: recent red flags, an epidural on record, and no attributable critical pattern.

    When bladder or bowel dysfunction with saddle numbness or a leg deficit, saddle numbness,
    incontinence, or weakness of both legs was recorded in the last 7 days, the patient has an
    epidural in the record, no R-01/R-02 pattern fired, and the findings fall outside every
    epidural's attribution windows (or its date is missing or partial), then raise a critical
    card that names the procedure date and does not attribute the pattern to it.
    """
    if attributed or not episodes:
        return []
    flags = recent_red_flags(findings, settings, now)
    unexplained = [
        f for f in flags if not any(attributable(f, e, findings, settings) for e in episodes)
    ]
    if not unexplained:
        return []
    unique = {(f.source, f.concept): f for f in flags}
    evidence = tuple(sorted(unique.values(), key=lambda f: (f.when.earliest, f.source, f.concept)))
    return [Match("unattributed_red_flags", "R-04", model.CRITICAL, episodes[0], evidence)]
