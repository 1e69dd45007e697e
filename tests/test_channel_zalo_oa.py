"""Zalo OA adapter: recorded events, signature vectors, rendering, token refresh and error mapping."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest

from bot.channels import (
    ChannelConfigError,
    SignatureError,
    StaleEventError,
    TokenPair,
    TokenRefreshError,
    ZaloOAAdapter,
    ZaloOATokenStore,
)
from bot.channels.zalo_oa import zalo_oa_signature
from bot.conversation.messages import Choice, Outbound
from tests.fakes import Delay, FakeZaloOA, Reply, fixtures
from tests.fakes.events import assert_events, delivery_files, expected, raw, signatures
from tests.fakes.zalo_oa import zalo_error

fake_zalo_oa = fixtures.fake_zalo_oa  # the fixture, under its name so pytest finds it here

SIG = signatures("zalo_oa")
EXP = expected("zalo_oa")
USER = "2468458835296117922"


def at_ms(ms: int | str, seconds: float = 0.0) -> Callable[[], dt.datetime]:
    """A clock stuck ``seconds`` after epoch-ms ``ms``."""
    when = dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC) + dt.timedelta(seconds=seconds)
    return lambda: when


def webhook_adapter(clock: Callable[[], dt.datetime] | None = None, **overrides: Any) -> ZaloOAAdapter:
    """An adapter configured with the fixtures' app id and secrets (no sending)."""
    from bot.channels import StaticTokenStore

    settings: dict[str, Any] = {
        "app_id": SIG["app_id"],
        "oa_secret_key": SIG["oa_secret_key"],
        "app_secret": SIG["app_secret"],
        "tokens": StaticTokenStore("unused"),
        "clock": clock or at_ms(1764403200000, 1),
    }
    settings.update(overrides)
    return ZaloOAAdapter(**settings)


def sending_adapter(
    fake: FakeZaloOA,
    *,
    persist: Callable[[TokenPair], None] | None = None,
    refresh_token: str | None = None,
    timeout: float | tuple[float, float] = (2.0, 2.0),
) -> tuple[ZaloOAAdapter, ZaloOATokenStore]:
    """An adapter sending to ``fake`` with a refreshing token store starting from the fake's current pair."""
    store = ZaloOATokenStore(
        app_id=fake.app_id,
        app_secret=fake.app_secret,
        initial=TokenPair(fake.access_token or "", refresh_token or fake.refresh_token),
        persist=persist or (lambda pair: None),
        oauth_base=fake.url,
        timeout=timeout,
    )
    adapter = ZaloOAAdapter(app_id=fake.app_id, oa_secret_key="s", tokens=store, api_base=fake.url, timeout=timeout)
    return adapter, store


QUESTION = Outbound(
    "Câu 2: Hộ của bạn ở xã hay phường?",
    [Choice("Xã (nông thôn)", "rural"), Choice("Phường (thành thị)", "urban"), Choice("Không biết", "unknown")],
)


# -- inbound ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXP["events"]))
def test_every_recorded_event_parses_to_the_expected_event(name: str) -> None:
    adapter = webhook_adapter()
    assert_events("zalo_oa", adapter.parse(raw("zalo_oa", name)), EXP["events"][name])


def test_every_recorded_delivery_has_an_expectation() -> None:
    assert set(delivery_files("zalo_oa")) == set(EXP["events"])


def test_events_for_another_oa_are_ignored_when_the_oa_id_is_configured() -> None:
    adapter = webhook_adapter(oa_id=EXP["oa_id"])
    assert adapter.parse(raw("zalo_oa", "other_oa_user_send_text.json")) == []
    assert [e.kind for e in adapter.parse(raw("zalo_oa", "user_send_text.json"))] == ["text"]
    assert [e.kind for e in adapter.parse(raw("zalo_oa", "follow.json"))] == ["follow"]


def test_a_configured_payload_prefix_turns_button_taps_into_payload_events() -> None:
    adapter = webhook_adapter(payload_prefix="~")
    body = raw("zalo_oa", "user_send_text_button_tap.json").replace(b'"share"', b'"~share"')
    [event] = adapter.parse(body)
    assert (event.kind, event.payload, event.text) == ("payload", "share", None)


