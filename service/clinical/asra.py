"""The ASRA antithrombotic interval table (``cards/asra.yaml``) and dose classification.

ASRA's neuraxial guidance is a table: for each drug and dose class, how long before a puncture or
catheter removal the last dose must be, whether the drug may be given with a catheter in place,
and how long after puncture or removal the next dose must wait (clinical-spec Table 2.1, the
more conservative value where the 4th and 5th editions differ). This module turns the table into
lookups and decides which row applies to a medication event: by RxNorm SCD first, then by
ingredient name and written strength; an unknown dose class is the high dose (§3.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from service.clinical.model import MedicationEvent
from service.clinical.text import words

LOW = "low"
HIGH = "high"


@dataclass(frozen=True)
class Interval:
    """One row of the table: a drug at one dose class."""

    before: timedelta
    catheter_allowed: bool
    after_puncture: timedelta
    after_removal: timedelta
    note: str | None = None
    before_removal: timedelta | None = None
    """Last dose to catheter removal, where it differs from ``before`` (puncture)."""


@dataclass(frozen=True)
class DrugRule:
    """A drug with its intervals per dose class."""

    key: str
    names: tuple[str, ...]
    high: Interval
    low: Interval | None = None
    low_dose_max_mg: float | None = None
    low_dose_max_units: float | None = None


@dataclass(frozen=True)
class Exposure:
    """A medication event matched to its table row."""

    drug: DrugRule
    dose_class: str
    interval: Interval
    dose_class_known: bool
    twice_daily: bool


def _interval(row: Mapping[str, Any]) -> Interval:
    return Interval(
        before=timedelta(hours=float(row["before"])),
        catheter_allowed=bool(row["catheter"]),
        after_puncture=timedelta(hours=float(row["after_puncture"])),
        after_removal=timedelta(hours=float(row["after_removal"])),
        note=row.get("note"),
        before_removal=(
            timedelta(hours=float(row["before_removal"])) if "before_removal" in row else None
        ),
    )


@dataclass(frozen=True)
class AsraTable:
    """All drugs of the table and the SCDs whose dose class is known."""

    drugs: Mapping[str, DrugRule]
    dose_classes: Mapping[str, tuple[str, str]]
    intravenous_words: frozenset[str] = frozenset()

    @classmethod
    def from_content(cls, doc: Mapping[str, Any]) -> AsraTable:
        """Build from the parsed, schema-validated ``asra.yaml``."""
        drugs = {
            key: DrugRule(
                key=key,
                names=tuple(n.lower() for n in entry["names"]),
                high=_interval(entry["high"]),
                low=_interval(entry["low"]) if "low" in entry else None,
                low_dose_max_mg=entry.get("low_dose_max_mg"),
                low_dose_max_units=entry.get("low_dose_max_units"),
            )
            for key, entry in doc["drugs"].items()
        }
        classes = {code: (pair[0], pair[1]) for code, pair in doc["dose_classes"].items()}
        return cls(drugs, classes, frozenset(w.lower() for w in doc["intravenous_words"]))

    @property
    def thrombolytic_names(self) -> tuple[str, ...]:
        """Names of the thrombolytic drugs (recognised by name only)."""
        rule = self.drugs.get("thrombolytic")
        return rule.names if rule else ()

    def _drug_by_name(self, text: str) -> DrugRule | None:
        tokens = words(text)
        token_set = set(tokens)
        heparin = "heparin" in token_set
        for rule in self.drugs.values():
            if rule.key.startswith("heparin_"):
                continue
            if any(name in token_set for name in rule.names):
                return rule
        if heparin:
            iv = token_set & self.intravenous_words
            key = "heparin_intravenous" if iv else "heparin_subcutaneous"
            return self.drugs.get(key)
        return None

    def _dose_class_from_strength(self, rule: DrugRule, event: MedicationEvent) -> str | None:
        if event.dose is None or rule.low is None:
            return None
        value, unit = event.dose
        unit = unit.lower()
        if unit == "mg/kg":
            return HIGH  # weight-based dosing is treatment dosing, whatever the number
        if unit == "mg" and rule.low_dose_max_mg is not None:
            return LOW if value <= rule.low_dose_max_mg else HIGH
        units = {"u", "unit", "units", "iu", "[iu]", "[u]"}
        if unit in units and rule.low_dose_max_units is not None:
            return LOW if value <= rule.low_dose_max_units else HIGH
        return None

    def classify(self, event: MedicationEvent) -> Exposure | None:
        """The table row for an antithrombotic event, or ``None`` when the drug is not in it."""
        for code in event.codes:
            known = self.dose_classes.get(code)
            if known is not None:
                rule = self.drugs[known[0]]
                return self._exposure(rule, known[1], event, known=True)
        named = self._drug_by_name(event.text)
        if named is None:
            return None
        dose_class = self._dose_class_from_strength(named, event)
        return self._exposure(named, dose_class or HIGH, event, known=dose_class is not None)

    def _exposure(
        self, rule: DrugRule, dose_class: str, event: MedicationEvent, *, known: bool
    ) -> Exposure:
        interval = rule.low if dose_class == LOW and rule.low is not None else rule.high
        twice_daily = event.per_day is not None and event.per_day >= 2
        if dose_class == LOW and twice_daily and rule.key == "enoxaparin":
            # ASRA4: twice-daily low-dose LMWH is not given with a catheter in place.
            interval = replace(interval, catheter_allowed=False)
        return Exposure(rule, dose_class if rule.low else HIGH, interval, known, twice_daily)
