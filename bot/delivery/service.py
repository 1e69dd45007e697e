"""One app's delivery machinery: adapters, webhook recording, inbound processing, outbox, queue hand-off."""

from __future__ import annotations

import atexit
import datetime as dt
import importlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import requests
from requests.adapters import HTTPAdapter

from bot.channels import ChannelAdapter, InboundEvent, enabled_channels
from bot.channels.base import EVENT_KINDS
from bot.delivery.outbox import OutboxSender
from bot.delivery.settings import DeliverySettings
from bot.delivery.tokens import build_zalo_token_store
from bot.pipeline import (
    EngineLike,
    PipelineConfig,
    ProcessedInbound,
    RecordedEvent,
    get_engine,
    process_pending,
    record_events,
)
from bot.store import repository as repo
from bot.store.db import get_store, run_in_transaction
from bot.store.models import utcnow

if TYPE_CHECKING:
    from flask import Flask

    from bot.delivery.worker import DeliveryWorker

__all__ = ["EXTENSION_KEY", "Delivery", "get_delivery", "init_app"]

log = logging.getLogger(__name__)

#: Key under ``app.extensions``.
EXTENSION_KEY: Final = "bot.delivery"

#: Messages of one person processed per call before the others get a turn.
INBOUND_LIMIT: Final = 50


def channel_settings(app: Flask) -> dict[str, Any]:
    """Settings the adapters read: the plain environment (``ZALO_OA_APP_ID``...) overlaid with ``app.config``
    (``TUSOAT_ZALO_OA_APP_ID`` and test settings), so either spelling works. Under ``TESTING`` only
    ``app.config``: a developer's shell must not switch channels on in every test."""
    merged: dict[str, Any] = {} if app.testing else dict(os.environ)
    merged.update({k: v for k, v in app.config.items() if isinstance(k, str)})
    return merged


