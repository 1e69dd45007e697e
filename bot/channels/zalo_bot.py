"""Zalo Bot platform adapter (the 2025 Telegram-like bot API; a separate product from the OA).

Environment variables (read by :meth:`ZaloBotAdapter.from_config`):

==============================  ==========================================================================
``ZALO_BOT_TOKEN``              required. Bot token (from "Zalo Bot Manager"); it sits in every URL path.
``ZALO_BOT_SECRET_TOKEN``       required. 8–256 chars; set with :meth:`ZaloBotAdapter.set_webhook` and
                                echoed in ``X-Bot-Api-Secret-Token`` on every delivery.
``ZALO_BOT_API_BASE``           default ``https://bot-api.zaloplatforms.com`` (the older
                                ``https://bot-api.zapps.me`` still appears in SDKs, channels.md §2).
``CHANNEL_HTTP_TIMEOUT_SECONDS`` default 10.
==============================  ==========================================================================

No buttons or keyboards are documented (§2 [U]), so choices are rendered as a numbered list and the engine reads
the typed number or label. Both documented webhook envelopes are accepted: ``{"ok": true, "result": {...}}``
(the docs) and the bare update (what several live integrations report).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from bot.channels.base import (
    check_secret_header,
    Capabilities,
    ChannelAdapter,
    ChannelConfigError,
    ChoiceLike,
    InboundEvent,
    ParseError,
    SendResult,
    as_dict,
    config_value,
    http_timeout,
    loads,
    parse_retry_after,
    utc_from_ms,
)
from bot.channels.text import normalize

__all__ = ["ZaloBotAdapter"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE: Final = "https://bot-api.zaloplatforms.com"
SECRET_HEADER: Final = "X-Bot-Api-Secret-Token"
_SECRET_RE: Final = re.compile(r"^.{8,256}$", re.DOTALL)


class ZaloBotAdapter(ChannelAdapter):
    """Zalo Bot: secret-token webhooks in, ``sendMessage`` out, choices as a numbered list."""

    name = "zalo_bot"
    #: No messaging window is documented (§2 [U]).
    interaction_window = None

    REQUIRED: ClassVar[tuple[str, ...]] = ("ZALO_BOT_TOKEN", "ZALO_BOT_SECRET_TOKEN")

    #: event_name → kind.
    EVENT_KINDS: ClassVar[Mapping[str, str]] = {
        "message.text.received": "text",
        "message.image.received": "media",
        "message.voice.received": "media",
        "message.sticker.received": "sticker",
        "message.unsupported.received": "unsupported",
    }

    def __init__(self, *, token: str, secret_token: str, api_base: str = DEFAULT_API_BASE, **kwargs: Any) -> None:
        """Build the adapter.

        Args:
            token: Bot token.
            secret_token: Webhook secret.
            api_base: API host.
            **kwargs: ``session``, ``timeout``, ``clock``.
        """
        super().__init__(**kwargs)
        self.token = token
        self.secret_token = secret_token
        self.base_url = f"{api_base.rstrip('/')}/bot{token}"
        self.capabilities = Capabilities(text_limit=2000, max_buttons=0, supports_buttons=False)
        self._register_secret(token, secret_token)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kwargs: Any) -> ZaloBotAdapter:
        """Build from environment-style settings (module docstring).

        Raises:
            ChannelConfigError: A required setting is missing or the secret is not 8-256 characters.
        """
        missing = [n for n in cls.REQUIRED if not config_value(config, n)]
        if missing:
            raise ChannelConfigError(f"Zalo Bot is partly configured; missing {', '.join(missing)}")
        secret = config_value(config, "ZALO_BOT_SECRET_TOKEN") or ""
        if not _SECRET_RE.match(secret):
            # setWebhook would refuse it, and a short shared secret is weak anyway.
            raise ChannelConfigError("ZALO_BOT_SECRET_TOKEN must be 8-256 characters")
        kwargs.setdefault("timeout", http_timeout(config))
        return cls(
            token=config_value(config, "ZALO_BOT_TOKEN") or "",
            secret_token=secret,
            api_base=config_value(config, "ZALO_BOT_API_BASE") or DEFAULT_API_BASE,
            **kwargs,
        )

    # -- inbound -----------------------------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], raw_body: bytes, query: Mapping[str, str] | None = None) -> None:
        """Check ``X-Bot-Api-Secret-Token`` (a shared secret, no HMAC) in constant time.

        Raises:
            SignatureError: Missing or wrong.
        """
        check_secret_header(headers, SECRET_HEADER, self.secret_token)

    def parse(self, raw_body: bytes, headers: Mapping[str, str] | None = None) -> list[InboundEvent]:
        """Map a delivery (wrapped or bare; one update or a list) to events.

        Raises:
            ParseError: Not a JSON object or list.
        """
        body = loads(raw_body)
        if isinstance(body, dict) and "result" in body and ("ok" in body or "event_name" not in body):
            body = body["result"]
        updates = body if isinstance(body, list) else [body]
        if not all(isinstance(u, dict) for u in updates):
            raise ParseError("Zalo Bot body is not an update object")
        events: list[InboundEvent] = []
        for update in updates:
            event = self._event(update)
            if event is not None:
                events.append(event)
        return events

    def _event(self, update: dict[str, Any]) -> InboundEvent | None:
        """One update → one event, or None when ignored."""
        name = str(update.get("event_name") or "")
        message = update.get("message")
        if not name.startswith("message.") or not isinstance(message, dict):
            log.info("ignoring Zalo Bot event %r", name)
            return None
        sender = as_dict(message.get("from"))
        chat = as_dict(message.get("chat"))
        if sender.get("is_bot"):
            return None
        if str(chat.get("chat_type") or "PRIVATE").upper() != "PRIVATE":
            # Household answers are personal: the questionnaire runs in private chats only.
            log.info("ignoring Zalo Bot message in a %s chat", chat.get("chat_type"))
            return None
        user = chat.get("id") or sender.get("id")
        message_id = message.get("message_id")
        if user in (None, "") or message_id in (None, ""):
            log.warning("Zalo Bot %s without chat id or message id; ignored", name)
            return None
        kind = self.EVENT_KINDS.get(name, "unsupported")
        text_value = message.get("text") if kind == "text" else message.get("caption")
        text = normalize(str(text_value)) if text_value not in (None, "") else None
        if kind == "text" and text is None:
            text = ""
        return InboundEvent(
            channel=self.name,
            message_id=str(message_id),
            user_ref=str(user),
            kind=kind,  # type: ignore[arg-type]
            text=text,
            payload=None,
            timestamp=utc_from_ms(message.get("date"), self.clock()),
            raw=update,
        )

    # -- outbound ----------------------------------------------------------------------------------------------

    def _render_part(self, text: str, choices: Sequence[ChoiceLike]) -> dict[str, Any]:
        """``sendMessage`` body without ``chat_id``; plain text (choices are already in it as a list)."""
        return {"text": text}

    def _send_part(self, user_ref: str, body: dict[str, Any]) -> SendResult:
        """POST ``sendMessage``."""
        return self._call("sendMessage", {"chat_id": user_ref, **body})

    def set_webhook(self, url: str, secret: str | None = None) -> SendResult:
        """Register ``url`` as the webhook with ``secret`` (default: the configured secret token).

        Raises:
            ChannelConfigError: The secret is not 8–256 characters.
        """
        secret = secret if secret is not None else self.secret_token
        if not _SECRET_RE.match(secret):
            raise ChannelConfigError("the Zalo Bot webhook secret must be 8-256 characters")
        return self._call("setWebhook", {"url": url, "secret_token": secret})

    def delete_webhook(self) -> SendResult:
        """Remove the webhook (needed before polling with getUpdates)."""
        return self._call("deleteWebhook", {})

    def _call(self, method: str, payload: dict[str, Any]) -> SendResult:
        """POST a bot method and classify the ``{ok, result | error_code, description}`` envelope."""
        settled, response, body = self._bot_api_call(f"{self.base_url}/{method}", payload, "Zalo Bot")
        if settled is not None:
            return settled
        assert response is not None and isinstance(body, dict)
        # HTTP 200 does not mean success: ``ok`` is the status (§2).
        code = body.get("error_code")
        try:
            numeric = int(code) if code is not None else response.status_code
        except (TypeError, ValueError):
            numeric = response.status_code
        description = str(body.get("description") or "")
        params = as_dict(body.get("parameters"))
        retry_after = params.get("retry_after")
        if numeric == 429 or numeric >= 500 or response.status_code == 429 or response.status_code >= 500:
            return self._failure(
                str(code or response.status_code),
                description,
                retryable=True,
                retry_after=(
                    float(retry_after)
                    if isinstance(retry_after, (int, float))
                    else parse_retry_after(response.headers.get("Retry-After"), self.clock())
                ),
            )
        if numeric == 403:
            # Telegram-style "blocked by the user"; undocumented for Zalo Bot, so only the obvious status.
            return self._failure(str(code), description, unreachable=True)
        return self._failure(str(code or response.status_code), description)
