"""The building blocks of the workbench's "why" panel: conditions, the values found, their checks.

Each rule's entry lists its conditions (clinical-spec §3.3) as the engine evaluates them in
``service/clinical/``: the same :class:`~service.clinical.scope.Scope` (with the episode's
narrow baseline, :func:`~service.clinical.history.scope_for`), the same findings (history left
out, :func:`~service.clinical.history.for_episode`), the same currency test and the same
settings. A condition is *met* by the engine's own selection (``Scope.select`` and the rules'
public helpers); its ``found`` lines list every candidate value with each check it passed or
failed, so a reviewer sees the near miss: the weakness on one side only, the fever a day too
early, the dose just outside its ASRA interval.

Conditions are *required* unless marked ``oneOf``: an entry's conditions say it fires when every
required one is met and, if it has alternatives, at least one of them (:func:`verdict`). Whether
a rule fired is still read from the engine's matches (``service/workbench_explain.py``); the
tests check that the two always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.clinical import rules
from service.clinical.currency import Currency
from service.clinical.findings import Findings
from service.clinical.model import Episode, Finding, MedicationEvent
from service.clinical.scope import Scope
from service.clinical.settings import ClinicalSettings
from service.clinical.timing import When, format_delta
from service.content import Content
from service.render import format_time

Line = dict[str, Any]
Condition = dict[str, Any]
_UNKNOWN = "time not recorded"


@dataclass(frozen=True)
class Why:
    """What the rules were given for one episode, so every explainer asks the same questions."""

    episode: Episode
    findings: Findings
    """The record as this episode's rules see it (history Conditions left out)."""
    scope: Scope
    """The rules' time predicates, with this episode's narrow baseline."""
    meds: tuple[MedicationEvent, ...]
    content: Content
    now: datetime

    @property
    def settings(self) -> ClinicalSettings:
        return self.content.settings


@dataclass(frozen=True)
class Entry:
    """One rule pattern's conditions; ``patterns`` are the match patterns that mean it fired."""

    rule: str
    pattern: str
    title: str
    statement: str
    conditions: tuple[Condition, ...]
    patterns: frozenset[str] = frozenset()

    @property
    def fired_by(self) -> frozenset[str]:
        return self.patterns or frozenset({self.pattern})


def when_text(finding: Finding) -> str:
    """A finding's time as the cards show it."""
    return format_time(finding.when, _UNKNOWN)


def time_text(moment: datetime | When | None, unknown: str = _UNKNOWN) -> str:
    """An instant (or a partial span) as the cards show it."""
    if isinstance(moment, datetime):
        moment = When.at(moment)
    return format_time(moment, unknown)


def hours_text(delta: timedelta) -> str:
    """A duration as the cards write it ("1.5 h", "7 d")."""
    return format_delta(delta.total_seconds() / 3600.0)


_LIMBS = frozenset((*rules.PERSISTING, "paraplegia"))
"""Concepts whose side the rules read: only for them is a missing side worth saying."""


def finding_text(f: Finding) -> str:
    """What was recorded, its value, its side (where the rules read one) and its time."""
    side = f.laterality or ("side not recorded" if f.concept in _LIMBS else "")
    value = f" {f.value}" if f.value else ""
    return f"{f.label}{value}{f' ({side})' if side else ''}, {when_text(f)}"


def line(resource: str, text: str, checks: Mapping[str, bool]) -> Line:
    """One value found, with the checks the rule applies to it."""
    return {
        "resource": resource,
        "text": text,
        "checks": dict(checks),
        "passed": all(checks.values()),
    }


def condition(
    text: str,
    met: bool,
    found: Iterable[Line] = (),
    note: str = "",
    *,
    one_of: bool = False,
) -> Condition:
    """A condition of a rule: its statement, whether it holds, and the values behind it."""
    # One record can carry two concepts the rule reads (a postural headache is a headache too):
    # the same line twice says nothing more.
    unique = {(f["resource"], f["text"], tuple(f["checks"].items())): f for f in found}
    out: Condition = {"text": text, "met": bool(met), "note": note, "found": list(unique.values())}
    if one_of:
        out["oneOf"] = True
    return out


