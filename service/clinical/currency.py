"""Currency: when a finding stops firing a card (clinical-spec §3.5, amended 2026-12-01).

A card is decision support for *now*. A red flag documented months ago, after which care went
on, is history: an urgent-MRI card then is a false alarm that teaches clinicians to ignore us.

A finding is *current* for a rule when it was documented at most ``current_finding_hours`` (per
rule, ``cards/settings.yaml``) before ``now``, or when it is an active Condition and ``now`` is at
most that long past the end of the rule's window. A Condition stops being current from its
abatement on (or at once when it is marked resolved without a date). A finding with no recorded
time counts as current (safety note 1: missing times count as inside). Windows themselves are
never shortened here: currency only decides whether ``now`` is still a time to show the card.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.clinical.model import Finding
from service.clinical.settings import ClinicalSettings


def is_current(
    finding: Finding, now: datetime, limit: timedelta, window_end: datetime | None
) -> bool:
    """Whether ``finding`` may still fire a card at ``now`` (``window_end``: the rule's)."""
    if finding.resolved is not None and finding.resolved.earliest <= now:
        return False
    documented = finding.documented
    if documented is None or not documented.recorded or not finding.time_known:
        return True
    if now - documented.latest <= limit:
        return True
    return finding.condition and window_end is not None and now <= window_end + limit


@dataclass(frozen=True)
class Currency:
    """The currency test of one rule at one ``now``."""

    now: datetime
    limit: timedelta

    @classmethod
    def of(cls, rule: str, settings: ClinicalSettings, now: datetime) -> Currency:
        """The test for ``rule`` with its configured limit."""
        return cls(now, settings.current_for(rule))

    def current(self, finding: Finding, window_end: datetime | None) -> bool:
        """Whether one finding is current."""
        return is_current(finding, self.now, self.limit, window_end)

    def keep(self, findings: Iterable[Finding], window_end: datetime | None) -> list[Finding]:
        """Only the current findings."""
        return [f for f in findings if self.current(f, window_end)]

    def any(self, findings: Iterable[Finding], window_end: datetime | None) -> bool:
        """Whether a pattern's evidence holds at least one current finding.

        A pattern made of several findings (retention with a leg deficit) still stands on
        older context, but it is shown only while one of its findings is current. Where one
        part is the trigger (the infection signs of R-02, the deficit of an abscess with a
        deficit), the rule passes only that part.
        """
        return any(self.current(f, window_end) for f in findings)
