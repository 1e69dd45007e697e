"""Telegram Bot API adapter.

Environment variables (read by :meth:`TelegramAdapter.from_config`):

==============================  ==========================================================================
``TELEGRAM_BOT_TOKEN``          required. Bot token from @BotFather; it sits in every URL path.
``TELEGRAM_SECRET_TOKEN``       required. 1–256 chars of ``A-Z a-z 0-9 _ -``; set with
                                :meth:`TelegramAdapter.set_webhook`, echoed in
                                ``X-Telegram-Bot-Api-Secret-Token``.
``TELEGRAM_API_BASE``           default ``https://api.telegram.org``.
``TELEGRAM_KEYBOARD``           ``inline`` (default: taps arrive as ``callback_query`` payloads) or ``reply``
                                (a reply keyboard: taps arrive as the label typed as text).
``TELEGRAM_MAX_BUTTONS``        default 20 (one button per row); more choices become a numbered list.
``CHANNEL_HTTP_TIMEOUT_SECONDS`` default 10.
==============================  ==========================================================================

``callback_data`` is limited to 64 bytes. A longer payload is sent as ``h:`` + a digest of it
(:class:`CallbackCodec`): the same payload always maps to the same id, and the id is turned back into the payload
from the codec's table, which learns every payload it encodes and can be seeded with the questionnaire's payloads
(the webhook process decodes what the worker process encoded, so a shared table or the seed is needed there).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
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
    config_float,
    config_value,
    http_timeout,
    loads,
    parse_retry_after,
)
from bot.channels.text import normalize, utf16_len

__all__ = ["CallbackCodec", "TelegramAdapter"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE: Final = "https://api.telegram.org"
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
CALLBACK_DATA_LIMIT: Final = 64
_SECRET_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_INT_RE: Final = re.compile(r"^-?\d+$")

#: Descriptions of 400/403 errors meaning "this chat cannot be messaged" (Telegram's wording).
_UNREACHABLE_HINTS: Final = (
    "blocked by the user",
    "user is deactivated",
    "chat not found",
    "bot can't initiate conversation",
    "bot was kicked",
    "peer_id_invalid",
    "have no rights to send",
)


class CallbackCodec:
    """Deterministic mapping between button payloads and ``callback_data`` (at most 64 bytes).

    Payloads that fit are sent as they are. Longer ones (and, to stay unambiguous, ones that already start with
    the hash prefix) become ``h:`` + 22 base64url characters of their SHA-256.
    """

    PREFIX: ClassVar[str] = "h:"

    def __init__(self, known_payloads: Iterable[str] = (), table: MutableMapping[str, str] | None = None) -> None:
        """Build the codec.

        Args:
            known_payloads: Payloads to be able to decode without having encoded them in this process.
            table: Shared id → payload table (e.g. a Redis hash); an in-memory dict when None.
        """
        self.table: MutableMapping[str, str] = table if table is not None else {}
        self.learn(known_payloads)

    @classmethod
    def digest_id(cls, payload: str) -> str:
        """The short id of ``payload``: 24 ASCII bytes, well under the limit."""
        digest = hashlib.sha256(payload.encode("utf-8")).digest()
        return cls.PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")[:22]

    def learn(self, payloads: Iterable[str]) -> None:
        """Make ``payloads`` decodable."""
        for payload in payloads:
            self.encode(payload)

    def encode(self, payload: str) -> str:
        """Return the ``callback_data`` for ``payload``."""
        if 0 < len(payload.encode("utf-8")) <= CALLBACK_DATA_LIMIT and not payload.startswith(self.PREFIX):
            return payload
        short = self.digest_id(payload)
        self.table[short] = payload
        return short

    def decode(self, data: str) -> str | None:
        """Return the payload for ``callback_data``; None for a digest id this codec never saw."""
        if not data.startswith(self.PREFIX):
            return data
        return self.table.get(data)


class TelegramAdapter(ChannelAdapter):
    """Telegram: secret-token webhooks in, ``sendMessage`` with inline or reply keyboards out."""

    name = "telegram"
    interaction_window = None

    REQUIRED: ClassVar[tuple[str, ...]] = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_SECRET_TOKEN")

    #: Message fields that make a message "media" (a caption, if any, becomes the event text).
    MEDIA_FIELDS: ClassVar[tuple[str, ...]] = (
        "photo", "document", "video", "voice", "audio", "video_note", "animation", "location", "contact", "venue",
    )  # fmt: skip

    def __init__(
        self,
        *,
        token: str,
        secret_token: str,
        api_base: str = DEFAULT_API_BASE,
        keyboard: str = "inline",
        max_buttons: int = 20,
        codec: CallbackCodec | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the adapter.

        Args:
            token: Bot token.
            secret_token: Webhook secret.
            api_base: API host.
            keyboard: ``inline`` or ``reply``.
            max_buttons: Most buttons per message.
            codec: Payload ↔ ``callback_data`` mapping (inline keyboards).
            **kwargs: ``session``, ``timeout``, ``clock``.
        """
        super().__init__(**kwargs)
        if keyboard not in ("inline", "reply"):
            raise ChannelConfigError(f"TELEGRAM_KEYBOARD must be inline or reply, not {keyboard!r}")
        self.token = token
        self.secret_token = secret_token
        self.base_url = f"{api_base.rstrip('/')}/bot{token}"
        self.keyboard = keyboard
        self.codec = codec or CallbackCodec()
        # callback_data length is handled by the codec, so no payload limit here.
        self.capabilities = Capabilities(text_limit=4096, max_buttons=max_buttons, supports_buttons=max_buttons > 0)
        self._register_secret(token, secret_token)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, known_payloads: Iterable[str] = (), **kwargs: Any
    ) -> TelegramAdapter:
        """Build from environment-style settings (module docstring).

        Args:
            config: Settings mapping.
            known_payloads: Seed for the callback codec (the questionnaire's payloads).
            **kwargs: ``session``, ``timeout``, ``clock``, ``codec``.

        Raises:
            ChannelConfigError: A required setting is missing or invalid.
        """
        missing = [n for n in cls.REQUIRED if not config_value(config, n)]
        if missing:
            raise ChannelConfigError(f"Telegram is partly configured; missing {', '.join(missing)}")
        secret = config_value(config, "TELEGRAM_SECRET_TOKEN") or ""
        if not _SECRET_RE.match(secret):
            raise ChannelConfigError("TELEGRAM_SECRET_TOKEN must be 1-256 characters of A-Z a-z 0-9 _ -")
        kwargs.setdefault("timeout", http_timeout(config))
        kwargs.setdefault("codec", CallbackCodec(known_payloads))
        return cls(
            token=config_value(config, "TELEGRAM_BOT_TOKEN") or "",
            secret_token=secret,
            api_base=config_value(config, "TELEGRAM_API_BASE") or DEFAULT_API_BASE,
            keyboard=config_value(config, "TELEGRAM_KEYBOARD") or "inline",
            max_buttons=int(config_float(config, "TELEGRAM_MAX_BUTTONS", 20)),
            **kwargs,
        )

    def measure(self, text: str) -> int:
        """Telegram counts message length in UTF-16 code units."""
        return utf16_len(text)

    # -- inbound -----------------------------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], raw_body: bytes, query: Mapping[str, str] | None = None) -> None:
        """Check ``X-Telegram-Bot-Api-Secret-Token`` in constant time.

        Raises:
            SignatureError: Missing or wrong.
        """
        check_secret_header(headers, SECRET_HEADER, self.secret_token)

    def parse(self, raw_body: bytes, headers: Mapping[str, str] | None = None) -> list[InboundEvent]:
        """Map one Update to zero or one event; the de-duplication key is ``update_id``.

        Raises:
            ParseError: Not a JSON object with an ``update_id``.
        """
        update = loads(raw_body)
        if not isinstance(update, dict) or update.get("update_id") is None:
            raise ParseError("Telegram body is not an Update")
        update_id = str(update["update_id"])
        now = self.clock()
        if isinstance(update.get("callback_query"), dict):
            return self._callback(update_id, update, now)
        if isinstance(update.get("message"), dict):
            return self._message(update_id, update, now)
        member = update.get("my_chat_member")
        if isinstance(member, dict):
            status = (member.get("new_chat_member") or {}).get("status")
            chat = member.get("chat") or {}
            if status == "kicked" and chat.get("type") == "private":
                # The user blocked the bot: the Telegram equivalent of unfollowing.
                return [
                    self._event(update_id, str(chat.get("id")), "unfollow", None, None, member.get("date"), update, now)
                ]
            return []
        # edited_message, channel_post, polls...: nothing the questionnaire acts on.
        return []

    def _message(self, update_id: str, update: dict[str, Any], now: dt.datetime) -> list[InboundEvent]:
        """A ``message`` update."""
        message = update["message"]
        chat = message.get("chat") or {}
        sender = message.get("from") or {}
        if chat.get("type") != "private" or sender.get("is_bot"):
            # Household answers are personal: private chats only.
            return []
        user = str(chat.get("id"))
        date = message.get("date")
        if isinstance(message.get("text"), str):
            text = normalize(message["text"])
            # /start (with an optional deep-link argument) is what Telegram sends when someone opens the bot.
            kind = "follow" if text == "/start" or text.startswith("/start ") else "text"
            return [self._event(update_id, user, kind, text, None, date, update, now)]
        caption = message.get("caption")
        caption_text = normalize(caption) if isinstance(caption, str) and caption else None
        if "sticker" in message:
            kind = "sticker"
        elif any(f in message for f in self.MEDIA_FIELDS):
            kind = "media"
        else:
            kind = "unsupported"
        return [self._event(update_id, user, kind, caption_text, None, date, update, now)]

    def _callback(self, update_id: str, update: dict[str, Any], now: dt.datetime) -> list[InboundEvent]:
        """A ``callback_query`` update (inline button tap)."""
        query = update["callback_query"]
        message = query.get("message") or {}
        chat = message.get("chat") or {}
        if chat and chat.get("type") != "private":
            return []
        user = chat.get("id") if chat.get("id") is not None else (query.get("from") or {}).get("id")
        if user is None:
            return []
        data = str(query.get("data") or "")
        payload = self.codec.decode(data)
        if payload is None:
            # Encoded by another process with no shared table: the engine will not recognise it and re-asks.
            log.warning("Telegram callback_data %s has no known payload", data)
            payload = data
        # A callback carries no date of its own (message.date is when the question was sent): use receive time.
        return [self._event(update_id, str(user), "payload", None, payload, None, update, now)]

    def _event(
        self,
        update_id: str,
        user: str,
        kind: str,
        text: str | None,
        payload: str | None,
        date: Any,
        raw: dict[str, Any],
        now: dt.datetime,
    ) -> InboundEvent:
        """Build an event; Telegram dates are epoch seconds."""
        when = now
        if isinstance(date, int):
            when = dt.datetime.fromtimestamp(date, tz=dt.UTC)
        return InboundEvent(
            channel=self.name,
            message_id=update_id,
            user_ref=user,
            kind=kind,  # type: ignore[arg-type]
            text=text,
            payload=payload,
            timestamp=when,
            raw=raw,
        )

    def acknowledge(self, event: InboundEvent) -> SendResult | None:
        """Answer a button tap's ``callback_query`` so the button stops spinning; None for other events."""
        query = event.raw.get("callback_query") if event.channel == self.name else None
        if not isinstance(query, dict) or not query.get("id"):
            return None
        return self.answer_callback_query(str(query["id"]))

    def answer_callback_query(self, callback_query_id: str, text: str | None = None) -> SendResult:
        """Call ``answerCallbackQuery``."""
        body: dict[str, Any] = {"callback_query_id": callback_query_id}
        if text:
            body["text"] = text
        return self._call("answerCallbackQuery", body)

    # -- outbound ----------------------------------------------------------------------------------------------

    def _render_part(self, text: str, choices: Sequence[ChoiceLike]) -> dict[str, Any]:
        """``sendMessage`` body without ``chat_id``: plain text (no parse_mode: nothing to escape) + keyboard."""
        body: dict[str, Any] = {"text": text}
        if self.keyboard == "inline":
            if choices:
                body["reply_markup"] = {
                    "inline_keyboard": [
                        [{"text": c.label, "callback_data": self.codec.encode(c.payload)}] for c in choices
                    ]
                }
        elif choices:
            body["reply_markup"] = {
                "keyboard": [[{"text": c.label}] for c in choices],
                "one_time_keyboard": True,
                "resize_keyboard": True,
            }
        else:
            # A free-text question after a choice question: take the old keyboard away.
            body["reply_markup"] = {"remove_keyboard": True}
        return body

    def _send_part(self, user_ref: str, body: dict[str, Any]) -> SendResult:
        """POST ``sendMessage``."""
        chat_id: int | str = int(user_ref) if _INT_RE.match(user_ref) else user_ref
        return self._call("sendMessage", {"chat_id": chat_id, **body})

    def set_webhook(
        self,
        url: str,
        secret: str | None = None,
        *,
        allowed_updates: Sequence[str] = ("message", "callback_query", "my_chat_member"),
        drop_pending_updates: bool = False,
    ) -> SendResult:
        """Register ``url`` with ``secret`` (default: the configured secret token).

        Raises:
            ChannelConfigError: The secret has characters Telegram refuses.
        """
        secret = secret if secret is not None else self.secret_token
        if not _SECRET_RE.match(secret):
            raise ChannelConfigError("the Telegram webhook secret must be 1-256 characters of A-Z a-z 0-9 _ -")
        return self._call(
            "setWebhook",
            {
                "url": url,
                "secret_token": secret,
                "allowed_updates": list(allowed_updates),
                "drop_pending_updates": drop_pending_updates,
            },
        )

    def _call(self, method: str, payload: dict[str, Any]) -> SendResult:
        """POST a Bot API method and classify the ``{ok, result | error_code, description, parameters}`` reply."""
        settled, response, body = self._bot_api_call(f"{self.base_url}/{method}", payload, "Telegram")
        if settled is not None:
            return settled
        assert response is not None and isinstance(body, dict)
        error_code = body.get("error_code")
        code: int = error_code if isinstance(error_code, int) else response.status_code
        description = str(body.get("description") or "")
        params = as_dict(body.get("parameters"))
        if code == 429 or code >= 500:
            retry_after = params.get("retry_after")
            return self._failure(
                str(code),
                description,
                retryable=True,
                retry_after=(
                    float(retry_after)
                    if isinstance(retry_after, (int, float))
                    else parse_retry_after(response.headers.get("Retry-After"), self.clock())
                ),
            )
        if code == 403 or (code == 400 and any(h in description.lower() for h in _UNREACHABLE_HINTS)):
            # Blocked, deactivated, never started the bot, chat gone: retrying cannot help.
            return self._failure(str(code), description, unreachable=True)
        return self._failure(str(code), description)
