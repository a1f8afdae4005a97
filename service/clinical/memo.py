"""Remembering what a text means, because charts repeat the same texts thousands of times.

Every temperature Observation says "Body temperature", every enoxaparin dose "Enoxaparin 40 mg
subcutaneous", and templated nursing entries ("site clean and dry, dressing intact") recur on
every shift. Reading such a text (tokenising it, looking up phrases, checking negation) costs
tens of microseconds, and the answer depends only on the text and on the content loaded at
startup. A memo per content load turns the repeats into one dictionary lookup.

The memo is bounded two ways, so a stream of unique texts cannot grow a worker's memory: it
holds at most ``size`` texts (least recently used go first, :func:`functools.lru_cache`), and a
text longer than ``longest`` characters (a free-text note, rarely repeated) is read every time
and never stored. Results must be immutable (tuples, frozensets, strings, frozen dataclasses),
because every caller gets the same object.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

T = TypeVar("T")

# Every live memo, so a benchmark can measure a worker's first call ("cold") as well.
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()

#: Distinct texts remembered per memo. A worker has six: four in the text matcher of its content
#: and two for dose texts; all six full of 256-character texts grew a process by 11.4 MB
#: (measured). A 5,000-resource chart has a few hundred distinct short texts.
DEFAULT_SIZE = 4_096
#: Texts longer than this are read every time: notes and narratives are seldom repeated.
DEFAULT_LONGEST = 256


def text_memo(
    read: Callable[[str], T], size: int = DEFAULT_SIZE, longest: int = DEFAULT_LONGEST
) -> Callable[[str], T]:
    """``read`` with its results for recently seen texts of at most ``longest`` characters kept.

    ``read`` must be a pure function of the text (given the content it was built from) that
    returns an immutable value; the memo is thread-safe because :func:`functools.lru_cache` is.
    """
    remembered = lru_cache(maxsize=size)(read)
    _LIVE.add(remembered)

    def memoized(text: str) -> T:
        return remembered(text) if len(text) <= longest else read(text)

    memoized.__doc__ = read.__doc__
    memoized.cache_info = remembered.cache_info  # type: ignore[attr-defined]
    return memoized


def forget_all() -> None:
    """Empty every memo of the process (benchmarks use it to time calls with nothing remembered)."""
    for remembered in list(_LIVE):
        remembered.cache_clear()
