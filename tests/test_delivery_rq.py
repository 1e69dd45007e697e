"""Scale-out mode (``REDIS_URL``): webhooks enqueue RQ jobs, jobs process and send per person, retries scheduled.

Needs Redis on 127.0.0.1:6379 (``.ci/run`` starts it); skipped without it. Each test uses its own queue prefix
and deletes its keys, so parallel runs do not see each other's jobs.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from bot.delivery import get_delivery
from bot.store.models import OutboundStatus, utcnow
from tests.delivery_support import (
    close_app,
    db_url,
    drain,
    make_app,
    outbox,
    post,
    zalo_oa_delivery,
    zalo_oa_event,
    zalo_oa_settings,
)
from tests.fakes import FakeZaloOA, Reply

pytestmark = pytest.mark.db

__all__ = ["db_url"]

REDIS_URL = "redis://127.0.0.1:6379/0"
USER = "2468458835296117922"


def _redis() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return client


@pytest.fixture
def rq_app(db_url: str) -> Iterator[tuple[Flask, FakeZaloOA]]:
    client = _redis()
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    with FakeZaloOA() as fake:
        app = make_app(db_url, REDIS_URL=REDIS_URL, DELIVERY_QUEUE_PREFIX=prefix, **zalo_oa_settings(fake))
        try:
            yield app, fake
        finally:
            close_app(app)
            for key in client.scan_iter(f"*{prefix}*"):
                client.delete(key)
            client.close()


def say(app: Flask, *texts: str, start: int = 0) -> None:
    for i, text in enumerate(texts, start):
        body = zalo_oa_event(text=text, msg_id=f"rq-{i}")
        assert post(app, "zalo_oa", *zalo_oa_delivery(body)).status_code == 200


def run_worker(app: Flask) -> None:
    """An RQ worker in this (main) thread until the queues are empty, with the scheduler."""
    from rq import SimpleWorker

    delivery = get_delivery(app)
    worker = SimpleWorker(delivery.queue_names(), connection=delivery.redis())
    with app.app_context():
        worker.work(burst=True, with_scheduler=True)


def sent_texts(fake: FakeZaloOA) -> list[str]:
    return [body["message"]["text"] for _token, body in fake.sent]


def test_webhooks_enqueue_one_job_per_event_and_jobs_deliver_in_order(rq_app: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = rq_app
    say(app, "4", "5", "6")
    delivery = get_delivery(app)
    assert delivery.queue("inbound").count == 3
    assert fake.sent == []
    run_worker(app)
    assert sent_texts(fake) == ["Thu nhập mỗi tháng?", "KẾT QUẢ SƠ BỘ\nHộ nghèo.", "Đã xong."]
    assert [(r.status, r.attempts) for r in outbox(app)] == [(OutboundStatus.SENT, 1)] * 3
    # The first job drained the person's whole queue; the two others found nothing left to do.
    assert delivery.queue("inbound").count == 0


def test_a_failed_send_schedules_its_retry_as_a_job(rq_app: tuple[Flask, FakeZaloOA]) -> None:
    from rq.registry import ScheduledJobRegistry

    app, fake = rq_app
    fake.script("send", Reply(500, "x"))
    say(app, "4")
    run_worker(app)
    [row] = outbox(app)
    assert (row.status, row.attempts) == (OutboundStatus.PENDING, 1)
    delivery = get_delivery(app)
    registry = ScheduledJobRegistry(queue=delivery.queue("outbox"))
    assert registry.count == 1
    assert row.next_attempt_at is not None
    time.sleep(max(0.0, (row.next_attempt_at - utcnow()).total_seconds()) + 1.1)
    run_worker(app)
    assert sent_texts(fake) == ["Thu nhập mỗi tháng?"]
    assert [(r.status, r.attempts) for r in outbox(app)] == [(OutboundStatus.SENT, 2)]


def test_without_redis_the_webhook_still_records_and_a_sweeper_delivers(db_url: str) -> None:
    with FakeZaloOA() as fake:
        # Nothing listens on this port: every enqueue fails fast.
        app = make_app(db_url, REDIS_URL="redis://127.0.0.1:1/0", **zalo_oa_settings(fake))
        try:
            started = time.monotonic()
            say(app, "4")
            assert time.monotonic() - started < 2.5
            drain(app)  # what the sweeper (or flask delivery-worker) does
            assert sent_texts(fake) == ["Thu nhập mỗi tháng?"]
        finally:
            close_app(app)


def test_sweep_mode_only_takes_work_older_than_the_sweep_age(db_url: str) -> None:
    from bot.delivery.worker import DeliveryWorker

    with FakeZaloOA() as fake:
        app = make_app(
            db_url,
            REDIS_URL="redis://127.0.0.1:1/0",
            DELIVERY_SWEEP_AGE_SECONDS=1.0,
            DELIVERY_SWEEP_SECONDS=0.1,
            **zalo_oa_settings(fake),
        )
        worker = DeliveryWorker(get_delivery(app), mode="sweep", announced=True)
        try:
            say(app, "4")
            recorded_at = utcnow()
            worker.start()
            deadline = time.monotonic() + 15
            while not fake.sent and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sent_texts(fake) == ["Thu nhập mỗi tháng?"]
            assert utcnow() - recorded_at >= dt.timedelta(seconds=1.0)
        finally:
            worker.stop(5)
            close_app(app)
