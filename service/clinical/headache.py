"""R-10: headache after a neuraxial puncture — possible post-dural-puncture headache (PDPH).

ICHD-3 7.2.1 places PDPH within 5 days of the puncture, usually positional. Features that PDPH
does not explain (fever, neck stiffness, seizure, altered consciousness, a new weakness, or a
late onset) make it atypical: meningitis, haematoma or other causes must be considered.
"""

from __future__ import annotations

from datetime import datetime

from service.clinical import model
from service.clinical.currency import Currency
from service.clinical.findings import Findings
from service.clinical.history import scope_for
from service.clinical.model import Episode, Match
from service.clinical.settings import ClinicalSettings

HEADACHE = ("headache", "headache_postural")
ATYPICAL = (
    "fever",
    "neck_stiffness",
    "seizure",
    "altered_consciousness",
    "leg_weakness",
    "paraplegia",
)


def post_puncture_headache(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> list[Match]:
    """R-10: headache from the puncture to 5 days after it -> info; atypical -> warning.

    When a new headache starts within 5 days of any neuraxial puncture, then show an info card
    (anaesthesia review if severe). When it starts later (up to 14 days) or comes with fever,
    neck stiffness, seizure, altered consciousness or new weakness, then raise a warning.
    """
    s = scope_for(episode, findings, settings, now)
    late = s.select(
        findings.of(*HEADACHE), after_block=False, length=settings.headache_atypical_window
    )
    ends = episode.punctured.latest + settings.headache_atypical_window
    if not Currency.of("R-10", settings, now).any(late, ends):
        return []
    early = [f for f in late if s.by(f, settings.headache_window)]
    atypical = s.select(
        findings.of(*ATYPICAL), after_block=False, length=settings.headache_atypical_window
    )
    if atypical or not early:
        return [Match("atypical_headache", "R-10", model.WARNING, episode, (*late, *atypical))]
    return [Match("post_puncture_headache", "R-10", model.INFO, episode, tuple(early))]
