"""Code lookups: which clinical concept a FHIR Coding belongs to.

Built once at startup from the FHIR ValueSets in ``cards/valuesets/`` (plus any VSAC expansions
imported into ``cards/valuesets/imports/``) so the hot path is a dictionary lookup per coding.
Codes marked UNVERIFIED in the content are kept for reviewers but never matched: the knowledge
base forbids relying on a code nobody has checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Laterality = str  # "left" | "right" | "bilateral"

EXTENSION_BASE = "https://epidural-cds.example.org/fhir/StructureDefinition"
VERIFICATION_STATUS_URL = f"{EXTENSION_BASE}/verification-status"
IMPLIED_LATERALITY_URL = f"{EXTENSION_BASE}/implied-laterality"
UNVERIFIED = "UNVERIFIED"
# Codes added from an imported VSAC expansion: an authoritative machine-readable source, so usable.
VSAC = "VSAC"


@dataclass(frozen=True)
class Code:
    """One code of a concept, as listed in the content with its verification status."""

    system: str
    code: str
    display: str
    status: str
    laterality: Laterality | None = None

    @property
    def usable(self) -> bool:
        """Whether the code may be used for matching (anything but UNVERIFIED)."""
        return self.status != UNVERIFIED


@dataclass(frozen=True)
class ConceptMatch:
    """A concept recognised from a coding, with the laterality the code itself implies."""

    concept: str
    code: Code


@dataclass(frozen=True)
class CodeIndex:
    """All concepts of the content, indexed by ``(system, code)`` for constant-time lookups."""

    concepts: Mapping[str, tuple[Code, ...]]
    _index: Mapping[tuple[str, str], tuple[ConceptMatch, ...]] = field(repr=False)

    @classmethod
    def build(cls, concepts: Mapping[str, Iterable[Code]]) -> CodeIndex:
        """Index every usable code of every concept."""
        frozen = {name: tuple(codes) for name, codes in concepts.items()}
        index: dict[tuple[str, str], list[ConceptMatch]] = {}
        for name, codes in frozen.items():
            for code in codes:
                if code.usable:
                    matches = index.setdefault((code.system, code.code), [])
                    # One match per concept and code, so a single coding needs no de-duplication.
                    if all(m.concept != name for m in matches):
                        matches.append(ConceptMatch(name, code))
        return cls(frozen, {key: tuple(matches) for key, matches in index.items()})

    def match_coding(self, coding: Mapping[str, Any]) -> tuple[ConceptMatch, ...]:
        """Concepts of one FHIR Coding (empty when unknown)."""
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return ()
        return self._index.get((system, code.strip()), ())

    def match_concept(self, concept: Mapping[str, Any] | None) -> tuple[ConceptMatch, ...]:
        """Concepts of every coding of a FHIR CodeableConcept, in coding order, without repeats."""
        if not isinstance(concept, dict):
            return ()
        codings = concept.get("coding")
        if isinstance(codings, list) and len(codings) == 1 and isinstance(codings[0], dict):
            return self.match_coding(codings[0])  # the common case, already without repeats
        found: list[ConceptMatch] = []
        seen: set[str] = set()
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, dict):
                for match in self.match_coding(coding):
                    if match.concept not in seen:
                        seen.add(match.concept)
                        found.append(match)
        return tuple(found)

    def has(self, concept: Mapping[str, Any] | None, name: str) -> bool:
        """Whether a CodeableConcept carries a code of the named concept."""
        return any(match.concept == name for match in self.match_concept(concept))

    def token_values(self, names: Iterable[str], systems: Iterable[str]) -> list[str]:
        """``system|code`` search tokens of the named concepts, restricted to ``systems``."""
        wanted = set(systems)
        tokens: list[str] = []
        for name in names:
            for code in self.concepts[name]:
                if code.usable and code.system in wanted:
                    token = f"{code.system}|{code.code}"
                    if token not in tokens:
                        tokens.append(token)
        return tokens


def _extension(concept: Mapping[str, Any], url: str) -> str | None:
    for extension in concept.get("extension") or ():
        if extension.get("url") == url:
            value = extension.get("valueCode")
            return value if isinstance(value, str) else None
    return None


def valueset_codes(valueset: Mapping[str, Any]) -> list[Code]:
    """The codes a curated ValueSet enumerates in ``compose.include[].concept[]`` (already valid).

    The verification status and the implied laterality are read from our two extensions.
    """
    codes: list[Code] = []
    for include in (valueset.get("compose") or {}).get("include") or ():
        for concept in include.get("concept") or ():
            codes.append(
                Code(
                    system=include["system"],
                    code=str(concept["code"]),
                    display=concept["display"],
                    status=_extension(concept, VERIFICATION_STATUS_URL) or UNVERIFIED,
                    laterality=_extension(concept, IMPLIED_LATERALITY_URL),
                )
            )
    return codes


def _contains(items: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for item in items:
        yield item
        yield from _contains(item.get("contains") or ())


def expansion_codes(valueset: Mapping[str, Any]) -> list[Code]:
    """The codes of a ValueSet expansion (e.g. from VSAC), status VSAC, without repeats.

    Nested ``contains`` are flattened; a missing display falls back to the code.
    """
    codes: list[Code] = []
    seen: set[tuple[str, str]] = set()
    for item in _contains((valueset.get("expansion") or {}).get("contains") or ()):
        system, code = item.get("system"), item.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            continue
        key = (system, code.strip())
        if key in seen:
            continue
        seen.add(key)
        display = item.get("display")
        codes.append(
            Code(system, key[1], display if isinstance(display, str) and display else key[1], VSAC)
        )
    return codes


def merge_imported(curated: Iterable[Code], imported: Iterable[Code]) -> tuple[Code, ...]:
    """Curated codes, then the imported codes the curated list does not already hold.

    A curated entry always wins: an import never changes a reviewed status (an UNVERIFIED code
    stays unmatched until a reviewer changes it in the curated ValueSet).
    """
    merged = list(curated)
    present = {(code.system, code.code) for code in merged}
    for code in imported:
        if (code.system, code.code) not in present:
            present.add((code.system, code.code))
            merged.append(code)
    return tuple(merged)
