"""Everything the clinical core needs to recognise concepts: codes, text phrases and drug names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
