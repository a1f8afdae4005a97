"""JWT replay protection that keeps hook calls answering while the shared store is down.

Why: the replay table (:class:`service.store.SqlReplayGuard`) lives in the same database as
the outcome store. Without a fallback, an authenticated hook call fails with a 500 the moment
that database cannot be reached, although everything else a hook call needs (the record, the
rules, the cards) is at hand, and issue 15 asks that hooks keep answering then.

:class:`FallbackReplayGuard` puts the SQL guard first and, only when the database cannot be
*reached* (:func:`is_outage`: connection refused or lost, pool or connect timeout), decides in
this process's memory instead, in one of two modes (``EPIDURAL_CDS_REPLAY_GUARD_WHEN_STORE_DOWN``):

* ``memory`` (default): the ``(iss, jti)`` is recorded in a bounded per-process memory and the
  call is accepted. The memory keeps it until its expiry, so the same token is refused by this
  process even while the database is still down (and after). Each one is also queued and written
  to the database on the first call that reaches it again, so sibling workers and replicas
  refuse it for the rest of its life. A queued ID that the database already holds was used
  elsewhere during the outage: that is logged and counted (a replay that got through).
* ``refuse``: a call whose ID cannot be recorded gets :class:`~service.errors.StoreUnavailable`
  (503 with ``Retry-After``), never a 500.

What ``memory`` gives up, on purpose: during an outage another worker or replica has no way to
know what this one accepted, so a captured token can be replayed once against each *sibling*
until the token expires (``exp`` + leeway: 5 minutes for the usual clients, at most the hour the
authenticator allows). Never against the same process. A write conflict that is not an outage
(an integrity error) still means "replay", and any other database error is still an error.

Waiting on a dead database on every call would add the connect timeout to each one, so after a
failed attempt the database is tried again at most once per ``retry_s`` (calls in between are
decided in memory at once). The transitions (down, back up) are each logged once, with a fixed
text and the error's type only (never a token or an ID), and reported to ``on_event`` (the
metrics module counts them).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.errors import StoreUnavailable
from service.store import check_ids

__all__ = [
    "MEMORY",
    "MEMORY_LIMIT",
    "MODES",
    "REFUSE",
    "RETRY_S",
    "FallbackReplayGuard",
    "SharedReplayGuard",
    "is_outage",
]

log = logging.getLogger(__name__)

MEMORY = "memory"
REFUSE = "refuse"
MODES = (MEMORY, REFUSE)

#: Most JWT IDs one process keeps while the store is down. At 50 calls a second and 5-minute
#: tokens a process holds 15,000; a full memory refuses new IDs with 503 rather than forget.
MEMORY_LIMIT = 50_000
#: Seconds between attempts to reach a store that was found down.
RETRY_S = 1.0

# Event names passed to ``on_event``: a fixed set, so they can be metric labels.
DOWN = "down"
UP = "up"
ACCEPTED_IN_MEMORY = "accepted_in_memory"
REFUSED = "refused"
USED_ELSEWHERE = "used_elsewhere"

Key = tuple[str, str]

# What the store raises; :func:`is_outage` tells which of them mean "cannot be reached".
_STORE_ERRORS = (DBAPIError, PoolTimeoutError, DisconnectionError)


class SharedReplayGuard(Protocol):
    """What the fallback needs of the database guard (:class:`service.store.SqlReplayGuard`)."""

    def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record the pair in the shared store; ``False`` if it is already there."""
        ...

    def release(self, iss: str, jti: str) -> None:
        """Forget the pair in the shared store."""
        ...


