"""When may the next (or first) antithrombotic dose be given around a neuraxial procedure?

One answer, shared by patient-view (R-03's "too soon after", R-07's "next dose not before") and by
the order hooks (a draft order's proposed first dose), so the same drug at the same moment gets the
same interval and the same earliest time everywhere (issue 17 item 4).

The ASRA table (``cards/asra.yaml``) gives two "after" intervals: from the puncture and from the
catheter's removal. Both bleeding events must be waited out, so the earliest safe time is the later
of puncture + ``after_puncture`` and removal + ``after_removal`` (recorded, presumed or planned
removal). A drug that may not be given with a catheter in place has no safe time while the catheter
stays and no removal is known. A dose inside ``before`` of a planned removal would make that removal
unsafe, so it too waits for the removal. Warfarin is judged by its INR, not by the clock: with the
catheter still in and an INR at or above the removal limit, more warfarin waits for the removal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.clinical import model
from service.clinical.asra import Exposure
from service.clinical.model import Episode

PUNCTURE = "puncture"
REMOVAL = "removal"
PRESUMED_REMOVAL = "presumed_removal"
PLANNED_REMOVAL = "planned_removal"
CATHETER_STAYS = "catheter_in_place"
"""Anchor when no removal time is known: the dose waits for a removal not yet documented."""

WARFARIN_KEY = "warfarin"
THROMBOLYTIC_KEY = "thrombolytic"


@dataclass(frozen=True)
class DoseTiming:
    """The verdict on one proposed dose of one drug for one episode.

    ``earliest`` is ``None`` when no time is safe until the catheter is removed and no removal is
    documented; ``anchor`` says which event the binding ``interval`` counts from.
    """

    exposure: Exposure
    proposed: datetime
    earliest: datetime | None
    anchor: str
    interval: timedelta
    catheter_forbidden: bool = False
    """The drug may not be given with a catheter in place, and the catheter is in then."""
    before_removal: bool = False
    """The dose would fall within the table's "before" interval of a planned removal."""
    inr: float | None = None
    """Warfarin: the INR (at or above the removal limit) that makes more warfarin wait."""

    @property
    def conflicts(self) -> bool:
        """Whether the proposed dose is earlier than the guideline allows."""
        return self.earliest is None or self.proposed < self.earliest


def removal_time(episode: Episode, planned: datetime | None = None) -> tuple[datetime, str] | None:
    """The catheter's removal: recorded, else presumed (bounded, §3.1), else planned."""
    if episode.procedure_class != model.CATHETER:
        return None
    if episode.removed is not None:
        return episode.removed.latest, REMOVAL
    if episode.presumed_until is not None:
        return episode.presumed_until, PRESUMED_REMOVAL
    if planned is not None:
        return planned, PLANNED_REMOVAL
    return None


def catheter_in_at(episode: Episode, at: datetime, planned: datetime | None = None) -> bool:
    """Whether the catheter of ``episode`` is (presumed) in place at ``at``."""
    if episode.procedure_class != model.CATHETER or at < episode.punctured.latest:
        return False
    removal = removal_time(episode, planned)
    return removal is None or at < removal[0]


def next_dose(
    episode: Episode,
    exposure: Exposure,
    proposed: datetime,
    *,
    planned_removal: datetime | None = None,
    inr: float | None = None,
    inr_limit: float | None = None,
) -> DoseTiming:
    """The earliest safe time for a dose of ``exposure``'s drug proposed at ``proposed``."""
    interval = exposure.interval
    key = exposure.drug.key
    removal = removal_time(episode, planned_removal)
    candidates = [
        (episode.punctured.latest + interval.after_puncture, PUNCTURE, interval.after_puncture)
    ]
    if removal is not None and proposed >= removal[0]:
        moment, name = removal
        candidates.append((moment + interval.after_removal, name, interval.after_removal))
    # The later time binds; on a tie the later event (the removal) is named.
    earliest, anchor, wait = max(candidates, key=lambda c: (c[0], c[1] != PUNCTURE))
    in_place = catheter_in_at(episode, proposed, planned_removal)
    forbidden = in_place and not interval.catheter_allowed and key != THROMBOLYTIC_KEY
    if forbidden and removal is None:
        wait = interval.after_removal
        return DoseTiming(exposure, proposed, None, CATHETER_STAYS, wait, catheter_forbidden=True)
    before = interval.before_removal if interval.before_removal is not None else interval.before
    close_to_removal = (
        in_place and removal is not None and removal[0] - before < proposed < removal[0]
    )
    blocking_inr = None
    if key == WARFARIN_KEY and in_place and inr is not None and inr_limit is not None:
        blocking_inr = inr if inr >= inr_limit else None
    if blocking_inr is not None and removal is None:
        return DoseTiming(
            exposure, proposed, None, CATHETER_STAYS, interval.after_removal, inr=blocking_inr
        )
    if (forbidden or close_to_removal or blocking_inr is not None) and removal is not None:
        after = removal[0] + interval.after_removal
        if after > earliest:
            earliest, anchor, wait = after, removal[1], interval.after_removal
    return DoseTiming(
        exposure,
        proposed,
        earliest,
        anchor,
        wait,
        catheter_forbidden=forbidden,
        before_removal=close_to_removal and not forbidden,
        inr=blocking_inr,
    )


__all__ = [
    "CATHETER_STAYS",
    "PLANNED_REMOVAL",
    "PRESUMED_REMOVAL",
    "PUNCTURE",
    "REMOVAL",
    "DoseTiming",
    "catheter_in_at",
    "next_dose",
    "removal_time",
]
