"""The clinical core's vocabulary: episodes, findings, medication events and rule matches.

Plain frozen dataclasses so they can be built from any record, compared in tests and never
mutated once the rules have seen them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.clinical.timing import When

CATHETER = "catheter"
ESI = "esi"
SINGLE_SHOT = "single_shot"
NEURAXIAL_OTHER = "neuraxial_other"

CRITICAL = "critical"
WARNING = "warning"
INFO = "info"
INDICATOR_RANK = {INFO: 1, WARNING: 2, CRITICAL: 3}


@dataclass(frozen=True, order=True)
class ResourceRef:
    """Which FHIR resource a piece of evidence came from (``Condition/abc``)."""

    resource_type: str
    id: str

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.id}"


@dataclass(frozen=True)
class Finding:
    """A symptom, sign, abnormal result or diagnosis recorded at some time.

    ``concept`` names a concept of the content (``leg_weakness``, ``fever``,
    ``infection_marker`` ...); ``laterality`` is ``left``, ``right``, ``bilateral`` or ``None``
    when no side is recorded; ``from_text`` marks evidence recognised in uncoded text.
    """

    concept: str
    when: When
    source: ResourceRef
    label: str
    laterality: str | None = None
    from_text: bool = False
    value: str | None = None
    time_known: bool = True
    amount: float | None = None
    """The measured number in the rules' unit (glucose mg/dL, Celsius, 10^9/L, INR)."""
    documented: When | None = None
    """When the record was last documented: the later of onset and ``recordedDate`` (Condition)
    or of ``effective[x]`` and ``issued`` (Observation); ``None`` when no time was recorded.
    Cards say "documented 5 h ago" from it (clinical-spec §3.5); :meth:`documented_hours_ago`."""
    condition: bool = False
    """Whether the finding comes from a Condition (only Conditions can be baseline, §3.1)."""
    sites: tuple[str, ...] = ()
    """Texts of the record's ``bodySite`` (which limb: pain-score site, MRI region)."""
    resolved: When | None = None
    """When a Condition stopped: its ``abatement[x]``, or ``When.unknown`` when it is marked
    resolved/inactive/remission without a date. ``None`` while it is active (§3.5)."""

    def documented_hours_ago(self, now: datetime) -> float | None:
        """Hours from the latest documentation of this finding to ``now`` (``None``: unknown)."""
        if self.documented is None or not self.documented.recorded:
            return None
        return (now - min(self.documented.latest, now)).total_seconds() / 3600.0


@dataclass(frozen=True)
class PainScore:
    """A 0-10 pain score."""

    when: When
    score: float
    source: ResourceRef
    lower_limb: bool = False
    """Whether the score's ``bodySite`` names a lower limb (then it grades leg pain, §3.3 R-05)."""


@dataclass(frozen=True)
class MedicationEvent:
    """A medication order or administration of a class the rules care about."""

    source: ResourceRef
    name: str
    classes: frozenset[str]
    administered: bool
    start: When | None
    end: When | None
    epidural_route: bool
    in_progress: bool
    codes: tuple[str, ...] = ()
    """RxNorm codes of the medication (ingredients, SCDs)."""
    dose: tuple[float, str] | None = None
    """One dose as ``(value, unit)`` when recorded."""
    per_day: float | None = None
    """Doses per day when the timing says so (e.g. 2 for twice daily)."""
    text: str = ""
    """Every text of the medication, its route and its dosage, for name-based recognition."""


@dataclass(frozen=True)
class Episode:
    """An index epidural (or other neuraxial) procedure and the times derived from it (§3.1).

    ``block_ends`` is the expected end of the local-anaesthetic block (``E``), ``None`` while an
    epidural infusion is still running.
    """

    source: ResourceRef
    procedure_class: str
    label: str
    punctured: When
    removed: When | None
    catheter_in_situ: bool
    last_local_anaesthetic: When | None
    block_ends: datetime | None
    steroid: str | None = None
    from_text: bool = False
    time_known: bool = True
    region: str | None = None
    """Spinal region of an injection (``cervical_thoracic`` or ``lumbar_sacral``) when known."""
    presumed_until: datetime | None = None
    """A completed catheter with no removal time: presumed in place until this instant (T_punct +
    ``presumed_catheter_hours``); every statement about its removal says it was not recorded."""

    @property
    def removal_unknown(self) -> bool:
        """Whether the catheter's removal time was not recorded (its presence is presumed)."""
        return self.presumed_until is not None

    @property
    def reference(self) -> When:
        """``T_ref``: the later of puncture and catheter removal (both are bleeding events).

        With the removal time unknown, the presumed removal counts, so no window starting at
        ``T_ref`` is shorter than it would be had the removal been recorded (safety note 1).
        """
        if self.removed is not None and self.removed.latest > self.punctured.latest:
            return self.removed
        if self.presumed_until is not None and self.presumed_until > self.punctured.latest:
            return When(self.punctured.earliest, self.presumed_until)
        return self.punctured


@dataclass(frozen=True)
class Fact:
    """A guideline fact used by a rule, worded by the content phrase ``key`` with ``params``."""

    key: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Match:
    """One rule firing: which card pattern, for which episode, on which evidence.

    ``params`` fill the placeholders of the pattern's summary; ``facts`` are the guideline facts
    (intervals, values) the card's detail states.
    """

    pattern: str
    rule: str
    indicator: str
    episode: Episode
    evidence: tuple[Finding, ...]
    notes: tuple[str, ...] = field(default=())
    params: tuple[tuple[str, str], ...] = ()
    facts: tuple[Fact, ...] = ()
    medications: tuple[MedicationEvent, ...] = ()


def window_end(start: When, length: timedelta) -> datetime:
    """The last instant of a window of ``length`` opening at ``start`` (generous for spans)."""
    return start.latest + length
