"""The delivery worker loop: inbound threads processing people's recorded messages, one outbox thread sending.

Used three ways:

* embedded in each web process (``WORKER_THREAD``, the default outside tests): webhooks of the same process
  announce new messages through :meth:`DeliveryWorker.notify_inbound`, and a sweep every
  ``DELIVERY_SWEEP_SECONDS`` finds what other (or crashed) processes left;
* ``flask delivery-worker``: the same loop in the foreground, finding work by polling the database every
  ``DELIVERY_POLL_SECONDS`` (the pending-inbound partial index keeps that cheap). Run several, on several
  machines: on PostgreSQL they share the work safely;
* ``sweep`` mode, when ``REDIS_URL`` is set: RQ jobs do the work and the embedded thread only takes what is
  older than ``DELIVERY_SWEEP_AGE_SECONDS`` (an enqueue that failed, a job lost with its worker, a retry whose
  scheduled job never ran).

Per-person order never depends on which thread or process does the work: the database does it (identity row
lock and oldest-pending-first for inbound, head-of-queue leases for the outbox). The in-process queue only
avoids two threads of one process working on the same person at once.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Literal

from bot.store import repository as repo
from bot.store.models import utcnow

if TYPE_CHECKING:
    from bot.delivery.service import Delivery

__all__ = ["DeliveryWorker"]

log = logging.getLogger(__name__)

#: Identities taken per sweep.
SWEEP_LIMIT: Final = 500

#: Wait after an unexpected error (database down) before the loop tries again.
ERROR_PAUSE_SECONDS: Final = 2.0


class _IdentityQueue:
    """People waiting to be processed: FIFO, each at most once queued and at most once in flight."""

    def __init__(self) -> None:
        self._order: collections.deque[int] = collections.deque()
        self._queued: set[int] = set()
        self._busy: set[int] = set()
        self._again: set[int] = set()
        self._cond = threading.Condition()

    def put(self, identity_ids: Iterable[int]) -> None:
        with self._cond:
            added = False
            for identity_id in identity_ids:
                if identity_id in self._busy:
                    # Being processed: look again when that finishes (the new message may have missed it).
                    self._again.add(identity_id)
                elif identity_id not in self._queued:
                    self._queued.add(identity_id)
                    self._order.append(identity_id)
                    added = True
            if added:
                self._cond.notify_all()

    def take(self, timeout: float) -> int | None:
        with self._cond:
            if not self._order:
                self._cond.wait(timeout)
            if not self._order:
                return None
            identity_id = self._order.popleft()
            self._queued.discard(identity_id)
            self._busy.add(identity_id)
            return identity_id

    def done(self, identity_id: int, *, again: bool = False) -> None:
        with self._cond:
            self._busy.discard(identity_id)
            if identity_id in self._again:
                self._again.discard(identity_id)
                again = True
        if again:
            self.put([identity_id])

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._order)


class DeliveryWorker:
    """Worker threads for one :class:`~bot.delivery.service.Delivery`."""

    def __init__(
        self, delivery: Delivery, *, mode: Literal["full", "sweep"] = "full", announced: bool = False
    ) -> None:
        """Build a stopped worker.

        Args:
            delivery: The app's delivery machinery.
            mode: ``full`` does all the work; ``sweep`` only work older than ``DELIVERY_SWEEP_AGE_SECONDS``.
            announced: Webhooks of this process call :meth:`notify_inbound` (then the database is swept every
                ``DELIVERY_SWEEP_SECONDS`` only; otherwise every ``DELIVERY_POLL_SECONDS``).
        """
        self.delivery = delivery
        self.settings = delivery.settings
        self.mode = mode
        self.sweep_interval = (
            self.settings.sweep_seconds if (announced or mode == "sweep") else self.settings.poll_seconds
        )
        self._queue = _IdentityQueue()
        self._stop = threading.Event()
        self._outbox_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sweep_lock = threading.Lock()
        self._last_sweep = 0.0
        #: Counters for tests and logs.
        self.processed = 0
        self.sent = 0

    # -- control -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads (daemon threads: a provider call hung past its timeout cannot block exit)."""
        inbound_threads = self.settings.inbound_threads
        for i in range(inbound_threads):
            self._threads.append(
                threading.Thread(target=self._inbound_loop, name=f"tusoat-inbound-{i}", daemon=True)
            )
        self._threads.append(threading.Thread(target=self._outbox_loop, name="tusoat-outbox", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the threads to finish their current item and wait for them (at most ``timeout`` seconds)."""
        self._stop.set()
        self._outbox_wake.set()
        self._queue.wake_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("delivery threads still busy after %.0f s: %s", timeout, ", ".join(alive))

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or ``timeout``); True when stopped."""
        return self._stop.wait(timeout)

    def notify_inbound(self, identity_ids: Iterable[int]) -> None:
        """New messages from these people were recorded."""
        self._queue.put(identity_ids)

    def notify_outbox(self) -> None:
        """New replies were queued."""
        self._outbox_wake.set()

    # -- loops -------------------------------------------------------------------------------------------------

    def _sweep_due(self) -> bool:
        with self._sweep_lock:
            now = time.monotonic()
            if now - self._last_sweep < self.sweep_interval:
                return False
            self._last_sweep = now
            return True

    def _sweep(self) -> None:
        """Queue the people with recorded messages nobody announced to this process."""
        before = (
            utcnow() - dt.timedelta(seconds=self.settings.sweep_age_seconds) if self.mode == "sweep" else None
        )
        with self.delivery.store.sessions() as session:
            session.connection(execution_options={"sqlite_begin": "DEFERRED"})
            identities = repo.pending_inbound_identities(session, limit=SWEEP_LIMIT, received_before=before)
        if identities:
            self._queue.put(identities)

    def _inbound_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._sweep_due():
                    self._sweep()
                identity_id = self._queue.take(timeout=self.settings.poll_seconds)
            except Exception:
                log.exception("delivery sweep failed")
                self._stop.wait(ERROR_PAUSE_SECONDS)
                continue
            if identity_id is None:
                continue
            again = False
            try:
                processed = self.delivery.process_identity(identity_id)
                self.processed += len(processed)
                if processed:
                    self.notify_outbox()
                again = len(processed) >= _inbound_limit()
            except Exception:
                log.exception("processing person %d failed; will retry", identity_id)
                self._stop.wait(ERROR_PAUSE_SECONDS)
            finally:
                self._queue.done(identity_id, again=again)

    def _outbox_loop(self) -> None:
        while not self._stop.is_set():
            self._outbox_wake.clear()
            due_before = (
                utcnow() - dt.timedelta(seconds=self.settings.sweep_age_seconds) if self.mode == "sweep" else None
            )
            try:
                stats = self.delivery.sender.send_round(due_before=due_before)
            except Exception:
                log.exception("outbox round failed")
                self._stop.wait(ERROR_PAUSE_SECONDS)
                continue
            self.sent += stats.sent
            if stats.claimed == 0:
                interval = self.settings.sweep_seconds if self.mode == "sweep" else self.settings.poll_seconds
                self._outbox_wake.wait(interval)


def _inbound_limit() -> int:
    from bot.delivery.service import INBOUND_LIMIT

    return INBOUND_LIMIT
