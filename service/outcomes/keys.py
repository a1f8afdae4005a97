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


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    """The HMAC object with ``secret`` already absorbed; :func:`patient_key` copies it."""
    return hmac.new(secret, digestmod=hashlib.sha256)


@functools.lru_cache(maxsize=4096)
def patient_key(secret: bytes, patient_id: str) -> str:
    """HMAC-SHA256 of the patient id under ``secret``, as 64 hex digits.

    Cached per process (a chart is opened many times a day; the worker holds the id in memory
    during the call anyway). A new patient copies the HMAC object keyed once per secret rather
    than keying a new one (which hashes the padded key twice).
    """
    mac = _keyed(secret).copy()
    mac.update(patient_id.encode("utf-8"))
    return mac.hexdigest()


def _version(resource: Mapping[str, Any] | None) -> str:
    if resource is None:
        return ""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return ""
    return f"{meta.get('versionId', '')}@{meta.get('lastUpdated', '')}"


def fingerprint(plan: CardPlan, evidence: Sequence[Finding], record: PatientRecord) -> str:
    """The evidence fingerprint of one card plan (64 hex digits); ``evidence`` is
    ``plan.evidence()``, computed once by the caller.

    It runs on every call with cards, so each resource's version comes from the record's index
    by ``(type, id)`` (no scan, no reference string parsed back), and each evidence line is one
    f-string. The digest input is exactly what it always was (fields joined with ``\x1f``,
    lines with ``\x1e``), so suppression state stored by earlier versions still matches;
    ``tests/outcomes/test_hot_path_parity.py`` holds it to the original implementation.
    """
    by_id = record.by_id
    episode = plan.episode.source
    parts = [
        plan.primary.rule,
        plan.indicator,
        ",".join(plan.patterns),
        str(episode),
        _version(by_id.get((episode.resource_type, episode.id))),
    ]
    for finding in evidence:
        source = finding.source
        when = finding.when
        version = _version(by_id.get((source.resource_type, source.id)))
        earliest = when.earliest.isoformat()
        # An exact time is one datetime twice (When.at): format it once.
        latest = earliest if when.latest is when.earliest else when.latest.isoformat()
        parts.append(
            f"{finding.concept}{_SEP}{source}{_SEP}{version}{_SEP}{earliest}{_SEP}{latest}"
            f"{_SEP}{finding.laterality or ''}{_SEP}{finding.value or ''}"
        )
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()


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
