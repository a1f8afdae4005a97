"""Time predicates for one index episode, shared by every rule (clinical-spec §3.1).

A finding is *new* when it may have started at or after the puncture (minus a small clock-skew
tolerance) and is not just another record of a baseline finding: a symptom recorded before the
puncture only counts again when it has worsened (it now affects a side it did not, or both
sides). It is *after the block* when it may have been recorded after the expected end of the
local-anaesthetic effect. Partial dates count as inside a window whenever any part of them is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from service.clinical.model import Episode, Finding
from service.clinical.settings import ClinicalSettings


def covers(baseline: str | None, later: str | None) -> bool:
    """Whether a baseline laterality already includes a later record's laterality.

    An unknown baseline side covers an unknown later side only; a one-sided baseline covers the
    same side (and an unknown one); a bilateral baseline covers everything.
    """
    if baseline == "bilateral":
        return True
    if baseline is None:
        return later is None
    return later in (baseline, None)


class Scope:
    """Time predicates for one episode, so every rule asks the same questions the same way."""

    def __init__(
        self,
        episode: Episode,
        settings: ClinicalSettings,
        now: datetime,
        findings: Sequence[Finding] = (),
    ) -> None:
        self.episode = episode
        self.settings = settings
        self.now = now
        self.opens = episode.punctured.earliest - settings.new_finding_tolerance
        self._baseline = self.baseline(findings)

    def new(self, finding: Finding) -> bool:
        """Started at or after the puncture, and not a repeat of an unchanged baseline finding."""
        in_time = finding.when.latest >= self.opens and finding.when.earliest <= self.now
        return in_time and self.worsened(finding, self._baseline)

    def after_block(self, finding: Finding) -> bool:
        """May have been recorded after the expected end of the local-anaesthetic block."""
        ends = self.episode.block_ends
        return ends is not None and finding.when.latest > ends

    def by(self, finding: Finding, length: timedelta, *, from_reference: bool = False) -> bool:
        """Started no later than ``length`` after the puncture (or after ``T_ref``)."""
        start = self.episode.reference if from_reference else self.episode.punctured
        return finding.when.earliest <= start.latest + length

    def select(
        self,
        findings: Iterable[Finding],
        *,
        after_block: bool,
        length: timedelta,
        from_reference: bool = False,
    ) -> list[Finding]:
        """The new findings inside a window, optionally only those after the block."""
        return [
            f
            for f in findings
            if self.new(f)
            and (not after_block or self.after_block(f))
            and self.by(f, length, from_reference=from_reference)
        ]

    def baseline(self, findings: Sequence[Finding]) -> list[Finding]:
        """Findings recorded before the puncture (they describe the patient's baseline)."""
        return [f for f in findings if f.when.latest < self.opens]

    def worsened(self, finding: Finding, baseline: Sequence[Finding]) -> bool:
        """Whether ``finding`` is not merely a repeat of a baseline record of the same concept."""
        same = [b for b in baseline if b.concept == finding.concept]
        return not any(covers(b.laterality, finding.laterality) for b in same)
