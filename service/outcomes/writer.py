"""Recording issued cards off the request path: a per-process buffer flushed in batches.

Why: one transaction per hook call cost about a third of a 100-resource call's CPU on SQLite
(the commit and SQLAlchemy's per-statement work). Cards are analytics and the key that later
feedback is matched on, not something the clinician waits for, so each process appends them to
a buffer and one background thread writes the buffer every ``interval_s`` in one transaction.

What this gives up, on purpose: a card becomes visible to the store up to ``interval_s`` after
it was sent (a clinician cannot read, decide and click within half a second, and the feedback
path of the same process flushes first), and cards still in the buffer when a process is killed
are lost; their later feedback is then stored as "unknown" and suppresses nothing, which errs
on the side of showing cards. A failed write (store down) is dropped with a warning; the buffer
is bounded so a long outage cannot grow memory.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque

from sqlalchemy.exc import SQLAlchemyError

from service.outcomes.records import IssuedCard
from service.outcomes.store import CardStore

log = logging.getLogger(__name__)


class CardWriter:
    """A process's buffer of issued cards and the thread that writes it."""

    def __init__(
        self, store: CardStore, interval_s: float = 0.5, max_pending: int = 10_000
    ) -> None:
        """Nothing starts yet: the thread is started in the process that first records a card
        (gunicorn forks the workers after the app is built)."""
        self.store = store
        self.interval_s = interval_s
        self._pending: deque[IssuedCard] = deque(maxlen=max_pending)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    def put(self, cards: list[IssuedCard]) -> None:
        """Queue ``cards`` for the next batch (microseconds; never touches the store)."""
        if not cards:
            return
        with self._lock:
            self._pending.extend(cards)
            if self._pid != os.getpid():
                self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        thread = threading.Thread(target=self._run, name="epidural-cds-card-writer", daemon=True)
        thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write everything buffered now, in one transaction; the number of cards written."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
            if not batch:
                return 0
            try:
                self.store.record_batch(batch)
            except SQLAlchemyError as exc:
                log.warning("%d issued cards not recorded (%s)", len(batch), type(exc).__name__)
                return 0
            return len(batch)
