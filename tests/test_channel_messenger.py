"""Messenger adapter: handshake, X-Hub-Signature-256 vectors, events, quick replies, Send API errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from bot.channels import ChannelConfigError, MessengerAdapter, SignatureError
from bot.channels.messenger import messenger_signature
from bot.conversation.messages import Choice, Outbound
from tests.fakes import Delay, FakeMessenger, Reply, fixtures
from tests.fakes.events import assert_events, delivery_files, expected, raw, signatures
from tests.fakes.messenger import graph_error

fake_messenger = fixtures.fake_messenger  # the fixture, under its name so pytest finds it here

EXP = expected("messenger")
SIG = signatures("messenger")
PSID = "6543219876543210"
QUESTION = Outbound("Nhà bạn có nhà vệ sinh tự hoại không?", [Choice("Có", "yes"), Choice("Không", "no")])


def adapter_for(fake: FakeMessenger | None = None, **overrides: Any) -> MessengerAdapter:
    """An adapter with the fixtures' secrets, sending to ``fake``."""
    settings: dict[str, Any] = {
        "page_token": fake.page_token if fake else "EAAx",
        "app_secret": SIG["app_secret"],
        "verify_token": EXP["verify_token"],
        "api_base": fake.url if fake else "http://127.0.0.1:9",
        "timeout": (1.0, 1.0),
    }
    settings.update(overrides)
    return MessengerAdapter(**settings)


@pytest.mark.parametrize("name", sorted(EXP["events"]))
def test_every_recorded_delivery_parses_to_the_expected_events(name: str) -> None:
    assert_events("messenger", adapter_for().parse(raw("messenger", name)), EXP["events"][name])


def test_every_recorded_delivery_has_an_expectation() -> None:
    assert set(delivery_files("messenger")) == set(EXP["events"])


def test_echoes_are_skipped() -> None:
    assert adapter_for().parse(raw("messenger", "echo.json")) == []


def test_entries_for_other_pages_are_skipped_when_the_page_is_configured() -> None:
    assert adapter_for(page_id="1").parse(raw("messenger", "message_text.json")) == []
    assert len(adapter_for(page_id=EXP["page_id"]).parse(raw("messenger", "message_text.json"))) == 1


# -- handshake and signatures ----------------------------------------------------------------------------------


def test_get_handshake_returns_the_challenge() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": EXP["verify_token"], "hub.challenge": "1158201444"}
    assert adapter_for().handshake(query) == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "tu-ra-soat-verify", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "tu-ra-soat-verify"},
    ],
)
def test_a_bad_handshake_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        adapter_for().handshake(query)


@pytest.mark.parametrize("vector", SIG["vectors"], ids=[v["name"] for v in SIG["vectors"]])
def test_signature_vectors_verify(vector: dict[str, Any]) -> None:
    body = vector["body"].encode() if "body" in vector else raw("messenger", vector["body_file"])
    adapter = adapter_for(app_secret=vector.get("secret", SIG["app_secret"]))
    adapter.verify({"X-Hub-Signature-256": vector["header"]}, body)
    adapter.verify({"x-hub-signature-256": vector["header"].upper().replace("SHA256=", "sha256=")}, body)
    assert messenger_signature(vector.get("secret", SIG["app_secret"]), body) == vector["header"]


def test_wrong_secret_altered_body_and_missing_header_are_rejected() -> None:
    vector = SIG["vectors"][0]
    body = raw("messenger", vector["body_file"])
    headers = {"X-Hub-Signature-256": vector["header"]}
    with pytest.raises(SignatureError):
        adapter_for(app_secret="another-secret").verify(headers, body)
    altered = bytearray(body)
    altered[len(altered) // 2] ^= 0x01
    with pytest.raises(SignatureError):
        adapter_for().verify(headers, bytes(altered))
    for bad in (
        {},
        {"X-Hub-Signature-256": ""},
        {"X-Hub-Signature-256": vector["header"][7:]},
        {"X-Hub-Signature": "sha1=abc"},
    ):
        with pytest.raises(SignatureError):
            adapter_for().verify(bad, body)


# -- sending ---------------------------------------------------------------------------------------------------


def test_choices_are_quick_replies_with_messaging_type_response(fake_messenger: FakeMessenger) -> None:
    result = adapter_for(fake_messenger).send(PSID, QUESTION)
    assert result.ok and result.provider_message_id == "m_fake000000000001"
    [call] = fake_messenger.calls("messages")
    assert call.path == "/v25.0/me/messages"
    assert call.query == {"access_token": fake_messenger.page_token}
    assert call.json == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {
            "text": "Nhà bạn có nhà vệ sinh tự hoại không?",
            "quick_replies": [
                {"content_type": "text", "title": "Có", "payload": "yes"},
                {"content_type": "text", "title": "Không", "payload": "no"},
            ],
        },
    }


