"""Expected local effects that still need a check: R-06 (urinary retention during the block) and
R-11 (injection-site soreness, off by default) — clinical-spec §3.3.

Both are deliberate severity stratifications, not suppression: the same findings become red
flags (R-01) as soon as a leg deficit, saddle numbness, incontinence or fever joins them, or
when they outlast the block.
"""

from __future__ import annotations

from datetime import datetime

from service.clinical import model
from service.clinical.currency import Currency
from service.clinical.findings import INFECTION_MARKER, Findings
from service.clinical.history import scope_for
from service.clinical.model import Episode, Match
from service.clinical.settings import ClinicalSettings

LEG_DEFICITS = ("leg_weakness", "paraplegia", "leg_numbness", "leg_heaviness")
SPHINCTER_OR_SADDLE = ("saddle_anaesthesia", "incontinence")
SYSTEMIC_FLAGS = ("fever", INFECTION_MARKER)


def isolated_retention(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-06: urinary retention while the block may still explain it.

    When urinary retention is recorded between the puncture and 24 h after the block's expected
    end (or while an infusion runs), without a leg deficit after the block, saddle numbness or
    incontinence, then raise a warning to scan the bladder and examine legs and saddle sensation.
    """
    s = scope_for(episode, findings, settings, now)
    ends = episode.block_ends
    retention = [
        f
        for f in findings.of("urinary_retention")
        if s.new(f) and (ends is None or f.when.earliest <= ends + settings.retention_after_block)
    ]
    window_end = now if ends is None else ends + settings.retention_after_block
    if not Currency.of("R-06", settings, now).any(retention, window_end):
        return []
    window = settings.cauda_equina_window
    deficits = s.select(findings.of(*LEG_DEFICITS), after_block=True, length=window)
    sphincter = s.select(findings.of(*SPHINCTER_OR_SADDLE), after_block=False, length=window)
    if deficits or sphincter:
        return []
    return [Match("isolated_retention", "R-06", model.WARNING, episode, tuple(retention))]


def site_soreness(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-11 (optional): back soreness at the epidural site in the first days, with no flags.

    When enabled, and new back pain is recorded within 3 days of the puncture with no fever,
    infection marker or leg symptom, then show an info card on what would need re-evaluation.
    """
    if not settings.site_soreness_enabled:
        return []
    s = scope_for(episode, findings, settings, now)
    sore = s.select(
        findings.of("back_pain"), after_block=False, length=settings.site_soreness_window
    )
    if not sore:
        return []
    flags = s.select(
        findings.of(*SYSTEMIC_FLAGS, *LEG_DEFICITS, *SPHINCTER_OR_SADDLE),
        after_block=False,
        length=settings.abscess_window,
    )
    if flags:
        return []
    return [Match("site_soreness", "R-11", model.INFO, episode, tuple(sore))]
