"""The CDS Hooks 2.0 protocol: schemas, discovery, hook handling and error documents.

Spec: https://cds-hooks.hl7.org/2.0/ (checklist in shared/spec/cds-hooks-2.0.md). Nothing here
knows Flask; the HTTP layer in :mod:`service.http.app` only moves bytes in and out.
"""
