"""Shared helpers of the webhook / delivery / reliability tests: apps wired to the fake providers, signed
deliveries, draining the worker synchronously, and reading the delivery tables."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bot import create_app
from bot.channels.zalo_oa import zalo_oa_signature
from bot.chat.routes import ENGINE_KEY
from bot.delivery import Delivery, get_delivery
from bot.store import get_store
from bot.store.models import Identity, InboundMessage, OutboundMessage
from bot.store.testing import FakeEngine, temporary_database
from tests.fakes import FakeMessenger, FakeTelegram, FakeZaloBot, FakeZaloOA
from tests.fakes.events import raw

ZALO_OA_SECRET = "oa-secret-K3y_9xZ"
TELEGRAM_SECRET = "tg_secret-ABC_123"
ZALO_BOT_SECRET = "zb-secret-0123456789"
MESSENGER_APP_SECRET = "fb-app-secret-0123456789abcdef"
MESSENGER_VERIFY = "tu-ra-soat-verify"

#: Fast retries for tests (seconds).
FAST_RETRIES = {
    "DELIVERY_RETRY_BASE_SECONDS": 0.05,
    "DELIVERY_RETRY_MAX_SECONDS": 0.4,
    "DELIVERY_POLL_SECONDS": 0.05,
    "CHANNEL_HTTP_TIMEOUT_SECONDS": 1.0,
}


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL schema when ``TEST_DATABASE_URL`` is set."""
    with temporary_database(tmp_path) as url:
        yield url


def zalo_oa_settings(fake: FakeZaloOA) -> dict[str, Any]:
    return {
        "ZALO_OA_APP_ID": fake.app_id,
        "ZALO_OA_SECRET_KEY": ZALO_OA_SECRET,
        "ZALO_OA_ACCESS_TOKEN": fake.access_token,
        "ZALO_OA_REFRESH_TOKEN": fake.refresh_token,
        "ZALO_APP_SECRET": fake.app_secret,
        "ZALO_OA_API_BASE": fake.url,
        "ZALO_OA_OAUTH_BASE": fake.url,
    }


def telegram_settings(fake: FakeTelegram) -> dict[str, Any]:
    return {"TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET, "TELEGRAM_API_BASE": fake.url}


def zalo_bot_settings(fake: FakeZaloBot) -> dict[str, Any]:
    return {"ZALO_BOT_TOKEN": fake.token, "ZALO_BOT_SECRET_TOKEN": ZALO_BOT_SECRET, "ZALO_BOT_API_BASE": fake.url}


def messenger_settings(fake: FakeMessenger) -> dict[str, Any]:
    return {
        "MESSENGER_PAGE_TOKEN": fake.page_token,
        "MESSENGER_APP_SECRET": MESSENGER_APP_SECRET,
        "MESSENGER_VERIFY_TOKEN": MESSENGER_VERIFY,
        "MESSENGER_API_BASE": fake.url,
    }


def make_app(url: str, *, engine: Any = "fake", **settings: Any) -> Flask:
    """An app on ``url`` with ``settings`` (channels, delivery); the fake engine unless ``engine=None``."""
    config = {"TESTING": True, "SECRET_KEY": "test-secret", "DATABASE_URL": url, **FAST_RETRIES, **settings}
    app = create_app(config)
    if engine == "fake":
        app.extensions[ENGINE_KEY] = FakeEngine()
    elif engine is not None:
        app.extensions[ENGINE_KEY] = engine
    return app


def close_app(app: Flask) -> None:
    """Stop the app's worker threads and close its database pool."""
    get_delivery(app).stop(timeout=5)
    get_store(app).engine.dispose()


# -- signed deliveries ---------------------------------------------------------------------------------------


def zalo_oa_event(
    name: str = "user_send_text.json", *, timestamp_ms: int | None = None, **changes: Any
) -> dict[str, Any]:
    """A recorded Zalo OA event with a fresh ``timestamp`` (the replay window is 10 minutes) and changes.

    ``text`` / ``msg_id`` / ``user`` change the message text, its id and the sender.
    """
    body: dict[str, Any] = copy.deepcopy(json.loads(raw("zalo_oa", name)))
    body["timestamp"] = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    if "text" in changes:
        body["message"]["text"] = changes["text"]
    if "msg_id" in changes:
        body["message"]["msg_id"] = changes["msg_id"]
    if "user" in changes:
        key = "follower" if "follower" in body else "sender"
        body[key]["id"] = changes["user"]
    return body


def zalo_oa_delivery(body: dict[str, Any] | bytes, *, secret: str = ZALO_OA_SECRET) -> tuple[bytes, dict[str, str]]:
    """Raw bytes and headers of a Zalo OA delivery signed as Zalo signs it."""
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode("utf-8")
    parsed = json.loads(data)
    mac = zalo_oa_signature(str(parsed["app_id"]), data, str(parsed["timestamp"]), secret)
    return data, {"X-ZEvent-Signature": f"mac={mac}", "Content-Type": "application/json"}


def telegram_headers(secret: str = TELEGRAM_SECRET) -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}


