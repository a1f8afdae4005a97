"""The FHIR id grammar, checked before an id from the record or the caller is used anywhere.

FHIR R4 defines an id as ``[A-Za-z0-9\\-\\.]{1,64}``. Ids end up in references we send back
(``subject``, ``reasonReference``, ``supportingInfo``, a held order) and must never carry
anything else: a reference that fails the grammar is not used and not echoed, so a crafted id
cannot smuggle text, markup or a second path segment into a card.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# ``Type/id``: a resource type, one slash, an id (neither part can hold a slash).
_REFERENCE = re.compile(r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}")


def valid_id(value: object) -> bool:
    """Whether ``value`` is a string matching the FHIR id grammar."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def valid_reference(value: object) -> bool:
    """Whether ``value`` is a relative reference ``Type/id`` with a valid type and id."""
    return isinstance(value, str) and _REFERENCE.fullmatch(value) is not None
