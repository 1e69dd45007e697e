"""Facebook Messenger (Messenger Platform, Graph API) adapter.

Environment variables (read by :meth:`MessengerAdapter.from_config`):

==============================  ==========================================================================
``MESSENGER_PAGE_TOKEN``        required. Page access token (Send API ``access_token`` query parameter).
``MESSENGER_APP_SECRET``        required. App secret: key of the ``X-Hub-Signature-256`` HMAC.
``MESSENGER_VERIFY_TOKEN``      required. Your string for the GET subscription handshake.
``MESSENGER_API_BASE``          default ``https://graph.facebook.com``.
``MESSENGER_GRAPH_VERSION``     default ``v25.0`` (channels.md §3.1); the Send API path is
                                ``/<version>/me/messages``.
``MESSENGER_PAGE_ID``           optional. Ignore entries for other pages subscribed to the same app.
``CHANNEL_HTTP_TIMEOUT_SECONDS`` default 10.
==============================  ==========================================================================

Limits used (channels.md §3.1): text 2,000 characters, 13 quick replies, titles cut at 20 characters, payloads
up to 1,000 characters [U]. Replies use ``messaging_type: RESPONSE``, valid within 24 hours of the user's last
message (:meth:`MessengerAdapter.within_window`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from bot.channels.base import (
    Capabilities,
    ChannelAdapter,
    ChannelConfigError,
    ChoiceLike,
    InboundEvent,
    ParseError,
    SendResult,
    SignatureError,
    config_value,
    header,
    http_timeout,
    loads,
    secrets_equal,
    utc_from_ms,
)
from bot.channels.text import normalize, truncate

__all__ = ["MessengerAdapter", "messenger_signature"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE: Final = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION: Final = "v25.0"
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
_VERSION_RE: Final = re.compile(r"^v?\d+\.\d+$")


def messenger_signature(app_secret: str, raw_body: bytes) -> str:
    """Return the ``X-Hub-Signature-256`` value: ``sha256=`` + hex HMAC-SHA256(app secret, raw body)."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