class Delivery:
    """Everything between a provider's webhook and the provider's send API, for one app.

    Attributes:
        adapters: The enabled channels (``bot.channels.enabled_channels``).
        settings: :class:`DeliverySettings`.
        sender: The :class:`OutboxSender`.
    """

    def __init__(self, app: Flask, *, adapters: Mapping[str, ChannelAdapter] | None = None) -> None:
        """Build the adapters (a half-configured channel fails here, at start-up) and the sender."""
        self.app = app
        self.settings = DeliverySettings.from_config(app.config, testing=bool(app.testing))
        self.store = get_store(app)
        self.http = requests.Session()
        # Sends run in parallel: one pooled connection per send thread instead of urllib3's default 10.
        pool = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, self.settings.send_threads))
        self.http.mount("https://", pool)
        self.http.mount("http://", pool)
        if adapters is None:
            config = channel_settings(app)
            from bot.channels import ZaloOAAdapter

            zalo_tokens = None
            if any(config.get(name) for name in ZaloOAAdapter.REQUIRED):
                zalo_tokens = build_zalo_token_store(self.store, config, session=self.http)
            adapters = enabled_channels(config, session=self.http, zalo_tokens=zalo_tokens)
        self.adapters: dict[str, ChannelAdapter] = dict(adapters)
        self.sender = OutboxSender(self.store, self.adapters, self.settings)
        self._engine: EngineLike | None = None
        self._worker: DeliveryWorker | None = None
        self._worker_pid: int | None = None
        self._worker_lock = threading.Lock()
        self._redis: Any = None
        self._queues: dict[str, Any] = {}

    # -- shared pieces -----------------------------------------------------------------------------------------

    @property
    def pipeline_config(self) -> PipelineConfig:
        """The pipeline's settings (pseudonym key, expiry)."""
        return PipelineConfig.from_app(self.app)

    def engine(self) -> EngineLike:
        """The conversation engine: the one the chat channel uses (tests replace it), or ``CONVERSATION_ENGINE``
        (``module:attribute``, a class or factory; for tests and benchmarks in other processes), or the default."""
        from bot.chat.routes import ENGINE_KEY

        override = self.app.extensions.get(ENGINE_KEY)
        if override is not None:
            return override  # type: ignore[no-any-return]
        if self._engine is None:
            spec = self.app.config.get("CONVERSATION_ENGINE")
            if spec:
                module, _, attribute = str(spec).partition(":")
                target = getattr(importlib.import_module(module), attribute)
                self._engine = target() if callable(target) else target
            else:
                self._engine = get_engine(self.pipeline_config.expiry)
        assert self._engine is not None
        return self._engine

    # -- webhook side ------------------------------------------------------------------------------------------

    def record(self, events: Sequence[InboundEvent]) -> list[RecordedEvent]:
        """Record verified events (one transaction, committed on return); the webhook's only database work.

        On PostgreSQL the transaction gets ``statement_timeout`` and ``lock_timeout`` of
        ``WEBHOOK_DB_TIMEOUT_MS``, so a slow database makes it fail (and the webhook answer 503, and the
        provider redeliver) instead of running past the provider's deadline.

        Raises:
            Exception: Any database error: nothing was recorded.
        """
        config = self.pipeline_config
        timeout_ms = int(self.settings.webhook_db_timeout_ms)
        postgresql = self.store.dialect == "postgresql"

        def work(session: Any) -> list[RecordedEvent]:
            if postgresql and timeout_ms > 0:
                # Both limits in one round trip; ``true`` = local to this transaction.
                session.connection().exec_driver_sql(
                    f"SELECT set_config('statement_timeout', '{timeout_ms}', true), "
                    f"set_config('lock_timeout', '{timeout_ms}', true)"
                )
            return record_events(session, events, config=config, now=utcnow())

        with self.store.sessions() as session:
            return run_in_transaction(session, work, attempts=3)

    def announce(self, recorded: Sequence[RecordedEvent]) -> None:
        """Tell a worker about newly recorded events (after the commit); never raises.

        With ``REDIS_URL``: one RQ job per event on ``<prefix>-inbound``; a failed enqueue is only logged, the
        rows are in the database and a sweeper finds them. Otherwise the in-process worker's queue.
        """
        if not recorded:
            return
        if self.settings.redis_url:
            for event in recorded:
                try:
                    self.queue("inbound").enqueue(
                        "bot.delivery.jobs.process_identity",
                        event.identity_id,
                        job_timeout=300,
                        result_ttl=0,
                        failure_ttl=7 * 86400,
                    )
                except Exception:
                    log.warning("could not enqueue inbound %d; left to the sweeper", event.inbound_id, exc_info=True)
            return
        worker = self._worker
        if worker is not None and self._worker_pid == os.getpid():
            worker.notify_inbound([e.identity_id for e in recorded])

    # -- worker side -------------------------------------------------------------------------------------------

    def process_identity(self, identity_id: int) -> list[ProcessedInbound]:
        """Process one person's recorded messages in order, then acknowledge them where the channel wants it."""
        with self.store.sessions() as session:
            processed = process_pending(
                session,
                identity_id,
                engine=self.engine(),
                config=self.pipeline_config,
                limit=INBOUND_LIMIT,
                max_attempts=self.settings.inbound_max_attempts,
            )
        for item in processed:
            self._acknowledge(item)
        return processed

    def _acknowledge(self, item: ProcessedInbound) -> None:
        """``adapter.acknowledge`` (Telegram button taps stop spinning); failures are only logged."""
        adapter = self.adapters.get(item.channel)
        if adapter is None or type(adapter).acknowledge is ChannelAdapter.acknowledge:
            return
        event = event_from_document(item)
        if event is None:
            return
        try:
            result = adapter.acknowledge(event)
        except Exception:
            log.warning("acknowledging %s event failed", item.channel, exc_info=True)
            return
        if result is not None and not result.ok:
            log.info("%s acknowledge refused: %s %s", item.channel, result.error_code, result.error_message)

    def send_identity(self, identity_id: int) -> int:
        """Send one person's due replies in order (an RQ job); schedule a job for the next retry, if any.

        Returns:
            Replies sent.
        """
        sent = 0
        for _ in range(1000):  # bounded: a person's queue is a handful of rows
            stats = self.sender.send_round(identity_id=identity_id)
            sent += stats.sent
            if stats.claimed == 0 or stats.retried:
                break
        if self.settings.redis_url:
            with self.store.sessions() as session:
                session.connection(execution_options={"sqlite_begin": "DEFERRED"})
                due = repo.next_outbox_due(session, identity_id)
            if due is not None and due > utcnow():
                self.schedule_send(identity_id, due)
        return sent

    def schedule_send(self, identity_id: int, when: dt.datetime) -> None:
        """Enqueue a ``send_identity`` job for ``when`` (needs ``rq worker --with-scheduler``); never raises."""
        try:
            self.queue("outbox").enqueue_at(
                when,
                "bot.delivery.jobs.send_identity",
                identity_id,
                # One scheduled job per person and moment, however many jobs asked for it.
                job_id=f"{self.settings.queue_prefix}-send-{identity_id}-{int(when.timestamp())}",
                job_timeout=300,
                result_ttl=0,
                failure_ttl=7 * 86400,
            )
        except Exception:
            log.warning("could not schedule the retry of person %d", identity_id, exc_info=True)

    # -- queues (RQ) -------------------------------------------------------------------------------------------

    def redis(self) -> Any:
        """The Redis connection (short timeouts: a webhook must not hang on Redis)."""
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(
                self.settings.redis_url or "", socket_timeout=1.0, socket_connect_timeout=1.0
            )
        return self._redis

    def queue(self, kind: str) -> Any:
        """RQ queue ``<prefix>-<kind>`` (``inbound`` or ``outbox``)."""
        queue = self._queues.get(kind)
        if queue is None:
            from rq import Queue

            queue = self._queues[kind] = Queue(f"{self.settings.queue_prefix}-{kind}", connection=self.redis())
        return queue

    def queue_names(self) -> list[str]:
        """Names of both queues, inbound first (an RQ worker drains its queues in this order)."""
        return [f"{self.settings.queue_prefix}-inbound", f"{self.settings.queue_prefix}-outbox"]

    # -- the embedded worker -----------------------------------------------------------------------------------

    def start_worker(self) -> DeliveryWorker:
        """Start the worker threads in this process (once per process)."""
        from bot.delivery.worker import DeliveryWorker

        with self._worker_lock:
            if self._worker is not None and self._worker_pid == os.getpid():
                return self._worker
            mode: Literal["full", "sweep"] = "sweep" if self.settings.redis_url else "full"
            worker = DeliveryWorker(self, mode=mode, announced=True)
            worker.start()
            self._worker, self._worker_pid = worker, os.getpid()
            atexit.register(self.stop)
            log.info("delivery worker thread started (%s mode, pid %d)", mode, os.getpid())
            return worker

    def ensure_worker(self) -> None:
        """Start the worker in this process if it has none yet (first request of a forked or reloaded child)."""
        if self._worker_pid != os.getpid():
            self.start_worker()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this process's worker threads and the send pool (idempotent)."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
            pid, self._worker_pid = self._worker_pid, None
        if worker is not None and pid == os.getpid():
            worker.stop(timeout)
            atexit.unregister(self.stop)
        self.sender.close()


