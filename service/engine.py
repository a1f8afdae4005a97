"""From a patient's record to cards: the pure pipeline record -> clinical core -> cards.

No I/O and no Flask here, so the CLI, the HTTP layer, tests and benchmarks all run exactly the
same evaluation (design.md data flow).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from service.clinical import answer, episodes, findings, medications, rules
from service.clinical.answer import CardPlan
from service.content import Content
from service.fhir.record import PatientRecord
from service.render import RenderContext, render


def evaluate(record: PatientRecord, content: Content, ctx: RenderContext) -> list[dict[str, Any]]:
    """The cards for one patient at ``ctx.now`` (an empty list when nothing applies)."""
    return [card for _, card in evaluate_plans(record, content, ctx)]


def evaluate_plans(
    record: PatientRecord, content: Content, ctx: RenderContext
) -> list[tuple[CardPlan, dict[str, Any]]]:
    """Each card with the plan it was rendered from (feedback keys suppression on the plan)."""
    lexicon, settings = content.lexicon, content.settings
    meds = medications.collect(
        record.of_type("MedicationAdministration"), record.of_type("MedicationRequest"), lexicon
    )
    index = episodes.find(record.of_type("Procedure"), meds, lexicon, settings, ctx.now)
    if not index:
        return []
    observed = findings.collect(
        record.of_type("Condition"), record.of_type("Observation"), lexicon, settings, ctx.now
    )
    chart = rules.Chart(index, observed, meds, ctx.now, content.asra)
    matches = rules.evaluate(chart, settings)
    plans = answer.plan(matches, content.wording.pattern_order)
    orders = {f"MedicationRequest/{r.get('id')}": r for r in record.of_type("MedicationRequest")}
    return list(zip(plans, render(plans, content, replace(ctx, orders=orders), meds), strict=True))
