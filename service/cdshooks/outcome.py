"""FHIR OperationOutcome bodies for error responses (CDS Hooks 3.0 makes this a SHOULD).

Only the safe, caller-facing message of a :class:`ServiceError` is included: never a stack
trace, a token or patient data.
"""

from __future__ import annotations

from typing import Any

FHIR_JSON = "application/fhir+json"


def operation_outcome(issue_code: str, message: str, *, severity: str = "error") -> dict[str, Any]:
    """A one-issue OperationOutcome."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": issue_code, "diagnostics": message}],
    }
