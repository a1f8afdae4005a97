"""Reading ``context.draftOrders`` and ``context.selections`` of order-select and order-sign.

Real clients are loose: the spec's own examples omit ``Bundle.type``, and some clients send one
resource instead of a Bundle. Both are accepted. What cannot be read at all (entries that are not
objects, a resource without ``resourceType``, a selection that points at no draft) is refused with
a 400 that names the JSON path, because judging half an order list would be silently wrong.
On order-select only the selected drafts are judged (the others are context); on order-sign all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import InvalidRequest

ORDER_SELECT = "order-select"
ORDER_SIGN = "order-sign"
ORDER_HOOKS = (ORDER_SELECT, ORDER_SIGN)
MEDICATION_REQUEST = "MedicationRequest"


def _resource_at(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{path} is not a FHIR resource (a JSON object)")
    kind = value.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequest(f"{path}.resourceType is missing")
    return value


def all_drafts(context: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every resource of ``draftOrders`` (a Bundle's entries, or the single resource sent)."""
    path = "context.draftOrders"
    drafts = _resource_at(context.get("draftOrders"), path)
    if drafts["resourceType"] != "Bundle":
        return [drafts]
    entries = drafts.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest(f"{path}.entry is not an array")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}.entry[{i}]"
        if not isinstance(entry, Mapping):
            raise InvalidRequest(f"{where} is not an object")
        out.append(_resource_at(entry.get("resource"), f"{where}.resource"))
    return out


def reference(resource: Mapping[str, Any]) -> str | None:
    """``Type/id`` of a draft, or ``None`` when it has no usable id."""
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        return None
    return f"{resource['resourceType']}/{rid}"


def judged(hook: str, context: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The draft MedicationRequests this call must judge, in the order sent."""
    drafts = all_drafts(context)
    if hook == ORDER_SELECT:
        drafts = _selected(drafts, context.get("selections"))
    return [d for d in drafts if d["resourceType"] == MEDICATION_REQUEST]


def _selected(drafts: Sequence[Mapping[str, Any]], selections: Any) -> list[Mapping[str, Any]]:
    if not isinstance(selections, list):
        raise InvalidRequest("context.selections is not an array")
    by_reference = {ref: d for d in drafts if (ref := reference(d)) is not None}
    chosen: dict[str, Mapping[str, Any]] = {}
    for i, selection in enumerate(selections):
        if not isinstance(selection, str) or selection not in by_reference:
            raise InvalidRequest(f"context.selections[{i}] names no resource of draftOrders")
        chosen[selection] = by_reference[selection]
    return list(chosen.values())


__all__ = ["ORDER_HOOKS", "ORDER_SELECT", "ORDER_SIGN", "all_drafts", "judged", "reference"]