def event_from_document(item: ProcessedInbound) -> InboundEvent | None:
    """Rebuild the adapter's event from the recorded document (None when it was erased meanwhile)."""
    document = item.document
    user_ref = document.get("user_ref")
    raw = document.get("raw")
    if not isinstance(user_ref, str) or not isinstance(raw, dict):
        return None
    kind = document.get("kind") if document.get("kind") in EVENT_KINDS else "unsupported"
    try:
        timestamp = dt.datetime.fromisoformat(str(document.get("timestamp")))
    except ValueError:
        timestamp = utcnow()
    return InboundEvent(
        channel=item.channel,
        message_id=item.message_id or "",
        user_ref=user_ref,
        kind=kind,  # type: ignore[arg-type]
        text=document.get("text"),
        payload=document.get("payload"),
        timestamp=timestamp,
        raw=raw,
        info=dict(document.get("info") or {}),
    )


def get_delivery(app: Flask | None = None) -> Delivery:
    """The app's :class:`Delivery` (default: the current app)."""
    if app is None:
        from flask import current_app

        app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("the channels blueprint (bot.delivery.init_app) is not registered") from None


def init_app(app: Flask) -> Delivery:
    """Attach a :class:`Delivery` to ``app`` and start the worker thread when configured.

    The thread starts here when the app is made by a server (gunicorn, ``webhook.py``), and on the first
    request when it is made by the Flask CLI: ``flask run``'s reloader parent never serves a request, so it
    never starts one, and other commands (``flask delivery-worker``, ``flask db-upgrade``) start none.
    """
    import click

    delivery = Delivery(app)
    app.extensions[EXTENSION_KEY] = delivery
    if delivery.settings.worker_thread:
        if click.get_current_context(silent=True) is None:
            delivery.start_worker()
        app.before_request(delivery.ensure_worker)
    return delivery
