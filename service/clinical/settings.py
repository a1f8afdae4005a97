"""Typed view of ``cards/settings.yaml``: the windows and thresholds the rules use.

Durations are converted to ``timedelta`` once at startup so rules never juggle units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from service.clinical import model


@dataclass(frozen=True)
class ClinicalSettings:
    """Every tunable clinical number, with the unit in its name or type."""

    expected_block: Mapping[str, timedelta]
    new_finding_tolerance: timedelta
    steroid_with_procedure: timedelta
    presumed_catheter: timedelta
    baseline_lookback: timedelta
    current_finding: Mapping[str, timedelta]
    """Currency per rule id (``default`` for rules not listed); see :meth:`current_for`."""
    lower_limb_words: tuple[str, ...]
    upper_limb_words: tuple[str, ...]
    laterality_merge: timedelta
    unknown_laterality_weakness_is_red_flag: bool
    include_spinal_and_lumbar_puncture: bool
    hematoma_window: timedelta
    cauda_equina_window: timedelta
    abscess_window: timedelta
    abscess_start: timedelta
    cord_infarct_window: timedelta
    persistence_window: timedelta
    retention_after_block: timedelta
    monitoring_after_removal: timedelta
    monitoring_after_removal_warfarin: timedelta
    fever_celsius: float
    wbc_per_nanolitre: float
    crp_mg_per_litre: float
    pain_score_high: float
    pain_score_rise: float
    antithrombotic_lookback: timedelta
    antithrombotic_after_removal: timedelta
    heparin_days_needing_platelets: timedelta
    platelets_before: timedelta
    inr_before_removal: timedelta
    inr_removal_max: float
    inr_in_situ_max: float
    thrombolytic_after_puncture: timedelta
    red_flags_recent: timedelta
    glucose_window: timedelta
    glucose_window_insulin: timedelta
    glucose_high_mg_per_dl: float
    hba1c_diabetes_percent: float
    hba1c_poor_control_percent: float
    esi_minimum_interval: timedelta
    esi_sessions_per_year: int
    esi_year: timedelta
    esi_repeat_relevant: timedelta
    headache_window: timedelta
    headache_atypical_window: timedelta
    site_soreness_enabled: bool
    site_soreness_window: timedelta

    @classmethod
    def from_content(cls, doc: Mapping[str, Any]) -> ClinicalSettings:
        """Build from the parsed, schema-validated settings document."""
        block = doc["expected_block"]
        win = doc["windows"]
        thr = doc["thresholds"]
        at = doc["antithrombotic"]
        sg = doc["steroid_glucose"]
        return cls(
            expected_block={
                model.CATHETER: hours(block["catheter_hours_after_last_local_anaesthetic"]),
                model.ESI: hours(block["esi_hours_after_puncture"]),
                model.SINGLE_SHOT: hours(block["single_shot_hours_after_puncture"]),
                model.NEURAXIAL_OTHER: hours(block["neuraxial_other_hours_after_puncture"]),
            },
            new_finding_tolerance=hours(doc["new_finding_tolerance_hours"]),
            steroid_with_procedure=hours(doc["steroid_with_procedure_hours"]),
            presumed_catheter=hours(doc["presumed_catheter_hours"]),
            baseline_lookback=days(doc["baseline_lookback_days"]),
            current_finding={
                _rule_id(key): hours(value) for key, value in doc["current_finding_hours"].items()
            },
            lower_limb_words=tuple(doc["limb_words"]["lower_limb"]),
            upper_limb_words=tuple(doc["limb_words"]["upper_limb"]),
            laterality_merge=hours(doc["laterality_merge_hours"]),
            unknown_laterality_weakness_is_red_flag=bool(
                doc["unknown_laterality_weakness_is_red_flag"]
            ),
            include_spinal_and_lumbar_puncture=bool(doc["include_spinal_and_lumbar_puncture"]),
            hematoma_window=days(win["hematoma_days_after_reference"]),
            cauda_equina_window=days(win["cauda_equina_days"]),
            abscess_window=days(win["abscess_days"]),
            abscess_start=hours(win["abscess_start_hours"]),
            cord_infarct_window=hours(win["cord_infarct_hours_after_esi"]),
            persistence_window=days(win["persistence_days"]),
            retention_after_block=hours(win["retention_after_block_hours"]),
            monitoring_after_removal=hours(win["monitoring_after_removal_hours"]),
            monitoring_after_removal_warfarin=hours(win["monitoring_after_removal_hours_warfarin"]),
            fever_celsius=float(thr["fever_celsius"]),
            wbc_per_nanolitre=float(thr["wbc_per_nanolitre"]),
            crp_mg_per_litre=float(thr["crp_mg_per_litre"]),
            pain_score_high=float(thr["pain_score_high"]),
            pain_score_rise=float(thr["pain_score_rise"]),
            antithrombotic_lookback=days(at["lookback_days_before_puncture"]),
            antithrombotic_after_removal=hours(at["hours_after_removal"]),
            heparin_days_needing_platelets=days(at["heparin_days_needing_platelets"]),
            platelets_before=hours(at["platelets_before_hours"]),
            inr_before_removal=hours(at["inr_before_removal_hours"]),
            inr_removal_max=float(at["inr_removal_max"]),
            inr_in_situ_max=float(at["inr_in_situ_max"]),
            thrombolytic_after_puncture=days(at["thrombolytic_after_puncture_days"]),
            red_flags_recent=days(doc["red_flags_recent_days"]),
            glucose_window=days(sg["days_after_steroid"]),
            glucose_window_insulin=days(sg["days_after_steroid_insulin"]),
            glucose_high_mg_per_dl=float(sg["glucose_high_mg_per_dl"]),
            hba1c_diabetes_percent=float(sg["hba1c_diabetes_percent"]),
            hba1c_poor_control_percent=float(sg["hba1c_poor_control_percent"]),
            esi_minimum_interval=days(doc["repeat_esi"]["minimum_interval_days"]),
            esi_sessions_per_year=int(doc["repeat_esi"]["sessions_per_region_per_year"]),
            esi_year=days(doc["repeat_esi"]["year_days"]),
            esi_repeat_relevant=days(doc["repeat_esi"]["relevant_days"]),
            headache_window=days(doc["headache"]["days_after_puncture"]),
            headache_atypical_window=days(doc["headache"]["atypical_days_after_puncture"]),
            site_soreness_enabled=bool(doc["site_soreness"]["enabled"]),
            site_soreness_window=days(doc["site_soreness"]["days_after_puncture"]),
        )

    def current_for(self, rule: str) -> timedelta:
        """How long a finding stays current for ``rule`` (clinical-spec §3.5)."""
        return self.current_finding.get(rule, self.current_finding["default"])


def _rule_id(key: str) -> str:
    """``r05`` (a settings key) -> ``R-05`` (a rule id); ``default`` stays ``default``."""
    return f"R-{key[1:]}" if key.startswith("r") and key[1:].isdigit() else key


def hours(value: Any) -> timedelta:
    """A duration given in hours."""
    return timedelta(hours=float(value))


def days(value: Any) -> timedelta:
    """A duration given in days."""
    return timedelta(days=float(value))
