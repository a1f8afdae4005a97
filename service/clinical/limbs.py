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

_WORD = re.compile(r"[a-z]+")


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


def names_any(texts: Iterable[str], phrases: Iterable[str]) -> bool:
    """Whether any text contains any of ``phrases`` as whole words, in order."""
    wanted = [_tokens(p) for p in phrases]
    wanted = [w for w in wanted if w]
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