def is_outage(error: BaseException) -> bool:
    """Whether a database error means "cannot be reached" rather than "refused the statement".

    Operational and interface errors (connection refused, reset, closed; SQLite cannot open or
    lock the file), a connection the pool found dead, and the pool's or driver's timeouts are
    outages. Integrity errors (a conflicting row) and programming errors (a missing table) are
    not: the database answered.
    """
    if isinstance(error, IntegrityError):
        return False
    if isinstance(error, OperationalError | InterfaceError | PoolTimeoutError | DisconnectionError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


class _Memory:
    """IDs accepted while the store was down, each until its expiry; bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.until: dict[Key, float] = {}
        self._expiries: list[tuple[float, Key]] = []  # a heap: the soonest expiry first

    def holds(self, key: Key, now: float) -> bool:
        until = self.until.get(key)
        return until is not None and until > now

    def prune(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            until, key = heapq.heappop(expiries)
            if self.until.get(key) == until:
                del self.until[key]

    def add(self, key: Key, until: float) -> None:
        self.until[key] = until
        heapq.heappush(self._expiries, (until, key))

    def discard(self, key: Key) -> None:
        # Its heap entry stays until it expires; prune skips entries no longer in ``until``.
        self.until.pop(key, None)


class FallbackReplayGuard:
    """A :class:`service.security.auth.ReplayGuard` over the shared store, with memory for
    outages (see the module docstring). Thread-safe; one per process."""

    def __init__(
        self,
        shared: SharedReplayGuard,
        *,
        mode: str = MEMORY,
        limit: int = MEMORY_LIMIT,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        """``clock`` gives epoch seconds (token expiries), ``monotonic`` paces the retries."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if limit < 1 or retry_s < 0:
            raise ValueError("limit must be at least 1 and retry_s not negative")
        self._shared = shared
        self._mode = mode
        self._retry_s = retry_s
        self._clock = clock
        self._monotonic = monotonic
        self._on_event = on_event
        self._memory = _Memory(limit)
        self._pending: dict[Key, float] = {}  # accepted in memory, not yet in the store
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._down = False
        self._next_try = 0.0

    @property
    def store_down(self) -> bool:
        """Whether the last attempt to reach the store failed."""
        return self._down

    @property
    def pending(self) -> int:
        """How many IDs accepted in memory still wait to be written to the store."""
        return len(self._pending)

    def remember(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record ``(iss, jti)``; ``False`` for a replay. :class:`StoreUnavailable` when it can
        be recorded nowhere (``refuse`` mode, or a full memory)."""
        check_ids(iss, jti)  # before memory takes an ID the store could never hold
        key = (iss, jti)
        now = self._clock()
        with self._lock:
            memory = self._memory
            if memory.until:
                if memory.holds(key, now):
                    return False
                memory.prune(now)
            skip_store = self._down and self._monotonic() < self._next_try
        if not skip_store:
            try:
                claimed = self._shared.remember(iss, jti, expires_at)
            except IntegrityError:
                return False  # the database answered: the row is there
            except _STORE_ERRORS as error:
                if not is_outage(error):
                    raise
                self._went_down(error)
            else:
                self._came_up()
                if self._pending:
                    self._flush(now)
                return claimed
        return self._in_memory(key, expires_at, now)

    def release(self, iss: str, jti: str) -> None:
        """Forget ``(iss, jti)``, so that the same token may be sent again.

        For a call that was authenticated but then took no effect (feedback that could not be
        stored): the client's retry with the same token must not be refused as a replay. Best
        effort: when the ID is in the store and the store cannot be reached, it stays used.
        """
        key = (iss, jti)
        with self._lock:
            self._memory.discard(key)
            if self._pending.pop(key, None) is not None:
                return  # never reached the store
        try:
            self._shared.release(iss, jti)
        except _STORE_ERRORS as error:
            if not is_outage(error):
                raise
            log.warning("JWT replay guard: a token could not be released, the store is down")

    def _in_memory(self, key: Key, expires_at: float, now: float) -> bool:
        if self._mode == REFUSE:
            self._event(REFUSED)
            raise StoreUnavailable("the service cannot record this call's token now; send it again")
        with self._lock:
            memory = self._memory
            if memory.holds(key, now):
                return False  # a concurrent call with the same token got here first
            if len(memory.until) >= memory.limit:
                full = True
            else:
                full = False
                memory.add(key, float(expires_at))
                self._pending[key] = float(expires_at)
        if full:
            self._event(REFUSED)
            log.warning("JWT replay guard: memory full while the store is down; call refused")
            raise StoreUnavailable("the service cannot record this call's token now; send it again")
        self._event(ACCEPTED_IN_MEMORY)
        return True

    def _flush(self, now: float) -> None:
        """Write the IDs accepted during the outage to the store (one thread at a time)."""
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread is writing them
        try:
            with self._lock:
                batch = [(key, until) for key, until in self._pending.items() if until > now]
                self._pending.clear()
            for done, ((iss, jti), until) in enumerate(batch):
                try:
                    claimed = self._shared.remember(iss, jti, until)
                except IntegrityError:
                    claimed = False
                except _STORE_ERRORS as error:
                    if not is_outage(error):
                        raise
                    with self._lock:  # keep the rest for the next call that reaches the store
                        for key, left in batch[done:]:
                            if key in self._memory.until:
                                self._pending.setdefault(key, left)
                    self._went_down(error)
                    return
                if not claimed:
                    self._event(USED_ELSEWHERE)
                    log.warning(
                        "JWT replay guard: a token accepted while the store was down had also "
                        "been used elsewhere"
                    )
        finally:
            self._flush_lock.release()

    def _went_down(self, error: BaseException) -> None:
        with self._lock:
            was_down, self._down = self._down, True
            self._next_try = self._monotonic() + self._retry_s
        if not was_down:
            self._event(DOWN)
            then = "refused with 503" if self._mode == REFUSE else "checked in this process only"
            log.warning(
                "JWT replay guard: the store cannot be reached (%s); tokens are %s until it is "
                "back",
                type(error).__name__,
                then,
            )

    def _came_up(self) -> None:
        if not self._down:
            return
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            self._event(UP)
            log.warning(
                "JWT replay guard: the store is reachable again; tokens accepted meanwhile are "
                "written to it"
            )

    def _event(self, name: str) -> None:
        if self._on_event is not None:
            self._on_event(name)
