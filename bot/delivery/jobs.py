"""RQ jobs of the scale-out deployment (``REDIS_URL`` set).

A webhook enqueues :func:`process_identity` on ``<prefix>-inbound`` for each new message. The job processes
**all** pending messages of that person (oldest first, under the identity row lock), not just the one it was
enqueued for, so however many workers run the person's jobs and in whatever order, each message is processed
once and in order: a job that finds the queue already drained does nothing. It then sends that person's due
replies (:func:`send_identity`); a retry is scheduled as a ``send_identity`` job at the time the backoff
chose (``rq worker --with-scheduler``).

Run workers with ``flask delivery-worker --rq`` (an RQ worker inside the app), or with plain RQ::

    rq worker --url "$REDIS_URL" --with-scheduler -w rq.worker.SimpleWorker tusoat-inbound tusoat-outbox

Plain ``rq worker`` builds the app once per process from the environment (``create_app()``); the
``SimpleWorker`` class runs jobs in that process instead of forking one per job, so the app, its database
pool and the compiled questionnaire are reused.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.delivery.service import Delivery

__all__ = ["process_identity", "send_identity"]

_app_lock = threading.Lock()
_app: object | None = None


def _delivery() -> Delivery:
    """The delivery of the current app (``flask delivery-worker --rq``), else of an app built once here."""
    global _app
    from flask import current_app, has_app_context

    from bot.delivery.service import get_delivery

    if has_app_context():
        return get_delivery(current_app._get_current_object())  # type: ignore[attr-defined]
    with _app_lock:
        if _app is None:
            from bot import create_app

            _app = create_app({"WORKER_THREAD": False})
    return get_delivery(_app)  # type: ignore[arg-type]


def process_identity(identity_id: int) -> int:
    """Process every pending message of one person, then send their due replies.

    Returns:
        Messages processed.
    """
    from bot.delivery.service import INBOUND_LIMIT

    delivery = _delivery()
    processed = delivery.process_identity(identity_id)
    if len(processed) >= INBOUND_LIMIT:
        # A long backlog: give the other people a turn, then come back.
        delivery.queue("inbound").enqueue(process_identity, identity_id, result_ttl=0, job_timeout=300)
    delivery.send_identity(identity_id)
    return len(processed)


def send_identity(identity_id: int) -> int:
    """Send one person's due replies in order.

    Returns:
        Replies sent.
    """
    return _delivery().send_identity(identity_id)
