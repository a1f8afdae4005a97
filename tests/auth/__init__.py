"""Tests of the JWT bearer authentication of CDS clients (``service.security.auth``, ``.jwks``)."""
