"""Reusable harnesses that run real servers (e.g. the sekmet FHIR R4 server) for tests."""