class MessengerAdapter(ChannelAdapter):
    """Messenger: signed webhooks in (plus the GET handshake), Send API with quick replies out."""

    name = "messenger"
    #: Standard messaging window: replies are allowed within 24 h of the user's last message (§3.1).
    interaction_window = dt.timedelta(hours=24)

    REQUIRED: ClassVar[tuple[str, ...]] = ("MESSENGER_PAGE_TOKEN", "MESSENGER_APP_SECRET", "MESSENGER_VERIFY_TOKEN")

    #: Graph error codes that are temporary: unknown/service errors, rate limits, "temporary send failure".
    RETRYABLE_CODES: ClassVar[frozenset[int]] = frozenset({1, 2, 4, 17, 32, 613, 1200})
    #: (code, subcode or None for any) meaning the person cannot be messaged now: outside the 24 h window
    #: (10/2018278), unavailable or blocked the page (551), no such user (100/2018001). From Meta's error
    #: reference as remembered, not re-checked here [U].
    UNREACHABLE_CODES: ClassVar[frozenset[tuple[int, int | None]]] = frozenset(
        {(10, 2018278), (551, None), (100, 2018001), (200, 2018108)}
    )

    def __init__(
        self,
        *,
        page_token: str,
        app_secret: str,
        verify_token: str,
        api_base: str = DEFAULT_API_BASE,
        graph_version: str = DEFAULT_GRAPH_VERSION,
        page_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the adapter.

        Args:
            page_token: Page access token.
            app_secret: App secret (signature key).
            verify_token: Handshake token.
            api_base: Graph host.
            graph_version: ``v25.0`` (a leading ``v`` is added when missing).
            page_id: Only accept entries for this page, when set.
            **kwargs: ``session``, ``timeout``, ``clock``.
        """
        super().__init__(**kwargs)
        if not _VERSION_RE.match(graph_version):
            raise ChannelConfigError(f"MESSENGER_GRAPH_VERSION must look like v25.0, not {graph_version!r}")
        version = graph_version if graph_version.startswith("v") else "v" + graph_version
        self.page_token = page_token
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.page_id = page_id
        self.send_url = f"{api_base.rstrip('/')}/{version}/me/messages"
        self.capabilities = Capabilities(
            text_limit=2000, max_buttons=13, supports_buttons=True, button_title_limit=20, payload_limit=1000
        )
        self._register_secret(page_token, app_secret, verify_token)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kwargs: Any) -> MessengerAdapter:
        """Build from environment-style settings (module docstring).

        Raises:
            ChannelConfigError: A required setting is missing or invalid.
        """
        missing = [n for n in cls.REQUIRED if not config_value(config, n)]
        if missing:
            raise ChannelConfigError(f"Messenger is partly configured; missing {', '.join(missing)}")
        kwargs.setdefault("timeout", http_timeout(config))
        return cls(
            page_token=config_value(config, "MESSENGER_PAGE_TOKEN") or "",
            app_secret=config_value(config, "MESSENGER_APP_SECRET") or "",
            verify_token=config_value(config, "MESSENGER_VERIFY_TOKEN") or "",
            api_base=config_value(config, "MESSENGER_API_BASE") or DEFAULT_API_BASE,
            graph_version=config_value(config, "MESSENGER_GRAPH_VERSION") or DEFAULT_GRAPH_VERSION,
            page_id=config_value(config, "MESSENGER_PAGE_ID"),
            **kwargs,
        )

    # -- inbound -----------------------------------------------------------------------------------------------

    def handshake(self, query: Mapping[str, str]) -> str:
        """Answer the GET subscription check: return ``hub.challenge`` to send back as the 200 body.

        Raises:
            SignatureError: Not a subscribe request or the verify token is wrong (answer 403).
        """
        if query.get("hub.mode") != "subscribe":
            raise SignatureError("hub.mode is not subscribe")
        if not secrets_equal(query.get("hub.verify_token"), self.verify_token):
            raise SignatureError("wrong hub.verify_token")
        challenge = query.get("hub.challenge")
        if not challenge:
            raise SignatureError("missing hub.challenge")
        return str(challenge)

    def verify(self, headers: Mapping[str, str], raw_body: bytes, query: Mapping[str, str] | None = None) -> None:
        """Check ``X-Hub-Signature-256: sha256=<hex HMAC of the raw body>`` in constant time.

        Raises:
            SignatureError: Missing or wrong.
        """
        got = header(headers, SIGNATURE_HEADER)
        if not got:
            raise SignatureError(f"missing {SIGNATURE_HEADER}")
        got = got.strip()
        if got[:7].lower() == "sha256=":
            got = "sha256=" + got[7:].lower()
        if not secrets_equal(got, messenger_signature(self.app_secret, raw_body)):
            raise SignatureError(f"{SIGNATURE_HEADER} does not match")

    def parse(self, raw_body: bytes, headers: Mapping[str, str] | None = None) -> list[InboundEvent]:
        """Map a delivery (possibly several entries, several messaging events each) to events.

        Skipped: echoes of the page's own messages, delivery/read receipts, reactions, standby (handover)
        events, and entries for other pages.

        Raises:
            ParseError: Not a JSON object.
        """
        body = loads(raw_body)
        if not isinstance(body, dict):
            raise ParseError("Messenger body is not a JSON object")
        if body.get("object") != "page":
            return []
        events: list[InboundEvent] = []
        for entry in body.get("entry") or []:
            if not isinstance(entry, dict):
                continue
            if self.page_id and str(entry.get("id")) != self.page_id:
                continue
            for item in entry.get("messaging") or []:
                if isinstance(item, dict) and (event := self._event(item)) is not None:
                    events.append(event)
        return events

    def _event(self, item: dict[str, Any]) -> InboundEvent | None:
        """One messaging event → one event, or None when skipped."""
        psid = (item.get("sender") or {}).get("id")
        if psid in (None, ""):
            return None
        user = str(psid)
        timestamp = item.get("timestamp")
        when = utc_from_ms(timestamp, self.clock())
        message = item.get("message")
        if isinstance(message, dict):
            if message.get("is_echo"):
                return None
            mid = message.get("mid")
            if not mid:
                return None
            text_value = message.get("text")
            text = normalize(text_value) if isinstance(text_value, str) else None
            quick = message.get("quick_reply")
            if isinstance(quick, dict) and quick.get("payload"):
                return self._make(str(mid), user, "payload", text, str(quick["payload"]), when, item)
            if text is not None:
                return self._make(str(mid), user, "text", text, None, when, item)
            attachments = message.get("attachments") or []
            if message.get("sticker_id") or any(
                isinstance(a, dict) and isinstance(a.get("payload"), dict) and a["payload"].get("sticker_id")
                for a in attachments
            ):
                return self._make(str(mid), user, "sticker", None, None, when, item)
            if attachments:
                return self._make(str(mid), user, "media", None, None, when, item)
            return self._make(str(mid), user, "unsupported", None, None, when, item)
        postback = item.get("postback")
        if isinstance(postback, dict) and postback.get("payload"):
            # Postbacks carry an ``mid`` on current Graph versions; older ones did not.
            mid = postback.get("mid") or f"postback:{user}:{timestamp}"
            title = postback.get("title")
            text = normalize(title) if isinstance(title, str) and title else None
            return self._make(str(mid), user, "payload", text, str(postback["payload"]), when, item)
        # delivery, read, reaction, referral, optin...: nothing for the questionnaire.
        return None

    def _make(
        self,
        mid: str,
        user: str,
        kind: str,
        text: str | None,
        payload: str | None,
        when: dt.datetime,
        raw: dict[str, Any],
    ) -> InboundEvent:
        """Build an event."""
        return InboundEvent(
            channel=self.name,
            message_id=mid,
            user_ref=user,
            kind=kind,  # type: ignore[arg-type]
            text=text,
            payload=payload,
            timestamp=when,
            raw=raw,
        )

    # -- outbound ----------------------------------------------------------------------------------------------

    def _render_part(self, text: str, choices: Sequence[ChoiceLike]) -> dict[str, Any]:
        """``message`` object: text plus quick replies."""
        message: dict[str, Any] = {"text": text}
        if choices:
            message["quick_replies"] = [
                {
                    "content_type": "text",
                    "title": truncate(c.label, self.capabilities.button_title_limit or 20),
                    "payload": c.payload,
                }
                for c in choices
            ]
        return message

    def _send_part(self, user_ref: str, body: dict[str, Any]) -> SendResult:
        """POST ``/<version>/me/messages`` with ``messaging_type: RESPONSE``."""
        request = {"recipient": {"id": user_ref}, "messaging_type": "RESPONSE", "message": body}
        reply = self._http("POST", self.send_url, json_body=request, params={"access_token": self.page_token})
        if reply.failure is not None:
            return reply.failure
        response, data = reply.response, reply.body
        assert response is not None
        if response.status_code == 200 and isinstance(data, dict) and data.get("message_id"):
            return SendResult(ok=True, provider_message_id=str(data["message_id"]))
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return self._http_status_failure(response, data, "", f"HTTP {response.status_code} from Graph API")
        code = error.get("code") if isinstance(error.get("code"), int) else -1
        subcode = error.get("error_subcode") if isinstance(error.get("error_subcode"), int) else None
        message = str(error.get("message") or "")
        label = f"{code}/{subcode}" if subcode is not None else str(code)
        if (code, subcode) in self.UNREACHABLE_CODES or (code, None) in self.UNREACHABLE_CODES:
            return self._failure(label, message, unreachable=True)
        if (
            code in self.RETRYABLE_CODES
            or error.get("is_transient")
            or response.status_code >= 500
            or response.status_code == 429
        ):
            return self._failure(label, message, retryable=True)
        return self._failure(label, message)
