"""Tests of the JWT bearer authentication of CDS clients (``service.auth``, ``service.jwks``)."""
