"""Data access: resolve CDS Hooks prefetch; fetch missing FHIR R4 data from the client's server."""
