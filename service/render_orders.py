"""Cards for draft antithrombotic orders that conflict with neuraxial timing (issue 17).

One card per conflicting draft: a warning, critical when the drug may not be given with the
catheter in place. It names the drug (the ASRA table's own name: content, not record text), the
interval with its sources and the earliest safe time in local time and UTC, and offers exactly
one of two changes (``at-most-one``): ``update`` the draft to start at that time (the whole
resource, CDS Hooks 2.0 §Action) or ``delete`` it (``resourceId``). Orders are never changed by
``systemActions``. Every word is from ``cards/orders.yaml``; anything else that reaches markdown
(the draft's id, say) is escaped.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from service.card_check import check_cards
from service.clinical import model
from service.clinical.order_check import DraftVerdict
from service.clinical.timing import When, format_delta
from service.content import Content, OrderWording
from service.fhir_ids import valid_reference
from service.markdown_text import markdown_text, plain_text
from service.render import EXTENSION_KEY, RenderContext, format_time, rule_book_url

#: The rule whose ASRA table and rule-book page the order cards rest on.
ORDER_RULE = "R-03"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")
_REFERENCE = re.compile(r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}")


def escape_markdown(text: str) -> str:
    """``text`` with every markdown-special character backslash-escaped (and no line breaks)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def reference_markdown(reference: str) -> str:
    """A resource reference for the detail: a code span when it is a well-formed FHIR
    reference (nothing in it can break out of the span), escaped text otherwise."""
    if _REFERENCE.fullmatch(reference):
        return f"`{reference}`"
    return escape_markdown(reference)


def _dose_phrase(known: bool, dose_class: str) -> str:
    # As patient-view says it (antithrombotics.py): an unknown dose class is treated as high.
    if not known:
        return "dose_assumed_high"
    return "dose_low" if dose_class == "low" else "dose_high"


def _stamp(at: datetime, zone: tzinfo) -> str:
    # Every time with its UTC offset, as on patient-view cards (issue 13: one zone per response).
    return format_time(When.at(at), "", zone)


def _hours(value: float) -> str:
    return format_delta(value)


