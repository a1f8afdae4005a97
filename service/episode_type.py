"""Which kind of epidural a card is about, so its wording, next steps and sources fit.

A labour epidural, a postoperative catheter, a single-shot spinal and a transforaminal steroid
injection at L5 share rules but not advice: "stop the infusion" means nothing after an injection,
and an obstetric guideline is the wrong source for a 59-year-old man's TFESI. Each episode gets a
*type chain*, most specific first (``esi_transforaminal``, ``esi_lumbar_sacral``, ``esi``,
``default``); content keyed by type (``do_now``, ``sources_for`` ...) takes the first key of the
chain it has. The words that recognise labour or an ESI route are content
(``cards/rules.yaml`` ``episode_types``), matched as whole lower-case words of the procedure text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.clinical import model
from service.clinical.model import Episode

DEFAULT = "default"
_ESI_ROUTES = ("esi_transforaminal", "esi_caudal")
_ESI_FALLBACK_ROUTE = "esi_interlaminar"
_LEVELS = {"cervical_thoracic": "esi_cervical_thoracic", "lumbar_sacral": "esi_lumbar_sacral"}


def _words(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


@dataclass(frozen=True)
class EpisodeTypes:
    """The episode-type recogniser built once from content."""

    labels: Mapping[str, str]
    labour: re.Pattern[str] | None
    routes: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def from_content(cls, types: Mapping[str, Mapping[str, Any]]) -> EpisodeTypes:
        """Compile the ``episode_types`` section of ``rules.yaml``."""
        routes = []
        for key in _ESI_ROUTES:
            pattern = _words(list(types[key].get("words", ())))
            if pattern is not None:
                routes.append((key, pattern))
        return cls(
            labels={key: str(entry["label"]) for key, entry in types.items()},
            labour=_words(list(types["labour"].get("words", ()))),
            routes=tuple(routes),
        )

    def chain(self, episode: Episode) -> tuple[str, ...]:
        """The episode's types, most specific first, ending with ``default``."""
        text = episode.label.lower()
        klass = episode.procedure_class
        if klass == model.CATHETER:
            kind = "labour" if self.labour is not None and self.labour.search(text) else None
            return (kind or "surgical_catheter", "catheter", DEFAULT)
        if klass == model.ESI:
            route = next((key for key, words in self.routes if words.search(text)), None)
            level = _LEVELS.get(episode.region or "")
            chain = [route or _ESI_FALLBACK_ROUTE]
            if level:
                chain.append(level)
            return (*chain, "esi", DEFAULT)
        return ("single_shot", DEFAULT)
