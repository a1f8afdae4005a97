"""Changing a rendered card for care already under way or a suggestion already accepted.

The card itself stays (its evidence is still there); only the suggestions that would repeat
what is done are taken out, and a short section says why, in content words filled with coded
facts (status word, time, ``Type/id``). Nothing from the record's free text is copied in, so the
markdown needs no escaping beyond what the renderer already did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from service.clinical.timing import When
from service.content import Content
from service.outcomes.existing import UnderWay
from service.outcomes.policy import OutcomePolicy
from service.render import format_time

HOLD_KIND = "hold_order"
OTHER_KIND = "other"


PART_SEPARATOR = " + "
KIND_SEPARATOR = "+"


def suggestion_kinds(content: Content) -> dict[str, str]:
    """Suggestion label -> content key (labels are unique, checked when the policy loads)."""
    return {template.label: key for key, template in content.suggestions.items()}


def _parts(
    suggestion: Mapping[str, Any], kinds: Mapping[str, str], content: Content
) -> list[tuple[str, str, list[Any]]]:
    """A rendered suggestion as its parts: ``(kind, label, actions)`` in order.

    A suggestion is one whole plan (issue 13: the alternatives are ``at-most-one``): its label
    joins its orders' labels with " + " and its actions are theirs in the same order, holds
    (``update`` actions) last. Label parts that are no content suggestion are held orders.
    """
    label = suggestion.get("label")
    actions = list(suggestion.get("actions") or ())
    parts: list[tuple[str, str, list[Any]]] = []
    at = 0
    for piece in str(label).split(PART_SEPARATOR) if isinstance(label, str) else []:
        kind = kinds.get(piece)
        if kind is None:
            continue
        count = len(content.suggestions[kind].actions)
        parts.append((kind, piece, actions[at : at + count]))
        at += count
    rest = actions[at:]
    if rest:
        kind = (
            HOLD_KIND
            if any(isinstance(a, dict) and a.get("type") == "update" for a in rest)
            else OTHER_KIND
        )
        held = [p for p in str(label).split(PART_SEPARATOR) if p not in kinds] if label else []
        parts.append((kind, PART_SEPARATOR.join(held), rest))
    return parts


def kind_of(suggestion: Mapping[str, Any], kinds: Mapping[str, str], content: Content) -> str:
    """The content keys a rendered suggestion's plan came from, joined with "+" (holds and
    unknowns have their own kinds)."""
    found = [kind for kind, _, _ in _parts(suggestion, kinds, content)]
    return KIND_SEPARATOR.join(dict.fromkeys(found)) or OTHER_KIND


def _without(
    suggestion: Mapping[str, Any], dropped: set[str], kinds: Mapping[str, str], content: Content
) -> dict[str, Any] | None:
    """The suggestion's plan without its dropped parts; ``None`` when nothing is left."""
    parts = _parts(suggestion, kinds, content)
    kept = [(kind, label, actions) for kind, label, actions in parts if kind not in dropped]
    if len(kept) == len(parts):
        return dict(suggestion)
    if not kept:
        return None
    changed = dict(suggestion)
    changed["label"] = PART_SEPARATOR.join(label for _, label, _ in kept if label)
    changed["actions"] = [a for _, _, actions in kept for a in actions]
    return changed


def _line_for(
    under_way: UnderWay, policy: OutcomePolicy, unknown: str, zone: tzinfo | None
) -> str:
    # Named by its kind, coded status and time only: raw FHIR ids stay out of clinician text
    # (issue 13), and nothing from the record's free text is copied in.
    return under_way.care.line.format(
        state=policy.states[under_way.resource_type][under_way.status],
        time=format_time(When.at(under_way.at), unknown, zone),
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
    under_way: Sequence[UnderWay],
    accepted: Mapping[str, float],
    kinds: Mapping[str, str],
    content: Content,
    policy: OutcomePolicy,
    zone: tzinfo | None = None,
) -> dict[str, Any]:
    """``card`` without the suggestions care under way or earlier acceptance makes redundant.

    ``accepted`` maps suggestion kinds the clinician already accepted for this patient to when.
    Returns the card unchanged (the same object) when nothing applies.
    """
    suggestions = card.get("suggestions")
    if not suggestions or not (under_way or accepted):
        return card  # the common case: nothing is under way and nothing was accepted
    unknown = content.wording.phrases.get("time_unknown", "time not recorded")
    lines: list[str] = []
    dropped: set[str] = set()
    for item in under_way:
        replaced = set(item.care.replaces)
        present = {
            k for sug in suggestions for k in kind_of(sug, kinds, content).split(KIND_SEPARATOR)
        }
        if present & replaced:
            lines.append(_line_for(item, policy, unknown, zone))
            dropped |= replaced
    for suggestion in suggestions:
        for kind in kind_of(suggestion, kinds, content).split(KIND_SEPARATOR):
            if kind in accepted and kind not in dropped and kind in content.suggestions:
                when = format_time(
                    When.at(datetime.fromtimestamp(accepted[kind], UTC)), unknown, zone
                )
                label = content.suggestions[kind].label
                lines.append(policy.accepted_line.format(time=when, label=label))
                dropped.add(kind)
    if not lines:
        return card
    kept: list[dict[str, Any]] = []
    for suggestion in suggestions:
        remaining = _without(suggestion, dropped, kinds, content)
        if remaining is not None and remaining.get("label") not in {k["label"] for k in kept}:
            kept.append(remaining)
    changed = {k: v for k, v in card.items() if k not in ("suggestions", "selectionBehavior")}
    if kept:
        changed["suggestions"] = kept
        changed["selectionBehavior"] = card.get("selectionBehavior", "any")
    changed["detail"] = _insert_section(str(card.get("detail", "")), policy.heading, lines)
    return changed