def test_to_inbound_gives_the_engine_its_inbound_shape() -> None:
    [event] = webhook_adapter().parse(raw("zalo_oa", "user_send_text.json"))
    inbound = event.to_inbound()
    assert (inbound.text, inbound.payload, inbound.kind) == ("Xin chào", None, "text")
    [info] = webhook_adapter().parse(raw("zalo_oa", "user_submit_info.json"))
    assert info.to_inbound().kind == "unsupported"


def test_a_body_that_is_not_json_is_a_parse_error() -> None:
    from bot.channels import ParseError

    with pytest.raises(ParseError):
        webhook_adapter().parse(b"<html>")


# -- signatures ------------------------------------------------------------------------------------------------


def _variant_adapter(vector: dict[str, Any], **overrides: Any) -> ZaloOAAdapter:
    id_term, secret_term = vector["variant"].split(":")
    return webhook_adapter(
        clock=at_ms(vector["timestamp"], 2), signature_variants=[(id_term, secret_term)], **overrides
    )


@pytest.mark.parametrize("vector", SIG["vectors"], ids=[v["name"] for v in SIG["vectors"]])
def test_signature_vectors_verify(vector: dict[str, Any]) -> None:
    body = raw("zalo_oa", vector["body_file"])
    _variant_adapter(vector).verify({"X-ZEvent-Signature": vector["header"]}, body)
    # The helper agrees with openssl.
    first = SIG["oa_id"] if vector["variant"].startswith("oa_id") else SIG["app_id"]
    secret = SIG["app_secret"] if vector["variant"].endswith("app_secret") else SIG["oa_secret_key"]
    assert "mac=" + zalo_oa_signature(first, body, vector["timestamp"], secret) == vector["header"]


def test_oa_id_variant_uses_the_configured_oa_id_when_set() -> None:
    vector = next(v for v in SIG["vectors"] if v["variant"] == "oa_id:oa_secret")
    _variant_adapter(vector, oa_id=SIG["oa_id"]).verify(
        {"X-ZEvent-Signature": vector["header"]}, raw("zalo_oa", vector["body_file"])
    )


def test_several_variants_can_be_accepted_during_the_pilot() -> None:
    adapter = webhook_adapter(
        signature_variants=[("app_id", "oa_secret"), ("oa_id", "oa_secret")], clock=at_ms(1764403200000, 2)
    )
    for vector in SIG["vectors"]:
        if vector["variant"] != "app_id:app_secret" and vector["body_file"] == "user_send_text.json":
            adapter.verify({"X-ZEvent-Signature": vector["header"]}, raw("zalo_oa", vector["body_file"]))


def test_header_case_prefix_and_hex_case_are_tolerated() -> None:
    vector = SIG["vectors"][0]
    body = raw("zalo_oa", vector["body_file"])
    hexdigest = vector["header"].removeprefix("mac=")
    adapter = _variant_adapter(vector)
    adapter.verify({"x-zevent-signature": vector["header"]}, body)
    adapter.verify({"X-ZEvent-Signature": "MAC=" + hexdigest.upper()}, body)
    adapter.verify({"X-ZEvent-Signature": hexdigest}, body)


def test_wrong_secret_is_rejected() -> None:
    vector = SIG["vectors"][0]
    adapter = webhook_adapter(oa_secret_key=SIG["oa_secret_key"] + "x", clock=at_ms(vector["timestamp"], 1))
    with pytest.raises(SignatureError):
        adapter.verify({"X-ZEvent-Signature": vector["header"]}, raw("zalo_oa", vector["body_file"]))


def test_the_app_secret_is_not_accepted_in_place_of_the_oa_secret_by_default() -> None:
    vector = next(v for v in SIG["vectors"] if v["variant"] == "app_id:app_secret")
    with pytest.raises(SignatureError):
        webhook_adapter(clock=at_ms(vector["timestamp"], 1)).verify(
            {"X-ZEvent-Signature": vector["header"]}, raw("zalo_oa", vector["body_file"])
        )


@pytest.mark.parametrize("offset", [30, 60, -5])
def test_one_altered_byte_is_rejected(offset: int) -> None:
    vector = SIG["vectors"][0]
    body = bytearray(raw("zalo_oa", vector["body_file"]))
    position = offset % len(body)
    body[position] ^= 0x01
    with pytest.raises(SignatureError):
        _variant_adapter(vector).verify({"X-ZEvent-Signature": vector["header"]}, bytes(body))


