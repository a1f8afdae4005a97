"""The markdown ``detail`` of a card, action first (design.md: "cards" layer).

The first lines say what was found and when (relative to now and to the procedure), then what to
do now; a few lines of evidence follow; the notes and the one-line disclaimer close it. Record
text enters only through :func:`service.markdown_text.markdown_text`, and every time is shown in
the facility's zone with its offset (one zone per response).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from service.clinical import model
from service.clinical.answer import CardPlan
from service.clinical.medications import ANTITHROMBOTIC
from service.clinical.model import Episode, Finding, MedicationEvent
from service.clinical.timing import When, format_delta, hours_between
from service.content import Content, for_episode
from service.markdown_text import markdown_text

if TYPE_CHECKING:
    from service.render import RenderContext

_LEG_CONCEPTS = ("leg_weakness", "leg_numbness", "leg_heaviness", "leg_pain")
ANTITHROMBOTIC_LOOKBACK_DAYS = 10  # clinical-spec §3.2 R-03 window opens 10 d before puncture
_HIDDEN_FACTS = frozenset({"fact_note"})
"""Facts carrying verification remarks: shown on the rule-book page only, never on a card."""


def _day(stamp: datetime) -> str:
    # Formatted field by field: strftime costs twice as much, on every time a card shows.
    return f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d}"


def _offset(stamp: datetime) -> str:
    offset = stamp.utcoffset()
    total = int(offset.total_seconds()) // 60 if offset else 0
    hours, minutes = divmod(abs(total), 60)
    return f"{'-' if total < 0 else '+'}{hours:02d}:{minutes:02d}"


def format_time(when: When | None, unknown: str, zone: tzinfo | None = None) -> str:
    """A timestamp in ``zone`` (default: as recorded) with its offset, or a partial date's range.

    One zone per response: the caller passes the facility's zone so that no card shows UTC while
    another shows -05:00. Partial dates are shown as the dates they stand for.
    """
    if when is None:
        return unknown
    if when.partial:
        if not when.recorded:
            return unknown
        return f"{_day(when.earliest)} to {_day(when.latest)}"
    stamp = when.earliest if zone is None else when.earliest.astimezone(zone)
    # isoformat is C: "2026-03-10 18:00+00:00"; the card puts a space before the offset. An
    # offset with seconds (old local mean times) is cut to minutes, as the field-by-field form.
    iso = stamp.isoformat(" ", "minutes")
    if len(iso) == 22:
        return f"{iso[:16]} {iso[16:]}"
    return f"{_day(stamp)} {stamp.hour:02d}:{stamp.minute:02d} {_offset(stamp)}"


def fill(
    template: str,
    params: Iterable[tuple[str, str]],
    phrases: Mapping[str, str],
    zone: tzinfo | None = None,
) -> str:
    """A content template with a rule's parameters filled in.

    Parameters named ``*_phrase`` carry the key of a content phrase (so words stay in content);
    ``time`` carries an ISO instant and is shown as a clinician-readable time in ``zone``;
    ``drug`` is also offered capitalised as ``drug_title``.
    """
    values: dict[str, str] = {}
    for key, value in params:
        if key.endswith("_phrase"):
            values[key.removesuffix("_phrase")] = phrases.get(value, value)
        elif key == "time":
            values[key] = format_time(When.at(datetime.fromisoformat(value)), value, zone)
        else:
            values[key] = value
    if "drug" in values:
        values["drug_title"] = values["drug"][:1].upper() + values["drug"][1:]
    return template.format_map(values)


def documented(finding: Finding) -> When:
    """When a finding's evidence was documented (clinical-spec §3.5 "documented 5 h ago"):
    ``Finding.documented``, or the finding's own time when no time was recorded."""
    return finding.documented or finding.when


