"""Reliability: redeliveries, a provider outage, a worker killed with SIGKILL, two workers at once.

The worker-process tests run ``flask delivery-worker`` as real subprocesses against the test database (a SQLite
file, or a PostgreSQL schema under ``TEST_DATABASE_URL``) and the fake Zalo OA on 127.0.0.1. Delivery is at
least once: the only duplicate allowed is a reply that was in flight when its worker died, and a reply recorded
as sent is never sent again.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from bot.store import get_store
from bot.store.models import Answer, Conversation, Identity, OutboundStatus
from tests.delivery_support import (
    SlowFakeZaloOA,
    close_app,
    db_url,
    drain,
    identities,
    inbound,
    make_app,
    outbox,
    post,
    wait_for,
    worker_environment,
    zalo_oa_delivery,
    zalo_oa_event,
    zalo_oa_settings,
)

pytestmark = pytest.mark.db

__all__ = ["db_url"]

ROOT = Path(__file__).resolve().parents[1]

#: What the fake engine answers to a person's 1st, 2nd, 3rd... message.
REPLIES = ["Thu nhập mỗi tháng?", "KẾT QUẢ SƠ BỘ\nHộ nghèo.", "Đã xong.", "Đã xong."]

#: Length of the provider outage of the outage test (seconds).
OUTAGE_SECONDS = float(os.environ.get("TEST_OUTAGE_SECONDS", "30"))


def user_ref(i: int) -> str:
    return f"90000000000000{i:05d}"


def record_messages(app: Flask, users: int, per_user: int) -> None:
    """``per_user`` messages from each of ``users`` people, through the webhook, interleaved."""
    for n in range(per_user):
        for i in range(users):
            body = zalo_oa_event(text=str(4 + n), msg_id=f"m-{i}-{n}", user=user_ref(i))
            assert post(app, "zalo_oa", *zalo_oa_delivery(body)).status_code == 200


def received_by_user(fake: SlowFakeZaloOA) -> dict[str, list[str]]:
    got: dict[str, list[str]] = collections.defaultdict(list)
    for _token, body in list(fake.sent):
        got[body["recipient"]["user_id"]].append(body["message"]["text"])
    return got


@pytest.fixture
def fake() -> Iterator[SlowFakeZaloOA]:
    with SlowFakeZaloOA() as server:
        yield server


# -- redeliveries ------------------------------------------------------------------------------------------------


def test_the_same_delivery_replayed_1000_times_is_processed_and_answered_once(
    db_url: str, fake: SlowFakeZaloOA
) -> None:
    app = make_app(db_url, **zalo_oa_settings(fake))
    try:
        body, headers = zalo_oa_delivery(zalo_oa_event(text="4", msg_id="replayed"))
        statuses: list[int] = []
        lock = threading.Lock()

        def replay(times: int) -> None:
            client = app.test_client()
            for _ in range(times):
                code = client.post("/channels/zalo_oa", data=body, headers=headers).status_code
                with lock:
                    statuses.append(code)

        threads = [threading.Thread(target=replay, args=(125,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert statuses == [200] * 1000
        drain(app)
        # And again after it was processed and answered.
        for _ in range(20):
            assert post(app, "zalo_oa", body, headers).get_json() == {"status": "ok", "recorded": 0}
        drain(app)
        assert len(inbound(app)) == 1
        with get_store(app).sessions() as session:
            assert session.execute(select(func.count()).select_from(Answer)).scalar_one() == 1
        assert [b["message"]["text"] for _t, b in fake.sent] == ["Thu nhập mỗi tháng?"]
        assert [(r.status, r.attempts) for r in outbox(app)] == [(OutboundStatus.SENT, 1)]
    finally:
        close_app(app)


# -- provider outage ---------------------------------------------------------------------------------------------


def test_provider_down_then_every_reply_delivered_in_order(db_url: str, fake: SlowFakeZaloOA) -> None:
    """The provider answers 503 for OUTAGE_SECONDS while people keep writing; all replies arrive after it."""
    users, per_user = 6, 3
    app = make_app(
        db_url,
        WORKER_THREAD=True,
        DELIVERY_RETRY_BASE_SECONDS=0.5,
        DELIVERY_RETRY_MAX_SECONDS=4.0,
        DELIVERY_MAX_ATTEMPTS=100,
        **zalo_oa_settings(fake),
    )
    try:
        fake.down_until = time.monotonic() + OUTAGE_SECONDS
        started = time.monotonic()
        # Messages keep arriving during the outage.
        for n in range(per_user):
            for i in range(users):
                body = zalo_oa_event(text=str(4 + n), msg_id=f"o-{i}-{n}", user=user_ref(i))
                assert post(app, "zalo_oa", *zalo_oa_delivery(body)).status_code == 200
            time.sleep(OUTAGE_SECONDS / (per_user + 1))
        assert fake.sent == []
        wait_for(lambda: len(fake.sent) >= users * per_user, timeout=OUTAGE_SECONDS + 60)
        recovered_after = time.monotonic() - started - OUTAGE_SECONDS
        # The provider has them all; the worker records the last results a moment later.
        wait_for(lambda: all(r.status is OutboundStatus.SENT for r in outbox(app)), timeout=10)
        got = received_by_user(fake)
        assert got == {user_ref(i): REPLIES[:per_user] for i in range(users)}
        rows = outbox(app)
        assert all(r.status is OutboundStatus.SENT for r in rows)
        assert fake.refused >= users  # every person's first reply was refused at least once
        assert max(r.attempts for r in rows) > 1
        # Backoff is capped at 4 s (+ jitter within it): delivery resumes promptly after recovery.
        assert recovered_after < 20, recovered_after
    finally:
        close_app(app)


# -- worker processes --------------------------------------------------------------------------------------------


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``flask delivery-worker`` in its own process group (so it can be killed alone)."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "webhook", "delivery-worker"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def assert_conversations_complete(app: Flask, users: int, per_user: int) -> None:
    """Every message processed exactly once, in order, per person."""
    rows = inbound(app)
    assert len(rows) == users * per_user
    assert all(r.processed_at is not None and r.reply and "error" not in r.reply for r in rows)
    with get_store(app).sessions() as session:
        states = {
            identity_id: state
            for identity_id, state in session.execute(select(Conversation.identity_id, Conversation.state))
        }
        people = {i.id: i.address for i in session.execute(select(Identity)).scalars()}
    expected_log = [str(4 + n) for n in range(per_user)]
    assert {people[k]: v["log"] for k, v in states.items()} == {user_ref(i): expected_log for i in range(users)}


def test_worker_killed_with_sigkill_mid_queue_loses_nothing(db_url: str, tmp_path: Path) -> None:
    users, per_user = 12, 3
    with SlowFakeZaloOA(send_delay=0.1) as fake:
        app = make_app(db_url, **zalo_oa_settings(fake))
        env = worker_environment(
            db_url,
            fake,
            TEST_ENGINE_DELAY="0.03",
            TUSOAT_DELIVERY_LEASE_SECONDS="3",
            TUSOAT_DELIVERY_SEND_THREADS="3",
            TUSOAT_DELIVERY_BATCH="3",
        )
        first = second = None
        try:
            record_messages(app, users, per_user)
            first = start_worker(env, tmp_path / "worker1.log")
            wait_for(lambda: len(fake.sent) >= 8, timeout=90)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
            # What the dead worker had recorded as sent must never be sent again.
            recorded_sent = {
                (r.identity_id, r.seq) for r in outbox(app) if r.status is OutboundStatus.SENT
            }
            pending_inbound = sum(1 for r in inbound(app) if r.processed_at is None)
            assert recorded_sent, "the worker was killed before recording anything"
            second = start_worker(env, tmp_path / "worker2.log")
            try:
                wait_for(
                    lambda: len(outbox(app)) == users * per_user
                    and all(r.status is OutboundStatus.SENT for r in outbox(app)),
                    timeout=120,
                )
            except AssertionError:
                unsent = [
                    (r.identity_id, r.seq, r.status, r.attempts, r.next_attempt_at, r.last_error)
                    for r in outbox(app)
                    if r.status is not OutboundStatus.SENT
                ]
                raise AssertionError(f"{len(outbox(app))} replies; not sent: {unsent}") from None
            stop_worker(second)
            assert_conversations_complete(app, users, per_user)
            # Replies: all delivered, in order; a duplicate only of what was in flight at the kill.
            address = {i.id: i.address for i in identities(app)}
            got = received_by_user(fake)
            for i in range(users):
                texts = got[user_ref(i)]
                deduplicated = [t for k, t in enumerate(texts) if k == 0 or texts[k - 1] != t]
                assert deduplicated == REPLIES[:per_user], texts
            counts = collections.Counter(
                (body["recipient"]["user_id"], body["message"]["text"]) for _t, body in fake.sent
            )
            for identity_id, seq in recorded_sent:
                assert counts[(address[identity_id], REPLIES[seq - 1])] == 1
            duplicates = sum(c - 1 for c in counts.values())
            assert duplicates <= 3  # at most the batch in flight at the kill
            print(f"killed after {len(recorded_sent)} recorded sends, {pending_inbound} inbound pending; "
                  f"{duplicates} duplicate(s)")  # fmt: skip
        finally:
            for process in (first, second):
                if process is not None:
                    stop_worker(process)
            close_app(app)


def test_two_workers_at_once_send_nothing_twice_and_keep_order(db_url: str, tmp_path: Path) -> None:
    users, per_user = 20, 4
    with SlowFakeZaloOA(send_delay=0.02) as fake:
        app = make_app(db_url, **zalo_oa_settings(fake))
        env = worker_environment(db_url, fake, TEST_ENGINE_DELAY="0.005", TUSOAT_DELIVERY_BATCH="4")
        workers = []
        try:
            record_messages(app, users, per_user)
            workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
            wait_for(
                lambda: len(outbox(app)) == users * per_user
                and all(r.status is OutboundStatus.SENT for r in outbox(app)),
                timeout=180,
            )
            for process in workers:
                stop_worker(process)
            assert_conversations_complete(app, users, per_user)
            got = received_by_user(fake)
            assert got == {user_ref(i): REPLIES[:per_user] for i in range(users)}
            assert all(r.attempts == 1 for r in outbox(app))
            logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
            # Both workers did some of the work.
            assert all("delivery worker stopped" in log for log in logs), logs
        finally:
            for process in workers:
                stop_worker(process)
            close_app(app)
