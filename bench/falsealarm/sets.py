"""The chart openings of each benchmark set, built from the generated patients with fixed seeds.

Sets (each opening is one patient, one time, one chart):

* ``unaltered-after-epidural``: every generated epidural, opened at +2 h, +12 h, +24 h, +3 d,
  +7 d, +30 d and +270 d (about 9 months), when that is not after the record's end;
* ``unaltered-random``: every patient at 4 random times in the last 10 years of the record;
* ``placed-random``: an epidural placed at 3 random adult times per patient, each opened at +2 h,
  +24 h, +3 d and +30 d;
* ``placed-before-event`` (the worst case, reported apart): an epidural placed 2 h and 48 h
  before up to 3 of the chart's own fevers, pain scores, anticoagulant orders or doses and
  headaches (per kind and patient), opened 1 h after the event;
* ``miss``: after the patient's last generated epidural (or one placed in the last 5 years when
  there is none) a new fever (38.9 °C at +48 h), urinary retention (+12 h) or leg weakness
  (+12 h) is added and the chart opened 1 h later, three ways: as generated, with an older
  record of the same finding planted 3 years before the epidural (resolved 10 days later for the
  Conditions, a 38.2 °C reading for fever), and with every older record of it removed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bench.falsealarm import place
from bench.falsealarm.cut import appear_time, chart_at, parse_time
from bench.falsealarm.evaluate import PREFETCH_TYPES

AFTER_EPIDURAL_HOURS = (2, 12, 24, 72, 168, 720, 6480)
PLACED_RANDOM_HOURS = (2, 24, 72, 720)
PLACED_RANDOM_COUNT = 3
UNALTERED_RANDOM_COUNT = 4
EVENTS_PER_KIND = 3
BEFORE_EVENT_HOURS = (2, 48)
MISS_FINDINGS: dict[str, float] = {"fever": 48, "retention": 12, "weakness": 12}
MISS_VARIANTS = ("as-generated", "planted-history", "history-removed")
#: Card patterns that count as "the finding was flagged" in the miss set.
MISS_PATTERNS: dict[str, frozenset[str]] = {
    "fever": frozenset({"fever_after_epidural", "abscess", "abscess_deficit"}),
    "retention": frozenset(
        {
            "isolated_retention",
            "cauda_equina",
            "unattributed_red_flags",
            "hematoma_motor",
            "hematoma_sensory",
            "abscess_deficit",
        }
    ),
    "weakness": frozenset(
        {
            "hematoma_motor",
            "hematoma_sensory",
            "cauda_equina",
            "dense_block_infusion",
            "persisting_symptoms",
            "unattributed_red_flags",
            "abscess_deficit",
            "cord_infarct",
        }
    ),
}
YEAR = timedelta(days=365.25)


@dataclass
class Patient:
    """One generated patient, references resolved, reduced to what the prefetch can return."""

    index: int
    label: str
    id: str
    resources: list[dict[str, Any]]
    birth: datetime
    end: datetime
    epidurals: list[datetime] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """The Patient reference."""
        return f"Patient/{self.id}"


@dataclass(frozen=True)
class Opening:
    """One chart opening to evaluate."""

    set: str
    patient: Patient
    now: datetime
    what: str
    resources: list[dict[str, Any]]
    finding: str | None = None
    variant: str | None = None


def make_patient(index: int, label: str, resources: list[dict[str, Any]]) -> Patient:
    """A :class:`Patient` from resolved resources (other types than the prefetch's dropped)."""
    kept = [r for r in resources if r.get("resourceType") in PREFETCH_TYPES]
    patient = next(r for r in kept if r["resourceType"] == "Patient")
    birth = parse_time(patient.get("birthDate"))
    if birth is None:
        raise ValueError(f"{label}: no birthDate")
    times = [t for t in (appear_time(r) for r in kept) if t is not None]
    epidurals = sorted(
        t
        for r in kept
        if r["resourceType"] == "Procedure"
        and any(c.get("code") == "18946005" for c in (r.get("code") or {}).get("coding", []))
        for t in [appear_time(r)]
        if t is not None
    )
    return Patient(index, label, patient["id"], kept, birth, max(times), epidurals)


def _rng(seed: int, name: str, patient: Patient) -> random.Random:
    return random.Random(f"{seed}/{name}/{patient.index}")


def _uniform(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = max((end - start).total_seconds(), 0.0)
    return (start + timedelta(seconds=rng.uniform(0, span))).replace(microsecond=0)


def _hours(h: float) -> str:
    return f"+{h:g} h" if h < 72 else f"+{h / 24:g} d"


def unaltered(patient: Patient, seed: int) -> Iterator[Opening]:
    """The ``unaltered-*`` sets."""
    for when in patient.epidurals:
        for h in AFTER_EPIDURAL_HOURS:
            now = place.shift(when, h)
            if now <= patient.end:
                yield Opening(
                    "unaltered-after-epidural",
                    patient,
                    now,
                    f"generated epidural {when:%Y-%m-%d} {_hours(h)}",
                    chart_at(patient.resources, now),
                )
    rng = _rng(seed, "unaltered-random", patient)
    start = max(patient.birth + 18 * YEAR, patient.end - 10 * YEAR)
    for _ in range(UNALTERED_RANDOM_COUNT):
        now = _uniform(rng, start, patient.end)
        yield Opening(
            "unaltered-random", patient, now, "random time", chart_at(patient.resources, now)
        )


def placed_random(patient: Patient, seed: int) -> Iterator[Opening]:
    """The ``placed-random`` set."""
    rng = _rng(seed, "placed-random", patient)
    for n in range(PLACED_RANDOM_COUNT):
        at = _uniform(rng, patient.birth + 18 * YEAR, patient.end - timedelta(days=30))
        chart = [*patient.resources, place.epidural(patient.ref, at, f"bench-epidural-{n}")]
        for h in PLACED_RANDOM_HOURS:
            now = place.shift(at, h)
            yield Opening(
                "placed-random",
                patient,
                now,
                f"placed epidural {at:%Y-%m-%d} {_hours(h)}",
                chart_at(chart, now),
            )


def placed_before_event(patient: Patient, seed: int, concepts: place.Concepts) -> Iterator[Opening]:
    """The ``placed-before-event`` set (worst case)."""
    rng = _rng(seed, "placed-before-event", patient)
    adult = patient.birth + 16 * YEAR
    found = place.events(patient.resources, concepts)
    for kind in place.EVENT_KINDS:
        times = [t for t in found[kind] if t >= adult]
        chosen = sorted(rng.sample(times, min(EVENTS_PER_KIND, len(times))))
        for event in chosen:
            for h in BEFORE_EVENT_HOURS:
                at = place.shift(event, -h)
                chart = [*patient.resources, place.epidural(patient.ref, at, "bench-epidural-e")]
                now = place.shift(event, 1)
                yield Opening(
                    "placed-before-event",
                    patient,
                    now,
                    f"epidural placed {h} h before {kind} of {event:%Y-%m-%d %H:%M}",
                    chart_at(chart, now),
                    finding=kind,
                )


def _planted(kind: str, patient: Patient, epidural: datetime) -> dict[str, Any]:
    old = epidural - 3 * YEAR
    if kind == "fever":
        return place.fever(patient.ref, old, "bench-old-fever", 38.2)
    code = place.RETENTION if kind == "retention" else place.WEAKNESS
    return place.condition(
        patient.ref, old, f"bench-old-{kind}", code, abated=old + timedelta(days=10)
    )


def _new_finding(kind: str, patient: Patient, at: datetime) -> dict[str, Any]:
    if kind == "fever":
        return place.fever(patient.ref, at, "bench-new-fever", 38.9)
    code = place.RETENTION if kind == "retention" else place.WEAKNESS
    return place.condition(patient.ref, at, f"bench-new-{kind}", code)


def miss(patient: Patient, seed: int, concepts: place.Concepts) -> Iterator[Opening]:
    """The ``miss`` set."""
    base = list(patient.resources)
    if patient.epidurals and patient.epidurals[-1] <= patient.end - timedelta(days=3):
        epidural, what = patient.epidurals[-1], "generated epidural"
    else:
        rng = _rng(seed, "miss", patient)
        epidural = _uniform(
            rng,
            max(patient.birth + 18 * YEAR, patient.end - 5 * YEAR),
            patient.end - timedelta(days=3),
        )
        base.append(place.epidural(patient.ref, epidural, "bench-epidural-m"))
        what = "placed epidural"
    codes = {
        "fever": concepts.temperature | concepts.fever,
        "retention": concepts.retention,
        "weakness": concepts.weakness,
    }
    for kind, hours in MISS_FINDINGS.items():
        at = place.shift(epidural, hours)
        now = place.shift(at, 1)
        new = _new_finding(kind, patient, at)
        charts = {
            "as-generated": [*base, new],
            "planted-history": [*base, _planted(kind, patient, epidural), new],
            "history-removed": [
                *place.strip_history(base, codes[kind], epidural, fever_only_hot=kind == "fever"),
                new,
            ],
        }
        for variant, chart in charts.items():
            yield Opening(
                "miss",
                patient,
                now,
                f"{what} {epidural:%Y-%m-%d}, new {kind} {_hours(hours)} ({variant})",
                chart_at(chart, now),
                finding=kind,
                variant=variant,
            )


SETS = (
    "unaltered-after-epidural",
    "unaltered-random",
    "placed-random",
    "placed-before-event",
    "miss",
)


def openings(patient: Patient, seed: int, concepts: place.Concepts) -> Iterator[Opening]:
    """Every opening of every set for one patient, in a fixed order."""
    yield from unaltered(patient, seed)
    yield from placed_random(patient, seed)
    yield from placed_before_event(patient, seed, concepts)
    yield from miss(patient, seed, concepts)
