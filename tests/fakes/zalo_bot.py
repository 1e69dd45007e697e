"""Fake Zalo Bot platform API: ``POST /bot<token>/<method>`` with the ``{ok, result}`` envelope; HTTP 200 does
not mean success (channels.md §2). Routes are named after the method."""

from __future__ import annotations

import itertools
import time
from typing import Any

from tests.fakes.server import FakeServer, Recorded, Reply

__all__ = ["FakeZaloBot", "zalo_bot_error"]


def zalo_bot_error(code: int, description: str, status: int = 200) -> Reply:
    """A Zalo Bot error envelope."""
    return Reply(status, {"ok": False, "error_code": code, "description": description})


class FakeZaloBot(FakeServer):
    """Fake of ``bot-api.zaloplatforms.com`` for one bot token."""

    METHODS = ("sendMessage", "setWebhook", "deleteWebhook", "getWebhookInfo", "getMe")

    def __init__(self, token: str = "1234567890:FAKE-zalo-bot-token") -> None:
        """Accept calls for ``token`` only."""
        super().__init__()
        self.token = token
        self._ids = itertools.count(1)
        self.webhook: dict[str, Any] | None = None
        for method in self.METHODS:
            self.route("POST", rf"/bot(?P<token>[^/]+)/{method}", method, self._handler(method))

    def _handler(self, method: str) -> Any:
        """Route handler for ``method``."""

        def handle(req: Recorded) -> Reply:
            if req.params.get("token") != self.token:
                return zalo_bot_error(401, "Unauthorized", status=401)
            body = req.json if isinstance(req.json, dict) else {}
            reply: Reply = getattr(self, "_" + method)(body)
            return reply

        return handle

    def _sendMessage(self, body: dict[str, Any]) -> Reply:
        text = body.get("text")
        if not body.get("chat_id"):
            return zalo_bot_error(400, "chat_id is required")
        if not isinstance(text, str) or not 1 <= len(text) <= 2000:
            return zalo_bot_error(400, "text must be 1-2000 characters")
        return Reply(
            200, {"ok": True, "result": {"message_id": f"zb{next(self._ids):08x}", "date": int(time.time() * 1000)}}
        )

    def _setWebhook(self, body: dict[str, Any]) -> Reply:
        secret = body.get("secret_token") or ""
        url = body.get("url") or ""
        if not url.startswith("https://") or not 8 <= len(secret) <= 256:
            return zalo_bot_error(400, "url must be https and secret_token 8-256 characters")
        self.webhook = body
        return Reply(200, {"ok": True, "result": {"url": url, "updated_at": int(time.time() * 1000)}})

    def _deleteWebhook(self, body: dict[str, Any]) -> Reply:
        self.webhook = None
        return Reply(200, {"ok": True, "result": {"url": "", "updated_at": int(time.time() * 1000)}})

    def _getWebhookInfo(self, body: dict[str, Any]) -> Reply:
        return Reply(200, {"ok": True, "result": {"url": (self.webhook or {}).get("url", ""), "updated_at": 0}})

    def _getMe(self, body: dict[str, Any]) -> Reply:
        return Reply(
            200,
            {
                "ok": True,
                "result": {
                    "id": "8e1f",
                    "account_name": "bot.turasoat",
                    "account_type": "BASIC",
                    "can_join_groups": False,
                },
            },
        )
