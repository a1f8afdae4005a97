"""Changing a rendered card for care already under way or a suggestion already accepted.

The card itself stays (its evidence is still there); only the suggestions that would repeat
what is done are taken out, and a short section says why, in content words filled with coded
facts (status word, time, ``Type/id``). Nothing from the record's free text is copied in, so the
markdown needs no escaping beyond what the renderer already did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from service.clinical.timing import When
from service.content import Content
from service.outcomes.existing import UnderWay
from service.outcomes.policy import OutcomePolicy
from service.render import format_time

HOLD_KIND = "hold_order"
OTHER_KIND = "other"


def suggestion_kinds(content: Content) -> dict[str, str]:
    """Suggestion label -> content key (labels are unique, checked when the policy loads)."""
    return {template.label: key for key, template in content.suggestions.items()}


def kind_of(suggestion: Mapping[str, Any], kinds: Mapping[str, str]) -> str:
    """The content key a rendered suggestion came from (holds and unknowns have their own)."""
    label = suggestion.get("label")
    if isinstance(label, str) and label in kinds:
        return kinds[label]
    actions = suggestion.get("actions") or ()
    if any(isinstance(a, dict) and a.get("type") == "update" for a in actions):
        return HOLD_KIND
    return OTHER_KIND


def _line_for(under_way: UnderWay, policy: OutcomePolicy, unknown: str) -> str:
    reference = under_way.resource_type
    if under_way.resource_id is not None:
        reference = f"`{under_way.resource_type}/{under_way.resource_id}`"
    return under_way.care.line.format(
        state=policy.states[under_way.resource_type][under_way.status],
        time=format_time(When.at(under_way.at), unknown),
        reference=reference,
    )


def _insert_section(detail: str, heading: str, lines: list[str]) -> str:
    section = "\n".join([f"**{heading}**", *(f"- {line}" for line in lines)])
    marker = "\n**Sources"
    at = detail.find(marker)
    if at == -1:
        return f"{detail}\n\n{section}"
    return f"{detail[:at]}\n{section}\n{detail[at:]}"


def rewrite(
    card: dict[str, Any],
    *,
    under_way: Iterable[UnderWay],
    accepted: Mapping[str, float],
    kinds: Mapping[str, str],
    content: Content,
    policy: OutcomePolicy,
) -> dict[str, Any]:
    """``card`` without the suggestions care under way or earlier acceptance makes redundant.

    ``accepted`` maps suggestion kinds the clinician already accepted for this patient to when.
    Returns the card unchanged (the same object) when nothing applies.
    """
    suggestions = card.get("suggestions")
    if not suggestions:
        return card
    unknown = content.wording.phrases.get("time_unknown", "time not recorded")
    lines: list[str] = []
    dropped: set[str] = set()
    for item in under_way:
        replaced = set(item.care.replaces)
        if any(kind_of(s, kinds) in replaced for s in suggestions):
            lines.append(_line_for(item, policy, unknown))
            dropped |= replaced
    for suggestion in suggestions:
        kind = kind_of(suggestion, kinds)
        if kind in accepted and kind not in dropped and kind in content.suggestions:
            when = format_time(When.at(datetime.fromtimestamp(accepted[kind], UTC)), unknown)
            label = content.suggestions[kind].label
            lines.append(policy.accepted_line.format(time=when, label=label))
            dropped.add(kind)
    if not lines:
        return card
    kept = [s for s in suggestions if kind_of(s, kinds) not in dropped]
    changed = {k: v for k, v in card.items() if k not in ("suggestions", "selectionBehavior")}
    if kept:
        changed["suggestions"] = kept
        changed["selectionBehavior"] = card.get("selectionBehavior", "any")
    changed["detail"] = _insert_section(str(card.get("detail", "")), policy.heading, lines)
    return changed
