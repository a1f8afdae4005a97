"""The discovery document (``GET {base}/cds-services``) built from the content's service list.

CDS Hooks 2.0 §Discovery: each service has ``hook``, ``id``, ``description`` and optionally
``title``, ``prefetch`` and ``usageRequirements``; empty optional members are omitted. Because the
document is built from the same :class:`ServiceDefinition` the hook endpoint runs, what we
advertise is what we evaluate.
"""

from __future__ import annotations

from typing import Any

from service.content import Content, ServiceDefinition


def service_entry(service: ServiceDefinition, *, notice: str | None = None) -> dict[str, Any]:
    """One entry of ``services``; ``notice`` is appended to the description (e.g. dev mode)."""
    description = service.description if notice is None else f"{service.description} {notice}"
    entry: dict[str, Any] = {
        "hook": service.hook,
        "id": service.id,
        "title": service.title,
        "description": description,
    }
    if service.prefetch:
        entry["prefetch"] = {spec.key: spec.query for spec in service.prefetch}
    if service.usage_requirements:
        entry["usageRequirements"] = service.usage_requirements
    return entry


def document(content: Content, *, notice: str | None = None) -> dict[str, Any]:
    """The whole discovery response."""
    return {"services": [service_entry(s, notice=notice) for s in content.services]}