def test_an_altered_message_text_that_stays_valid_json_is_rejected() -> None:
    vector = SIG["vectors"][0]
    body = raw("zalo_oa", vector["body_file"]).replace("Xin chào".encode(), "Xin chàp".encode())
    with pytest.raises(SignatureError):
        _variant_adapter(vector).verify({"X-ZEvent-Signature": vector["header"]}, body)


@pytest.mark.parametrize(
    "headers", [{}, {"X-ZEvent-Signature": ""}, {"X-ZEvent-Signature": "mac="}, {"X-ZEvent-Signature": "mac=zz\u1ea1"}]
)
def test_missing_or_malformed_header_is_rejected(headers: dict[str, str]) -> None:
    vector = SIG["vectors"][0]
    with pytest.raises(SignatureError):
        _variant_adapter(vector).verify(headers, raw("zalo_oa", vector["body_file"]))


def test_a_replayed_old_event_is_rejected_as_stale() -> None:
    vector = SIG["vectors"][0]
    headers = {"X-ZEvent-Signature": vector["header"]}
    body = raw("zalo_oa", vector["body_file"])
    webhook_adapter(clock=at_ms(vector["timestamp"], 599)).verify(headers, body)
    with pytest.raises(StaleEventError):
        webhook_adapter(clock=at_ms(vector["timestamp"], 601)).verify(headers, body)
    with pytest.raises(StaleEventError):
        webhook_adapter(clock=at_ms(vector["timestamp"], -601)).verify(headers, body)  # from the future
    # A stale event is still a SignatureError for an edge that does not distinguish.
    assert issubclass(StaleEventError, SignatureError)


def test_redeliveries_get_the_longer_retry_window() -> None:
    vector = SIG["vectors"][0]
    body = raw("zalo_oa", vector["body_file"])
    headers = {"X-ZEvent-Signature": vector["header"], "num_retry": "3"}
    webhook_adapter(clock=at_ms(vector["timestamp"], 12 * 3600)).verify(headers, body)
    with pytest.raises(StaleEventError):
        webhook_adapter(clock=at_ms(vector["timestamp"], 14 * 3600)).verify(headers, body)


def test_the_retry_header_is_found_in_either_spelling() -> None:
    vector = SIG["vectors"][0]
    body = raw("zalo_oa", vector["body_file"])
    adapter = webhook_adapter(clock=at_ms(vector["timestamp"], 3600))
    adapter.verify({"X-ZEvent-Signature": vector["header"], "Num-Retry": "1"}, body)
    with pytest.raises(StaleEventError):
        adapter.verify({"X-ZEvent-Signature": vector["header"], "num_retry": "0"}, body)


def test_a_window_of_zero_disables_the_replay_check() -> None:
    vector = SIG["vectors"][0]
    adapter = webhook_adapter(clock=at_ms(vector["timestamp"], 10**6), max_event_age=0)
    adapter.verify({"X-ZEvent-Signature": vector["header"]}, raw("zalo_oa", vector["body_file"]))


def test_a_forged_event_is_rejected_before_its_age_is_considered() -> None:
    vector = SIG["vectors"][0]
    adapter = webhook_adapter(clock=at_ms(vector["timestamp"], 10**6), oa_secret_key="other")
    with pytest.raises(SignatureError) as info:
        adapter.verify({"X-ZEvent-Signature": vector["header"]}, raw("zalo_oa", vector["body_file"]))
    assert not isinstance(info.value, StaleEventError)


def test_an_event_for_another_app_or_without_timestamp_is_rejected() -> None:
    adapter = webhook_adapter()
    body = raw("zalo_oa", "user_send_text.json")
    other = body.replace(SIG["app_id"].encode(), b"999")
    sig = "mac=" + zalo_oa_signature(SIG["app_id"], other, "1764403200000", SIG["oa_secret_key"])
    with pytest.raises(SignatureError, match="another Zalo app"):
        adapter.verify({"X-ZEvent-Signature": sig}, other)
    no_ts = b'{"app_id":"%s","event_name":"user_send_text"}' % SIG["app_id"].encode()
    with pytest.raises(SignatureError, match="timestamp"):
        adapter.verify({"X-ZEvent-Signature": sig}, no_ts)
    with pytest.raises(SignatureError):
        adapter.verify({"X-ZEvent-Signature": sig}, b"not json")


# -- sending ---------------------------------------------------------------------------------------------------