def zalo_bot_headers(secret: str = ZALO_BOT_SECRET) -> dict[str, str]:
    return {"X-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}


def messenger_headers(body: bytes, secret: str = MESSENGER_APP_SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={mac}", "Content-Type": "application/json"}


def post(app: Flask, channel: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST a delivery to the webhook through the test client."""
    return app.test_client().post(f"/channels/{channel}", data=body, headers=headers)


# -- running the worker synchronously ------------------------------------------------------------------------


def drain(app: Flask, *, until: Callable[[], bool] | None = None, timeout: float = 30.0) -> tuple[int, int]:
    """Process and send until nothing is pending and due (and ``until()`` holds, when given).

    Returns:
        (messages processed, replies sent).
    """
    from bot.cli import _drain

    delivery = get_delivery(app)
    deadline = time.monotonic() + timeout
    processed = sent = 0
    while True:
        p, s = _drain(delivery)
        processed, sent = processed + p, sent + s
        if until is None or until():
            return processed, sent
        if time.monotonic() > deadline:
            raise AssertionError("delivery did not finish in time")
        time.sleep(0.02)


def delivery(app: Flask) -> Delivery:
    return get_delivery(app)


# -- reading the tables --------------------------------------------------------------------------------------


def rows(app: Flask, model: Any, *order: Any) -> list[Any]:
    """Every row of ``model`` (ORM objects, detached), ordered."""
    with get_store(app).sessions() as session:
        result = session.execute(select(model).order_by(*(order or (model.id,)))).scalars().all()
        session.expunge_all()
        return list(result)


def outbox(app: Flask) -> list[OutboundMessage]:
    return rows(app, OutboundMessage, OutboundMessage.identity_id, OutboundMessage.seq)


def inbound(app: Flask) -> list[InboundMessage]:
    return rows(app, InboundMessage)


def identities(app: Flask) -> list[Identity]:
    return rows(app, Identity)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def slow_fake_engine() -> FakeEngine:
    """``CONVERSATION_ENGINE`` of worker subprocesses: the fake engine, slowed by ``TEST_ENGINE_DELAY`` seconds."""
    import os

    return FakeEngine(delay=float(os.environ.get("TEST_ENGINE_DELAY", "0")))


class SlowFakeZaloOA(FakeZaloOA):
    """Fake Zalo OA whose sends take ``send_delay`` seconds and that can be "down" (503) for a while."""

    def __init__(self, *, send_delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.send_delay = send_delay
        self.down_until = 0.0
        self.refused = 0

    def _send(self, req: Any) -> Any:
        from tests.fakes.server import Reply

        if time.monotonic() < self.down_until:
            with self._lock:
                self.refused += 1
            return Reply(503, {"error": "service unavailable"})
        if self.send_delay:
            time.sleep(self.send_delay)
        return super()._send(req)


def worker_environment(url: str, fake: FakeZaloOA, **extra: Any) -> dict[str, str]:
    """Environment of a ``flask delivery-worker`` subprocess sending to ``fake`` from the database ``url``."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSOAT_")}
    env.update(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "TUSOAT_CONVERSATION_ENGINE": "tests.delivery_support:slow_fake_engine",
            "TUSOAT_DELIVERY_POLL_SECONDS": "0.05",
            "TUSOAT_DELIVERY_RETRY_BASE_SECONDS": "0.1",
            "TUSOAT_DELIVERY_RETRY_MAX_SECONDS": "1",
            "CHANNEL_HTTP_TIMEOUT_SECONDS": "2",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            **{k: str(v) for k, v in zalo_oa_settings(fake).items()},
        }
    )
    env.update({k: str(v) for k, v in extra.items()})
    env.pop("REDIS_URL", None)
    return env
