"""Fake Zalo OA Open API v3 + OAuth v4 server.

Speaks the real protocol (channels.md §1.5, §1.7, §1.8):

* ``POST /v3.0/oa/message/cs`` with header ``access_token``: errors come with **HTTP 200** and a non-zero
  ``error``; an unknown or expired token gets ``-216``; a body breaking the documented limits gets ``-201`` /
  ``-210``; success is ``{"error": 0, "message": "Success", "data": {"message_id", "user_id", "quota"}}``;
* ``POST /v4/oa/access_token`` (form ``app_id``, ``grant_type=refresh_token``, ``refresh_token``; header
  ``secret_key``): rotates both tokens, and a refresh token already used (or unknown) is rejected, as Zalo's are
  single-use. ``oauth_delay`` slows it down so concurrent senders pile up behind one refresh.

Both hosts share one server; point ``ZALO_OA_API_BASE`` and ``ZALO_OA_OAUTH_BASE`` at :attr:`url`.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Final

from tests.fakes.server import FakeServer, Recorded, Reply

__all__ = ["ZALO_ERROR_MESSAGES", "FakeZaloOA", "zalo_error"]

ZALO_ERROR_MESSAGES: Final = {
    -32: "Exceeded the rate limit",
    -201: "Parameters invalid",
    -210: "Parameter exceeds allowed limit",
    -211: "Out of quota",
    -213: "User has not followed OA",
    -216: "Access token is invalid",
    -220: "Access token has expired or been removed",
    -227: "User has been banned or has been inactive for more than 45 days",
    -230: "User has not interacted with the OA in the past 7 days",
    -232: "User has not interacted or last interaction expired",
    -244: "User restricted this message type from the OA",
}


def zalo_error(code: int) -> Reply:
    """A Zalo error response: HTTP 200 with ``error`` set, as the real API sends."""
    return Reply(200, {"error": code, "message": ZALO_ERROR_MESSAGES.get(code, "Unknown error")})


class FakeZaloOA(FakeServer):
    """Fake of ``openapi.zalo.me`` (customer-service send) and ``oauth.zaloapp.com`` (token refresh)."""

    def __init__(
        self,
        *,
        app_id: str = "3608123456789012345",
        app_secret: str = "fake-app-secret",
        access_token: str = "zoa-at-0",
        refresh_token: str = "zoa-rt-0",
        oauth_delay: float = 0.0,
    ) -> None:
        """Start with one valid token pair."""
        super().__init__()
        self.app_id = app_id
        self.app_secret = app_secret
        self.access_token: str | None = access_token
        self.refresh_token = refresh_token
        self.used_refresh_tokens: set[str] = set()
        self.oauth_delay = oauth_delay
        self._counter = itertools.count(1)
        #: Accepted messages, in order: (access token used, request JSON).
        self.sent: list[tuple[str, Any]] = []
        self.route("POST", r"/v3\.0/oa/message/cs", "send", self._send)
        self.route("POST", r"/v4/oa/access_token", "oauth", self._oauth)

    def expire_access_token(self) -> None:
        """Make the current access token invalid (it expired): the next send gets -216."""
        self.access_token = None

    # -- handlers ------------------------------------------------------------------------------------------------

    def _send(self, req: Recorded) -> Reply:
        """``/v3.0/oa/message/cs``."""
        token = req.header("access_token")
        if not token or token != self.access_token:
            return zalo_error(-216)
        body = req.json
        if not isinstance(body, dict):
            return zalo_error(-201)
        user = (body.get("recipient") or {}).get("user_id")
        message = body.get("message") or {}
        text = message.get("text")
        if not user or not isinstance(text, str) or not text:
            return zalo_error(-201)
        if len(text) > 2000:
            return zalo_error(-210)
        attachment = message.get("attachment")
        if attachment is not None:
            buttons = ((attachment.get("payload") or {}).get("buttons")) or []
            if attachment.get("type") != "template" or len(buttons) > 5:
                return zalo_error(-210 if len(buttons) > 5 else -201)
            for button in buttons:
                if (
                    button.get("type") not in ("oa.query.hide", "oa.query.show")
                    or not 0 < len(button.get("title") or "") <= 100
                    or not 0 < len(button.get("payload") or "") <= 1000
                ):
                    return zalo_error(-201)
        with self._lock:
            self.sent.append((token, body))
            n = len(self.sent)
        return Reply(
            200,
            {
                "error": 0,
                "message": "Success",
                "data": {
                    "message_id": f"zmsg{n:016d}",
                    "user_id": user,
                    "quota": {"quota_type": "reply", "remain": "7", "total": "8"},
                },
            },
        )

    def _oauth(self, req: Recorded) -> Reply:
        """``/v4/oa/access_token`` refresh grant with single-use, rotating refresh tokens."""
        if self.oauth_delay:
            time.sleep(self.oauth_delay)
        if req.header("secret_key") != self.app_secret:
            return Reply(
                200,
                {
                    "error": -14002,
                    "error_name": "Invalid secret key",
                    "error_reason": "secret_key is invalid",
                    "error_description": "Application secret key is invalid",
                },
            )
        form = req.form
        if form.get("app_id") != self.app_id or form.get("grant_type") != "refresh_token":
            return Reply(
                200,
                {
                    "error": -14001,
                    "error_name": "Invalid parameter",
                    "error_description": "app_id or grant_type is invalid",
                },
            )
        with self._lock:
            given = form.get("refresh_token") or ""
            if given != self.refresh_token or given in self.used_refresh_tokens:
                return Reply(
                    200,
                    {
                        "error": -14014,
                        "error_name": "Invalid refresh token",
                        "error_reason": "refresh token was used or is invalid",
                        "error_description": "Refresh token is invalid",
                    },
                )
            self.used_refresh_tokens.add(given)
            n = next(self._counter)
            self.access_token = f"zoa-at-{n}"
            self.refresh_token = f"zoa-rt-{n}"
            return Reply(
                200, {"access_token": self.access_token, "refresh_token": self.refresh_token, "expires_in": "90000"}
            )