class _Card:
    """The wording of one verdict, filled from ``orders.yaml``."""

    def __init__(self, verdict: DraftVerdict, content: Content, zone: tzinfo | None) -> None:
        self.verdict = verdict
        self.content = content
        self.words: OrderWording = content.orders
        self.zone = zone or UTC
        # A UTC facility (the default) gets each time once, not twice.
        self.zone_set = zone is not None and self.zone.utcoffset(None) != timedelta(0)
        timing = verdict.timing
        exposure = timing.exposure
        drug = exposure.drug.names[0]
        self.values: dict[str, str] = {
            "drug_title": drug[:1].upper() + drug[1:],
            "dose_class": content.wording.phrases[
                _dose_phrase(exposure.dose_class_known, exposure.dose_class)
            ],
            "interval": _hours(timing.interval.total_seconds() / 3600.0),
            "event": self.words.events[timing.anchor],
            "proposed": self.both(timing.proposed),
            "limit": f"{content.settings.inr_removal_max:g}",
            "procedure": content.wording.procedure_labels[verdict.episode.procedure_class],
            "puncture": self.both(verdict.episode.punctured.latest),
            "days": _hours(content.settings.heparin_days_needing_platelets.total_seconds() / 3600),
            "hours": _hours(content.settings.platelets_before.total_seconds() / 3600),
        }
        self.values["order"] = reference_markdown(verdict.reference)
        self.values["procedure_ref"] = reference_markdown(str(verdict.episode.source))
        if timing.inr is not None:
            self.values["inr"] = f"{timing.inr:g}"
        if timing.earliest is not None:
            self.values["time_local"] = _stamp(timing.earliest, self.zone)
            self.values["time_utc"] = _stamp(timing.earliest, UTC)
            self.values["time_both"] = self.both(timing.earliest)

    def both(self, at: datetime) -> str:
        local = _stamp(at, self.zone)
        return local if not self.zone_set else f"{local} ({_stamp(at, UTC)})"

    def say(self, section: Mapping[str, str], key: str, **extra: str) -> str:
        return section[key].format_map({**self.values, **extra})

    def summary(self) -> str:
        timing = self.verdict.timing
        if not self.verdict.conflicts:
            key = "heparin_platelets"
        elif timing.inr is not None:
            key = "warfarin_inr"
        elif timing.catheter_forbidden:
            key = "catheter_forbidden" if timing.earliest is None else "catheter_forbidden_timed"
        else:
            key = "too_soon"
        return self.say(self.words.summaries, key)

    def detail(self) -> str:
        verdict, timing, d = self.verdict, self.verdict.timing, self.words.detail
        lines = [
            self.say(d, "heading"),
            self.say(d, "proposed_from_order" if verdict.timing_given else "proposed_now"),
            self.say(d, "procedure"),
        ]
        removal = verdict.episode.removed.latest if verdict.episode.removed else None
        removal = removal or verdict.episode.presumed_until or verdict.planned_removal
        if verdict.episode.procedure_class == model.CATHETER:
            if removal is not None:
                kind = self.words.events[_removal_kind(verdict)]
                lines.append(self.say(d, "removal", event=kind, removal=self.both(removal)))
            else:
                lines.append(self.say(d, "catheter_stays"))
        if timing.catheter_forbidden:
            lines.append(self.say(d, "catheter_rule"))
        elif timing.inr is not None:
            lines.append(self.say(d, "inr_rule"))
        elif timing.before_removal:
            lines.append(self.say(d, "before_removal"))
        if verdict.platelets_missing:
            lines.append(self.say(d, "platelets_rule"))
        if verdict.conflicts:
            if timing.interval:
                lines.append(self.say(d, "interval"))
            lines.append(self.say(d, "earliest" if timing.earliest is not None else "no_earliest"))
        lines.append(
            self.say(d, "zone", zone=escape_markdown(str(self.zone)))
            if self.zone_set
            else self.say(d, "zone_unset")
        )
        note = timing.exposure.interval.note
        if note:  # content (asra.yaml), like every other word here
            lines.append(self.say(d, "note", note=markdown_text(note, len(note))))
        labels = [self.content.sources[k].label for k in self.words.sources]
        lines.append(self.say(d, "sources", sources="; ".join(labels)))
        lines.append(self.content.wording.disclaimer)
        return "\n\n".join(lines)


def _removal_kind(verdict: DraftVerdict) -> str:
    if verdict.episode.removed is not None:
        return "removal"
    if verdict.episode.presumed_until is not None:
        return "presumed_removal"
    return "planned_removal"


def _rescheduled(resource: Mapping[str, Any], start: datetime) -> dict[str, Any]:
    """The whole draft with its first dose moved to ``start`` (timing.repeat.boundsPeriod)."""
    updated = copy.deepcopy(dict(resource))
    stamp = start.astimezone(UTC).isoformat().replace("+00:00", "Z")
    dosages = updated.get("dosageInstruction")
    if not isinstance(dosages, list) or not dosages:
        dosages = [{}]
    for dosage in dosages:
        if not isinstance(dosage, dict):
            continue
        timing = dosage.setdefault("timing", {})
        if not isinstance(timing, dict):
            timing = dosage["timing"] = {}
        events = timing.get("event")
        if isinstance(events, list):
            kept = [e for e in events if isinstance(e, str) and e >= stamp]
            if kept:
                timing["event"] = kept
            else:
                timing.pop("event")
        repeat = timing.setdefault("repeat", {})
        if not isinstance(repeat, dict):
            repeat = timing["repeat"] = {}
        bounds = repeat.get("boundsPeriod")
        bounds = dict(bounds) if isinstance(bounds, dict) else {}
        bounds["start"] = stamp
        repeat["boundsPeriod"] = bounds
    updated["dosageInstruction"] = dosages
    return updated


