"""The fake provider servers themselves: recording, scripting, and the protocol rules the adapters rely on."""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.fakes import (
    Delay,
    FakeMessenger,
    FakeTelegram,
    FakeZaloBot,
    FakeZaloOA,
    Reply,
    fixtures,
)

fake_zalo_oa = fixtures.fake_zalo_oa  # the fixture, under its name so pytest finds it here


def test_requests_are_recorded_with_raw_header_names(fake_zalo_oa: FakeZaloOA) -> None:
    response = requests.post(
        fake_zalo_oa.url + "/v3.0/oa/message/cs?x=1",
        json={"recipient": {"user_id": "u"}, "message": {"text": "Chào"}},
        headers={"access_token": "zoa-at-0"},
        timeout=5,
    )
    assert response.json()["error"] == 0
    [call] = fake_zalo_oa.calls("send")
    assert (call.method, call.path, call.query) == ("POST", "/v3.0/oa/message/cs", {"x": "1"})
    assert call.header("ACCESS_TOKEN") == "zoa-at-0"
    assert call.json == {"recipient": {"user_id": "u"}, "message": {"text": "Chào"}}
    assert fake_zalo_oa.sent == [("zoa-at-0", call.json)]


def test_unknown_routes_are_404(fake_zalo_oa: FakeZaloOA) -> None:
    assert requests.get(fake_zalo_oa.url + "/v2.0/oa/getoa", timeout=5).status_code == 404


def test_scripts_are_consumed_one_per_request_in_order(fake_zalo_oa: FakeZaloOA) -> None:
    fake_zalo_oa.script("send", Reply(500, "a"), Reply(429, "b", {"Retry-After": "3"}))
    url = fake_zalo_oa.url + "/v3.0/oa/message/cs"
    statuses = [requests.post(url, json={}, timeout=5).status_code for _ in range(3)]
    assert statuses == [500, 429, 200]


def test_a_delay_outlasts_the_client_and_stop_wakes_it() -> None:
    fake = FakeZaloBot().start()
    fake.script("sendMessage", Delay(30))
    started = time.monotonic()
    try:
        requests.post(f"{fake.url}/bot{fake.token}/sendMessage", json={}, timeout=0.2)
    except requests.Timeout:
        pass
    else:  # pragma: no cover - the point of the test
        raise AssertionError("expected a client timeout")
    fake.stop()
    assert time.monotonic() - started < 5


def test_fake_oauth_checks_the_secret_and_rotates_single_use_tokens(fake_zalo_oa: FakeZaloOA) -> None:
    url = fake_zalo_oa.url + "/v4/oa/access_token"
    form = {"app_id": fake_zalo_oa.app_id, "grant_type": "refresh_token", "refresh_token": "zoa-rt-0"}
    bad = requests.post(url, data=form, headers={"secret_key": "nope"}, timeout=5).json()
    assert bad["error"] == -14002
    good = requests.post(url, data=form, headers={"secret_key": fake_zalo_oa.app_secret}, timeout=5).json()
    assert good == {"access_token": "zoa-at-1", "refresh_token": "zoa-rt-1", "expires_in": "90000"}
    reused = requests.post(url, data=form, headers={"secret_key": fake_zalo_oa.app_secret}, timeout=5).json()
    assert reused["error"] == -14014
    assert fake_zalo_oa.calls("oauth")[0].form == form


def test_fake_send_enforces_the_documented_limits(fake_zalo_oa: FakeZaloOA) -> None:
    url = fake_zalo_oa.url + "/v3.0/oa/message/cs"
    headers = {"access_token": "zoa-at-0"}
    too_long = {"recipient": {"user_id": "u"}, "message": {"text": "x" * 2001}}
    assert requests.post(url, json=too_long, headers=headers, timeout=5).json()["error"] == -210
    buttons = [{"title": str(i), "type": "oa.query.hide", "payload": str(i)} for i in range(6)]
    six: dict[str, Any] = {
        "recipient": {"user_id": "u"},
        "message": {"text": "x", "attachment": {"type": "template", "payload": {"buttons": buttons}}},
    }
    assert requests.post(url, json=six, headers=headers, timeout=5).json()["error"] == -210
    fake_zalo_oa.expire_access_token()
    ok = {"recipient": {"user_id": "u"}, "message": {"text": "x"}}
    assert requests.post(url, json=ok, headers=headers, timeout=5).json()["error"] == -216


def test_other_fakes_reject_wrong_credentials() -> None:
    with FakeTelegram() as telegram, FakeZaloBot() as zalo_bot, FakeMessenger() as messenger:
        assert requests.post(f"{telegram.url}/botWRONG/sendMessage", json={}, timeout=5).status_code == 401
        assert requests.post(f"{zalo_bot.url}/botWRONG/sendMessage", json={}, timeout=5).json()["ok"] is False
        reply = requests.post(f"{messenger.url}/v25.0/me/messages", params={"access_token": "x"}, json={}, timeout=5)
        assert reply.json()["error"]["code"] == 190
