"""``/channels/<name>``: each channel's recorded events through the whole path, and forged deliveries refused.

Whole path = webhook (signature, parse, record, 200) → inbound processing (engine, state, outbox) → outbox
worker → the fake provider on 127.0.0.1, whose received requests are compared exactly. The engine is
:class:`bot.store.testing.FakeEngine` (first question "Hộ có mấy người?" with buttons 1/2/3, then "Thu nhập
mỗi tháng?", then a result), so the expected provider bodies do not depend on the questionnaire's wording.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from bot.store.models import OutboundStatus
from tests.delivery_support import (
    MESSENGER_VERIFY,
    close_app,
    db_url,
    drain,
    inbound,
    make_app,
    messenger_headers,
    messenger_settings,
    outbox,
    post,
    telegram_headers,
    telegram_settings,
    zalo_bot_headers,
    zalo_bot_settings,
    zalo_oa_delivery,
    zalo_oa_event,
    zalo_oa_settings,
)
from tests.fakes import FakeMessenger, FakeTelegram, FakeZaloBot, FakeZaloOA
from tests.fakes.events import raw

pytestmark = pytest.mark.db

__all__ = ["db_url"]  # the fixture, imported so pytest finds it here

ASK_SIZE_BUTTONS = [("1", "1"), ("2", "2"), ("3", "3")]


@pytest.fixture
def zalo_oa(db_url: str) -> Iterator[tuple[Flask, FakeZaloOA]]:
    with FakeZaloOA() as fake:
        app = make_app(db_url, **zalo_oa_settings(fake))
        yield app, fake
        close_app(app)


@pytest.fixture
def telegram(db_url: str) -> Iterator[tuple[Flask, FakeTelegram]]:
    with FakeTelegram() as fake:
        app = make_app(db_url, **telegram_settings(fake))
        yield app, fake
        close_app(app)


@pytest.fixture
def zalo_bot(db_url: str) -> Iterator[tuple[Flask, FakeZaloBot]]:
    with FakeZaloBot() as fake:
        app = make_app(db_url, **zalo_bot_settings(fake))
        yield app, fake
        close_app(app)


@pytest.fixture
def messenger(db_url: str) -> Iterator[tuple[Flask, FakeMessenger]]:
    with FakeMessenger() as fake:
        app = make_app(db_url, **messenger_settings(fake))
        yield app, fake
        close_app(app)


def nothing_recorded(app: Flask) -> None:
    assert inbound(app) == []
    assert outbox(app) == []


# -- Zalo OA ---------------------------------------------------------------------------------------------------


def test_zalo_oa_follow_then_text_reaches_the_provider_exactly(zalo_oa: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo_oa
    user = "2468458835296117922"
    for body in (zalo_oa_event("follow.json"), zalo_oa_event("user_send_text.json", text="4")):
        response = post(app, "zalo_oa", *zalo_oa_delivery(body))
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {"status": "ok", "recorded": 1}
    # Recorded, not processed, until the worker runs.
    assert [r.processed_at for r in inbound(app)] == [None, None]
    assert fake.sent == []

    drain(app)

    assert [body for _token, body in fake.sent] == [
        {
            "recipient": {"user_id": user},
            "message": {
                "text": "Hộ có mấy người?",
                "attachment": {
                    "type": "template",
                    "payload": {
                        "buttons": [
                            {"title": label, "type": "oa.query.hide", "payload": payload}
                            for label, payload in ASK_SIZE_BUTTONS
                        ]
                    },
                },
            },
        },
        {"recipient": {"user_id": user}, "message": {"text": "Thu nhập mỗi tháng?"}},
    ]
    assert [token for token, _ in fake.sent] == ["zoa-at-0", "zoa-at-0"]
    rows = outbox(app)
    assert [(r.seq, r.status, r.attempts, r.parts_sent) for r in rows] == [
        (1, OutboundStatus.SENT, 1, 1),
        (2, OutboundStatus.SENT, 1, 1),
    ]
    # Processed rows keep only the usual document: the raw provider event is gone.
    assert [r.payload for r in inbound(app)] == [
        {"kind": "follow", "text": None, "payload": None},
        {"kind": "text", "text": "4", "payload": None},
    ]


def test_zalo_oa_forged_deliveries_are_refused_and_nothing_is_recorded(zalo_oa: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo_oa
    good, headers = zalo_oa_delivery(zalo_oa_event(text="4"))
    wrong_secret = zalo_oa_delivery(zalo_oa_event(text="4"), secret="not-the-secret")
    altered = good.replace(b'"4"', b'"5"')
    cases = {
        "wrong secret": wrong_secret,
        "altered body": (altered, headers),
        "missing header": (good, {"Content-Type": "application/json"}),
        "garbage header": (good, {"X-ZEvent-Signature": "mac=00"}),
    }
    for name, (body, hdrs) in cases.items():
        response = post(app, "zalo_oa", body, hdrs)
        assert response.status_code == 401, name
        assert response.get_json()["error"]["code"] == "bad_signature"
    drain(app)
    nothing_recorded(app)
    assert fake.requests == []


def test_zalo_oa_replayed_old_event_is_acknowledged_but_dropped(zalo_oa: tuple[Flask, FakeZaloOA]) -> None:
    app, fake = zalo_oa
    # The recorded fixture, signed correctly, but from 2025: outside the 10-minute replay window.
    old = json.loads(raw("zalo_oa", "user_send_text.json"))
    response = post(app, "zalo_oa", *zalo_oa_delivery(old))
    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored", "reason": "stale"}
    drain(app)
    nothing_recorded(app)
    assert fake.requests == []


def test_zalo_oa_receipts_are_acknowledged_and_ignored(zalo_oa: tuple[Flask, FakeZaloOA]) -> None:
    app, _fake = zalo_oa
    response = post(app, "zalo_oa", *zalo_oa_delivery(zalo_oa_event("user_seen_message.json")))
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "recorded": 0}
    nothing_recorded(app)


def test_an_unparseable_authentic_body_is_a_400(telegram: tuple[Flask, FakeTelegram]) -> None:
    app, _fake = telegram
    response = post(app, "telegram", b"[1, 2]", telegram_headers())
    assert response.status_code == 400
    nothing_recorded(app)


def test_an_unknown_or_unconfigured_channel_is_a_404(telegram: tuple[Flask, FakeTelegram]) -> None:
    app, _fake = telegram
    for name in ("nope", "zalo_oa"):
        assert post(app, name, b"{}", telegram_headers()).status_code == 404


def test_a_database_failure_answers_503_so_the_provider_redelivers(
    zalo_oa: tuple[Flask, FakeZaloOA], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _fake = zalo_oa
    from sqlalchemy.exc import OperationalError

    from bot import pipeline

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is down"))

    monkeypatch.setattr(pipeline.repo, "record_pending_inbound", broken)
    body, headers = zalo_oa_delivery(zalo_oa_event(text="4"))
    response = post(app, "zalo_oa", body, headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    monkeypatch.undo()
    # The provider's redelivery is then recorded once.
    assert post(app, "zalo_oa", body, headers).get_json() == {"status": "ok", "recorded": 1}
    assert len(inbound(app)) == 1


# -- Telegram --------------------------------------------------------------------------------------------------


def test_telegram_start_then_button_tap_is_answered_and_acknowledged(telegram: tuple[Flask, FakeTelegram]) -> None:
    app, fake = telegram
    for name in ("start.json", "callback_query.json"):
        response = post(app, "telegram", raw("telegram", name), telegram_headers())
        assert response.status_code == 200, response.get_json()
    drain(app)
    assert [call.json for call in fake.calls("sendMessage")] == [
        {
            "chat_id": 987654321,
            "text": "Hộ có mấy người?",
            "reply_markup": {
                "inline_keyboard": [[{"text": label, "callback_data": payload}] for label, payload in ASK_SIZE_BUTTONS]
            },
        },
        {"chat_id": 987654321, "text": "Thu nhập mỗi tháng?"},
    ]
    # The tap ("rural") was the answer to the first question, and its spinner was stopped.
    assert [call.json for call in fake.calls("answerCallbackQuery")] == [{"callback_query_id": "4382bfdwdsb323b2d9"}]


def test_telegram_forged_deliveries_are_refused(telegram: tuple[Flask, FakeTelegram]) -> None:
    app, fake = telegram
    body = raw("telegram", "message_text.json")
    for headers in (telegram_headers("wrong-secret"), {"Content-Type": "application/json"}):
        assert post(app, "telegram", body, headers).status_code == 401
    drain(app)
    nothing_recorded(app)
    assert fake.requests == []


# -- Zalo Bot --------------------------------------------------------------------------------------------------


def test_zalo_bot_text_reaches_the_provider_exactly(zalo_bot: tuple[Flask, FakeZaloBot]) -> None:
    app, fake = zalo_bot
    for name in ("text_wrapped.json", "text_bare.json"):
        assert post(app, "zalo_bot", raw("zalo_bot", name), zalo_bot_headers()).status_code == 200
    drain(app)
    assert [call.json for call in fake.calls("sendMessage")] == [
        {"chat_id": "6ede9afa66b88fe6d6a9", "text": "Thu nhập mỗi tháng?"},
        {"chat_id": "6ede9afa66b88fe6d6a9", "text": "KẾT QUẢ SƠ BỘ\nHộ nghèo."},
    ]


def test_zalo_bot_forged_deliveries_are_refused(zalo_bot: tuple[Flask, FakeZaloBot]) -> None:
    app, fake = zalo_bot
    body = raw("zalo_bot", "text_wrapped.json")
    for headers in (zalo_bot_headers("wrong-secret-123"), {"Content-Type": "application/json"}):
        assert post(app, "zalo_bot", body, headers).status_code == 401
    drain(app)
    nothing_recorded(app)
    assert fake.requests == []


# -- Messenger -------------------------------------------------------------------------------------------------


def test_messenger_text_then_quick_reply_reach_the_provider_exactly(messenger: tuple[Flask, FakeMessenger]) -> None:
    app, fake = messenger
    for name in ("message_text.json", "quick_reply.json"):
        body = raw("messenger", name)
        assert post(app, "messenger", body, messenger_headers(body)).status_code == 200
    drain(app)
    calls = fake.calls("messages")
    assert [call.query for call in calls] == [{"access_token": fake.page_token}] * 2
    assert [call.json for call in calls] == [
        {"recipient": {"id": "6543219876543210"}, "messaging_type": "RESPONSE", "message": {"text": "Thu nhập mỗi tháng?"}},
        {
            "recipient": {"id": "6543219876543210"},
            "messaging_type": "RESPONSE",
            "message": {"text": "KẾT QUẢ SƠ BỘ\nHộ nghèo."},
        },
    ]


def test_messenger_forged_deliveries_are_refused(messenger: tuple[Flask, FakeMessenger]) -> None:
    app, fake = messenger
    body = raw("messenger", "message_text.json")
    altered = body.replace(b"Xin ch", b"Xin Ch")
    cases = [
        (body, messenger_headers(body, secret="wrong")),
        (altered, messenger_headers(body)),
        (body, {"Content-Type": "application/json"}),
    ]
    for data, headers in cases:
        assert post(app, "messenger", data, headers).status_code == 401
    drain(app)
    nothing_recorded(app)
    assert fake.requests == []


def test_messenger_subscription_handshake(messenger: tuple[Flask, FakeMessenger]) -> None:
    app, _fake = messenger
    client = app.test_client()
    ok = client.get(
        "/channels/messenger",
        query_string={"hub.mode": "subscribe", "hub.verify_token": MESSENGER_VERIFY, "hub.challenge": "1158201444"},
    )
    assert (ok.status_code, ok.get_data(as_text=True)) == (200, "1158201444")
    bad = client.get(
        "/channels/messenger",
        query_string={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
    )
    assert bad.status_code == 403


def test_channels_without_a_handshake_refuse_get(telegram: tuple[Flask, FakeTelegram]) -> None:
    app, _fake = telegram
    assert app.test_client().get("/channels/telegram").status_code == 405
