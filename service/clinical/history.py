"""Baseline and history: which earlier records may keep a new finding from counting (§3.1).

An old record must never silence a new red flag (clinical-spec §3.1, amended 2026-12-01). So:

- Only a *Condition* can be baseline, and only when it started before the puncture, was still
  active at the puncture (no abatement at or before it, not resolved/inactive/remission) and
  was started or recorded at most ``baseline_lookback_days`` before it. Measurements (vital
  signs, labs, neuro-check rows) are never baseline for one another: a fever in 1991 does not
  make a fever after today's epidural "known".
- A Condition that had abated before the puncture is *history*: neither baseline nor a finding
  for that episode, whatever its ``recordedDate`` ("history of cauda equina syndrome", resolved
  in 2015, entered today).

The time predicates themselves (new, after the block, inside a window) stay in
:mod:`service.clinical.scope`; this module only decides which records feed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.clinical.findings import Findings
from service.clinical.model import Episode, Finding
from service.clinical.scope import Scope
from service.clinical.settings import ClinicalSettings


def is_baseline(finding: Finding, episode: Episode, settings: ClinicalSettings) -> bool:
    """Whether ``finding`` describes the patient's state at this episode's puncture."""
    if not finding.condition:
        return False
    punctured = episode.punctured
    if finding.when.latest >= punctured.earliest - settings.new_finding_tolerance:
        return False
    if finding.resolved is not None and finding.resolved.earliest <= punctured.latest:
        return False  # abated (or resolved at an unknown time) by the puncture
    documented = finding.documented or finding.when
    return documented.latest >= punctured.earliest - settings.baseline_lookback


def baseline(
    findings: Sequence[Finding], episode: Episode, settings: ClinicalSettings
) -> list[Finding]:
    """The narrow baseline of one episode."""
    return [f for f in findings if f.condition and is_baseline(f, episode, settings)]


def is_history(finding: Finding, episode: Episode) -> bool:
    """A Condition that certainly abated before this episode's puncture."""
    return finding.resolved is not None and finding.resolved.latest < episode.punctured.earliest


def for_episode(findings: Findings, episode: Episode) -> Findings:
    """The record as one episode's rules see it: its history Conditions left out."""
    if not any(is_history(f, episode) for f in findings.conditions):
        return findings
    kept = tuple(f for f in findings.findings if not is_history(f, episode))
    if len(kept) == len(findings.findings):
        return findings
    return Findings(kept, findings.pain_scores)


def scope_for(
    episode: Episode, findings: Findings, settings: ClinicalSettings, now: datetime
) -> Scope:
    """A :class:`Scope` whose baseline is the narrow baseline of ``episode``.

    Every rule of an episode asks for it, so it is worked out once per episode and record.
    """
    key = ("baseline", id(episode))
    known = findings.per_episode.get(key)
    if known is None or known[0] is not episode or known[1] is not settings:
        known = (episode, settings, baseline(findings.conditions, episode, settings))
        findings.per_episode[key] = known
    return Scope(episode, settings, now, known[2])
