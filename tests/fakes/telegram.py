"""Fake Telegram Bot API: ``POST /bot<token>/<method>`` with ``{ok, result}`` / ``{ok: false, error_code,
description, parameters}`` replies (core.telegram.org/bots/api). Routes are named after the method."""

from __future__ import annotations

import itertools
import time
from typing import Any

from tests.fakes.server import FakeServer, Recorded, Reply

__all__ = ["FakeTelegram", "telegram_error", "telegram_rate_limited"]


def telegram_error(code: int, description: str) -> Reply:
    """A Bot API error (the HTTP status equals ``error_code``)."""
    return Reply(code, {"ok": False, "error_code": code, "description": description})


def telegram_rate_limited(retry_after: int) -> Reply:
    """A 429 with ``parameters.retry_after``, as Telegram sends when flooding."""
    return Reply(
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        },
    )


class FakeTelegram(FakeServer):
    """Fake of ``api.telegram.org`` for one bot token."""

    METHODS = ("sendMessage", "answerCallbackQuery", "setWebhook", "deleteWebhook", "getWebhookInfo", "getMe")

    def __init__(self, token: str = "123456:FAKE-telegram-token") -> None:
        """Accept calls for ``token`` only."""
        super().__init__()
        self.token = token
        self._ids = itertools.count(100)
        self.webhook: dict[str, Any] | None = None
        for method in self.METHODS:
            self.route("POST", rf"/bot(?P<token>[^/]+)/{method}", method, self._handler(method))

    def _handler(self, method: str) -> Any:
        """Route handler for ``method``."""

        def handle(req: Recorded) -> Reply:
            if req.params.get("token") != self.token:
                return telegram_error(401, "Unauthorized")
            body = req.json if isinstance(req.json, dict) else {}
            reply: Reply = getattr(self, "_" + method)(body)
            return reply

        return handle

    def _sendMessage(self, body: dict[str, Any]) -> Reply:
        text = body.get("text")
        if body.get("chat_id") in (None, ""):
            return telegram_error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text:
            return telegram_error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return telegram_error(400, "Bad Request: message is too long")
        markup = body.get("reply_markup") or {}
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                data = button.get("callback_data") or ""
                if not 1 <= len(data.encode("utf-8")) <= 64:
                    return telegram_error(400, "Bad Request: BUTTON_DATA_INVALID")
        chat_id = body["chat_id"]
        return Reply(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": next(self._ids),
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                    "text": text,
                },
            },
        )

    def _answerCallbackQuery(self, body: dict[str, Any]) -> Reply:
        if not body.get("callback_query_id"):
            return telegram_error(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        return Reply(200, {"ok": True, "result": True})

    def _setWebhook(self, body: dict[str, Any]) -> Reply:
        self.webhook = body
        return Reply(200, {"ok": True, "result": True, "description": "Webhook was set"})

    def _deleteWebhook(self, body: dict[str, Any]) -> Reply:
        self.webhook = None
        return Reply(200, {"ok": True, "result": True, "description": "Webhook was deleted"})

    def _getWebhookInfo(self, body: dict[str, Any]) -> Reply:
        url = (self.webhook or {}).get("url", "")
        return Reply(
            200, {"ok": True, "result": {"url": url, "has_custom_certificate": False, "pending_update_count": 0}}
        )

    def _getMe(self, body: dict[str, Any]) -> Reply:
        return Reply(
            200,
            {
                "ok": True,
                "result": {"id": 123456, "is_bot": True, "first_name": "Tự rà soát", "username": "tura_soat_bot"},
            },
        )
