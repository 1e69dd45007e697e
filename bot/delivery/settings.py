"""Settings of webhook recording, inbound processing and the outbox worker.

Every setting is read from ``app.config`` (``TUSOAT_<NAME>`` in the environment, JSON-parsed by Flask, so
``TUSOAT_DELIVERY_SEND_THREADS=4`` is the number 4). ``REDIS_URL`` is also read from the plain environment variable
that hosting platforms set (not under ``TESTING``, so a developer's shell cannot turn tests into RQ tests).

================================== ========= =================================================================
name                               default   meaning
================================== ========= =================================================================
``WORKER_THREAD``                  on        run the delivery worker in a thread of each web process (off
                                             under ``TESTING`` unless set explicitly)
``REDIS_URL``                      none      set: webhooks enqueue RQ jobs (scale-out); the web processes'
                                             threads then only sweep up what the jobs missed
``DELIVERY_QUEUE_PREFIX``          tusoat    RQ queues ``<prefix>-inbound`` and ``<prefix>-outbox``
``DELIVERY_POLL_SECONDS``          0.5       idle wait of a worker loop between database polls
``DELIVERY_SWEEP_SECONDS``         5         how often a web process's thread looks for work nobody announced
``DELIVERY_SWEEP_AGE_SECONDS``     10        RQ mode: a sweeper only takes work older than this
``DELIVERY_LEASE_SECONDS``         120       how long a claimed outbox row is hidden from other workers; a worker
                                             killed mid-send delays that person's replies this long
``DELIVERY_BATCH``                 32        outbox rows claimed at once (each the head of a different person)
``DELIVERY_SEND_THREADS``          8         parallel provider calls per worker (different people only)
``DELIVERY_INBOUND_THREADS``       2         people processed in parallel per worker
``DELIVERY_RETRY_BASE_SECONDS``    2         first retry delay; doubles per attempt (with jitter)
``DELIVERY_RETRY_MAX_SECONDS``     600       longest retry delay (a provider's ``retry_after`` may exceed it)
``DELIVERY_MAX_ATTEMPTS``          20        send attempts before a reply is given up (≈ 2.5 h with the defaults)
``DELIVERY_INBOUND_MAX_ATTEMPTS``  5         processing attempts before an inbound message is given up
``WEBHOOK_DB_TIMEOUT_MS``          1500      PostgreSQL: statement/lock timeout of the webhook's INSERT; past it
                                             the webhook answers 503 and the provider redelivers
================================== ========= =================================================================
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["DeliverySettings"]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """See the module docstring for each field's setting and default."""

    worker_thread: bool = False
    redis_url: str | None = None
    queue_prefix: str = "tusoat"
    poll_seconds: float = 0.5
    sweep_seconds: float = 5.0
    sweep_age_seconds: float = 10.0
    lease_seconds: float = 120.0
    batch: int = 32
    send_threads: int = 8
    inbound_threads: int = 2
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    max_attempts: int = 20
    inbound_max_attempts: int = 5
    webhook_db_timeout_ms: int = 1500

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, testing: bool = False) -> DeliverySettings:
        """Read the settings from ``app.config`` (and ``REDIS_URL`` from the environment outside tests)."""
        worker_thread = config.get("WORKER_THREAD")
        redis_url = config.get("REDIS_URL") or (None if testing else os.environ.get("REDIS_URL"))

        def number(name: str, default: float) -> float:
            value = config.get(name)
            return default if value in (None, "") else float(value)

        return cls(
            worker_thread=(not testing) if worker_thread is None else _truthy(worker_thread),
            redis_url=str(redis_url) if redis_url else None,
            queue_prefix=str(config.get("DELIVERY_QUEUE_PREFIX") or "tusoat"),
            poll_seconds=number("DELIVERY_POLL_SECONDS", 0.5),
            sweep_seconds=number("DELIVERY_SWEEP_SECONDS", 5.0),
            sweep_age_seconds=number("DELIVERY_SWEEP_AGE_SECONDS", 10.0),
            lease_seconds=number("DELIVERY_LEASE_SECONDS", 120.0),
            batch=max(1, int(number("DELIVERY_BATCH", 32))),
            send_threads=max(1, int(number("DELIVERY_SEND_THREADS", 8))),
            inbound_threads=max(1, int(number("DELIVERY_INBOUND_THREADS", 2))),
            retry_base_seconds=number("DELIVERY_RETRY_BASE_SECONDS", 2.0),
            retry_max_seconds=number("DELIVERY_RETRY_MAX_SECONDS", 600.0),
            max_attempts=max(1, int(number("DELIVERY_MAX_ATTEMPTS", 20))),
            inbound_max_attempts=max(1, int(number("DELIVERY_INBOUND_MAX_ATTEMPTS", 5))),
            webhook_db_timeout_ms=int(number("WEBHOOK_DB_TIMEOUT_MS", 1500)),
        )