class Detail:
    """Builds the markdown detail of one card: found, do now, evidence, notes."""

    def __init__(self, content: Content, ctx: RenderContext, chain: tuple[str, ...]) -> None:
        self.content = content
        self.w = content.wording
        self.p = content.wording.phrases
        self.ctx = ctx
        self.chain = chain
        # The puncture, the removal and each dose are shown more than once on a card.
        self._times: dict[When | None, str] = {}

    def when(self, value: When | None) -> str:
        shown = self._times.get(value)
        if shown is None:
            shown = format_time(value, self.p["time_unknown"], self.ctx.zone)
            self._times[value] = shown
        return shown

    def ago(self, at: When) -> str:
        hours = hours_between(at.latest, self.ctx.now)
        key = "documented_ago" if hours >= 0 else "documented_ahead"
        return self.p[key].format(delta=format_delta(hours))

    def relative(self, finding_time: When, episode: Episode) -> list[str]:
        if not finding_time.recorded or not episode.time_known:
            return []
        at = finding_time.earliest
        gap = hours_between(episode.punctured.latest, at)
        key = "after_puncture" if gap >= 0 else "before_puncture"
        out = [self.p[key].format(delta=format_delta(gap))]
        if episode.removed is not None and at >= episode.removed.latest:
            delta = format_delta(hours_between(episode.removed.latest, at))
            out.append(self.p["after_removal"].format(delta=delta))
        return out

    def found_line(self, plan: CardPlan, evidence: tuple[Finding, ...]) -> str:
        headline = self.w.cards[plan.patterns[0]].headline
        timed = [f for f in evidence if f.when.recorded and not f.when.partial]
        episode = plan.episode
        if timed:
            latest = max(timed, key=lambda f: documented(f).latest)
            when = [self.ago(documented(latest)), *self.relative(latest.when, episode)]
        elif episode.removed is not None and episode.removed.recorded:
            hours = format_delta(hours_between(episode.removed.latest, self.ctx.now))
            when = [self.p["removal_ago"].format(delta=hours)]
        elif episode.punctured.recorded:
            hours = format_delta(hours_between(episode.punctured.latest, self.ctx.now))
            when = [self.p["puncture_ago"].format(delta=hours)]
        else:
            when = [self.p["time_unknown"]]
        return f"**{self.p['found_heading']}:** {headline} — {'; '.join(when)}."

    def do_now(self, plan: CardPlan, evidence: tuple[Finding, ...]) -> list[str]:
        primary = self.w.cards[plan.patterns[0]]
        out = [f"**{self.p['do_now_heading']}:** {for_episode(primary.do_now, self.chain)}"]
        steps: list[str] = []
        if plan.indicator == model.CRITICAL:
            steps += for_episode(self.w.critical_next_steps, self.chain, ())
        weakness_unknown = plan.indicator == model.CRITICAL and any(
            f.concept == "leg_weakness" and f.laterality is None for f in evidence
        )
        if weakness_unknown:
            steps.append(self.p["laterality_unknown_weakness"])
        return out + [f"- {step}" for step in steps]

    def evidence_line(self, finding: Finding, episode: Episode) -> str:
        label = self.w.finding_labels.get(finding.concept, finding.concept)
        parts = [f"**{label}**"]
        if finding.laterality:
            parts.append(self.w.laterality_labels[finding.laterality])
        elif finding.concept in _LEG_CONCEPTS:
            parts.append(self.w.laterality_labels["unknown"])
        if finding.value:
            parts.append(markdown_text(finding.value, 40))
        if finding.label and finding.label.lower() != label.lower():
            parts.append(f"“{markdown_text(finding.label)}”")
        timing = [self.when(finding.when)]
        if finding.when.recorded and not finding.when.partial:
            timing[0] += f" ({self.ago(documented(finding))})"
        timing += self.relative(finding.when, episode)
        line = f"- {', '.join(parts)} — {'; '.join(timing)}"
        if finding.from_text:
            line += f" ({self.p['from_text']})"
        return line

    def procedure_line(self, episode: Episode) -> str:
        label = self.w.procedure_labels[episode.procedure_class]
        facts = [self.p["puncture"].format(time=self.when(episode.punctured))]
        if episode.removed is not None:
            facts.append(self.p["removed"].format(time=self.when(episode.removed)))
        elif episode.presumed_until is not None:
            until = self.when(When.at(episode.presumed_until))
            facts.append(self.p["removal_not_recorded"].format(time=until))
        elif episode.catheter_in_situ:
            facts.append(self.p["in_situ"])
        if (
            episode.last_local_anaesthetic is not None
            and episode.procedure_class == model.CATHETER
            and episode.block_ends is None  # otherwise the block end, derived from it, says it
        ):
            facts.append(
                self.p["last_local_anaesthetic"].format(
                    time=self.when(episode.last_local_anaesthetic)
                )
            )
        if not episode.punctured.recorded:
            pass  # no time, no expected block end to show
        elif episode.block_ends is None:
            facts.append(self.p["infusion_running"])
        elif episode.block_ends <= self.ctx.now:
            ago = format_delta(hours_between(episode.block_ends, self.ctx.now))
            facts.append(
                self.p["block_ends_passed"].format(
                    time=self.when(When.at(episode.block_ends)), delta=ago
                )
            )
        else:
            facts.append(self.p["block_ends"].format(time=self.when(When.at(episode.block_ends))))
        if episode.steroid:
            facts.append(self.p["steroid"].format(name=markdown_text(episode.steroid, 50)))
        text = f" ({self.p['from_text']})" if episode.from_text else ""
        name = markdown_text(episode.label)
        return f"- **{label}**: “{name}”{text} — " + "; ".join(facts)

    def antithrombotic_lines(
        self, episode: Episode, medications: Iterable[MedicationEvent]
    ) -> list[str]:
        lines = []
        opens = episode.punctured.earliest.timestamp() - ANTITHROMBOTIC_LOOKBACK_DAYS * 86400
        relevant = [
            event
            for event in medications
            if ANTITHROMBOTIC in event.classes
            and event.start is not None
            and event.start.latest.timestamp() >= opens
        ]
        # Orders say little about dose timing once administrations are on record.
        given = any(event.administered for event in relevant)
        shown = [
            (event, event.start)
            for event in relevant
            if event.start is not None and (event.administered or not given)
        ]
        for event, start in shown[: self.w.dose_lines_max]:
            if event.administered:
                timing = [self.p["given"].format(time=self.when(start))]
                timing += self.relative(start, episode)
            else:
                timing = [self.p["ordered"].format(time=self.when(start))]
            lines.append(f"- {markdown_text(event.name, 50)} — {'; '.join(timing)}")
        return self.capped(lines, len(shown))

    def capped(self, lines: list[str], total: int) -> list[str]:
        """``lines`` (the first of ``total``) with a "+N more" line for those not written.

        Only the lines that are shown are built: a long admission has dozens of doses and
        findings, and a card lists a few (``dose_lines_max``, ``evidence_lines_max``).
        """
        if total <= len(lines):
            return lines
        more = self.p["more_lines"].format(count=total - len(lines))
        return [*lines, f"- {more}"]

    def build(self, plan: CardPlan, medications: Iterable[MedicationEvent]) -> str:
        cards = self.w.cards
        episode = plan.episode
        evidence = plan.evidence()
        out = [self.found_line(plan, evidence), "", *self.do_now(plan, evidence), ""]
        out.append(f"**{self.p['evidence_heading']}**")
        most = self.w.evidence_lines_max
        lines = [self.evidence_line(f, episode) for f in evidence[:most]]
        out += self.capped(lines, len(evidence))
        out.append(self.procedure_line(episode))
        if plan.indicator in (model.CRITICAL, model.INFO) or plan.primary.rule == "R-03":
            out += self.antithrombotic_lines(episode, medications)
        out += [
            f"- {fill(self.p[f.key], f.params, self.p, self.ctx.zone)}"
            for f in plan.facts()
            if f.key not in _HIDDEN_FACTS
        ]
        if plan.primary.rule == "R-04":
            out.append(
                "- "
                + self.p["not_attributed"].format(
                    procedure=self.w.procedure_labels[episode.procedure_class].lower(),
                    time=self.when(episode.punctured),
                )
            )
        out.append("")
        headline = cards[plan.patterns[0]].headline
        matched = list(dict.fromkeys(cards[p].headline for p in plan.patterns[1:]))
        matched = [h for h in matched if h != headline]
        if matched:
            out.append(f"**{self.p['also_matched_heading']}:** " + "; ".join(matched) + ".")
        noted = list(dict.fromkeys(cards[m.pattern].headline for m in plan.folded))
        noted = [h for h in noted if h != headline and h not in matched]
        if noted:
            if matched:
                out.append("")
            out.append(f"**{self.p['also_noted_heading']}:** " + "; ".join(noted) + ".")
        if matched or noted:
            out.append("")
        notes = []
        if any(f.from_text for f in evidence) or episode.from_text:
            notes.append(self.w.text_evidence_note)
        partial = (
            any(f.when.partial or not f.time_known for f in evidence) or episode.punctured.partial
        )
        if partial or not episode.time_known:
            notes.append(self.w.partial_time_note)
        if self.ctx.incomplete_data:
            keys = ", ".join(self.ctx.incomplete_data)
            notes.append(self.p["incomplete_data"].format(keys=keys))
        notes.append(self.w.disclaimer)
        out.append("_" + " ".join(notes) + "_")
        return "\n".join(out).strip()
