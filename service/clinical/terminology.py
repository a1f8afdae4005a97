"""Code lookups: which clinical concept a FHIR Coding belongs to.

Built once at startup from ``cards/codes.yaml`` so the hot path is a dictionary lookup per coding.
Codes marked UNVERIFIED in the content are kept for reviewers but never matched: the knowledge
base forbids relying on a code nobody has checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Laterality = str  # "left" | "right" | "bilateral"


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
        return self.status != "UNVERIFIED"


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
                    index.setdefault((code.system, code.code), []).append(ConceptMatch(name, code))
        return cls(frozen, {key: tuple(matches) for key, matches in index.items()})

    def match_coding(self, coding: Mapping[str, Any]) -> tuple[ConceptMatch, ...]:
        """Concepts of one FHIR Coding (empty when unknown)."""
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return ()
        return self._index.get((system, code.strip()), ())

    def match_concept(self, concept: Mapping[str, Any] | None) -> tuple[ConceptMatch, ...]:
        """Concepts of every coding of a FHIR CodeableConcept, in coding order, without repeats."""
        if not isinstance(concept, Mapping):
            return ()
        found: list[ConceptMatch] = []
        seen: set[str] = set()
        for coding in concept.get("coding") or ():
            if isinstance(coding, Mapping):
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
