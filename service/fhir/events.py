"""What the FHIR layer reports about its fetches, for whoever counts them (metrics).

The fetch code must not import the HTTP layer's metrics (the data flow runs one way), and the
metrics must see every fetch, its duration and why it failed. So the fetch code calls
:func:`fetched` and the HTTP layer subscribes a callback at startup with :func:`subscribe`. With
no subscriber (the CLI, unit tests) a report costs one empty loop.

``kind`` names why a fetch failed, from a small fixed set: ``status`` (the server answered an
HTTP error), ``deadline`` (the call's fetch deadline or a timeout), ``refused`` (our outbound
policy stopped it) and ``error`` (anything else: connection failure, a response that is not a
FHIR resource, too large...); ``None`` for a success.
"""

from __future__ import annotations

from collections.abc import Callable

FetchListener = Callable[[str, float, "str | None"], None]
"""``(prefetch key, seconds, failure kind or None)``."""

_listeners: list[FetchListener] = []


def subscribe(listener: FetchListener) -> None:
    """Call ``listener`` after every FHIR fetch of a prefetch key (idempotent)."""
    if listener not in _listeners:
        _listeners.append(listener)


def fetched(key: str, seconds: float, failure: str | None = None) -> None:
    """Report one fetch of ``key`` that took ``seconds`` (``failure``: see the module docstring)."""
    for listener in _listeners:
        listener(key, seconds, failure)
