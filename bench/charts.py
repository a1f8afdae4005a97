"""Deterministic synthetic patient charts for the benchmarks.

A chart is a FHIR ``collection`` Bundle of exactly ``size`` resources for one patient: one index
neuraxial procedure (a labour epidural catheter, or a transforaminal ESI), the medications and
findings that make it a red-flag case (an anticoagulant given early, new bilateral leg weakness,
urinary retention), and then "filler" in a realistic mix for a long admission: vital signs and
laboratory Observations whose LOINC codes are in the service's ``observations`` prefetch query,
examination Observations recorded as free text, historical Conditions (a few of them red flags),
MedicationRequests and MedicationAdministrations (including repeated enoxaparin) and some other
procedures. Every resource is reachable by one of the service's prefetch templates, so the hook
request carries all ``size`` resources.

The same ``size``, ``now`` and ``kind`` always give byte-identical output (a seeded RNG, ids by
position). :func:`hook_request` turns a chart into a CDS Hooks request with full prefetch using
``service.cli.request_from_bundle`` and the service's own templates (as advertised in
discovery), so the prefetch matches exactly what an EHR would send.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SIZES: tuple[int, ...] = (10, 100, 1_000, 5_000)
BENCH_SIZE = 100  # the chart used for the HTTP benchmark and the soak
PATIENT_ID = "bench-patient"
SERVICE_ID = "epidural-complications"
#: A fixed evaluation time so in-process results never depend on the wall clock.
ANCHOR = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"

Resource = dict[str, Any]


# -- value tables -----------------------------------------------------------------------------

# (LOINC, display, category, unit, UCUM code, low, high, decimals)
VITALS: tuple[tuple[str, str, str, str, str, float, float, int], ...] = (
    ("8310-5", "Body temperature", "vital-signs", "\u00b0C", "Cel", 36.2, 37.3, 1),
    (
        "72514-3",
        "Pain severity - 0-10 verbal numeric rating",
        "vital-signs",
        "{score}",
        "{score}",
        0,
        6,
        0,
    ),
)
LABS: tuple[tuple[str, str, str, str, str, float, float, int], ...] = (
    (
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "laboratory",
        "10*9/L",
        "10*9/L",
        5.0,
        10.0,
        1,
    ),
    (
        "1988-5",
        "C reactive protein [Mass/volume] in Serum or Plasma",
        "laboratory",
        "mg/L",
        "mg/L",
        1,
        8,
        0,
    ),
    (
        "777-3",
        "Platelets [#/volume] in Blood by Automated count",
        "laboratory",
        "10*9/L",
        "10*9/L",
        150,
        380,
        0,
    ),
    (
        "6301-6",
        "INR in Platelet poor plasma by Coagulation assay",
        "laboratory",
        "{INR}",
        "{INR}",
        0.9,
        1.2,
        2,
    ),
    ("2339-0", "Glucose [Mass/volume] in Blood", "laboratory", "mg/dL", "mg/dL", 75, 140, 0),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "laboratory", "%", "%", 4.8, 5.9, 1),
    (
        "4537-7",
        "Erythrocyte sedimentation rate by Westergren method",
        "laboratory",
        "mm/h",
        "mm/h",
        2,
        18,
        0,
    ),
)
EXAM_TEXTS: tuple[tuple[str, str], ...] = (
    ("Epidural insertion site check", "site clean and dry, dressing intact"),
    ("Lower limb motor assessment", "Bromage score 0, moving both legs freely"),
    ("Sensory level check", "sensation to cold intact in both legs"),
    ("Nursing neuro observations", "alert and orientated, no new deficit"),
    ("Bladder assessment", "voiding spontaneously, bladder not palpable"),
    ("Mobility review", "mobilising with assistance, gait steady"),
    ("Wound review", "perineum healing, no signs of infection"),
    ("Postnatal check", "fundus firm, lochia normal"),
)
# Non red-flag history: (SNOMED, display, text)
HISTORY: tuple[tuple[str, str, str], ...] = (
    ("38341003", "Hypertensive disorder", "Hypertension"),
    ("195967001", "Asthma", "Asthma, mild intermittent"),
    ("11687002", "Gestational diabetes mellitus", "Gestational diabetes, diet controlled"),
    ("271737000", "Anemia", "Iron deficiency anaemia"),
    ("35489007", "Depressive disorder", "Depression, in remission"),
    ("40930008", "Hypothyroidism", "Hypothyroidism on levothyroxine"),
    ("414916001", "Obesity", "Obesity, BMI 32"),
    ("235595009", "Gastroesophageal reflux disease", "Reflux"),
)
# Old red flags, resolved long ago: they must be read (and discarded) on every call.
OLD_RED_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("161891005", "Backache", "Low back pain after lifting"),
    ("25064002", "Headache", "Tension-type headache"),
    ("10601006", "Pain in lower limb", "Left calf pain, DVT excluded"),
)
# (RxNorm, display, text, dose mg, route text, anticoagulant?)
MEDICATIONS: tuple[tuple[str, str, str, float, str], ...] = (
    ("161", "acetaminophen", "Paracetamol 1 g", 1000, "Oral"),
    ("5640", "ibuprofen", "Ibuprofen 400 mg", 400, "Oral"),
    ("26225", "ondansetron", "Ondansetron 4 mg", 4, "Intravenous"),
    ("7052", "morphine", "Morphine 5 mg", 5, "Oral"),
    ("4337", "fentanyl", "Fentanyl 50 micrograms", 0.05, "Intravenous"),
    ("7824", "oxytocin", "Oxytocin 10 units", 10, "Intramuscular"),
    (
        "854235",
        "0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe",
        "Enoxaparin 40 mg",
        40,
        "Subcutaneous",
    ),
)
OTHER_PROCEDURES: tuple[tuple[str, str], ...] = (
    ("392230005", "Insertion of peripheral intravenous cannula"),
    ("45595009", "Urinary bladder catheterisation"),
    ("396487001", "Sampling of blood"),
)


# -- resource builders ------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _subject() -> dict[str, str]:
    return {"reference": f"Patient/{PATIENT_ID}"}


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _observation(
    rid: str, loinc: tuple[str, str, str, str, str], value: float, when: datetime
) -> Resource:
    code, display, category, unit, ucum = loinc
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [_coding(OBS_CATEGORY, category, category.title())]}],
        "code": {"coding": [_coding(LOINC, code, display)], "text": display},
        "subject": _subject(),
        "effectiveDateTime": _iso(when),
        "valueQuantity": _quantity(value, unit, ucum),
    }


def _exam(rid: str, title: str, text: str, when: datetime) -> Resource:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [_coding(OBS_CATEGORY, "exam", "Exam")]}],
        "code": {"text": title},
        "subject": _subject(),
        "effectiveDateTime": _iso(when),
        "valueString": text,
    }


def _condition(
    rid: str,
    code: str,
    display: str,
    text: str,
    onset: datetime,
    *,
    clinical: str = "active",
    body_site: tuple[str, str, str] | None = None,
) -> Resource:
    resource: Resource = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": COND_CLINICAL, "code": clinical}]},
        "verificationStatus": {"coding": [{"system": COND_VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": COND_CATEGORY, "code": "encounter-diagnosis"}]}],
        "code": {"coding": [_coding(SNOMED, code, display)], "text": text},
        "subject": _subject(),
        "onsetDateTime": _iso(onset),
        "recordedDate": _iso(onset + timedelta(minutes=20)),
    }
    if body_site is not None:
        resource["bodySite"] = [
            {"coding": [_coding(SNOMED, body_site[0], body_site[1])], "text": body_site[2]}
        ]
    return resource


def _med_request(
    rid: str, med: tuple[str, str, str, float, str], authored: datetime, *, status: str = "active"
) -> Resource:
    rx, display, text, dose, route = med
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [_coding(RXNORM, rx, display)], "text": text},
        "subject": _subject(),
        "authoredOn": _iso(authored),
        "dosageInstruction": [
            {
                "text": f"{text} {route.lower()}",
                "route": {"text": route},
                "doseAndRate": [{"doseQuantity": _quantity(dose, "mg", "mg")}],
            }
        ],
    }


def _med_admin(
    rid: str,
    med: tuple[str, str, str, float, str],
    when: datetime,
    request_id: str | None = None,
) -> Resource:
    rx, display, text, dose, route = med
    resource: Resource = {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "medicationCodeableConcept": {"coding": [_coding(RXNORM, rx, display)], "text": text},
        "subject": _subject(),
        "effectiveDateTime": _iso(when),
        "dosage": {
            "text": f"{text} {route.lower()}",
            "route": {"text": route},
            "dose": _quantity(dose, "mg", "mg"),
        },
    }
    if request_id is not None:
        resource["request"] = {"reference": f"MedicationRequest/{request_id}"}
    return resource


def _patient(kind: str) -> Resource:
    female = kind == "labour"
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "active": True,
        "name": [{"use": "official", "family": "Bench", "given": ["Alex"]}],
        "gender": "female" if female else "male",
        "birthDate": "1994-07-15" if female else "1967-09-02",
    }


ENOXAPARIN = MEDICATIONS[-1]


def _core(kind: str, now: datetime) -> list[Resource]:
    """The ten resources that make the red-flag case (every chart starts with them)."""
    weakness = _condition(
        "bench-cond-leg-weakness",
        "713514005",
        "Muscle weakness of limb (finding)",
        "Weakness of both legs",
        now - timedelta(hours=2),
        body_site=("51440002", "Right and left", "Both lower limbs"),
    )
    retention = _condition(
        "bench-cond-urinary-retention",
        "267064002",
        "Retention of urine (disorder)",
        "Urinary retention",
        now - timedelta(hours=1),
    )
    temp = _observation("bench-obs-temp-core", VITALS[0][:5], 36.8, now - timedelta(minutes=45))
    platelets = _observation(
        "bench-obs-platelets-core", LABS[2][:5], 180, now - timedelta(hours=37)
    )
    exam = _exam(
        "bench-obs-exam-core",
        "Lower limb neurological examination",
        "Bromage 2 both legs, reduced sensation below L2 bilaterally, new since morning",
        now - timedelta(minutes=90),
    )
    if kind == "labour":
        start, end = now - timedelta(hours=36), now - timedelta(hours=22)
        procedure: Resource = {
            "resourceType": "Procedure",
            "id": "bench-proc-index",
            "status": "completed",
            "code": {
                "coding": [
                    _coding(CPT, "01967", "Neuraxial labor analgesia/anesthesia"),
                    _coding(SNOMED, "18946005", "Epidural anesthesia (procedure)"),
                ],
                "text": "Labour epidural analgesia, L3-4 catheter, ropivacaine/fentanyl infusion",
            },
            "subject": _subject(),
            "performedPeriod": {"start": _iso(start), "end": _iso(end)},
            "note": [{"text": "Uneventful L3-4 catheter placement; removed intact."}],
        }
        local: Resource = {
            "resourceType": "MedicationAdministration",
            "id": "bench-medadmin-ropivacaine",
            "status": "completed",
            "medicationCodeableConcept": {"text": "Ropivacaine 0.1% epidural infusion"},
            "subject": _subject(),
            "partOf": [{"reference": "Procedure/bench-proc-index"}],
            "effectivePeriod": {
                "start": _iso(start + timedelta(minutes=15)),
                "end": _iso(end - timedelta(hours=2)),
            },
            "dosage": {
                "text": "ropivacaine 0.1% 10 mL/h epidural",
                "route": {
                    "coding": [_coding(SNOMED, "404820008", "Epidural route (qualifier value)")],
                    "text": "Epidural",
                },
                "rateQuantity": _quantity(10, "mL/h", "mL/h"),
            },
        }
    else:
        end = now - timedelta(hours=22)
        procedure = {
            "resourceType": "Procedure",
            "id": "bench-proc-index",
            "status": "completed",
            "code": {
                "coding": [
                    _coding(CPT, "64483", "Injection(s), transforaminal epidural, lumbar or sacral")
                ],
                "text": "Right L5-S1 transforaminal epidural steroid injection",
            },
            "subject": _subject(),
            "performedDateTime": _iso(end),
        }
        local = {
            "resourceType": "MedicationAdministration",
            "id": "bench-medadmin-dexamethasone",
            "status": "completed",
            "medicationCodeableConcept": {
                "coding": [_coding(RXNORM, "3264", "dexamethasone")],
                "text": "Dexamethasone 10 mg, preservative-free",
            },
            "subject": _subject(),
            "partOf": [{"reference": "Procedure/bench-proc-index"}],
            "effectiveDateTime": _iso(end),
            "dosage": {
                "text": "dexamethasone 10 mg transforaminal epidural",
                "route": {
                    "coding": [_coding(SNOMED, "404820008", "Epidural route (qualifier value)")],
                    "text": "Epidural",
                },
                "dose": _quantity(10, "mg", "mg"),
            },
        }
    order = _med_request("bench-medreq-enoxaparin", ENOXAPARIN, end - timedelta(minutes=30))
    dose = _med_admin(
        "bench-medadmin-enoxaparin",
        ENOXAPARIN,
        end + timedelta(minutes=90),
        "bench-medreq-enoxaparin",
    )
    return [
        _patient(kind),
        procedure,
        local,
        order,
        dose,
        weakness,
        retention,
        temp,
        platelets,
        exam,
    ]


@dataclass(frozen=True)
class _Mix:
    """One kind of filler resource and its share of the filler."""

    name: str
    weight: float
    build: Callable[[str, int, random.Random, datetime], Resource]


def _vital(rid: str, i: int, rng: random.Random, now: datetime) -> Resource:
    row = VITALS[i % len(VITALS)]
    value = round(rng.uniform(row[5], row[6]), row[7])
    # Every 4 hours going back, so a 5,000-resource chart spans a long admission.
    when = now - timedelta(hours=3 + 4 * (i // len(VITALS)), minutes=rng.randrange(60))
    return _observation(rid, row[:5], value, when)


def _lab(rid: str, i: int, rng: random.Random, now: datetime) -> Resource:
    row = LABS[i % len(LABS)]
    value = round(rng.uniform(row[5], row[6]), row[7])
    when = now - timedelta(hours=6 + 12 * (i // len(LABS)), minutes=rng.randrange(60))
    return _observation(rid, row[:5], value, when)


def _exam_filler(rid: str, i: int, rng: random.Random, now: datetime) -> Resource:
    title, text = EXAM_TEXTS[i % len(EXAM_TEXTS)]
    when = now - timedelta(hours=4 + 3 * i, minutes=rng.randrange(60))
    return _exam(rid, title, text, when)


def _condition_filler(rid: str, i: int, rng: random.Random, now: datetime) -> Resource:
    if i % 6 == 5:  # one in six is an old, resolved red-flag finding
        code, display, text = OLD_RED_FLAGS[(i // 6) % len(OLD_RED_FLAGS)]
        onset = now - timedelta(days=400 + 30 * i + rng.randrange(30))
        return _condition(rid, code, display, text, onset, clinical="resolved")
    code, display, text = HISTORY[i % len(HISTORY)]
    onset = now - timedelta(days=200 + 20 * i + rng.randrange(20))
    return _condition(rid, code, display, text, onset)


def _request_filler(rid: str, i: int, rng: random.Random, now: datetime) -> Resource:
    med = MEDICATIONS[i % len(MEDICATIONS)]
    authored = now - timedelta(days=2 + i, hours=rng.randrange(24))
    return _med_request(rid, med, authored, status="completed" if i % 3 else "active")


def _admin_filler(rid: str, i: int, rng: random.Random, now: datetime) -> Resource:
    med = MEDICATIONS[i % len(MEDICATIONS)]
    when = now - timedelta(days=3 + i // 4, hours=rng.randrange(24))
    return _med_admin(rid, med, when)


def _procedure_filler(rid: str, i: int, rng: random.Random, now: datetime) -> Resource:
    code, display = OTHER_PROCEDURES[i % len(OTHER_PROCEDURES)]
    when = now - timedelta(days=2 + 2 * i, hours=rng.randrange(24))
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": {"coding": [_coding(SNOMED, code, display)], "text": display},
        "subject": _subject(),
        "performedDateTime": _iso(when),
    }


MIX: tuple[_Mix, ...] = (
    _Mix("vital", 0.32, _vital),
    _Mix("lab", 0.24, _lab),
    _Mix("exam", 0.12, _exam_filler),
    _Mix("condition", 0.10, _condition_filler),
    _Mix("medication-request", 0.08, _request_filler),
    _Mix("medication-administration", 0.12, _admin_filler),
    _Mix("procedure", 0.02, _procedure_filler),
)


def build_chart(size: int, *, now: datetime = ANCHOR, kind: str = "labour") -> dict[str, Any]:
    """A collection Bundle of exactly ``size`` resources (``size >= 10``), deterministic."""
    if size < 10:
        raise ValueError("a chart needs at least 10 resources")
    if kind not in ("labour", "esi"):
        raise ValueError("kind is 'labour' or 'esi'")
    rng = random.Random(f"epidural-cds-bench-{size}-{kind}")
    resources = _core(kind, now)
    filler = size - len(resources)
    # Largest-remainder apportionment, so the counts add up to exactly `filler`.
    raw = [m.weight * filler for m in MIX]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(MIX)), key=lambda k: raw[k] - counts[k], reverse=True)
    for k in by_remainder[: filler - sum(counts)]:
        counts[k] += 1
    # Interleave the kinds (as a chart would hold them), not in blocks.
    queue: list[tuple[_Mix, int]] = []
    for mix, count in zip(MIX, counts, strict=True):
        queue.extend((mix, i) for i in range(count))
    queue.sort(key=lambda item: (item[1] / max(1, counts[MIX.index(item[0])]), item[0].name))
    for n, (mix, i) in enumerate(queue):
        resources.append(mix.build(f"bench-{mix.name}-{i}", n, rng, now))
    assert len(resources) == size
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, _key(r))}",
                "resource": r,
            }
            for r in resources
        ],
    }


def _key(resource: Resource) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def prefetch_templates() -> dict[str, str]:
    """The service's prefetch templates (key -> query), exactly as discovery advertises them."""
    from service import content as content_module

    service = content_module.load(None).services[0]
    if service.id != SERVICE_ID:
        raise RuntimeError(f"expected service {SERVICE_ID}, found {service.id}")
    return {spec.key: spec.query for spec in service.prefetch}