def test_titles_are_cut_at_20_characters_and_14_choices_become_a_list(fake_messenger: FakeMessenger) -> None:
    adapter = adapter_for(fake_messenger, graph_version="19.0")
    assert adapter.send(PSID, Outbound("Nguồn nước?", [Choice("Nước máy, nước giếng khoan có lọc", "piped")])).ok
    quick = fake_messenger.calls("messages")[0].json["message"]["quick_replies"][0]
    assert quick["title"] == "Nước máy, nước giến…" and len(quick["title"]) == 20
    assert fake_messenger.calls("messages")[0].path == "/v19.0/me/messages"
    many = [Choice(f"Xã {i}", f"x{i}") for i in range(14)]
    assert adapter.send(PSID, Outbound("Xã nào?", many)).ok
    message = fake_messenger.calls("messages")[1].json["message"]
    assert "quick_replies" not in message and message["text"].endswith("14. Xã 13")


def test_long_text_is_split_under_2000(fake_messenger: FakeMessenger) -> None:
    text = "Câu hỏi dài. " * 400
    result = adapter_for(fake_messenger).send(PSID, Outbound(text, [Choice("Có", "yes")]))
    calls = fake_messenger.calls("messages")
    assert result.ok and len(calls) == result.parts_sent >= 3
    assert all(len(c.json["message"]["text"]) <= 2000 for c in calls)
    assert "quick_replies" in calls[-1].json["message"]


@pytest.mark.parametrize(
    "reply",
    [
        graph_error(400, 10, "(#10) This message is sent outside of allowed window.", 2018278),
        graph_error(400, 551, "(#551) This person isn't available right now.", 1545041),
        graph_error(400, 100, "(#100) No matching user found", 2018001),
    ],
)
def test_closed_window_or_unavailable_person_is_unreachable(fake_messenger: FakeMessenger, reply: Reply) -> None:
    fake_messenger.script("messages", reply)
    result = adapter_for(fake_messenger).send(PSID, QUESTION)
    assert (result.ok, result.unreachable, result.retryable) == (False, True, False)
    assert len(fake_messenger.calls("messages")) == 1


@pytest.mark.parametrize(
    "reply",
    [
        graph_error(500, 1200, "Temporary send message failure. Please try again later"),
        graph_error(400, 613, "(#613) Calls to this api have exceeded the rate limit."),
        Reply(503, "<html>unavailable</html>"),
    ],
)
def test_temporary_failures_are_retryable(fake_messenger: FakeMessenger, reply: Reply) -> None:
    fake_messenger.script("messages", reply)
    result = adapter_for(fake_messenger).send(PSID, QUESTION)
    assert (result.ok, result.retryable, result.unreachable) == (False, True, False)


def test_an_invalid_token_is_final_and_redacted(fake_messenger: FakeMessenger) -> None:
    result = adapter_for(fake_messenger, page_token="EAAwrongTOKEN123").send(PSID, QUESTION)
    assert (result.ok, result.retryable, result.unreachable, result.error_code) == (False, False, False, "190")
    offline = adapter_for(page_token="EAAwrongTOKEN123").send(PSID, QUESTION)
    assert offline.error_code == "network" and "EAAwrongTOKEN123" not in (offline.error_message or "")


def test_a_timeout_is_retryable(fake_messenger: FakeMessenger) -> None:
    fake_messenger.script("messages", Delay(1.0))
    result = adapter_for(fake_messenger, timeout=(1.0, 0.2)).send(PSID, QUESTION)
    assert (result.ok, result.retryable, result.error_code) == (False, True, "timeout")


def test_the_standard_window_is_24_hours() -> None:
    now = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    assert adapter_for().within_window(now - dt.timedelta(hours=23), now)
    assert not adapter_for().within_window(now - dt.timedelta(hours=25), now)


def test_from_config() -> None:
    config = {
        "MESSENGER_PAGE_TOKEN": "p",
        "MESSENGER_APP_SECRET": "a",
        "MESSENGER_VERIFY_TOKEN": "v",
        "MESSENGER_GRAPH_VERSION": "v21.0",
    }
    assert MessengerAdapter.from_config(config).send_url == "https://graph.facebook.com/v21.0/me/messages"
    with pytest.raises(ChannelConfigError, match="MESSENGER_VERIFY_TOKEN"):
        MessengerAdapter.from_config({"MESSENGER_PAGE_TOKEN": "p", "MESSENGER_APP_SECRET": "a"})
    with pytest.raises(ChannelConfigError):
        MessengerAdapter.from_config({**config, "MESSENGER_GRAPH_VERSION": "latest"})