def test_choices_are_sent_as_oa_query_hide_buttons(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    result = adapter.send(USER, QUESTION)
    assert result.ok and result.provider_message_id == "zmsg0000000000000001" and result.parts_sent == 1
    [call] = fake_zalo_oa.calls("send")
    assert call.header("access_token") == "zoa-at-0"
    assert call.header("Authorization") is None
    assert call.json == {
        "recipient": {"user_id": USER},
        "message": {
            "text": "Câu 2: Hộ của bạn ở xã hay phường?",
            "attachment": {
                "type": "template",
                "payload": {
                    "buttons": [
                        {"title": "Xã (nông thôn)", "type": "oa.query.hide", "payload": "rural"},
                        {"title": "Phường (thành thị)", "type": "oa.query.hide", "payload": "urban"},
                        {"title": "Không biết", "type": "oa.query.hide", "payload": "unknown"},
                    ]
                },
            },
        },
    }


def test_the_outbox_dict_form_is_accepted(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    assert adapter.send(USER, QUESTION.to_dict()).ok
    assert fake_zalo_oa.calls("send")[0].json["message"]["attachment"]["payload"]["buttons"][0]["payload"] == "rural"


def test_more_choices_than_buttons_become_a_numbered_list(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    choices = [Choice(f"Lựa chọn {i}", f"c{i}") for i in range(1, 7)]
    assert adapter.send(USER, Outbound("Chọn một:", choices)).ok
    [call] = fake_zalo_oa.calls("send")
    assert call.json["message"] == {"text": "Chọn một:\n\n" + "\n".join(f"{i}. Lựa chọn {i}" for i in range(1, 7))}


def test_text_is_nfc_normalised_and_long_titles_shortened(fake_zalo_oa: FakeZaloOA) -> None:
    import unicodedata

    adapter, _ = sending_adapter(fake_zalo_oa)
    nfd = unicodedata.normalize("NFD", "Thu nhập hằng tháng")
    assert adapter.send(USER, Outbound(nfd, [Choice("x" * 150, "long")])).ok
    message = fake_zalo_oa.calls("send")[0].json["message"]
    assert message["text"] == unicodedata.normalize("NFC", nfd)
    title = message["attachment"]["payload"]["buttons"][0]["title"]
    assert len(title) == 100 and title.endswith("…")


def test_long_text_is_split_under_2000_with_buttons_on_the_last_part(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    paragraphs = [f"Đoạn {i}. " + "Câu giải thích dài về chuẩn nghèo. " * 30 for i in range(5)]
    text = "\n\n".join(paragraphs)
    assert len(text) > 4000
    result = adapter.send(USER, Outbound(text, [Choice("Tiếp tục", "next")]))
    calls = fake_zalo_oa.calls("send")
    assert result.ok and result.parts_sent == len(calls) >= 3
    texts = [c.json["message"]["text"] for c in calls]
    assert all(len(t) <= 2000 for t in texts)
    assert all(t.startswith("Đoạn") for t in texts)  # cut at paragraph boundaries
    assert "".join("".join(texts).split()) == "".join(text.split())
    assert [("attachment" in c.json["message"]) for c in calls] == [False] * (len(calls) - 1) + [True]
    assert result.provider_message_id == f"zmsg{len(calls):016d}"


def test_a_partial_failure_reports_parts_sent_and_a_retry_skips_them(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    text = "A" * 1500 + "\n\n" + "B" * 1500
    fake_zalo_oa.script(
        "send", Reply(200, {"error": 0, "message": "Success", "data": {"message_id": "m1"}}), Reply(503, "busy")
    )
    first = adapter.send(USER, Outbound(text))
    assert (first.ok, first.retryable, first.parts_sent) == (False, True, 1)
    second = adapter.send(USER, Outbound(text), skip_parts=first.parts_sent)
    assert second.ok and second.parts_sent == 2
    assert [c.json["message"]["text"][0] for c in fake_zalo_oa.calls("send")] == ["A", "B", "B"]


# -- tokens ----------------------------------------------------------------------------------------------------


def test_expired_token_refreshes_once_persists_the_rotated_pair_first_and_resends(fake_zalo_oa: FakeZaloOA) -> None:
    saved: list[TokenPair] = []

    def persist(pair: TokenPair) -> None:
        # At the moment of saving, nobody has used the new access token yet.
        assert all(c.header("access_token") != pair.access_token for c in fake_zalo_oa.calls("send"))
        saved.append(pair)

    adapter, store = sending_adapter(fake_zalo_oa, persist=persist)
    fake_zalo_oa.expire_access_token()
    result = adapter.send(USER, QUESTION)
    assert result.ok
    [oauth] = fake_zalo_oa.calls("oauth")
    assert oauth.header("secret_key") == fake_zalo_oa.app_secret
    assert oauth.form == {"app_id": fake_zalo_oa.app_id, "grant_type": "refresh_token", "refresh_token": "zoa-rt-0"}
    assert (oauth.header("Content-Type") or "").startswith("application/x-www-form-urlencoded")
    assert [c.header("access_token") for c in fake_zalo_oa.calls("send")] == ["zoa-at-0", "zoa-at-1"]
    assert [(p.access_token, p.refresh_token) for p in saved] == [("zoa-at-1", "zoa-rt-1")]
    assert saved[0].access_expires_at is not None and saved[0].rotated_at is not None
    assert store.refresh_count == 1
    # The old refresh token is spent.
    assert "zoa-rt-0" in fake_zalo_oa.used_refresh_tokens


def test_concurrent_senders_hitting_an_expired_token_refresh_exactly_once(fake_zalo_oa: FakeZaloOA) -> None:
    fake_zalo_oa.oauth_delay = 0.3  # senders pile up behind the one refresh
    saved: list[TokenPair] = []
    adapter, store = sending_adapter(fake_zalo_oa, persist=saved.append)
    assert adapter.send(USER, Outbound("khởi động")).ok  # warm the connection pool
    fake_zalo_oa.expire_access_token()
    senders = 8
    barrier = threading.Barrier(senders)
    results: list[Any] = [None] * senders

    def send(i: int) -> None:
        barrier.wait()
        results[i] = adapter.send(f"{USER}{i}", Outbound(f"Tin {i}"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert all(r is not None and r.ok for r in results), results
    assert len(fake_zalo_oa.calls("oauth")) == 1
    assert store.refresh_count == 1 and len(saved) == 1
    assert len(fake_zalo_oa.sent) == senders + 1
    # The senders really raced: several were rejected with the old token, all of them waited for one refresh.
    rejected = [c for c in fake_zalo_oa.calls("send")[1:] if c.header("access_token") == "zoa-at-0"]
    assert len(rejected) >= 2


def test_a_reused_refresh_token_is_rejected_and_not_retryable(fake_zalo_oa: FakeZaloOA) -> None:
    first, _ = sending_adapter(fake_zalo_oa)
    second, _ = sending_adapter(fake_zalo_oa, refresh_token="zoa-rt-0")
    fake_zalo_oa.expire_access_token()
    assert first.send(USER, Outbound("một")).ok  # spends zoa-rt-0
    fake_zalo_oa.expire_access_token()
    result = second.send(USER, Outbound("hai"))
    assert not result.ok and not result.retryable and not result.unreachable
    assert result.error_code is not None and result.error_code.startswith("token_refresh_rejected")
    assert len(fake_zalo_oa.calls("oauth")) == 2


def test_a_failed_persist_withholds_the_new_token_until_it_is_saved(fake_zalo_oa: FakeZaloOA) -> None:
    attempts: list[TokenPair] = []

    def flaky(pair: TokenPair) -> None:
        attempts.append(pair)
        if len(attempts) == 1:
            raise OSError("database down")

    adapter, _ = sending_adapter(fake_zalo_oa, persist=flaky)
    fake_zalo_oa.expire_access_token()
    failed = adapter.send(USER, Outbound("một"))
    assert (failed.ok, failed.retryable, failed.error_code) == (False, True, "token_persist_failed")
    assert all(c.header("access_token") != "zoa-at-1" for c in fake_zalo_oa.calls("send"))
    assert adapter.send(USER, Outbound("một")).ok
    assert len(attempts) == 2 and len(fake_zalo_oa.calls("oauth")) == 1
    assert fake_zalo_oa.calls("send")[-1].header("access_token") == "zoa-at-1"


def test_a_store_adopts_a_pair_saved_by_another_process_instead_of_refreshing(fake_zalo_oa: FakeZaloOA) -> None:
    shared: dict[str, TokenPair] = {}

    def process_store() -> ZaloOATokenStore:
        """One worker process's store: both start from the environment's pair and share the saved row."""
        return ZaloOATokenStore(
            app_id=fake_zalo_oa.app_id,
            app_secret=fake_zalo_oa.app_secret,
            initial=TokenPair("zoa-at-0", "zoa-rt-0"),
            persist=lambda pair: shared.__setitem__("pair", pair),
            load=lambda: shared.get("pair"),
            oauth_base=fake_zalo_oa.url,
        )

    one, two = process_store(), process_store()
    assert one.get() == two.get() == "zoa-at-0"
    assert one.refresh("zoa-at-0") == "zoa-at-1"
    assert two.refresh("zoa-at-0") == "zoa-at-1"  # loads the saved pair, no second OAuth call
    assert len(fake_zalo_oa.calls("oauth")) == 1


def test_a_token_close_to_expiry_is_refreshed_before_use(fake_zalo_oa: FakeZaloOA) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store = ZaloOATokenStore(
        app_id=fake_zalo_oa.app_id,
        app_secret=fake_zalo_oa.app_secret,
        initial=TokenPair("zoa-at-0", "zoa-rt-0", access_expires_at=now + dt.timedelta(hours=4)),
        persist=lambda pair: None,
        oauth_base=fake_zalo_oa.url,
        clock=lambda: now,
    )
    assert store.get() == "zoa-at-1"
    assert store.get() == "zoa-at-1"  # 25 h ahead now: no second refresh
    assert len(fake_zalo_oa.calls("oauth")) == 1


def test_without_a_refresh_token_a_rejected_token_is_final(fake_zalo_oa: FakeZaloOA) -> None:
    adapter = ZaloOAAdapter.from_config(
        {
            "ZALO_OA_APP_ID": fake_zalo_oa.app_id,
            "ZALO_OA_SECRET_KEY": "s",
            "ZALO_OA_ACCESS_TOKEN": "zoa-at-0",
            "ZALO_OA_API_BASE": fake_zalo_oa.url,
        }
    )
    fake_zalo_oa.expire_access_token()
    result = adapter.send(USER, Outbound("x"))
    assert (result.ok, result.retryable, result.error_code) == (False, False, "no_refresh_token")
    assert fake_zalo_oa.calls("oauth") == []


def test_a_fresh_token_rejected_again_is_not_retried_forever(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    fake_zalo_oa.script("send", zalo_error(-216), zalo_error(-220))
    result = adapter.send(USER, Outbound("x"))
    assert not result.ok and not result.retryable and result.error_code == "-220"
    assert len(fake_zalo_oa.calls("send")) == 2 and len(fake_zalo_oa.calls("oauth")) == 1


def test_an_oauth_outage_is_retryable(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    fake_zalo_oa.expire_access_token()
    fake_zalo_oa.script("oauth", Reply(502, "bad gateway"))
    result = adapter.send(USER, Outbound("x"))
    assert (result.ok, result.retryable) == (False, True)


# -- error mapping ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [-230, -232, -213, -227, -244])
def test_unreachable_errors_are_final_and_not_retried(fake_zalo_oa: FakeZaloOA, code: int) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    fake_zalo_oa.script("send", zalo_error(code))
    result = adapter.send(USER, QUESTION)
    assert (result.ok, result.unreachable, result.retryable, result.error_code) == (False, True, False, str(code))
    assert len(fake_zalo_oa.calls("send")) == 1 and fake_zalo_oa.calls("oauth") == []


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [
        (Reply(500, {"error": "internal"}), None),
        (Reply(503, "<html>Service Unavailable</html>"), None),
        (Reply(429, "slow down", {"Retry-After": "30"}), 30.0),
        (zalo_error(-32), 60.0),
    ],
)
def test_server_errors_and_rate_limits_are_retryable(
    fake_zalo_oa: FakeZaloOA, reply: Reply, retry_after: float | None
) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    fake_zalo_oa.script("send", reply)
    result = adapter.send(USER, QUESTION)
    assert (result.ok, result.retryable, result.unreachable, result.retry_after) == (False, True, False, retry_after)
    assert len(fake_zalo_oa.calls("send")) == 1


def test_a_timeout_is_retryable(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa, timeout=(1.0, 0.3))
    fake_zalo_oa.script("send", Delay(1.5))
    result = adapter.send(USER, QUESTION)
    assert (result.ok, result.retryable, result.error_code) == (False, True, "timeout")


def test_a_parameter_error_is_final(fake_zalo_oa: FakeZaloOA) -> None:
    adapter, _ = sending_adapter(fake_zalo_oa)
    fake_zalo_oa.script("send", zalo_error(-201))
    result = adapter.send(USER, QUESTION)
    assert (result.ok, result.retryable, result.unreachable, result.error_code) == (False, False, False, "-201")


def test_network_failure_is_retryable() -> None:
    adapter = webhook_adapter(api_base="http://127.0.0.1:9", timeout=(0.5, 0.5))
    result = adapter.send(USER, Outbound("x"))
    assert (result.ok, result.retryable, result.error_code) == (False, True, "network")


# -- window and configuration ----------------------------------------------------------------------------------


def test_the_interaction_window_is_seven_days() -> None:
    adapter = webhook_adapter()
    now = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    assert adapter.within_window(now - dt.timedelta(days=6, hours=23), now)
    assert not adapter.within_window(now - dt.timedelta(days=7), now)
    assert not adapter.within_window(None, now)


def test_from_config_reads_environment_names_and_coerces_numbers(fake_zalo_oa: FakeZaloOA) -> None:
    saved: list[TokenPair] = []
    adapter = ZaloOAAdapter.from_config(
        {
            "ZALO_OA_APP_ID": int(fake_zalo_oa.app_id),  # Flask's from_prefixed_env JSON-parses numbers
            "ZALO_OA_SECRET_KEY": "s",
            "ZALO_OA_ACCESS_TOKEN": "zoa-at-0",
            "ZALO_OA_REFRESH_TOKEN": "zoa-rt-0",
            "ZALO_APP_SECRET": fake_zalo_oa.app_secret,
            "ZALO_OA_API_BASE": fake_zalo_oa.url,
            "ZALO_OA_OAUTH_BASE": fake_zalo_oa.url,
            "ZALO_OA_MAX_BUTTONS": "2",
            "ZALO_OA_BUTTON_TYPE": "oa.query.show",
        },
        persist_tokens=saved.append,
    )
    assert adapter.app_id == fake_zalo_oa.app_id and adapter.capabilities.max_buttons == 2
    fake_zalo_oa.expire_access_token()
    assert adapter.send(USER, Outbound("Có không?", [Choice("Có", "yes"), Choice("Không", "no")])).ok
    assert (
        fake_zalo_oa.calls("send")[-1].json["message"]["attachment"]["payload"]["buttons"][0]["type"] == "oa.query.show"
    )
    assert [p.refresh_token for p in saved] == ["zoa-rt-1"]


@pytest.mark.parametrize(
    "config",
    [
        {"ZALO_OA_APP_ID": "1"},
        {"ZALO_OA_APP_ID": "1", "ZALO_OA_SECRET_KEY": "s", "ZALO_OA_ACCESS_TOKEN": "a", "ZALO_OA_REFRESH_TOKEN": "r"},
        {
            "ZALO_OA_APP_ID": "1",
            "ZALO_OA_SECRET_KEY": "s",
            "ZALO_OA_ACCESS_TOKEN": "a",
            "ZALO_OA_SIGNATURE_VARIANTS": "user_id:oa_secret",
        },
        {
            "ZALO_OA_APP_ID": "1",
            "ZALO_OA_SECRET_KEY": "s",
            "ZALO_OA_ACCESS_TOKEN": "a",
            "ZALO_OA_SIGNATURE_VARIANTS": "app_id:app_secret",
        },
        {
            "ZALO_OA_APP_ID": "1",
            "ZALO_OA_SECRET_KEY": "s",
            "ZALO_OA_ACCESS_TOKEN": "a",
            "ZALO_OA_BUTTON_TYPE": "oa.open.url",
        },
        {
            "ZALO_OA_APP_ID": "1",
            "ZALO_OA_SECRET_KEY": "s",
            "ZALO_OA_ACCESS_TOKEN": "a",
            "ZALO_OA_MAX_EVENT_AGE_SECONDS": "ten",
        },
    ],
)
def test_bad_configuration_is_refused(config: dict[str, str]) -> None:
    with pytest.raises(ChannelConfigError):
        ZaloOAAdapter.from_config(config)


def test_refresh_errors_carry_a_retryable_flag() -> None:
    err = TokenRefreshError("x", retryable=False, code="c")
    assert (err.retryable, err.code) == (False, "c")
