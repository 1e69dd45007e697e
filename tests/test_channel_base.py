"""Shared channel pieces: text splitting, rendering fallbacks, results, headers, the registry."""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.channels import (
    CHANNEL_NAMES,
    ChannelConfigError,
    MessengerAdapter,
    StaticTokenStore,
    TelegramAdapter,
    ZaloBotAdapter,
    ZaloOAAdapter,
    enabled_channels,
)
from bot.channels.base import (
    as_outbound,
    config_value,
    header,
    http_timeout,
    parse_retry_after,
)
from bot.channels.text import numbered_list, split_text, truncate, utf16_len
from bot.conversation.messages import Choice, Outbound

# -- splitting -------------------------------------------------------------------------------------------------

#: Vietnamese letters, separators at every level, an astral emoji (2 UTF-16 units) and a combining mark.
_TEXT = st.lists(
    st.sampled_from(
        list("aăâbcdđeêghiklmnoôơpqrstuưvxyạảấầẩẫậ") + [" ", "\n", "\n\n", ". ", "! ", "? ", "…", "😀", "\u0301"]
    ),
    max_size=400,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, limit=st.integers(min_value=2, max_value=120))
def test_split_chunks_fit_and_lose_no_visible_character(text: str, limit: int) -> None:
    for measure in (len, utf16_len):
        chunks = split_text(text, limit, measure)
        assert all(chunk and chunk == chunk.strip() for chunk in chunks)
        assert all(measure(chunk) <= limit for chunk in chunks)
        assert "".join("".join(chunks).split()) == "".join(text.split())


def test_short_text_is_one_chunk_and_blank_text_none() -> None:
    assert split_text("  Xin chào  ", 2000) == ["Xin chào"]
    assert split_text(" \n ", 2000) == []


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    a, b, c = "A" * 900, "B" * 900, "C" * 900
    assert split_text(f"{a}\n\n{b}\n\n{c}", 2000) == [f"{a}\n\n{b}", c]


def test_a_long_paragraph_is_cut_at_sentence_ends() -> None:
    sentence = "Hộ nghèo là hộ có thu nhập bình quân đầu người thấp. "
    chunks = split_text(sentence * 10, 200)
    assert all(chunk.endswith(".") for chunk in chunks)
    assert all(len(chunk) <= 200 for chunk in chunks)


def test_a_word_longer_than_the_limit_is_cut_without_orphaning_combining_marks() -> None:
    word = unicodedata.normalize("NFD", "ạ" * 10)  # a + combining dot below, twice the code points
    chunks = split_text(word, 5)
    assert all(not unicodedata.combining(chunk[0]) for chunk in chunks)
    assert "".join(chunks) == word


def test_numbered_list_and_truncate() -> None:
    assert numbered_list(["Có", "Không"]) == "1. Có\n2. Không"
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abcdefg", 6) == "abcde…"
    assert truncate("abc", 1) == "a"


# -- rendering and helpers -------------------------------------------------------------------------------------


def test_an_outbound_dict_and_an_outbound_render_the_same() -> None:
    adapter = ZaloBotAdapter(token="t", secret_token="s" * 8)
    message = Outbound("Chọn:", [Choice("Có", "yes")])
    assert adapter.render(message) == adapter.render(message.to_dict()) == [{"text": "Chọn:\n\n1. Có"}]
    with pytest.raises(TypeError):
        as_outbound(42)  # type: ignore[arg-type]


def test_choices_without_text_still_render() -> None:
    adapter = ZaloBotAdapter(token="t", secret_token="s" * 8)
    assert adapter.render(Outbound("", [Choice("Có", "yes")])) == [{"text": "1. Có"}]


def test_an_overlong_payload_falls_back_to_a_numbered_list() -> None:
    adapter = MessengerAdapter(page_token="p", app_secret="a", verify_token="v")
    [body] = adapter.render(Outbound("Q", [Choice("Có", "y" * 1001)]))
    assert body == {"text": "Q\n\n1. Có"}


