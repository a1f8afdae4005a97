"""Audit records in the shared store: one row per hook call, for sites that must keep them.

The audit log (logger ``epidural_cds.audit``) is always written; a site whose log pipeline is
not an audit trail can also keep the records in the database the replicas already share
(``EPIDURAL_CDS_AUDIT_STORE=true``). A row holds no patient data and no token: the issuer and
tenant of the verified caller, the SHA-256 of the token's ``jti`` (enough to match a record with
the EHR's own log of the token, useless for replaying it), the service, the status, the card
topics and indicators, and the duration. The schema is created by migration ``0002``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Double, Engine, Index, Integer, String, Table, Text

from service.store import metadata

_SHORT = 128

audit_records = Table(
    "audit_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("hook_instance", String(_SHORT), nullable=True),
    Column("issuer", String(512), nullable=True),
    Column("tenant", String(256), nullable=True),
    Column("jti_sha256", String(64), nullable=True),
    Column("service", String(_SHORT), nullable=False),
    Column("status", Integer, nullable=False),
    Column("topics", Text, nullable=False),
    Column("indicators", Text, nullable=False),
    Column("duration_ms", Double, nullable=False),
    Index("ix_audit_records_recorded_at", "recorded_at"),
)


def _cut(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


class SqlAuditSink:
    """Writes audit records (the mapping of :meth:`service.http.audit.AuditRecord.fields`)."""

    def __init__(self, engine: Engine) -> None:
        """Keep the engine; opens no connection (gunicorn forks the workers after this)."""
        self._engine = engine

    def write(self, record: Mapping[str, Any]) -> None:
        """Insert one record in its own transaction; raises SQLAlchemy's errors."""
        row = {
            "recorded_at": datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")),
            "hook_instance": _cut(record.get("hookInstance"), _SHORT),
            "issuer": _cut(record.get("issuer"), 512),
            "tenant": _cut(record.get("tenant"), 256),
            "jti_sha256": record.get("jtiSha256"),
            "service": _cut(record["service"], _SHORT) or "",
            "status": int(record["status"]),
            "topics": ",".join(record.get("topics", ())),
            "indicators": ",".join(record.get("indicators", ())),
            "duration_ms": float(record["durationMs"]),
        }
        with self._engine.begin() as connection:
            connection.execute(audit_records.insert(), row)
