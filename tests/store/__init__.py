"""Tests of the persistence layer (``service.store``) on SQLite and on a real PostgreSQL."""
