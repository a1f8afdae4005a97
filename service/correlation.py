"""The correlation id of the hook call being handled: its ``hookInstance``.

CDS Hooks gives every hook firing a ``hookInstance`` (CDS Hooks 2.0, "HTTP Request"), which the EHR
logs too, so it is the id that lets an operator follow one call through our logs and theirs. It is
known only once the body has been parsed, deep inside the handler, while the log formatter that
prints it lives at the HTTP edge; a context variable carries it between them without either
importing the other. Gunicorn's sync and gthread workers run each request in one thread, so the
variable is the request's own; the HTTP layer clears it when the request ends.
"""

from __future__ import annotations

from contextvars import ContextVar

#: Longest ``hookInstance`` kept for logs; the spec intends a UUID (36 characters).
MAX_CHARS = 100

_hook_instance: ContextVar[str | None] = ContextVar("epidural_cds_hook_instance", default=None)


def set_hook_instance(value: object) -> None:
    """Remember the current call's ``hookInstance`` (cut to :data:`MAX_CHARS`)."""
    _hook_instance.set(str(value)[:MAX_CHARS] if value is not None else None)


def hook_instance() -> str | None:
    """The current call's ``hookInstance``, or ``None`` outside a hook call."""
    return _hook_instance.get()


def clear() -> None:
    """Forget the correlation id (at the end of a request)."""
    _hook_instance.set(None)