def render_order_card(
    verdict: DraftVerdict, content: Content, ctx: RenderContext, zone: tzinfo | None = None
) -> dict[str, Any]:
    """One card for one conflicting draft."""
    card_words = _Card(verdict, content, zone)
    timing = verdict.timing
    words = content.orders
    critical = timing.catheter_forbidden
    # As on patient-view cards (issue 13): the label names the guideline the card rests on, and
    # the content version stays where a reviewer finds it, in the topic.
    lead = content.sources[words.sources[0]]
    source: dict[str, Any] = {
        "label": lead.label,
        "topic": {
            "system": content.wording.topic_system,
            "code": words.topic_code,
            "display": words.topic_display
            + content.wording.topic_version_suffix.format(version=content.version),
        },
    }
    url = next((content.sources[k].url for k in words.sources if content.sources[k].url), None)
    if url:
        source["url"] = url
    card: dict[str, Any] = {
        "uuid": ctx.new_id(),
        "summary": card_words.summary(),
        "indicator": model.CRITICAL if critical else model.WARNING,
        "detail": card_words.detail(),
        "source": source,
        "overrideReasons": [
            {"system": content.wording.override_system, "code": code, "display": display}
            for code, display in content.wording.override_reasons
        ],
    }
    suggestions = _suggestions(verdict, card_words, ctx)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    # As on patient-view cards (issue 13): the guideline and the rule-book page (R-03, whose
    # ASRA table these intervals come from) as absolute links; the FHIR references the card
    # rests on in the evidence extension, not in the clinician's text.
    links = []
    if url:
        links.append({"label": plain_text(lead.label, 120), "url": url})
    if ctx.base_url:
        links.append(
            {
                "label": content.wording.phrases["rule_book_link"].format(rule=ORDER_RULE),
                "url": rule_book_url(ctx.base_url, ORDER_RULE),
            }
        )
    if links:
        card["links"] = [{**link, "type": "absolute"} for link in links]
    refs = [verdict.reference, str(verdict.episode.source)]
    refs = [r for r in dict.fromkeys(refs) if valid_reference(r)]
    if refs:
        card["extension"] = {EXTENSION_KEY: refs}
    return card


def render_order_cards(
    verdicts: Sequence[DraftVerdict], content: Content, ctx: RenderContext, zone: tzinfo | None
) -> list[dict[str, Any]]:
    """The order cards of one call, each through the same response check as patient-view's."""
    cards = [render_order_card(v, content, ctx, zone) for v in verdicts]
    prefix = rule_book_url(ctx.base_url, "") if ctx.base_url else ""
    check_cards(cards, content.card_urls, (prefix,))
    return cards


def _suggestions(verdict: DraftVerdict, card: _Card, ctx: RenderContext) -> list[dict[str, Any]]:
    resource_id = verdict.resource.get("id")
    if not isinstance(resource_id, str) or not resource_id:
        return []  # an update or delete must name the draft
    if not verdict.conflicts:
        return []  # only the platelet count is missing: the draft's timing is fine
    s = card.words.suggestions
    out: list[dict[str, Any]] = []
    earliest = verdict.timing.earliest
    if earliest is not None:
        out.append(
            {
                "label": card.say(s, "reschedule_label"),
                "uuid": ctx.new_id(),
                "actions": [
                    {
                        "type": "update",
                        "description": card.say(s, "reschedule_description"),
                        "resource": _rescheduled(verdict.resource, earliest),
                    }
                ],
            }
        )
    out.append(
        {
            "label": card.say(s, "delete_label"),
            "uuid": ctx.new_id(),
            "actions": [
                {
                    "type": "delete",
                    "description": card.say(s, "delete_description"),
                    "resourceId": verdict.reference,
                }
            ],
        }
    )
    return out


__all__ = ["escape_markdown", "reference_markdown", "render_order_card"]
