"""From a patient's record and draft orders to cards: the pure pipeline of the order hooks.

The counterpart of :mod:`service.engine` for order-select and order-sign: the same content, the
same episode and finding definitions, and the same earliest-safe-time rule as patient-view
(``service/clinical/neuraxial_timing.py``), so both hooks agree on every interval. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import tzinfo
from typing import Any

from service.clinical import episodes, findings, medications, order_check
from service.content import Content
from service.fhir.record import PatientRecord
from service.render import RenderContext
from service.render_orders import render_order_cards


def evaluate_orders(
    record: PatientRecord,
    drafts: Sequence[Mapping[str, Any]],
    content: Content,
    ctx: RenderContext,
    zone: tzinfo | None = None,
) -> list[dict[str, Any]]:
    """One card per draft whose first dose would come before ASRA allows (none when all safe)."""
    if not drafts:
        return []
    lexicon, settings = content.lexicon, content.settings
    meds = medications.collect(
        record.of_type("MedicationAdministration"), record.of_type("MedicationRequest"), lexicon
    )
    procedures = list(record.of_type("Procedure"))
    index = episodes.find(procedures, meds, lexicon, settings, ctx.now)
    if not index:
        return []
    observed = findings.collect(
        record.of_type("Condition"), record.of_type("Observation"), lexicon, settings, ctx.now
    )
    verdicts = order_check.judge(
        drafts, index, procedures, observed, lexicon, content.asra, settings, ctx.now, meds
    )
    return render_order_cards(verdicts, content, ctx, zone)
