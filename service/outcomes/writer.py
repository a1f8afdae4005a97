"""Recording issued cards off the request path: a per-process buffer flushed in batches.

Why: one transaction per hook call cost about a third of a 100-resource call's CPU on SQLite
(the commit and SQLAlchemy's per-statement work). Cards are analytics and the key that later
feedback is matched on, not something the clinician waits for, so each process appends them to a
buffer, written in one transaction once its oldest card has waited ``interval_s``.

Who writes it: the request thread, after its response has gone out (the HTTP layer calls
:meth:`CardWriter.flush_if_due` when the response is closed), so in gunicorn's sync workers (one
request thread each) the writes never run beside a hook call. A background thread writing the
buffer every half second used to compete with the request thread for the GIL: the database
driver gives it up around each call into SQLite, and getting it back from a busy request thread
takes up to the interpreter's 5 ms switch interval each time, so under load a batch took seconds
of wall time, and the forced switches cost both threads CPU (the larger part of what recording
cost in issue 15's benchmark). The thread stays, for a worker that gets no further call: it
writes only what has waited twice the interval.

What this gives up, on purpose: a card becomes visible to the store about ``interval_s`` after
it was sent under load, and at most three times that (1.5 s) on an idle worker (a clinician
cannot read, decide and click that fast, and the feedback path of the same process flushes
first), and cards still in the buffer when a process is killed are lost; their later feedback is
then stored as "unknown" and suppresses nothing, which errs on the side of showing cards. A
failed write (store down) is dropped with a warning; the buffer is bounded so a long outage
cannot grow memory.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque

from sqlalchemy.exc import SQLAlchemyError

from service.outcomes.records import IssuedCard
from service.outcomes.store import CardStore

log = logging.getLogger(__name__)


class CardWriter:
    """A process's buffer of issued cards, written after responses or by an idle-time thread."""

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
        self._oldest: float | None = None  # when the oldest buffered card was queued (monotonic)

    def put(self, cards: list[IssuedCard]) -> None:
        """Queue ``cards`` for the next batch (microseconds; never touches the store)."""
        if not cards:
            return
        with self._lock:
            if self._oldest is None:
                self._oldest = time.monotonic()
            self._pending.extend(cards)
            if self._pid != os.getpid():
                self._start()

    def flush_if_due(self) -> int:
        """Write the buffer if its oldest card has waited ``interval_s``; the cards written.

        Called after each response has been sent (a few attribute reads when nothing is due).
        """
        oldest = self._oldest
        if oldest is None or time.monotonic() - oldest < self.interval_s:
            return 0
        return self.flush()

    def _start(self) -> None:
        self._pid = os.getpid()
        thread = threading.Thread(target=self._run, name="epidural-cds-card-writer", daemon=True)
        thread.start()
        atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            oldest = self._oldest
            # Under load the request thread writes after its responses; what has waited twice
            # the interval is on a worker that is not answering calls, so nothing competes.
            if oldest is not None and time.monotonic() - oldest >= 2 * self.interval_s:
                self.flush()

    def flush(self) -> int:
        """Write everything buffered now, in one transaction; the number of cards written."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
                self._oldest = None
            if not batch:
                return 0
            try:
                self.store.record_batch(batch)
            except SQLAlchemyError as exc:
                log.warning("%d issued cards not recorded (%s)", len(batch), type(exc).__name__)
                return 0
            return len(batch)
