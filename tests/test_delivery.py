"""The outbox worker against failing fake providers, inbound processing failures, tokens, the worker thread, CLI.

Every test asserts what the fake provider received (exactly) and what was recorded on the outbox rows.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from bot.channels import TokenPair
from bot.delivery import get_delivery
from bot.delivery.outbox import backoff_seconds
from bot.delivery.tokens import CrossProcessLock, DatabaseTokens, build_zalo_token_store
from bot.store import get_store
from bot.store import repository as repo
from bot.store.db import run_in_transaction
from bot.store.models import ChannelToken, Identity, OutboundStatus, utcnow
from bot.store.testing import FakeEngine
from tests.delivery_support import (
    close_app,
    db_url,
    drain,
    identities,
    inbound,
    make_app,
    messenger_headers,
    messenger_settings,
    outbox,
    post,
    telegram_headers,
    telegram_settings,
    wait_for,
    zalo_oa_delivery,
    zalo_oa_event,
    zalo_oa_settings,
)
from tests.fakes import Delay, FakeMessenger, FakeTelegram, FakeZaloOA, Reply
from tests.fakes.events import raw
from tests.fakes.telegram import telegram_rate_limited
from tests.fakes.zalo_oa import zalo_error

pytestmark = pytest.mark.db

__all__ = ["db_url"]

USER = "2468458835296117922"


@pytest.fixture
def zalo(db_url: str) -> Iterator[tuple[Flask, FakeZaloOA]]:
    with FakeZaloOA() as fake:
        app = make_app(db_url, **zalo_oa_settings(fake))
        yield app, fake
        close_app(app)


def say(app: Flask, *texts: str, user: str = USER, start: int = 0) -> None:
    """Zalo OA messages from ``user``, recorded through the webhook (not yet processed)."""
    for i, text in enumerate(texts, start):
        body = zalo_oa_event(text=text, msg_id=f"msg-{user}-{i}", user=user)
        assert post(app, "zalo_oa", *zalo_oa_delivery(body)).status_code == 200


def sent_texts(fake: FakeZaloOA) -> list[str]:
    return [body["message"]["text"] for _token, body in fake.sent]


def process_all(app: Flask) -> None:
    """Run inbound processing only (replies stay pending)."""
    delivery = get_delivery(app)
    for identity in identities(app):
        delivery.process_identity(identity.id)


# -- backoff ---------------------------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_respects_retry_after() -> None:
    rng = random.Random(7)
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 600.0), (30, 600.0)]:
        for _ in range(50):
            delay = backoff_seconds(attempt, base=2.0, cap=600.0, rng=rng)
            assert full / 2 <= delay <= full
    assert backoff_seconds(1, base=2.0, cap=600.0, retry_after=30.0, rng=rng) == 30.0
    # retry_after is a floor even above the cap (Zalo quota errors ask for an hour).
    assert backoff_seconds(1, base=2.0, cap=600.0, retry_after=3600.0, rng=rng) == 3600.0


# -- provider failures -----------------------------------------------------------------------------------------


def test_timeout_then_success_delivers_once_with_both_attempts_recorded(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    fake.script("send", Delay(3.0))  # past the 1 s read timeout of the tests
    say(app, "4")
    drain(app, until=lambda: outbox(app)[0].status is OutboundStatus.SENT)
    assert sent_texts(fake) == ["Thu nhập mỗi tháng?"]  # the timed-out call was never accepted
    [row] = outbox(app)
    assert (row.status, row.attempts, row.parts_sent) == (OutboundStatus.SENT, 2, 1)
    assert row.last_error is not None and row.last_error.startswith("attempt 1: timeout")
    assert len(fake.calls("send")) == 2


def test_5xx_and_429_are_retried_with_backoff(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    fake.script("send", Reply(502, "bad gateway"), Reply(503, "unavailable", {"Retry-After": "1"}))
    say(app, "4")
    process_all(app)
    sender = get_delivery(app).sender
    sender.send_round()
    [row] = outbox(app)
    assert (row.status, row.attempts) == (OutboundStatus.PENDING, 1)
    assert row.last_error == "attempt 1: http_502: HTTP 502 from Zalo OA"
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()
    drain(app, until=lambda: outbox(app)[0].attempts >= 2)
    [row] = outbox(app)
    assert row.attempts == 2 and row.last_error is not None and "http_503" in row.last_error
    # Retry-After: 1 is a floor on the next delay.
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow() + dt.timedelta(seconds=0.5)
    drain(app, until=lambda: outbox(app)[0].status is OutboundStatus.SENT)
    assert sent_texts(fake) == ["Thu nhập mỗi tháng?"]
    assert outbox(app)[0].attempts == 3


def test_zalo_rate_limit_code_pauses_the_channel_and_retries(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    fake.script("send", zalo_error(-32))
    say(app, "4")
    process_all(app)
    sender = get_delivery(app).sender
    sender.send_round()
    [row] = outbox(app)
    assert row.status is OutboundStatus.PENDING and "-32" in (row.last_error or "")
    # -32 asks for 60 s: the row waits at least that, and the whole channel is paused in this worker.
    assert row.next_attempt_at is not None and row.next_attempt_at >= utcnow() + dt.timedelta(seconds=55)
    assert sender.channels(utcnow()) == []
    assert fake.sent == []


def test_telegram_429_retry_after_is_respected(db_url: str) -> None:
    with FakeTelegram() as fake:
        app = make_app(db_url, **telegram_settings(fake))
        try:
            fake.script("sendMessage", telegram_rate_limited(1))
            assert post(app, "telegram", raw("telegram", "message_text.json"), telegram_headers()).status_code == 200
            started = time.monotonic()
            drain(app, until=lambda: outbox(app)[0].status is OutboundStatus.SENT)
            assert time.monotonic() - started >= 0.9
            assert [c.json["text"] for c in fake.calls("sendMessage")] == ["Thu nhập mỗi tháng?"] * 2
            [row] = outbox(app)
            assert row.attempts == 2 and "429" in (row.last_error or "")
        finally:
            close_app(app)


def test_expired_token_is_refreshed_persisted_and_the_message_resent(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    say(app, "4")
    fake.expire_access_token()  # the next send gets -216
    drain(app)
    # Exactly one message delivered, with the refreshed token.
    assert fake.sent == [("zoa-at-1", {"recipient": {"user_id": USER}, "message": {"text": "Thu nhập mỗi tháng?"}})]
    assert [c.form["refresh_token"] for c in fake.calls("oauth")] == ["zoa-rt-0"]
    # The rotated pair is in the database (saved before it was used).
    with get_store(app).sessions() as session:
        token = session.execute(select(ChannelToken)).scalar_one()
        assert (token.channel, token.access_token, token.refresh_token) == ("zalo_oa", "zoa-at-1", "zoa-rt-1")
        assert token.expires_at is not None and token.expires_at > utcnow() + dt.timedelta(hours=24)
    [row] = outbox(app)
    assert (row.status, row.attempts) == (OutboundStatus.SENT, 1)


def test_a_new_process_uses_the_saved_pair_not_the_spent_configured_one(db_url: str) -> None:
    with FakeZaloOA() as fake:
        first = make_app(db_url, **zalo_oa_settings(fake))
        settings = zalo_oa_settings(fake)  # still the original (now spent) pair
        try:
            say(first, "4")
            fake.expire_access_token()
            drain(first)
        finally:
            close_app(first)
        second = make_app(db_url, **settings)
        try:
            say(second, "5", start=1)
            drain(second)
            # Sent with the saved token: no refresh with the spent refresh token (it would need re-consent).
            assert [token for token, _ in fake.sent] == ["zoa-at-1", "zoa-at-1"]
            assert len(fake.calls("oauth")) == 1
        finally:
            close_app(second)


def test_refresh_is_single_flight_across_processes(db_url: str) -> None:
    """Two token stores (two worker processes) hit -216 together: one OAuth call, the other adopts its pair."""
    with FakeZaloOA(oauth_delay=0.3) as fake:
        app = make_app(db_url, **zalo_oa_settings(fake))
        try:
            config = zalo_oa_settings(fake)
            stores = [build_zalo_token_store(get_store(app), config) for _ in range(2)]
            stale = stores[0].get()
            assert stores[1].get() == stale
            fake.expire_access_token()
            results: list[str] = []
            threads = [threading.Thread(target=lambda s=s: results.append(s.refresh(stale))) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert results == ["zoa-at-1", "zoa-at-1"]
            assert len(fake.calls("oauth")) == 1
            assert DatabaseTokens(get_store(app)).load() == TokenPair(
                "zoa-at-1", "zoa-rt-1", stores[0]._pair.access_expires_at, stores[0]._pair.rotated_at  # type: ignore[union-attr]
            )
        finally:
            close_app(app)


def test_cross_process_lock_excludes_other_processes(db_url: str, tmp_path: Any) -> None:
    import multiprocessing

    app = make_app(db_url)
    try:
        lock = CrossProcessLock(get_store(app), "test-lock")
        ready = tmp_path / "child-ready"
        acquired = tmp_path / "child-acquired"
        child = multiprocessing.get_context("spawn").Process(
            target=_take_lock, args=(db_url, str(ready), str(acquired))
        )
        with lock:
            child.start()
            wait_for(ready.exists, timeout=60)  # the child is about to ask for the lock
            time.sleep(0.5)
            assert not acquired.exists()
            released = time.time()
        child.join(30)
        assert child.exitcode == 0
        assert float(acquired.read_text()) >= released
    finally:
        close_app(app)


def _take_lock(url: str, ready: str, acquired: str) -> None:
    from pathlib import Path

    from bot.store.db import Store

    store = Store.from_url(url)
    lock = CrossProcessLock(store, "test-lock")
    Path(ready).write_text("1")
    with lock:
        Path(acquired).write_text(repr(time.time()))
    store.engine.dispose()


def test_unreachable_user_is_not_retried_and_marked(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    fake.script("send", zalo_error(-230))
    say(app, "4", "5", "6")
    drain(app)
    assert fake.sent == []
    assert len(fake.calls("send")) == 1  # the first reply only; never retried
    rows = outbox(app)
    assert [r.status for r in rows] == [OutboundStatus.FAILED] * 3
    assert rows[0].last_error == "-230: User has not interacted with the OA in the past 7 days"
    assert rows[0].attempts == 1
    assert all(r.attempts == 0 and (r.last_error or "").startswith("unreachable: -230") for r in rows[1:])
    [person] = identities(app)
    assert person.unreachable_at is not None
    # Writing again makes them reachable again.
    say(app, "7", start=10)
    drain(app)
    assert sent_texts(fake) == ["Đã xong."]
    assert identities(app)[0].unreachable_at is None


def test_messenger_outside_the_24h_window_fails_with_the_reason(db_url: str) -> None:
    with FakeMessenger() as fake:
        app = make_app(db_url, **messenger_settings(fake))
        try:
            body = raw("messenger", "message_text.json")
            assert post(app, "messenger", body, messenger_headers(body)).status_code == 200
            process_all(app)
            with get_store(app).sessions() as session:
                session.execute(update(Identity).values(last_seen_at=utcnow() - dt.timedelta(hours=25)))
                session.commit()
            drain(app)
            assert fake.requests == []
            [row] = outbox(app)
            assert row.status is OutboundStatus.FAILED
            assert row.last_error is not None and row.last_error.startswith("outside_window:")
            assert "messenger allows 1 day" in row.last_error
        finally:
            close_app(app)


def test_a_retry_does_not_resend_parts_already_delivered(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    say(app, "4")
    process_all(app)
    [person] = identities(app)
    # A long reply the adapter splits into 3 parts (Zalo: 2,000 characters each).
    paragraphs = [f"Đoạn {i}: " + ("chữ " * 450).strip() for i in range(3)]
    with get_store(app).sessions() as session:

        def queue(s: Any) -> None:
            identity = repo.lock_identity_id(s, person.id, now=utcnow(), address=None)
            assert identity is not None
            repo.append_outbox(s, identity, "zalo_oa", [{"text": "\n\n".join(paragraphs), "choices": []}], now=utcnow())

        run_in_transaction(session, queue)
    # The short reply goes first; the long one's second part fails once.
    fake.script("send", Reply(200, {"error": 0, "message": "Success", "data": {"message_id": "a"}}))
    fake.script("send", Reply(200, {"error": 0, "message": "Success", "data": {"message_id": "b"}}), Reply(500, "x"))
    drain(app, until=lambda: all(r.status is OutboundStatus.SENT for r in outbox(app)))
    long_row = outbox(app)[1]
    assert (long_row.parts_sent, long_row.attempts) == (3, 2)
    requests = [c.json["message"]["text"] for c in fake.calls("send")]
    # short reply, part 1, part 2 (500), part 2 again, part 3: part 1 was not sent twice.
    assert [t[:7] for t in requests] == ["Thu nhậ", "Đoạn 0:", "Đoạn 1:", "Đoạn 1:", "Đoạn 2:"]


def test_later_replies_wait_for_an_earlier_one_being_retried(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    fake.script("send", Reply(500, "x"), Reply(500, "x"))
    say(app, "4", "5", "6")
    drain(app, until=lambda: all(r.status is OutboundStatus.SENT for r in outbox(app)))
    # The first reply failed twice; nothing after it went out before it.
    assert sent_texts(fake) == ["Thu nhập mỗi tháng?", "KẾT QUẢ SƠ BỘ\nHộ nghèo.", "Đã xong."]
    assert [r.attempts for r in outbox(app)] == [3, 1, 1]


def test_giving_up_after_max_attempts_moves_on_to_the_next_reply(db_url: str) -> None:
    with FakeZaloOA() as fake:
        app = make_app(db_url, DELIVERY_MAX_ATTEMPTS=3, **zalo_oa_settings(fake))
        try:
            fake.script("send", *[Reply(500, "x")] * 3)
            say(app, "4", "5")
            drain(app, until=lambda: all(r.status is not OutboundStatus.PENDING for r in outbox(app)))
            rows = outbox(app)
            assert [(r.status, r.attempts) for r in rows] == [(OutboundStatus.FAILED, 3), (OutboundStatus.SENT, 1)]
            assert rows[0].last_error == "gave up after 3 attempts: http_500: HTTP 500 from Zalo OA"
            assert sent_texts(fake) == ["KẾT QUẢ SƠ BỘ\nHộ nghèo."]
        finally:
            close_app(app)


def test_a_stale_worker_cannot_record_over_a_lease_taken_over(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, _fake = zalo
    say(app, "4")
    process_all(app)
    now = utcnow()
    with get_store(app).sessions() as session:
        [first] = run_in_transaction(
            session,
            lambda s: repo.claim_outbox(
                s, now=now, lease_until=now - dt.timedelta(seconds=1), channels=["zalo_oa"], limit=5
            ),
        )
        # The lease is already over: another worker claims the row again.
        [second] = run_in_transaction(
            session,
            lambda s: repo.claim_outbox(
                s, now=utcnow(), lease_until=utcnow() + dt.timedelta(seconds=60), channels=["zalo_oa"], limit=5
            ),
        )
        late = repo.OutboxOutcome(first, OutboundStatus.FAILED, 0, error="late")
        assert run_in_transaction(session, lambda s: repo.finish_outbox(s, [late], now=utcnow())) == 0
        ok = repo.OutboxOutcome(second, OutboundStatus.SENT, 1)
        assert run_in_transaction(session, lambda s: repo.finish_outbox(s, [ok], now=utcnow())) == 1
    [row] = outbox(app)
    assert (row.status, row.attempts, row.last_error) == (OutboundStatus.SENT, 2, None)


# -- inbound processing failures -------------------------------------------------------------------------------


class FlakyEngine(FakeEngine):
    """Fails on the text "boom" ``failures`` times (or always)."""

    def __init__(self, failures: int | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    def step(self, state: Any, inbound: Any, now: Any) -> Any:
        if inbound.text == "boom" and (self.failures is None or self.calls < self.failures):
            self.calls += 1
            raise RuntimeError("engine exploded")
        return super().step(state, inbound, now)


def test_an_engine_error_is_retried_then_processed_in_order(db_url: str) -> None:
    with FakeZaloOA() as fake:
        engine = FlakyEngine(failures=1)
        app = make_app(db_url, engine=engine, **zalo_oa_settings(fake))
        try:
            say(app, "boom", "5")
            delivery = get_delivery(app)
            [person] = identities(app)
            assert delivery.process_identity(person.id) == []  # failed; "5" waits behind it
            first = inbound(app)
            assert [(r.attempts, r.processed_at is None) for r in first] == [(1, True), (0, True)]
            assert first[0].last_error == "RuntimeError: engine exploded"
            drain(app)
            assert sent_texts(fake) == ["Thu nhập mỗi tháng?", "KẾT QUẢ SƠ BỘ\nHộ nghèo."]
        finally:
            close_app(app)


def test_a_poison_message_is_given_up_and_the_next_ones_proceed(db_url: str) -> None:
    with FakeZaloOA() as fake:
        app = make_app(db_url, engine=FlakyEngine(), DELIVERY_INBOUND_MAX_ATTEMPTS=2, **zalo_oa_settings(fake))
        try:
            say(app, "boom", "4")
            delivery = get_delivery(app)
            [person] = identities(app)
            delivery.process_identity(person.id)
            drain(app)
            rows = inbound(app)
            assert rows[0].attempts == 2 and rows[0].processed_at is not None
            assert rows[0].reply == {"error": "RuntimeError: engine exploded"}
            assert sent_texts(fake) == ["Thu nhập mỗi tháng?"]  # "4" answered the first question
        finally:
            close_app(app)


# -- the embedded worker thread --------------------------------------------------------------------------------


def test_the_worker_thread_delivers_without_help_and_stops_cleanly(db_url: str) -> None:
    # Only this app's threads: another test's app may still be winding its own down.
    before = set(threading.enumerate())
    with FakeZaloOA() as fake:
        app = make_app(db_url, WORKER_THREAD=True, **zalo_oa_settings(fake))
        try:
            delivery = get_delivery(app)
            assert delivery._worker is not None
            say(app, "4", "5")
            wait_for(lambda: len(fake.sent) == 2)
            assert sent_texts(fake) == ["Thu nhập mỗi tháng?", "KẾT QUẢ SƠ BỘ\nHộ nghèo."]
            threads = [t for t in threading.enumerate() if t.name.startswith("tusoat-") and t not in before]
            assert threads
        finally:
            close_app(app)
        for thread in threads:  # a loaded machine may need a moment past stop()'s own timeout
            thread.join(timeout=15)
        assert not any(t.is_alive() for t in threads)


def test_no_worker_thread_under_testing_unless_asked(db_url: str) -> None:
    app = make_app(db_url)
    try:
        assert get_delivery(app)._worker is None
    finally:
        close_app(app)


# -- flask commands ----------------------------------------------------------------------------------------------


def test_cli_channels_list_set_webhook_and_tokens(db_url: str) -> None:
    with FakeTelegram() as telegram, FakeZaloOA() as zalo:
        app = make_app(db_url, **telegram_settings(telegram), **zalo_oa_settings(zalo))
        try:
            runner = app.test_cli_runner()
            listing = runner.invoke(args=["channels-list"])
            assert listing.exit_code == 0, listing.output
            assert "zalo_oa    on   POST /channels/zalo_oa   replies within 7 days" in listing.output
            assert "telegram   on   POST /channels/telegram   no reply window" in listing.output
            assert "messenger  off" in listing.output

            result = runner.invoke(args=["set-webhook", "telegram", "--url", "https://bot.example.vn/channels/telegram"])
            assert result.exit_code == 0, result.output
            assert telegram.webhook is not None
            assert telegram.webhook["url"] == "https://bot.example.vn/channels/telegram"
            assert telegram.webhook["secret_token"] == "tg_secret-ABC_123"
            refused = runner.invoke(args=["set-webhook", "zalo_oa", "--url", "https://x.vn/channels/zalo_oa"])
            assert refused.exit_code != 0 and "developers.zalo.me" in refused.output

            seeded = runner.invoke(args=["zalo-oa-tokens", "--access", "AT-9", "--refresh", "RT-9", "--expires-in", "90000"])
            assert seeded.exit_code == 0, seeded.output
            pair = DatabaseTokens(get_store(app)).load()
            assert pair is not None and (pair.access_token, pair.refresh_token) == ("AT-9", "RT-9")
        finally:
            close_app(app)


def test_cli_delivery_worker_burst_drains_everything(zalo: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo
    say(app, "4", "5")
    result = app.test_cli_runner().invoke(args=["delivery-worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert "2 processed, 2 sent" in result.output
    assert sent_texts(fake) == ["Thu nhập mỗi tháng?", "KẾT QUẢ SƠ BỘ\nHộ nghèo."]
