"""Index procedures: which epidural (or other neuraxial) procedures the patient had, and when.

Implements the shared definitions of clinical-spec §3.1 once: procedure class, puncture time
(T_punct), catheter removal (T_remove) or presumed in situ (bounded when a completed catheter has
no removal time), last epidural local anaesthetic
(T_lastLA) and the expected end of the block (E). Excluded procedures (entered-in-error, not-done,
or stopped with no time) are never index procedures (safety note 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from service.clinical import fields, model
from service.clinical.lexicon import Lexicon
from service.clinical.medications import CORTICOSTEROID, LOCAL_ANAESTHETIC
from service.clinical.model import Episode, MedicationEvent
from service.clinical.settings import ClinicalSettings
from service.clinical.timing import When, latest_of

_EXCLUDED_STATUS = {"entered-in-error", "not-done", "preparation"}
# Most specific first: a transforaminal code makes it an ESI even if a generic code is also there.
_CLASS_BY_CONCEPT = (
    ("procedure_esi", model.ESI),
    ("procedure_catheter", model.CATHETER),
    ("procedure_single_shot", model.SINGLE_SHOT),
    ("procedure_neuraxial_other", model.NEURAXIAL_OTHER),
)


def _classify(resource: Mapping[str, Any], lexicon: Lexicon) -> tuple[str | None, bool]:
    """``(procedure class, from_text)``; class ``None`` when not a neuraxial procedure."""
    code = resource.get("code")
    concepts = {m.concept for m in lexicon.codes.match_concept(code)}
    for concept, klass in _CLASS_BY_CONCEPT:
        if concept in concepts:
            return klass, False
    for text in fields.concept_texts(code):
        from_text = lexicon.text.procedure_class(text)
        if from_text is not None:
            return from_text, True
    return None, False


_REGION_CONCEPTS = (
    ("esi_region_cervical_thoracic", "cervical_thoracic"),
    ("esi_region_lumbar_sacral", "lumbar_sacral"),
)


def _region(resource: Mapping[str, Any], lexicon: Lexicon) -> str | None:
    """Spinal region of an injection: from its code, else from region words in its text."""
    code = resource.get("code")
    concepts = {m.concept for m in lexicon.codes.match_concept(code)}
    for concept, region in _REGION_CONCEPTS:
        if concept in concepts:
            return region
    texts = " ".join(
        [
            *fields.concept_texts(code),
            *(t for s in fields.objects(resource.get("bodySite")) for t in fields.concept_texts(s)),
        ]
    )
    for region, names in lexicon.regions.items():
        if lexicon.text.mentions_any(texts, names):
            return region
    return None


def _steroid_with(
    resource: Mapping[str, Any],
    punctured: When,
    medications: Sequence[MedicationEvent],
    lexicon: Lexicon,
    settings: ClinicalSettings,
) -> str | None:
    """Name of a corticosteroid recorded with the procedure, if any."""
    texts = " ".join(
        [
            *fields.concept_texts(resource.get("code")),
            *(
                t
                for used in fields.objects(resource.get("usedCode"))
                for t in fields.concept_texts(used)
            ),
        ]
    )
    named = lexicon.text.mentions_any(texts, lexicon.corticosteroid_names)
    if named:
        return named
    for event in medications:
        if CORTICOSTEROID not in event.classes or event.start is None:
            continue
        close = (
            abs((event.start.earliest - punctured.earliest).total_seconds())
            <= settings.steroid_with_procedure.total_seconds()
        )
        if close or (event.epidural_route and event.start.latest >= punctured.earliest):
            return event.name
    return None


def _local_anaesthetic(
    punctured: When,
    removed: When | None,
    medications: Sequence[MedicationEvent],
    settings: ClinicalSettings,
) -> tuple[When | None, bool]:
    """``(end of the last epidural local anaesthetic, infusion still running)``."""
    last: When | None = None
    running = False
    opened = punctured.earliest - settings.new_finding_tolerance
    for event in medications:
        if not (event.administered and LOCAL_ANAESTHETIC in event.classes and event.epidural_route):
            continue
        if event.start is None or event.start.latest < opened:
            continue
        if removed is not None and event.start.earliest > removed.latest:
            continue
        if event.in_progress and event.end is None:
            running = True
            continue
        last = latest_of(last, event.end or event.start)
    return last, running


def episode_from(
    resource: Mapping[str, Any],
    medications: Sequence[MedicationEvent],
    lexicon: Lexicon,
    settings: ClinicalSettings,
    now: datetime,
) -> Episode | None:
    """The episode one Procedure stands for, or ``None`` when it is not an index procedure."""
    status = fields.status_code(resource, "status")
    if status in _EXCLUDED_STATUS:
        return None
    klass, from_text = _classify(resource, lexicon)
    if klass is None:
        return None
    if klass == model.NEURAXIAL_OTHER and not settings.include_spinal_and_lumbar_puncture:
        return None
    punctured = fields.first_time(resource, "performedDateTime", "performedPeriod")
    time_known = punctured is not None
    if punctured is None:
        if status == "stopped":
            return None
        punctured = When.unknown(now)
    if punctured.earliest > now:
        return None  # planned, not yet done

    steroid = _steroid_with(resource, punctured, medications, lexicon, settings)
    if klass == model.SINGLE_SHOT and steroid:
        klass = model.ESI

    removed: When | None = None
    in_situ = False
    presumed_until: datetime | None = None
    if klass == model.CATHETER:
        end = fields.period_end(resource, "performedPeriod")
        if status != "in-progress" and end is not None:
            removed = end
        elif status == "in-progress":
            in_situ = True
        else:
            # Completed with only a start time: the removal was not recorded. Presume the
            # catheter in place for a bounded time only (§3.1 amended), not for days.
            presumed_until = punctured.latest + settings.presumed_catheter
            in_situ = now <= presumed_until

    last_la, running = _local_anaesthetic(punctured, removed, medications, settings)
    if klass == model.CATHETER:
        anchor = last_la or removed or punctured
        block_ends = (
            None if (running and in_situ) else anchor.earliest + settings.expected_block[klass]
        )
    else:
        block_ends = punctured.earliest + settings.expected_block[klass]

    return Episode(
        source=fields.ref_of(resource),
        procedure_class=klass,
        label=fields.label_of(resource.get("code"), "epidural procedure"),
        punctured=punctured,
        removed=removed,
        catheter_in_situ=in_situ,
        last_local_anaesthetic=last_la,
        block_ends=block_ends,
        steroid=steroid,
        from_text=from_text,
        time_known=time_known,
        region=_region(resource, lexicon),
        presumed_until=presumed_until,
    )


def find(
    procedures: Iterable[Mapping[str, Any]],
    medications: Sequence[MedicationEvent],
    lexicon: Lexicon,
    settings: ClinicalSettings,
    now: datetime,
) -> tuple[Episode, ...]:
    """All index episodes, most recent first; duplicates (same class and time) counted once."""
    episodes: dict[tuple[str, datetime, datetime], Episode] = {}
    for resource in procedures:
        episode = episode_from(resource, medications, lexicon, settings, now)
        if episode is None:
            continue
        key = (episode.procedure_class, episode.punctured.earliest, episode.punctured.latest)
        if key not in episodes or episode.source < episodes[key].source:
            episodes[key] = episode
    return tuple(
        sorted(episodes.values(), key=lambda e: (e.punctured.latest, e.source), reverse=True)
    )
