"""Which limb a body site or a finding's words name (clinical-spec §3.1 imaging region, R-05).

A 0-10 pain score grades leg pain only when its ``bodySite`` names a lower limb, and arm symptoms
move the suggested MRI up to the cervical and thoracic spine. No verified SNOMED body-structure
codes are in the knowledge base, so limbs are recognised from the words of ``cards/settings.yaml``
(``limb_words``), matched as whole words or whole phrases, never as parts of a word ("arm" is not
in "pharmacy").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from service.clinical.memo import text_memo

_WORD = re.compile(r"[a-z]+")


def _read_tokens(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


# Remembered (bounded, short texts only): body-site texts and finding labels repeat across charts.
_tokens = text_memo(_read_tokens, size=1_024)


@lru_cache(maxsize=64)
def _phrase_tokens(phrases: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    # The phrases are content words (settings.yaml), the same on every call of a content load.
    return tuple(w for w in map(_tokens, phrases) if w)


def names_any(texts: Iterable[str], phrases: Iterable[str]) -> bool:
    """Whether any text contains any of ``phrases`` as whole words, in order."""
    wanted = _phrase_tokens(tuple(phrases))
    for text in texts:
        tokens = _tokens(text)
        if not tokens:
            continue
        present = set(tokens)
        for phrase in wanted:
            if phrase[0] not in present:
                continue
            n = len(phrase)
            if any(tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1)):
                return True
    return False
