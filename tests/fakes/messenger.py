"""Fake Messenger Send API: ``POST /v<version>/me/messages?access_token=...`` (Graph API).

Validates what the real API validates that matters here (token, ``messaging_type``, text ≤ 2,000, ≤ 13 quick
replies with titles ≤ 20 characters) and answers ``{"recipient_id", "message_id"}``; errors are Graph's
``{"error": {message, type, code, error_subcode, fbtrace_id}}`` with a 4xx/5xx status.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.fakes.server import FakeServer, Recorded, Reply

__all__ = ["FakeMessenger", "graph_error"]


def graph_error(status: int, code: int, message: str, subcode: int | None = None) -> Reply:
    """A Graph API error reply."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Reply(status, {"error": error})


class FakeMessenger(FakeServer):
    """Fake of ``graph.facebook.com`` for one page token."""

    def __init__(self, page_token: str = "EAAfakePageToken") -> None:
        """Accept calls with ``page_token`` only."""
        super().__init__()
        self.page_token = page_token
        self._ids = itertools.count(1)
        self.route("POST", r"/v(?P<version>\d+\.\d+)/me/messages", "messages", self._messages)

    def _messages(self, req: Recorded) -> Reply:
        """Send API."""
        if req.query.get("access_token") != self.page_token:
            return graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        body = req.json if isinstance(req.json, dict) else {}
        psid = (body.get("recipient") or {}).get("id")
        message = body.get("message") or {}
        if not psid:
            return graph_error(400, 100, "(#100) The parameter recipient is required")
        if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return graph_error(400, 100, "(#100) param messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG")
        text = message.get("text")
        if not isinstance(text, str) or not text or len(text) > 2000:
            return graph_error(400, 100, "(#100) Length of param message[text] must be less than or equal to 2000")
        quick = message.get("quick_replies") or []
        if len(quick) > 13:
            return graph_error(400, 100, "(#100) param message[quick_replies] must have at most 13 elements")
        for reply in quick:
            if (
                reply.get("content_type") != "text"
                or not 0 < len(reply.get("title") or "") <= 20
                or not reply.get("payload")
            ):
                return graph_error(400, 100, "(#100) Invalid quick reply")
        return Reply(200, {"recipient_id": psid, "message_id": f"m_fake{next(self._ids):012d}"})
