"""Findings from Conditions and Observations: what happened to the patient, and when (§3.1).

Excluded records (``entered-in-error``, ``refuted``, ``cancelled``) are dropped here, once, so no
rule can count them (safety note 7). Provisional and unconfirmed diagnoses still count: red flags
are often provisional. Coded data are recognised through the code index; when a record carries
no code of a known concept, its text is read with the text matcher and the finding is marked
``from_text`` so the card can say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from service.clinical import fields
from service.clinical.lexicon import Lexicon
from service.clinical.limbs import names_any
from service.clinical.model import Finding, PainScore
from service.clinical.settings import ClinicalSettings
from service.clinical.timing import When, parse

FINDING_CONCEPTS = (
    "leg_weakness",
    "paraplegia",
    "leg_numbness",
    "leg_heaviness",
    "saddle_anaesthesia",
    "leg_pain",
    "back_pain",
    "site_infection",
    "urinary_retention",
    "incontinence",
    "fever",
    "spinal_emergency_diagnosis",
    "headache",
    "headache_postural",
    "neck_stiffness",
    "seizure",
    "altered_consciousness",
    "diabetes",
    "diabetes_insulin_treated",
)
INFECTION_MARKER = "infection_marker"
# Observations read as measurements (LOINC value sets of the same names).
MEASURED_CONCEPTS = (
    "body_temperature",
    "wbc",
    "crp",
    "esr",
    "inr",
    "platelets",
    "glucose",
    "hba1c",
)

_EXCLUDED_VERIFICATION = {"entered-in-error", "refuted"}
_EXCLUDED_OBSERVATION = {"entered-in-error", "cancelled"}
_OBSERVATION_TIMES = ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
_HIGH_FLAGS = {"H", "HH", "HU", "A", "AA"}
_FLAGGED_MARKERS = frozenset({"wbc", "crp", "esr"})
_NEGATIVE_VALUES = {"no", "absent", "negative", "none", "not present", "false"}
# §3.4: a coded value saying absent/negative (content concept), or "normal" for a sign.
NEGATIVE_VALUE = "negative_value"
_NORMAL_FLAGS = {"N"}
_RESOLVED_STATUS = {"resolved", "inactive", "remission"}
_CONDITION_TIMES = ("onsetDateTime", "onsetPeriod", "recordedDate")
# Condition.abatement[x] in R4 (dateTime, Age, Period, Range, string) and DSTU2's boolean.
_ABATEMENT_FIELDS = (
    "abatementDateTime",
    "abatementPeriod",
    "abatementAge",
    "abatementRange",
    "abatementString",
    "abatementBoolean",
)
_LATERALITY_CONCEPT = {
    "laterality_left": "left",
    "laterality_right": "right",
    "laterality_bilateral": "bilateral",
}


@dataclass(frozen=True)
class Findings:
    """All findings and pain scores of a record, in a stable order."""

    findings: tuple[Finding, ...]
    pain_scores: tuple[PainScore, ...]

    @cached_property
    def conditions(self) -> tuple[Finding, ...]:
        """The findings from Conditions: the only ones that can be baseline or history (§3.1).

        Every rule of every episode asks for its baseline; a long admission holds thousands of
        measurements and few Conditions, so they are picked out once per record.
        """
        return tuple(f for f in self.findings if f.condition)

    @cached_property
    def per_episode(self) -> dict[tuple[str, int], Any]:
        """Answers computed once per episode of this record and shared by its rules.

        Keyed by a name and ``id(episode)``; each value keeps its episode alive beside the
        answer, so a key can never be reused by another episode during the call.
        """
        return {}

    @cached_property
    def _by_concept(self) -> dict[str, list[Finding]]:
        by_concept: dict[str, list[Finding]] = {}
        for finding in self.findings:
            by_concept.setdefault(finding.concept, []).append(finding)
        return by_concept

    def of(self, *concepts: str) -> list[Finding]:
        """Findings of any of the named concepts, in the record's order.

        The rules ask about twenty times per episode, mostly for concepts the record does not
        hold, so the findings are grouped by concept once per record.
        """
        by_concept = self._by_concept
        present = [c for c in concepts if c in by_concept]
        if not present:
            return []
        if len(present) == 1:
            return list(by_concept[present[0]])
        wanted = set(present)
        return [f for f in self.findings if f.concept in wanted]


def _body_site_laterality(resource: Mapping[str, Any], lexicon: Lexicon) -> str | None:
    if not resource.get("bodySite"):
        return None
    sites = list(fields.objects(resource.get("bodySite")))
    single = fields.mapping(resource.get("bodySite"))
    if single is not None:
        sites.append(single)
    sides: set[str] = set()
    for site in sites:
        for match in lexicon.codes.match_concept(site):
            side = _LATERALITY_CONCEPT.get(match.concept)
            if side:
                sides.add(side)
        for text in fields.concept_texts(site):
            side = lexicon.text.laterality_of(text)
            if side:
                sides.add(side)
    if "bilateral" in sides or {"left", "right"} <= sides:
        return "bilateral"
    return sides.pop() if len(sides) == 1 else None


def site_texts(resource: Mapping[str, Any]) -> tuple[str, ...]:
    """Every text of ``bodySite`` (a list on Condition, one CodeableConcept on Observation)."""
    if not resource.get("bodySite"):
        return ()
    sites = list(fields.objects(resource.get("bodySite")))
    single = fields.mapping(resource.get("bodySite"))
    if single is not None:
        sites.append(single)
    return tuple(t for site in sites for t in fields.concept_texts(site))


def _combine(*sides: str | None) -> str | None:
    present = {s for s in sides if s}
    if "bilateral" in present or {"left", "right"} <= present:
        return "bilateral"
    return present.pop() if len(present) == 1 else None


def _times(
    resource: Mapping[str, Any], names: tuple[str, ...], now: datetime
) -> tuple[When, bool, When | None]:
    """``(onset, onset known, documented)`` from one reading of each recorded time.

    The onset is the first readable time among ``names`` (safety note 1: none means "any moment
    up to now", and says so); "documented" is the latest of them all (onset and record, effective
    and issued), which the card's "documented ... ago" and the baseline look-back use. Each field
    is parsed once: most records carry two times and this runs for every finding.
    """
    first: When | None = None
    latest: When | None = None
    for name in names:
        value = resource.get(name)
        if value is None:
            continue
        if name.endswith("Period"):
            period = fields.mapping(value)
            when = parse(period.get("start")) if period else None
        else:
            when = parse(value)
        if when is None:
            continue
        if first is None:
            first = when
        if latest is None or when.latest > latest.latest:
            latest = when
    if first is None:
        return When.unknown(now), False, None
    return first, True, latest


def _resolved(resource: Mapping[str, Any], now: datetime) -> When | None:
    """When a Condition stopped: its abatement, else "some time up to now" when it is marked
    resolved, inactive or in remission; ``None`` while it is active (§3.5)."""
    if not resource.keys().isdisjoint(_ABATEMENT_FIELDS):
        abatement = [key for key in _ABATEMENT_FIELDS if key in resource]
        abated = fields.first_time(resource, "abatementDateTime", "abatementPeriod")
        if abated is None and fields.mapping(resource.get("abatementPeriod")) is not None:
            abated = fields.period_end(resource, "abatementPeriod")
        if abated is not None:
            return abated
        if any(resource.get(key) not in (None, False) for key in abatement):
            return When.unknown(now)
    if fields.status_code(resource, "clinicalStatus") in _RESOLVED_STATUS:
        return When.unknown(now)
    return None


def _coded_findings(
    resource: Mapping[str, Any], concept: Any, lexicon: Lexicon
) -> list[tuple[str, str | None, str]]:
    """``(concept, implied laterality, label)`` for each finding concept coded in ``concept``."""
    out = []
    for match in lexicon.codes.match_concept(concept):
        if match.concept in FINDING_CONCEPTS:
            label = fields.label_of(concept, match.code.display)
            out.append((match.concept, match.code.laterality, label))
    return out


def _text_findings(texts: Iterable[str], lexicon: Lexicon) -> list[tuple[str, str | None, str]]:
    out: list[tuple[str, str | None, str]] = []
    seen: set[str] = set()
    for text in texts:
        for hit in lexicon.text.find_concepts(text):
            if hit.concept in FINDING_CONCEPTS and hit.concept not in seen:
                seen.add(hit.concept)
                out.append((hit.concept, hit.laterality, text))
    return out


def from_condition(resource: Mapping[str, Any], lexicon: Lexicon, now: datetime) -> list[Finding]:
    """Findings of one Condition (none when it is excluded or not about a known concept)."""
    if fields.status_code(resource, "verificationStatus") in _EXCLUDED_VERIFICATION:
        return []
    code = resource.get("code")
    coded = _coded_findings(resource, code, lexicon)
    from_text = not coded
    found = coded or _text_findings(
        [*fields.concept_texts(code), *fields.note_texts(resource)], lexicon
    )
    if not found:
        return []
    when, known, documented = _times(resource, _CONDITION_TIMES, now)
    site = _body_site_laterality(resource, lexicon)
    text_side = lexicon.text.laterality_of(" ".join(fields.concept_texts(code)))
    ref = fields.ref_of(resource)
    resolved = _resolved(resource, now)
    sites = site_texts(resource)
    return [
        Finding(
            concept=concept,
            when=when,
            source=ref,
            label=label,
            laterality=_combine(implied, site, text_side),
            from_text=from_text,
            time_known=known,
            documented=documented,
            condition=True,
            resolved=resolved,
            sites=sites,
        )
        for concept, implied, label in found
    ]


def _celsius(value: float, unit: str) -> float | None:
    u = unit.strip().lower()
    if u in {"cel", "°c", "c", "degc", "celsius"}:
        return value
    if u in {"[degf]", "°f", "f", "degf", "fahrenheit"}:
        return (value - 32.0) * 5.0 / 9.0
    return None


def _per_nanolitre(value: float, unit: str) -> float | None:
    u = unit.strip().lower().replace(" ", "")
    if u in {"10*9/l", "10^9/l", "10*3/ul", "10^3/ul", "k/ul", "x10e3/ul", "/nl", "10*3/mm3"}:
        return value
    if u in {"/ul", "/mm3", "1/ul"}:
        return value / 1000.0
    return None


def _crp_mg_per_litre(value: float, unit: str) -> float | None:
    u = unit.strip().lower()
    if u == "mg/l":
        return value
    if u == "mg/dl":
        return value * 10.0
    return None


def _above_reference(resource: Mapping[str, Any], value: float) -> bool:
    for rng in fields.objects(resource.get("referenceRange")):
        high = fields.mapping(rng.get("high"))
        if high and isinstance(high.get("value"), int | float) and value > float(high["value"]):
            return True
    return False


def _value_negated(resource: Mapping[str, Any], lexicon: Lexicon) -> bool:
    """Whether the Observation's own value says the sign is absent (§3.4: coded data win).

    ``valueBoolean`` false, a coded absent/negative/no value, the interpretation "normal" for a
    sign, or a value text that says so.
    """
    if resource.get("valueBoolean") is False:
        return True
    if resource.get("interpretation") and fields.interpretation_codes(resource) & _NORMAL_FLAGS:
        return True
    coded = resource.get("valueCodeableConcept")
    texts = []
    if coded is not None:
        if lexicon.codes.has(fields.mapping(coded), NEGATIVE_VALUE):
            return True
        texts = fields.concept_texts(coded)
    if isinstance(resource.get("valueString"), str):
        texts.append(resource["valueString"])
    return any(t.strip().lower() in _NEGATIVE_VALUES for t in texts)


def _glucose_mg_per_dl(value: float, unit: str) -> float | None:
    u = unit.strip().lower()
    if u == "mg/dl":
        return value
    if u in {"mmol/l", "mmol/liter"}:
        return value * 18.0
    return None


def _measurement(
    resource: Mapping[str, Any], concept: str, settings: ClinicalSettings
) -> tuple[str, str, float | None] | None:
    """``(finding concept, value text, amount)`` for a measurement the rules use.

    Temperature, WBC, CRP and ESR count only when abnormal; INR, platelets, glucose (in mg/dL)
    and HbA1c are always kept with their amount, because the rules compare them themselves.
    """
    q = fields.quantity(resource)
    # Only the infection markers read the interpretation flags; most measurements need not.
    flagged_high = concept in _FLAGGED_MARKERS and bool(
        fields.interpretation_codes(resource) & _HIGH_FLAGS
    )
    if concept == "body_temperature" and q:
        celsius = _celsius(*q)
        if celsius is not None and celsius >= settings.fever_celsius:
            return "fever", f"{q[0]:g} {q[1]}", celsius
    elif concept == "wbc" and q:
        count = _per_nanolitre(*q)
        if flagged_high or (count is not None and count > settings.wbc_per_nanolitre):
            return INFECTION_MARKER, f"WBC {q[0]:g} {q[1]}", count
    elif concept == "crp":
        crp = _crp_mg_per_litre(*q) if q else None
        if flagged_high or (crp is not None and crp > settings.crp_mg_per_litre):
            return INFECTION_MARKER, f"CRP {q[0]:g} {q[1]}" if q else "CRP raised", crp
    elif concept == "esr" and (
        flagged_high or (q is not None and _above_reference(resource, q[0]))
    ):
        return INFECTION_MARKER, f"ESR {q[0]:g} {q[1]}" if q else "ESR raised", None
    elif concept == "inr" and q:
        return "inr", f"INR {q[0]:g}", q[0]
    elif concept == "platelets" and q:
        return "platelets", f"platelets {q[0]:g} {q[1]}", _per_nanolitre(*q)
    elif concept == "glucose" and q:
        mg_dl = _glucose_mg_per_dl(*q)
        if mg_dl is not None:
            return "glucose", f"{q[0]:g} {q[1]}", mg_dl
    elif concept == "hba1c" and q:
        return "hba1c", f"HbA1c {q[0]:g} {q[1]}", q[0]
    return None


def from_observation(
    resource: Mapping[str, Any], lexicon: Lexicon, settings: ClinicalSettings, now: datetime
) -> tuple[list[Finding], list[PainScore]]:
    """Findings and pain scores of one Observation.

    Most Observations of a long admission are normal vitals and labs that yield nothing, so the
    cheap questions come first (status, code, value) and the time, source and laterality are
    read only for an Observation that does yield a finding.
    """
    if fields.status_code(resource, "status") in _EXCLUDED_OBSERVATION:
        return [], []
    code = resource.get("code")
    names = {m.concept for m in lexicon.codes.match_concept(code)}
    if "pain_score" in names:
        q = fields.quantity(resource)
        if q is None and isinstance(resource.get("valueInteger"), int):
            q = (float(resource["valueInteger"]), "")
        if q is None:
            return [], []
        when, _known, _ = _times(resource, _OBSERVATION_TIMES, now)
        sites = site_texts(resource)
        leg = bool(sites) and names_any(sites, settings.lower_limb_words)
        return [], [PainScore(when, q[0], fields.ref_of(resource), lower_limb=leg)]
    for name in MEASURED_CONCEPTS:
        if name in names:
            measured = _measurement(resource, name, settings)
            if measured is None:
                return [], []
            concept, value, amount = measured
            when, known, documented = _times(resource, _OBSERVATION_TIMES, now)
            label = fields.label_of(code, name)
            finding = Finding(
                concept,
                when,
                fields.ref_of(resource),
                label,
                value=value,
                time_known=known,
                amount=amount,
                documented=documented,
            )
            return [finding], []
    if _value_negated(resource, lexicon):
        return [], []
    found = _coded_findings(resource, code, lexicon) or _coded_findings(
        resource, resource.get("valueCodeableConcept"), lexicon
    )
    from_text = not found
    if not found:
        texts = [
            *fields.concept_texts(code),
            *fields.concept_texts(resource.get("valueCodeableConcept")),
            *fields.note_texts(resource),
        ]
        if isinstance(resource.get("valueString"), str):
            texts.append(resource["valueString"])
        found = _text_findings(texts, lexicon)
        if not found:
            return [], []
    when, known, documented = _times(resource, _OBSERVATION_TIMES, now)
    ref = fields.ref_of(resource)
    site = _body_site_laterality(resource, lexicon)
    text_side = lexicon.text.laterality_of(" ".join(fields.concept_texts(code)))
    sites = site_texts(resource)
    return [
        Finding(
            concept=concept,
            when=when,
            source=ref,
            label=label,
            laterality=_combine(implied, site, text_side),
            from_text=from_text,
            time_known=known,
            documented=documented,
            sites=sites,
        )
        for concept, implied, label in found
    ], []


def collect(
    conditions: Iterable[Mapping[str, Any]],
    observations: Iterable[Mapping[str, Any]],
    lexicon: Lexicon,
    settings: ClinicalSettings,
    now: datetime,
) -> Findings:
    """All findings of a record, sorted by time then source so the output never depends on order."""
    found: list[Finding] = []
    scores: list[PainScore] = []
    for condition in conditions:
        found.extend(from_condition(condition, lexicon, now))
    for observation in observations:
        f, s = from_observation(observation, lexicon, settings, now)
        found.extend(f)
        scores.extend(s)
    found.sort(key=lambda f: (f.when.earliest, f.when.latest, f.source, f.concept))
    scores.sort(key=lambda s: (s.when.earliest, s.source))
    return Findings(tuple(found), tuple(scores))
