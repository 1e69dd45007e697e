"""Telegram adapter: updates, secret header, keyboards, callback_data hashing and answering, error mapping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.channels import (
    CallbackCodec,
    ChannelConfigError,
    ParseError,
    SignatureError,
    TelegramAdapter,
)
from bot.conversation.messages import Choice, Outbound
from tests.fakes import Delay, FakeTelegram, Reply, fixtures
from tests.fakes.events import assert_events, delivery_files, expected, raw, signatures
from tests.fakes.telegram import telegram_error, telegram_rate_limited

fake_telegram = fixtures.fake_telegram  # the fixture, under its name so pytest finds it here

EXP = expected("telegram")
SIG = signatures("telegram")
CHAT = "987654321"
QUESTION = Outbound(
    "Hộ của bạn ở xã hay phường?", [Choice("Xã (nông thôn)", "rural"), Choice("Phường (thành thị)", "urban")]
)


def adapter_for(fake: FakeTelegram | None = None, **overrides: Any) -> TelegramAdapter:
    """An adapter with the fixtures' secret, sending to ``fake``."""
    settings: dict[str, Any] = {
        "token": fake.token if fake else "1:t",
        "secret_token": SIG["secret_token"],
        "api_base": fake.url if fake else "http://127.0.0.1:9",
        "timeout": (1.0, 1.0),
    }
    settings.update(overrides)
    return TelegramAdapter(**settings)


@pytest.mark.parametrize("name", sorted(EXP["events"]))
def test_every_recorded_update_parses_to_the_expected_event(name: str) -> None:
    assert_events("telegram", adapter_for().parse(raw("telegram", name)), EXP["events"][name])


def test_every_recorded_delivery_has_an_expectation() -> None:
    assert set(delivery_files("telegram")) == set(EXP["events"])


@pytest.mark.parametrize("body", [b"{}", b"[]", b"\xff"])
def test_bodies_without_update_id_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError):
        adapter_for().parse(body)


@pytest.mark.parametrize("vector", SIG["vectors"], ids=[v["name"] for v in SIG["vectors"]])
def test_secret_header_vectors(vector: dict[str, Any]) -> None:
    body = raw("telegram", vector["body_file"])
    if vector["valid"]:
        adapter_for().verify(vector["headers"], body)
    else:
        with pytest.raises(SignatureError):
            adapter_for().verify(vector["headers"], body)


def test_choices_are_an_inline_keyboard(fake_telegram: FakeTelegram) -> None:
    result = adapter_for(fake_telegram).send(CHAT, QUESTION)
    assert result.ok and result.provider_message_id == "100"
    [call] = fake_telegram.calls("sendMessage")
    assert call.json == {
        "chat_id": 987654321,
        "text": "Hộ của bạn ở xã hay phường?",
        "reply_markup": {
            "inline_keyboard": [
                [{"text": "Xã (nông thôn)", "callback_data": "rural"}],
                [{"text": "Phường (thành thị)", "callback_data": "urban"}],
            ]
        },
    }


def test_reply_keyboard_mode(fake_telegram: FakeTelegram) -> None:
    adapter = adapter_for(fake_telegram, keyboard="reply")
    assert adapter.send(CHAT, QUESTION).ok
    assert adapter.send(CHAT, Outbound("Nhập thu nhập hằng tháng:")).ok
    first, second = (c.json for c in fake_telegram.calls("sendMessage"))
    assert first["reply_markup"] == {
        "keyboard": [[{"text": "Xã (nông thôn)"}], [{"text": "Phường (thành thị)"}]],
        "one_time_keyboard": True,
        "resize_keyboard": True,
    }
    assert second["reply_markup"] == {"remove_keyboard": True}


def test_payloads_over_64_bytes_are_hashed_deterministically_and_decoded(fake_telegram: FakeTelegram) -> None:
    long_payload = "income_source_" + "trồng_trọt_" * 8
    assert len(long_payload.encode()) > 64
    adapter = adapter_for(fake_telegram)
    assert adapter.send(CHAT, Outbound("Nguồn thu?", [Choice("Trồng trọt", long_payload), Choice("Khác", "other")])).ok
    [[button], [other]] = fake_telegram.calls("sendMessage")[0].json["reply_markup"]["inline_keyboard"]
    data = button["callback_data"]
    assert data.startswith("h:") and len(data.encode()) <= 64 and other["callback_data"] == "other"
    assert data == CallbackCodec.digest_id(long_payload) == CallbackCodec().encode(long_payload)
    update = json.loads(raw("telegram", "callback_query.json"))
    update["callback_query"]["data"] = data
    [event] = adapter.parse(json.dumps(update).encode())
    assert (event.kind, event.payload) == ("payload", long_payload)
    # Another process decodes it when seeded with the questionnaire's payloads.
    [seeded] = adapter_for(codec=CallbackCodec([long_payload, "other"])).parse(json.dumps(update).encode())
    assert seeded.payload == long_payload
    # An unknown id is passed through (the engine will re-ask).
    [unknown] = adapter_for().parse(json.dumps(update).encode())
    assert unknown.payload == data


def test_a_payload_that_looks_like_a_hash_id_is_hashed_too() -> None:
    codec = CallbackCodec()
    encoded = codec.encode("h:abc")
    assert encoded != "h:abc" and codec.decode(encoded) == "h:abc"


