"""Everything the clinical core needs to recognise concepts: codes, text phrases and drug names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from service.clinical.terminology import CodeIndex
from service.clinical.text import TextMatcher


@dataclass(frozen=True)
class Lexicon:
    """Code index plus text matcher plus drug-name fallbacks, all built once at startup."""

    codes: CodeIndex
    text: TextMatcher
    local_anaesthetic_names: tuple[str, ...]
    corticosteroid_names: tuple[str, ...]
    antithrombotic_names: tuple[str, ...]
    insulin_names: tuple[str, ...] = ()
    thrombolytic_names: tuple[str, ...] = ()
    regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Spinal region name -> words that name it in procedure text."""

    @cached_property
    def drug_words(self) -> Mapping[str, frozenset[str]]:
        """Lower-case drug name -> the name lists it belongs to (computed once per content load).

        The groups are the field names without ``_names`` (``local_anaesthetic``,
        ``corticosteroid``, ``antithrombotic``, ``insulin``, ``thrombolytic``), which are also the
        names of the medication classes in :mod:`service.clinical.medications`, so a word's
        groups are the classes it implies. A medication's text is tokenised once and each word
        costs one dict lookup.
        """
        lists = {
            "local_anaesthetic": self.local_anaesthetic_names,
            "corticosteroid": self.corticosteroid_names,
            "antithrombotic": self.antithrombotic_names,
            "insulin": self.insulin_names,
            "thrombolytic": self.thrombolytic_names,
        }
        words: dict[str, set[str]] = {}
        for group, names in lists.items():
            for name in names:
                words.setdefault(name.lower(), set()).add(group)
        return {word: frozenset(groups) for word, groups in words.items()}
