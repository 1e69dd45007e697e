"""Zalo Bot adapter: both envelopes, secret header, numbered-list rendering, setWebhook, error mapping."""

from __future__ import annotations

from typing import Any

import pytest

from bot.channels import ChannelConfigError, ParseError, SignatureError, ZaloBotAdapter
from bot.conversation.messages import Choice, Outbound
from tests.fakes import Delay, FakeZaloBot, Reply, fixtures
from tests.fakes.events import assert_events, delivery_files, expected, raw, signatures
from tests.fakes.zalo_bot import zalo_bot_error

fake_zalo_bot = fixtures.fake_zalo_bot  # the fixture, under its name so pytest finds it here

EXP = expected("zalo_bot")
SIG = signatures("zalo_bot")
CHAT = "6ede9afa66b88fe6d6a9"


def adapter_for(fake: FakeZaloBot | None = None, **overrides: Any) -> ZaloBotAdapter:
    """An adapter with the fixtures' secret, sending to ``fake``."""
    settings: dict[str, Any] = {
        "token": fake.token if fake else "t",
        "secret_token": SIG["secret_token"],
        "api_base": fake.url if fake else "http://127.0.0.1:9",
        "timeout": (1.0, 1.0),
    }
    settings.update(overrides)
    return ZaloBotAdapter(**settings)


@pytest.mark.parametrize("name", sorted(EXP["events"]))
def test_every_recorded_event_parses_to_the_expected_event(name: str) -> None:
    assert_events("zalo_bot", adapter_for().parse(raw("zalo_bot", name)), EXP["events"][name])


def test_every_recorded_delivery_has_an_expectation() -> None:
    assert set(delivery_files("zalo_bot")) == set(EXP["events"])


def test_wrapped_and_bare_envelopes_give_the_same_event() -> None:
    import json

    wrapped = json.loads(raw("zalo_bot", "text_wrapped.json"))
    [a] = adapter_for().parse(json.dumps(wrapped).encode())
    [b] = adapter_for().parse(json.dumps(wrapped["result"]).encode())
    assert (a.kind, a.text, a.message_id, a.user_ref) == (b.kind, b.text, b.message_id, b.user_ref)


@pytest.mark.parametrize("body", [b"[1, 2]", b"nope", b'"text"'])
def test_malformed_bodies_are_parse_errors(body: bytes) -> None:
    with pytest.raises(ParseError):
        adapter_for().parse(body)


@pytest.mark.parametrize("vector", SIG["vectors"], ids=[v["name"] for v in SIG["vectors"]])
def test_secret_header_vectors(vector: dict[str, Any]) -> None:
    body = raw("zalo_bot", vector["body_file"])
    if vector["valid"]:
        adapter_for().verify(vector["headers"], body)
    else:
        with pytest.raises(SignatureError):
            adapter_for().verify(vector["headers"], body)


def test_choices_are_rendered_as_a_numbered_list(fake_zalo_bot: FakeZaloBot) -> None:
    message = Outbound(
        "Câu 3: Nhà bạn có mấy người?",
        [Choice("1 người", "one"), Choice("2 người", "two"), Choice("3 người trở lên", "more")],
    )
    result = adapter_for(fake_zalo_bot).send(CHAT, message)
    assert result.ok and result.provider_message_id == "zb00000001"
    [call] = fake_zalo_bot.calls("sendMessage")
    assert call.path == f"/bot{fake_zalo_bot.token}/sendMessage"
    assert call.json == {
        "chat_id": CHAT,
        "text": "Câu 3: Nhà bạn có mấy người?\n\n1. 1 người\n2. 2 người\n3. 3 người trở lên",
    }


def test_long_text_is_split_under_2000(fake_zalo_bot: FakeZaloBot) -> None:
    text = " ".join(["Thu nhập bình quân đầu người mỗi tháng được tính như sau."] * 100)
    result = adapter_for(fake_zalo_bot).send(CHAT, Outbound(text))
    texts = [c.json["text"] for c in fake_zalo_bot.calls("sendMessage")]
    assert result.ok and result.parts_sent == len(texts) >= 3
    assert all(len(t) <= 2000 and t.endswith(".") for t in texts)  # sentence boundaries


