"""Integration tests that start real servers (a FHIR R4 server, gunicorn) as subprocesses."""