def test_header_lookup_ignores_case() -> None:
    assert header({"X-Thing": "1"}, "x-thing") == "1"
    assert header({"x-thing": "1"}, "X-Thing") == "1"
    assert header({}, "X-Thing") is None


def test_config_values_are_text_and_blank_means_unset() -> None:
    assert config_value({"A": 123}, "A") == "123"
    assert config_value({"A": "  "}, "A") is None
    assert config_value({}, "A") is None
    assert http_timeout({"CHANNEL_HTTP_TIMEOUT_SECONDS": "3"}) == (3.0, 3.0)
    assert http_timeout({}) == (5.0, 10.0)
    with pytest.raises(ChannelConfigError):
        http_timeout({"CHANNEL_HTTP_TIMEOUT_SECONDS": "0"})


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now) == 60.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_within_window_without_a_window_is_always_true() -> None:
    adapter = TelegramAdapter(token="1:t", secret_token="s")
    assert adapter.within_window(None)
    assert adapter.within_window(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


# -- registry --------------------------------------------------------------------------------------------------

ALL = {
    "ZALO_OA_APP_ID": "1",
    "ZALO_OA_SECRET_KEY": "oa-secret",
    "ZALO_OA_ACCESS_TOKEN": "at",
    "ZALO_BOT_TOKEN": "zb",
    "ZALO_BOT_SECRET_TOKEN": "zb-secret",
    "TELEGRAM_BOT_TOKEN": "1:tg",
    "TELEGRAM_SECRET_TOKEN": "tg-secret",
    "MESSENGER_PAGE_TOKEN": "p",
    "MESSENGER_APP_SECRET": "a",
    "MESSENGER_VERIFY_TOKEN": "v",
}


def test_every_configured_channel_is_enabled() -> None:
    adapters = enabled_channels(ALL)
    assert tuple(adapters) == CHANNEL_NAMES
    assert isinstance(adapters["zalo_oa"], ZaloOAAdapter)
    assert isinstance(adapters["zalo_oa"].tokens, StaticTokenStore)
    assert {name: a.name for name, a in adapters.items()} == {n: n for n in CHANNEL_NAMES}


def test_nothing_configured_means_no_channels() -> None:
    assert enabled_channels({}) == {}
    assert enabled_channels({"UNRELATED": "x", "ZALO_OA_API_BASE": "http://x"}) == {}


def test_only_the_configured_channels_are_enabled() -> None:
    only_telegram = {k: v for k, v in ALL.items() if k.startswith("TELEGRAM")}
    assert list(enabled_channels(only_telegram)) == ["telegram"]


@pytest.mark.parametrize("missing", sorted(ALL))
def test_a_half_configured_channel_fails_loudly_naming_the_variable(missing: str) -> None:
    config = {k: v for k, v in ALL.items() if k != missing}
    with pytest.raises(ChannelConfigError, match=missing):
        enabled_channels(config)


def test_a_supplied_token_store_replaces_the_access_token_variable() -> None:
    class Store:
        def get(self) -> str:
            return "db-token"

        def refresh(self, stale_token: str) -> str:
            return "db-token-2"

    config = {"ZALO_OA_APP_ID": "1", "ZALO_OA_SECRET_KEY": "s"}
    adapter = enabled_channels(config, zalo_tokens=Store())["zalo_oa"]
    assert isinstance(adapter, ZaloOAAdapter) and adapter.tokens.get() == "db-token"


def test_telegram_is_seeded_with_known_payloads() -> None:
    long_payload = "p" * 80
    adapter = enabled_channels(ALL, known_payloads=[long_payload])["telegram"]
    assert isinstance(adapter, TelegramAdapter)
    assert adapter.codec.decode(adapter.codec.digest_id(long_payload)) == long_payload


def test_a_blank_message_is_not_sent() -> None:
    adapter = ZaloBotAdapter(token="t", secret_token="s" * 8)
    assert adapter.render(Outbound("  \n ")) == []
    result = adapter.send("u", Outbound(""))
    assert (result.ok, result.retryable, result.error_code) == (False, False, "empty_message")