def hook_request(
    chart: dict[str, Any], templates: dict[str, str] | None = None, *, hook_instance: str = ""
) -> dict[str, Any]:
    """A patient-view request whose prefetch answers every template from ``chart``."""
    from service.cli import request_from_bundle

    request = request_from_bundle(chart, PATIENT_ID, templates or prefetch_templates())
    request["hookInstance"] = hook_instance or str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"bench-{len(chart['entry'])}")
    )
    return request


def prefetch_count(request: dict[str, Any]) -> int:
    """How many distinct resources the request's prefetch carries."""
    seen: set[tuple[str, str]] = set()
    for value in request.get("prefetch", {}).values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            for entry in value.get("entry", []):
                r = entry["resource"]
                seen.add((r["resourceType"], r["id"]))
        else:
            seen.add((value["resourceType"], value["id"]))
    return len(seen)


def body(size: int, *, now: datetime = ANCHOR, templates: dict[str, str] | None = None) -> bytes:
    """The request body (UTF-8 JSON bytes) for a chart of ``size`` resources."""
    request = hook_request(build_chart(size, now=now), templates)
    return json.dumps(request, separators=(",", ":")).encode()


def main() -> None:
    """``python -m bench.charts``: print the size, prefetch count and body bytes of each chart."""
    templates = prefetch_templates()
    for size in SIZES:
        request = hook_request(build_chart(size), templates)
        raw = json.dumps(request, separators=(",", ":")).encode()
        print(f"{size:>6} resources: {prefetch_count(request):>6} in prefetch, {len(raw):>9} bytes")


if __name__ == "__main__":
    main()