def test_set_webhook_sends_url_and_secret(fake_zalo_bot: FakeZaloBot) -> None:
    adapter = adapter_for(fake_zalo_bot)
    assert adapter.set_webhook("https://tura.example.vn/webhooks/zalo-bot").ok
    [call] = fake_zalo_bot.calls("setWebhook")
    assert call.json == {"url": "https://tura.example.vn/webhooks/zalo-bot", "secret_token": SIG["secret_token"]}
    with pytest.raises(ChannelConfigError):
        adapter.set_webhook("https://x", "short")
    assert adapter.delete_webhook().ok


def test_ok_false_with_http_200_is_a_failure(fake_zalo_bot: FakeZaloBot) -> None:
    fake_zalo_bot.script("sendMessage", zalo_bot_error(400, "text must be 1-2000 characters"))
    result = adapter_for(fake_zalo_bot).send(CHAT, Outbound("x"))
    assert (result.ok, result.retryable, result.unreachable, result.error_code) == (False, False, False, "400")


def test_a_wrong_token_is_a_final_failure_and_never_leaks(fake_zalo_bot: FakeZaloBot) -> None:
    result = adapter_for(fake_zalo_bot, token="999:WRONG-secret-token").send(CHAT, Outbound("x"))
    assert (result.ok, result.retryable) == (False, False)
    assert "WRONG-secret-token" not in (result.error_message or "")


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [
        (Reply(502, "<html>bad gateway</html>"), None),
        (zalo_bot_error(500, "internal error", status=500), None),
        (
            Reply(
                429,
                {"ok": False, "error_code": 429, "description": "Too many requests", "parameters": {"retry_after": 5}},
            ),
            5.0,
        ),
        (Reply(429, "slow down", {"Retry-After": "12"}), 12.0),
    ],
)
def test_server_errors_and_rate_limits_are_retryable(
    fake_zalo_bot: FakeZaloBot, reply: Reply, retry_after: float | None
) -> None:
    fake_zalo_bot.script("sendMessage", reply)
    result = adapter_for(fake_zalo_bot).send(CHAT, Outbound("x"))
    assert (result.ok, result.retryable, result.retry_after) == (False, True, retry_after)


def test_a_timeout_is_retryable(fake_zalo_bot: FakeZaloBot) -> None:
    fake_zalo_bot.script("sendMessage", Delay(1.0))
    result = adapter_for(fake_zalo_bot, timeout=(1.0, 0.2)).send(CHAT, Outbound("x"))
    assert (result.ok, result.retryable, result.error_code) == (False, True, "timeout")


def test_network_errors_are_retryable_and_redacted() -> None:
    adapter = adapter_for(token="4242:SECRET-bot-token")
    result = adapter.send(CHAT, Outbound("x"))
    assert (result.ok, result.retryable, result.error_code) == (False, True, "network")
    assert "SECRET-bot-token" not in (result.error_message or "")


def test_no_window_is_documented() -> None:
    assert adapter_for().within_window(None)
    assert not adapter_for().capabilities.supports_buttons


def test_from_config() -> None:
    adapter = ZaloBotAdapter.from_config(
        {"ZALO_BOT_TOKEN": "t", "ZALO_BOT_SECRET_TOKEN": "s" * 8, "ZALO_BOT_API_BASE": "http://x"}
    )
    assert adapter.base_url == "http://x/bott"
    with pytest.raises(ChannelConfigError, match="ZALO_BOT_SECRET_TOKEN"):
        ZaloBotAdapter.from_config({"ZALO_BOT_TOKEN": "t"})


def test_a_short_secret_is_refused_at_start_up() -> None:
    with pytest.raises(ChannelConfigError, match="8-256"):
        ZaloBotAdapter.from_config({"ZALO_BOT_TOKEN": "t", "ZALO_BOT_SECRET_TOKEN": "short"})
