"""Which spine MRI a critical card offers (clinical-spec §3.1 "imaging region").

The MRI must cover the level of the procedure: a cervical or thoracic procedure, or arm symptoms,
means the cervical and thoracic spine; a lumbar, caudal or labour epidural means the lumbar
spine (with the thoracic spine for a haematoma or an abscess). What the imaging must show comes
from the card's patterns (contrast for an abscess, the cord for ischaemia); the most demanding
need of the card chooses. The table (``cards/suggestions.yaml`` ``imaging``) names the
suggestions: the first is recommended, the others are alternatives of which at most one should
be chosen, so two MRI orders are never offered side by side as if both were needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.clinical.answer import CardPlan
from service.clinical.limbs import names_any

CERVICAL_THORACIC = "cervical_thoracic"
LUMBAR = "lumbar"


@dataclass(frozen=True)
class ImagingTable:
    """The imaging choice of ``suggestions.yaml``, with the words that name an arm."""

    needs: tuple[str, ...]
    by_pattern: Mapping[str, str]
    regions: Mapping[str, Mapping[str, tuple[str, ...]]]
    upper_limb_words: tuple[str, ...] = ()

    @classmethod
    def from_content(cls, doc: Mapping[str, Any], upper_limb_words: Sequence[str]) -> ImagingTable:
        """Build from the parsed, schema-validated ``imaging`` section."""
        return cls(
            needs=tuple(doc["needs"]),
            by_pattern=dict(doc["patterns"]),
            regions={
                region: {need: tuple(keys) for need, keys in by_need.items()}
                for region, by_need in doc["regions"].items()
            },
            upper_limb_words=tuple(upper_limb_words),
        )

    @property
    def mri_keys(self) -> frozenset[str]:
        """Every suggestion the table may choose (the MRI orders)."""
        return frozenset(
            k for by_need in self.regions.values() for ks in by_need.values() for k in ks
        )

    def region(self, plan: CardPlan) -> str:
        """The spinal region the MRI must cover for this card."""
        if plan.episode.region == "cervical_thoracic":
            return CERVICAL_THORACIC
        texts = [t for f in plan.evidence() for t in (f.label, *f.sites)]
        if self.upper_limb_words and names_any(texts, self.upper_limb_words):
            return CERVICAL_THORACIC
        return LUMBAR

    def need(self, plan: CardPlan) -> str | None:
        """The most demanding imaging need of the card's patterns (``None``: no MRI)."""
        wanted = {self.by_pattern[p] for p in plan.patterns if p in self.by_pattern}
        return next((n for n in self.needs if n in wanted), None)

    def choose(self, plan: CardPlan) -> tuple[str, ...]:
        """The MRI suggestions of the card: recommended first, then the alternatives."""
        need = self.need(plan)
        if need is None:
            return ()
        return self.regions[self.region(plan)][need]

    def suggestion_keys(self, plan: CardPlan, listed: Iterable[str]) -> list[str]:
        """The card's suggestions: the chosen MRI in place of the MRIs its patterns list."""
        keys = list(dict.fromkeys(listed))
        chosen = self.choose(plan)
        if not chosen:
            return keys
        mri = self.mri_keys
        rest = [k for k in keys if k not in mri]
        return [*chosen, *rest]
