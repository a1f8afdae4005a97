"""Pseudonymous keys: the patient as a keyed HMAC, a card's evidence as a fingerprint.

Why keyed: a plain hash of a patient id can be reversed by hashing every plausible id (medical
record numbers are short). HMAC-SHA256 with a secret the database never holds cannot; whoever
has only the store sees opaque keys. The same secret on every replica gives the same key, so
suppression works whichever replica answers.

The evidence fingerprint is what suppression is keyed on (clinical-spec §4 safety note 9: "key
suppression on the evidence set, not on the rule id"). It covers the rule, the card's patterns,
its indicator, the index procedure and every piece of evidence (which resource, which version
of it, what it says in coded form, when). So one new finding, a newer version of a resource,
a higher severity or a new pattern each give a new fingerprint, and the card shows again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.clinical.answer import CardPlan
from service.clinical.model import Finding
from service.fhir.record import PatientRecord

_SEP = "\x1f"


@functools.lru_cache(maxsize=4096)
def patient_key(secret: bytes, patient_id: str) -> str:
    """HMAC-SHA256 of the patient id under ``secret``, as 64 hex digits.

    Cached per process (a chart is opened many times a day; the worker holds the id in memory
    during the call anyway), which saves a fresh HMAC object on the hot path.
    """
    return hmac.new(secret, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()


def _version(record_index: Mapping[str, Mapping[str, Any]], reference: str) -> str:
    resource = record_index.get(reference)
    if resource is None:
        return ""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return ""
    return f"{meta.get('versionId', '')}@{meta.get('lastUpdated', '')}"


def resource_index(record: PatientRecord, references: set[str]) -> dict[str, Mapping[str, Any]]:
    """The record's resources named in ``references`` (``Type/id``), looked up once."""
    wanted: dict[str, set[str]] = {}
    for ref in references:
        rtype, _, rid = ref.partition("/")
        wanted.setdefault(rtype, set()).add(rid)
    found: dict[str, Mapping[str, Any]] = {}
    for rtype, ids in wanted.items():
        for resource in record.of_type(rtype):
            found_id = resource.get("id")
            if isinstance(found_id, str) and found_id in ids:
                found[f"{rtype}/{found_id}"] = resource
    return found


def fingerprint(
    plan: CardPlan, evidence: Sequence[Finding], versions: Mapping[str, Mapping[str, Any]]
) -> str:
    """The evidence fingerprint of one card plan (64 hex digits); ``evidence`` is
    ``plan.evidence()``, computed once by the caller."""
    parts = [
        plan.primary.rule,
        plan.indicator,
        ",".join(plan.patterns),
        str(plan.episode.source),
        _version(versions, str(plan.episode.source)),
    ]
    for finding in evidence:
        source = str(finding.source)
        parts.append(
            _SEP.join(
                (
                    finding.concept,
                    source,
                    _version(versions, source),
                    finding.when.earliest.isoformat(),
                    finding.when.latest.isoformat(),
                    finding.laterality or "",
                    finding.value or "",
                )
            )
        )
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()


def evidence_references(plan: CardPlan, evidence: Sequence[Finding]) -> set[str]:
    """Every resource reference a plan's fingerprint looks up."""
    return {str(plan.episode.source), *(str(f.source) for f in evidence)}


def load_secret(configured: str | None, data_dir: Path) -> tuple[bytes, bool]:
    """The HMAC secret and whether it was configured.

    Unset, a random secret is created once in the data directory (mode 0600) and shared by every
    worker on the host; replicas on other hosts then key patients differently, which only means
    suppression does not carry across them (cards show; never the reverse).
    """
    if configured:
        return configured.encode("utf-8"), True
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "patient-key.secret"
    if not path.exists():
        # Written aside, then linked into place: a concurrent reader never sees a half file,
        # and of several processes starting at once exactly one link wins.
        fd, temp = tempfile.mkstemp(dir=data_dir, prefix=".patient-key.")
        try:
            os.write(fd, secrets.token_hex(32).encode("ascii"))
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            os.unlink(temp)
    return path.read_text(encoding="ascii").strip().encode("ascii"), False