def verdict(conditions: Sequence[Condition]) -> bool:
    """Whether the conditions say the rule fires: every required one, and one alternative."""
    required = [c["met"] for c in conditions if not c.get("oneOf")]
    alternatives = [c["met"] for c in conditions if c.get("oneOf")]
    return all(required) and (any(alternatives) if alternatives else True)


def window_lines(
    why: Why,
    findings: Iterable[Finding],
    *,
    after_block: bool,
    length: timedelta,
    from_reference: bool = False,
    extra: Callable[[Finding], Mapping[str, bool]] | None = None,
) -> list[Line]:
    """Each finding with the checks of ``Scope.select`` (new, after the block, in the window)."""
    s = why.scope
    out = []
    for f in findings:
        checks = {"new": s.new(f)}
        if after_block:
            checks["afterBlock"] = s.after_block(f)
        checks["inWindow"] = s.by(f, length, from_reference=from_reference)
        if extra is not None:
            checks.update(extra(f))
        out.append(line(str(f.source), finding_text(f), checks))
    return out


def window(
    why: Why,
    text: str,
    concepts: Sequence[str],
    *,
    after_block: bool,
    length: timedelta,
    from_reference: bool = False,
    one_of: bool = False,
) -> tuple[Condition, list[Finding]]:
    """A windowed condition and the findings the rule selects for it (``Scope.select``)."""
    candidates = why.findings.of(*concepts)
    selected = why.scope.select(
        candidates, after_block=after_block, length=length, from_reference=from_reference
    )
    parts = [text.format(window=hours_text(length))]
    if after_block:
        block = why.episode.block_ends
        parts.append(f"after the expected block end ({time_text(block, 'infusion running')})")
    lines = window_lines(
        why, candidates, after_block=after_block, length=length, from_reference=from_reference
    )
    return condition("; ".join(parts), bool(selected), lines, one_of=one_of), selected


def side_condition(
    text: str, considered: Sequence[Finding], flagged: Sequence[Finding]
) -> Condition:
    """Whether the findings show both sides (the rules' ``bilateral``), naming each one's side."""
    if flagged and all(f.laterality is None for f in flagged):
        note = "side not recorded, which counts as a red flag"
    elif flagged:
        note = "both sides affected"
    elif considered:
        note = "only one side recorded"
    else:
        note = ""
    chosen = {id(f) for f in flagged}
    lines = [line(str(f.source), finding_text(f), {"counts": id(f) in chosen}) for f in considered]
    return condition(text, bool(flagged), lines, note)


def current(
    why: Why, rule: str, evidence: Sequence[Finding], window_end: datetime | None
) -> Condition:
    """The currency test (clinical-spec §3.5): one finding of the pattern still current now."""
    cur = Currency.of(rule, why.settings, why.now)
    limit = hours_text(cur.limit)
    end = f", or an active Condition up to {limit} after the window ends ({time_text(window_end)})"
    text = f"Still current: documented in the last {limit}" + (end if window_end else "")
    lines = []
    for f in evidence:
        ago = f.documented_hours_ago(why.now)
        shown = f"documented {format_delta(ago)} ago" if ago is not None else "no time recorded"
        lines.append(
            line(
                str(f.source),
                f"{finding_text(f)}; {shown}",
                {"current": cur.current(f, window_end)},
            )
        )
    note = "" if evidence else "no finding to be current"
    return condition(text, cur.any(evidence, window_end), lines, note)


def plain(text: str, met: bool, note: str = "", *, one_of: bool = False) -> Condition:
    """A condition on the episode itself (its class, its catheter), with no values listed."""
    return condition(text, met, (), note, one_of=one_of)


def statement(function: Callable[..., Any]) -> str:
    """The "When ... then ..." paragraph of a rule's docstring."""
    doc = function.__doc__ or ""
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
    return next(
        (p for p in paragraphs if p.startswith("When")), paragraphs[0] if paragraphs else ""
    )


def headline(content: Content, pattern: str, default: str = "") -> str:
    """The card's headline for a pattern (its title in the panel)."""
    card = content.wording.cards.get(pattern)
    return card.headline if card is not None else (default or pattern)
