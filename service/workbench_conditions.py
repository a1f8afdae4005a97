"""The conditions of each rule, restated for the workbench's "why" panel.

Each windowed condition of a rule (clinical-spec §3.2) is a :class:`Window`: new findings of some
concepts, inside a window after the puncture or catheter removal, maybe only after the expected
end of the block, maybe on both sides. :func:`window` checks every finding of those concepts with
the same :class:`~service.clinical.scope.Scope` predicates the rules use and reports each check,
so a near miss shows which one failed. The rules themselves decide what fires; this table only
explains (``service/workbench_explain.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.clinical import rules
from service.clinical.findings import Findings
from service.clinical.model import Episode, Finding
from service.clinical.scope import Scope
from service.clinical.settings import ClinicalSettings
from service.clinical.timing import When, format_delta
from service.render import format_time

_UNKNOWN = "time not recorded"


def when_text(finding: Finding) -> str:
    """A finding's time as the cards show it."""
    return format_time(finding.when, _UNKNOWN)


def hours_text(delta: timedelta) -> str:
    return format_delta(delta.total_seconds() / 3600.0)


@dataclass(frozen=True)
class Window:
    """One windowed condition of a rule: new findings of ``concepts``, maybe after the block."""

    text: str
    concepts: tuple[str, ...]
    after_block: bool
    length: Callable[[ClinicalSettings], timedelta]
    from_reference: bool = False
    both_sides: bool = False
    opens_after: Callable[[ClinicalSettings], timedelta] | None = None
    """Findings count only from this long after the puncture (R-02's 24 h)."""


def finding_line(f: Finding, s: Scope, w: Window, settings: ClinicalSettings) -> dict[str, Any]:
    checks = {
        "new": s.new(f),
        "inWindow": s.by(f, w.length(settings), from_reference=w.from_reference),
    }
    if w.after_block:
        checks["afterBlock"] = s.after_block(f)
    if w.opens_after is not None:
        checks["lateEnough"] = f.when.latest >= s.episode.punctured.earliest + w.opens_after(
            settings
        )
    side = f.laterality or "side not recorded"
    value = f" {f.value}" if f.value else ""
    return {
        "resource": str(f.source),
        "text": f"{f.label}{value} ({side}), {when_text(f)}",
        "checks": checks,
        "passed": all(checks.values()),
    }


def window(
    w: Window, ep: Episode, found: Findings, settings: ClinicalSettings, now: datetime
) -> dict[str, Any]:
    s = Scope(ep, settings, now, found.findings)
    lines = [finding_line(f, s, w, settings) for f in found.of(*w.concepts)]
    passing = [f for f, line in zip(found.of(*w.concepts), lines, strict=True) if line["passed"]]
    met = bool(passing)
    note = ""
    if met and w.both_sides:
        both = rules.bilateral(passing, settings.laterality_merge)
        unknown_ok = (
            settings.unknown_laterality_weakness_is_red_flag and "leg_weakness" in w.concepts
        )
        met = bool(both) or (unknown_ok and any(f.laterality is None for f in passing))
        note = "both sides affected" if both else "only one side recorded"
        if not both and met:
            note = "side not recorded, which counts as a red flag"
    block = ep.block_ends
    parts = [w.text.format(window=hours_text(w.length(settings)))]
    if w.after_block:
        parts.append(
            f"after the expected block end ({format_time(_at(block), 'infusion running')})"
        )
    return {"text": "; ".join(parts), "met": met, "note": note, "found": lines}


def _at(moment: datetime | None) -> When | None:
    return When.at(moment) if moment is not None else None


def plain(text: str, met: bool, note: str = "") -> dict[str, Any]:
    return {"text": text, "met": met, "note": note, "found": []}


WEAKNESS = rules.WEAKNESS
WINDOWED: dict[str, tuple[str, tuple[Window, ...]]] = {
    "hematoma_motor": (
        "R-01",
        (
            Window(
                "New leg weakness within {window} of the puncture or catheter removal",
                WEAKNESS,
                True,
                lambda s: s.hematoma_window,
                True,
                both_sides=True,
            ),
        ),
    ),
    "hematoma_sensory": (
        "R-01",
        (
            Window(
                "New numbness of both legs within {window} of the puncture or removal",
                rules.SENSORY,
                True,
                lambda s: s.hematoma_window,
                True,
                both_sides=True,
            ),
        ),
    ),
    "cauda_equina": (
        "R-01",
        (
            Window(
                "Saddle numbness or incontinence within {window}",
                ("saddle_anaesthesia", "incontinence"),
                True,
                lambda s: s.cauda_equina_window,
            ),
            Window(
                "Urinary retention within {window} (with a leg deficit, or late after the block)",
                ("urinary_retention",),
                True,
                lambda s: s.cauda_equina_window,
            ),
            Window(
                "A leg deficit within {window}",
                rules.LEG_SYMPTOMS,
                True,
                lambda s: s.cauda_equina_window,
            ),
        ),
    ),
    "abscess_deficit": (
        "R-01",
        (
            Window(
                "A new neurological or sphincter deficit within {window}",
                rules.DEFICITS,
                True,
                lambda s: s.abscess_window,
            ),
            Window(
                "Fever or raised infection markers within {window}",
                rules.INFECTION,
                False,
                lambda s: s.abscess_window,
            ),
        ),
    ),
    "recorded_diagnosis": (
        "R-01",
        (
            Window(
                "A recorded spinal emergency diagnosis within {window}",
                ("spinal_emergency_diagnosis",),
                False,
                lambda s: s.abscess_window,
            ),
        ),
    ),
    "abscess": (
        "R-02",
        (
            Window(
                "Fever or raised infection markers from 24 h to {window} after the puncture",
                rules.INFECTION,
                False,
                lambda s: s.abscess_window,
                opens_after=lambda s: s.abscess_start,
            ),
            Window(
                "New back pain or insertion-site signs within {window}",
                rules.LOCAL_SIGNS,
                False,
                lambda s: s.abscess_window,
            ),
        ),
    ),
    "persisting_symptoms": (
        "R-05",
        (
            Window(
                "New leg numbness, heaviness, weakness or pain within {window}",
                rules.PERSISTING,
                True,
                lambda s: s.persistence_window,
            ),
        ),
    ),
}