def test_a_button_tap_is_answered(fake_telegram: FakeTelegram) -> None:
    adapter = adapter_for(fake_telegram)
    [event] = adapter.parse(raw("telegram", "callback_query.json"))
    result = adapter.acknowledge(event)
    assert result is not None and result.ok
    [call] = fake_telegram.calls("answerCallbackQuery")
    assert call.json == {"callback_query_id": "4382bfdwdsb323b2d9"}
    [text_event] = adapter.parse(raw("telegram", "message_text.json"))
    assert adapter.acknowledge(text_event) is None


def test_long_text_is_split_under_4096_utf16_units(fake_telegram: FakeTelegram) -> None:
    text = "\n".join(["🏠 Nhà ở: bán kiên cố, diện tích bình quân dưới 8 m² mỗi người."] * 120)
    assert len(text) < len(text.encode("utf-16-le")) // 2
    result = adapter_for(fake_telegram).send(CHAT, Outbound(text, [Choice("Tiếp", "next")]))
    calls = fake_telegram.calls("sendMessage")
    assert result.ok and len(calls) >= 2
    assert all(len(c.json["text"].encode("utf-16-le")) // 2 <= 4096 for c in calls)
    assert ["reply_markup" in c.json for c in calls] == [False] * (len(calls) - 1) + [True]


def test_429_is_retryable_with_telegrams_retry_after(fake_telegram: FakeTelegram) -> None:
    fake_telegram.script("sendMessage", telegram_rate_limited(7))
    result = adapter_for(fake_telegram).send(CHAT, QUESTION)
    assert (result.ok, result.retryable, result.retry_after, result.error_code) == (False, True, 7.0, "429")


@pytest.mark.parametrize(
    "reply", [Reply(502, "<html>Bad Gateway</html>"), telegram_error(500, "Internal Server Error")]
)
def test_server_errors_are_retryable(fake_telegram: FakeTelegram, reply: Reply) -> None:
    fake_telegram.script("sendMessage", reply)
    result = adapter_for(fake_telegram).send(CHAT, QUESTION)
    assert (result.ok, result.retryable, result.unreachable) == (False, True, False)


def test_a_timeout_is_retryable(fake_telegram: FakeTelegram) -> None:
    fake_telegram.script("sendMessage", Delay(1.0))
    result = adapter_for(fake_telegram, timeout=(1.0, 0.2)).send(CHAT, QUESTION)
    assert (result.ok, result.retryable, result.error_code) == (False, True, "timeout")


@pytest.mark.parametrize(
    "reply",
    [
        telegram_error(403, "Forbidden: bot was blocked by the user"),
        telegram_error(403, "Forbidden: user is deactivated"),
        telegram_error(400, "Bad Request: chat not found"),
    ],
)
def test_blocked_or_missing_chats_are_unreachable(fake_telegram: FakeTelegram, reply: Reply) -> None:
    fake_telegram.script("sendMessage", reply)
    result = adapter_for(fake_telegram).send(CHAT, QUESTION)
    assert (result.ok, result.retryable, result.unreachable) == (False, False, True)
    assert len(fake_telegram.calls("sendMessage")) == 1


def test_other_bad_requests_are_final(fake_telegram: FakeTelegram) -> None:
    fake_telegram.script("sendMessage", telegram_error(400, "Bad Request: can't parse entities"))
    result = adapter_for(fake_telegram).send(CHAT, QUESTION)
    assert (result.ok, result.retryable, result.unreachable, result.error_code) == (False, False, False, "400")


def test_the_token_never_appears_in_errors(fake_telegram: FakeTelegram) -> None:
    result = adapter_for(fake_telegram, token="777:TOPSECRET-token").send(CHAT, QUESTION)
    assert (result.ok, result.error_code) == (False, "401")
    offline = adapter_for(token="777:TOPSECRET-token").send(CHAT, QUESTION)
    assert offline.error_code == "network" and "TOPSECRET" not in (offline.error_message or "")


def test_set_webhook(fake_telegram: FakeTelegram) -> None:
    adapter = adapter_for(fake_telegram)
    assert adapter.set_webhook("https://tura.example.vn/webhooks/telegram").ok
    [call] = fake_telegram.calls("setWebhook")
    assert call.json == {
        "url": "https://tura.example.vn/webhooks/telegram",
        "secret_token": SIG["secret_token"],
        "allowed_updates": ["message", "callback_query", "my_chat_member"],
        "drop_pending_updates": False,
    }
    with pytest.raises(ChannelConfigError):
        adapter.set_webhook("https://x", "bad secret!")


def test_from_config_validates_the_secret_and_keyboard() -> None:
    base = {"TELEGRAM_BOT_TOKEN": "1:t", "TELEGRAM_SECRET_TOKEN": "ok_secret-1"}
    assert TelegramAdapter.from_config(base).keyboard == "inline"
    assert TelegramAdapter.from_config({**base, "TELEGRAM_KEYBOARD": "reply"}).keyboard == "reply"
    for bad in (
        {**base, "TELEGRAM_SECRET_TOKEN": "has space"},
        {**base, "TELEGRAM_KEYBOARD": "menu"},
        {"TELEGRAM_BOT_TOKEN": "1:t"},
    ):
        with pytest.raises(ChannelConfigError):
            TelegramAdapter.from_config(bad)
