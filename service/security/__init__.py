"""Trust: authenticating CDS clients (JWT), their key sets, and the configured trusted issuers.

Kept apart from the HTTP edge so the checks can be tested without a server, and so the one
exception every failure becomes (:class:`service.security.failures.AuthFailure`) has a home that
both the authenticator and the key-set cache import without importing each other.
"""
