"""Zalo Official Account (Open API v3) adapter.

Environment variables (read by :meth:`ZaloOAAdapter.from_config`; the channel is on when the required ones are
set, and a half-set channel is a configuration error):

=====================================  =====================================================================
``ZALO_OA_APP_ID``                     required. The Zalo app id (webhook signature term, OAuth ``app_id``).
``ZALO_OA_SECRET_KEY``                 required. The **OA secret key** used in the webhook signature
                                       (console → app → Webhook / OA settings), not the app secret.
``ZALO_OA_ACCESS_TOKEN``               required unless a token store is passed in. The starting access token.
``ZALO_OA_REFRESH_TOKEN``              optional, with ``ZALO_APP_SECRET``: enables refreshing.
``ZALO_APP_SECRET``                    optional. The **app** secret key, OAuth header ``secret_key``.
``ZALO_OA_ID``                         optional. This OA's id: events for other OAs linked to the same app
                                       are ignored, and it is the first term of the ``oa_id`` signature
                                       variant.
``ZALO_OA_API_BASE``                   default ``https://openapi.zalo.me``.
``ZALO_OA_OAUTH_BASE``                 default ``https://oauth.zaloapp.com``.
``ZALO_OA_SIGNATURE_VARIANTS``         default ``app_id:oa_secret``. Comma-separated ``<id>:<secret>``
                                       pairs accepted for ``X-ZEvent-Signature`` (id ``app_id`` | ``oa_id``,
                                       secret ``oa_secret`` | ``app_secret``); sources disagree (§1.3 [U]).
                                       The variant that matched is logged at INFO for the pilot.
``ZALO_OA_MAX_EVENT_AGE_SECONDS``      default 600. Reject events whose ``timestamp`` is further than this
                                       from now (replay guard; channels.md §6.3 suggests ~10 min). 0 = off.
``ZALO_OA_MAX_RETRY_EVENT_AGE_SECONDS`` default 46800 (13 h). The window for redeliveries (``num_retry``
                                       header > 0): Zalo retries for up to ~2 h or 12 h depending on the
                                       source (§1.2 [U]). The header is unsigned, so the de-duplication table
                                       must keep ids at least this long. 0 = off. Note that nginx and
                                       gunicorn drop headers with ``_`` by default (nginx
                                       ``underscores_in_headers on``; gunicorn ``--header-map dangerous``
                                       keep it); without it every event gets the shorter window.
``ZALO_OA_MAX_BUTTONS``                default 5 (§1.5 [U]); more choices become a numbered list.
``ZALO_OA_BUTTON_TYPE``                default ``oa.query.hide`` (or ``oa.query.show``).
``ZALO_OA_PAYLOAD_PREFIX``             default empty. If set, button payloads are sent as prefix+payload and a
                                       ``user_send_text`` starting with it becomes a ``payload`` event (how a
                                       tap arrives is §1.4 [U]; the engine also matches a bare payload).
``ZALO_OA_TOKEN_REFRESH_MARGIN_SECONDS`` default 18000: refresh proactively 5 h before expiry.
``CHANNEL_HTTP_TIMEOUT_SECONDS``       default 10 (read timeout of every provider call; connect 5).
=====================================  =====================================================================
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
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
    StaleEventError,
    as_dict,
    config_float,
    config_value,
    first,
    header,
    http_timeout,
    loads,
    utc_from_ms,
)
from bot.channels.text import normalize, truncate
from bot.channels.zalo_tokens import (
    DEFAULT_OAUTH_BASE,
    StaticTokenStore,
    TokenError,
    TokenPair,
    TokenStore,
    ZaloOATokenStore,
)

__all__ = ["ZaloOAAdapter", "zalo_oa_signature"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE: Final = "https://openapi.zalo.me"
SEND_PATH: Final = "/v3.0/oa/message/cs"
SIGNATURE_HEADER: Final = "X-ZEvent-Signature"

_ID_TERMS: Final = frozenset({"app_id", "oa_id"})
_SECRET_TERMS: Final = frozenset({"oa_secret", "app_secret"})


def zalo_oa_signature(first_term: str, raw_body: bytes, timestamp: str, secret: str) -> str:
    """Return the hex ``X-ZEvent-Signature`` value (without ``mac=``) for one delivery.

    ``sha256(app_id + raw_body + timestamp + secret)``: a plain SHA-256 of the concatenation, not an HMAC
    (channels.md §1.3, Chatwoot). ``first_term`` is the app id, or the OA id in the community variant.
    """
    return hashlib.sha256(first_term.encode() + raw_body + timestamp.encode() + secret.encode()).hexdigest()


class ZaloOAAdapter(ChannelAdapter):
    """Zalo OA: ``X-ZEvent-Signature`` webhooks in, ``/v3.0/oa/message/cs`` consultation messages out."""

    name = "zalo_oa"
    #: Consultation messages need a user interaction in the last 7 days, else -230 (§1.6).
    interaction_window = dt.timedelta(days=7)

    REQUIRED: ClassVar[tuple[str, ...]] = ("ZALO_OA_APP_ID", "ZALO_OA_SECRET_KEY", "ZALO_OA_ACCESS_TOKEN")

    #: Access token invalid / expired / invalid on ZNS: refresh once, resend once (§1.8).
    TOKEN_ERRORS: ClassVar[frozenset[int]] = frozenset({-216, -220, -124})
    #: The user cannot be reached now: outside the 7-day window (-230, -232), not a follower (-213), banned or
    #: inactive (-227), restricted this message type (-244). Never retried (§1.8).
    UNREACHABLE_ERRORS: ClassVar[frozenset[int]] = frozenset({-230, -232, -213, -227, -244})
    #: Temporary: rate limit (-32), quota (-211, -218), night ban (-234). Value = suggested wait, seconds.
    RETRYABLE_ERRORS: ClassVar[Mapping[int, float | None]] = {-32: 60.0, -211: 3600.0, -218: 3600.0, -234: 3600.0}

    #: Delivery/read receipts and anything else the bot does not act on.
    IGNORED_EVENTS: ClassVar[frozenset[str]] = frozenset(
        {"user_received_message", "user_seen_message", "add_user_to_tag", "change_template_status"}
    )
    #: user_send_* events and the kind they become.
    SEND_EVENT_KINDS: ClassVar[Mapping[str, str]] = {
        "user_send_image": "media",
        "user_send_gif": "media",
        "user_send_audio": "media",
        "user_send_video": "media",
        "user_send_file": "media",
        "user_send_location": "media",
        "user_send_sticker": "sticker",
        "user_send_link": "unsupported",
        "user_send_business_card": "unsupported",
    }

    def __init__(
        self,
        *,
        app_id: str,
        oa_secret_key: str,
        tokens: TokenStore,
        app_secret: str | None = None,
        oa_id: str | None = None,
        api_base: str = DEFAULT_API_BASE,
        signature_variants: Sequence[tuple[str, str]] = (("app_id", "oa_secret"),),
        max_event_age: float = 600.0,
        max_retry_event_age: float = 13 * 3600.0,
        max_buttons: int = 5,
        button_type: str = "oa.query.hide",
        payload_prefix: str = "",
        **kwargs: Any,
    ) -> None:
        """Build the adapter; see the module docstring for what each setting means.

        Args:
            app_id: Zalo app id.
            oa_secret_key: OA secret key (webhook signature).
            tokens: Where access tokens come from and get refreshed.
            app_secret: App secret key, only for the ``app_secret`` signature variant.
            oa_id: This OA's id (filter and ``oa_id`` variant), optional.
            api_base: Open API host.
            signature_variants: Accepted ``(id term, secret term)`` pairs.
            max_event_age: Replay window for first deliveries, seconds (0 = off).
            max_retry_event_age: Replay window for redeliveries, seconds (0 = off).
            max_buttons: Most buttons per message.
            button_type: ``oa.query.hide`` or ``oa.query.show``.
            payload_prefix: Marker prepended to button payloads (see module docstring).
            **kwargs: ``session``, ``timeout``, ``clock`` for :class:`ChannelAdapter`.
        """
        super().__init__(**kwargs)
        for id_term, secret_term in signature_variants:
            if id_term not in _ID_TERMS or secret_term not in _SECRET_TERMS:
                raise ChannelConfigError(f"unknown Zalo OA signature variant {id_term}:{secret_term}")
            if secret_term == "app_secret" and not app_secret:
                raise ChannelConfigError("signature variant app_secret needs ZALO_APP_SECRET")
        if not signature_variants:
            raise ChannelConfigError("at least one Zalo OA signature variant is needed")
        if button_type not in ("oa.query.hide", "oa.query.show"):
            raise ChannelConfigError(f"ZALO_OA_BUTTON_TYPE must be oa.query.hide or oa.query.show, not {button_type!r}")
        self.app_id = app_id
        self.oa_secret_key = oa_secret_key
        self.app_secret = app_secret
        self.oa_id = oa_id
        self.tokens = tokens
        self.send_url = api_base.rstrip("/") + SEND_PATH
        self.signature_variants = tuple(signature_variants)
        self.max_event_age = max_event_age
        self.max_retry_event_age = max_retry_event_age
        self.button_type = button_type
        self.payload_prefix = payload_prefix
        self.capabilities = Capabilities(
            text_limit=2000,
            max_buttons=max_buttons,
            supports_buttons=max_buttons > 0,
            button_title_limit=100,
            payload_limit=1000 - len(payload_prefix),
        )
        self._register_secret(oa_secret_key, app_secret)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        tokens: TokenStore | None = None,
        persist_tokens: Callable[[TokenPair], None] | None = None,
        load_tokens: Callable[[], TokenPair | None] | None = None,
        token_lock: AbstractContextManager[Any] | None = None,
        **kwargs: Any,
    ) -> ZaloOAAdapter:
        """Build from environment-style settings (module docstring).

        Args:
            config: ``os.environ``, ``app.config`` or a plain dict.
            tokens: A ready token store (e.g. database-backed); otherwise one is built from the settings.
            persist_tokens: Saves rotated token pairs (for the built store).
            load_tokens: Reads the saved pair (for the built store).
            token_lock: Cross-process refresh lock (for the built store).
            **kwargs: ``session``, ``timeout``, ``clock``.

        Raises:
            ChannelConfigError: A required setting is missing or a value is invalid.
        """
        need = cls.REQUIRED if tokens is None else cls.REQUIRED[:2]
        missing = [n for n in need if not config_value(config, n)]
        if missing:
            raise ChannelConfigError(f"Zalo OA is partly configured; missing {', '.join(missing)}")
        app_id = config_value(config, "ZALO_OA_APP_ID") or ""
        app_secret = config_value(config, "ZALO_APP_SECRET")
        refresh_token = config_value(config, "ZALO_OA_REFRESH_TOKEN")
        if tokens is None:
            if refresh_token and not app_secret:
                raise ChannelConfigError("ZALO_OA_REFRESH_TOKEN is set but ZALO_APP_SECRET (OAuth secret_key) is not")
            access = config_value(config, "ZALO_OA_ACCESS_TOKEN") or ""
            if refresh_token or load_tokens is not None:
                tokens = ZaloOATokenStore(
                    app_id=app_id,
                    app_secret=app_secret,
                    initial=TokenPair(access, refresh_token),
                    persist=persist_tokens,
                    load=load_tokens,
                    oauth_base=config_value(config, "ZALO_OA_OAUTH_BASE") or DEFAULT_OAUTH_BASE,
                    session=kwargs.get("session"),
                    timeout=kwargs.get("timeout") or http_timeout(config),
                    lock=token_lock,
                    clock=kwargs.get("clock"),
                    refresh_margin=dt.timedelta(
                        seconds=config_float(config, "ZALO_OA_TOKEN_REFRESH_MARGIN_SECONDS", 5 * 3600.0)
                    ),
                )
            else:
                tokens = StaticTokenStore(access)
        variants = _parse_variants(config_value(config, "ZALO_OA_SIGNATURE_VARIANTS") or "app_id:oa_secret")
        kwargs.setdefault("timeout", http_timeout(config))
        return cls(
            app_id=app_id,
            oa_secret_key=config_value(config, "ZALO_OA_SECRET_KEY") or "",
            tokens=tokens,
            app_secret=app_secret,
            oa_id=config_value(config, "ZALO_OA_ID"),
            api_base=config_value(config, "ZALO_OA_API_BASE") or DEFAULT_API_BASE,
            signature_variants=variants,
            max_event_age=config_float(config, "ZALO_OA_MAX_EVENT_AGE_SECONDS", 600.0),
            max_retry_event_age=config_float(config, "ZALO_OA_MAX_RETRY_EVENT_AGE_SECONDS", 13 * 3600.0),
            max_buttons=int(config_float(config, "ZALO_OA_MAX_BUTTONS", 5)),
            button_type=config_value(config, "ZALO_OA_BUTTON_TYPE") or "oa.query.hide",
            payload_prefix=config_value(config, "ZALO_OA_PAYLOAD_PREFIX") or "",
            **kwargs,
        )

    # -- inbound -----------------------------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], raw_body: bytes, query: Mapping[str, str] | None = None) -> None:
        """Check ``X-ZEvent-Signature: mac=<hex>`` and the replay window.

        The signature covers the app id, the raw body, the body's ``timestamp`` and the OA secret key, so the
        body has to be decoded to read ``timestamp`` (the hash itself is over the raw bytes).

        Raises:
            SignatureError: Missing/malformed/wrong signature, or an event for another app.
            StaleEventError: Authentic but outside the replay window.
        """
        value = header(headers, SIGNATURE_HEADER)
        if not value:
            raise SignatureError(f"missing {SIGNATURE_HEADER}")
        got = value.strip()
        if got[:4].lower() == "mac=":
            got = got[4:]
        got_bytes = got.strip().lower().encode("utf-8", "replace")
        try:
            body = loads(raw_body)
        except ParseError:
            raise SignatureError("body is not JSON; cannot read its timestamp") from None
        if not isinstance(body, dict):
            raise SignatureError("body is not a JSON object")
        timestamp = body.get("timestamp")
        if timestamp is None or not str(timestamp).isdigit():
            raise SignatureError("body has no numeric timestamp")
        timestamp = str(timestamp)
        body_app = body.get("app_id")
        if body_app is not None and str(body_app) != self.app_id:
            raise SignatureError("event is for another Zalo app")
        matched: tuple[str, str] | None = None
        for id_term, secret_term in self.signature_variants:
            first_term = self.app_id if id_term == "app_id" else (self._oa_id_of(body) or "")
            secret = self.oa_secret_key if secret_term == "oa_secret" else (self.app_secret or "")
            want = zalo_oa_signature(first_term, raw_body, timestamp, secret).encode()
            # Every variant is compared (no early exit) so timing does not reveal which one is close.
            if hmac.compare_digest(got_bytes, want) and matched is None:
                matched = (id_term, secret_term)
        if matched is None:
            raise SignatureError("X-ZEvent-Signature does not match")
        if len(self.signature_variants) > 1:
            log.info("Zalo OA signature matched variant %s:%s", *matched)
        self._check_age(timestamp, header(headers, "num_retry") or header(headers, "num-retry"))

    def _check_age(self, timestamp: str, num_retry: str | None) -> None:
        """Raise :class:`StaleEventError` when the event time is outside the applicable window."""
        retried = (num_retry or "0").strip() not in ("", "0")
        window = self.max_retry_event_age if retried else self.max_event_age
        if window <= 0:
            return
        event_time = utc_from_ms(timestamp)
        age = abs((self.clock() - event_time).total_seconds())
        if age > window:
            raise StaleEventError(f"event timestamp is {age:.0f} s from now (window {window:.0f} s)")

    def _oa_id_of(self, body: Mapping[str, Any]) -> str | None:
        """This OA's id: configured, else from the body (flat ``oa_id``; recipient of user events; sender of
        OA echoes and receipts)."""
        if self.oa_id:
            return self.oa_id
        event = str(body.get("event_name") or "")
        sender = _id(body.get("sender"))
        recipient = _id(body.get("recipient"))
        from_user = event.startswith(("user_send_", "user_submit_", "anonymous_")) or event in ("follow", "unfollow")
        found = first([body.get("oa_id"), recipient if from_user else sender])
        return None if found is None else str(found)

    def parse(self, raw_body: bytes, headers: Mapping[str, str] | None = None) -> list[InboundEvent]:
        """Map one Zalo OA event (one per request) to zero or one :class:`InboundEvent`.

        Raises:
            ParseError: Not a JSON object.
        """
        body = loads(raw_body)
        if not isinstance(body, dict):
            raise ParseError("Zalo OA body is not a JSON object")
        event = str(body.get("event_name") or "")
        if self.oa_id and (oa := self._event_oa(body, event)) and oa != self.oa_id:
            log.info("ignoring Zalo OA %s for another OA", event)
            return []
        if event in self.IGNORED_EVENTS or event.startswith(("oa_send_", "anonymous_")):
            # Receipts, echoes of our own (or the admin's) messages, and anonymous users we cannot reply to.
            return []
        message = as_dict(body.get("message"))
        timestamp = str(body.get("timestamp") or "")
        when = utc_from_ms(timestamp, self.clock())
        kind: str
        text: str | None = None
        payload: str | None = None
        info: dict[str, str] = {}
        if event == "user_send_text":
            user = _id(body.get("sender"))
            text = normalize(str(message.get("text") or ""))
            kind = "text"
            if self.payload_prefix and text.startswith(self.payload_prefix):
                kind, payload = "payload", text[len(self.payload_prefix) :]
                text = None
        elif event in self.SEND_EVENT_KINDS or event.startswith("user_send_"):
            user = _id(body.get("sender"))
            kind = self.SEND_EVENT_KINDS.get(event, "unsupported")
            caption = message.get("text")
            text = normalize(str(caption)) if caption else None
        elif event in ("follow", "unfollow"):
            user = _id(body.get("follower")) or _id(body.get("sender"))
            kind = event
        elif event == "user_submit_info":
            user = _id(body.get("sender"))
            kind = "user_info"
            info = _user_info(body.get("info"))
        else:
            log.info("ignoring Zalo OA event %r", event)
            return []
        if not user:
            log.warning("Zalo OA %s without a user id; ignored", event)
            return []
        message_id = str(message.get("msg_id") or f"{event}:{user}:{timestamp}")
        return [
            InboundEvent(
                channel=self.name,
                message_id=message_id,
                user_ref=user,
                kind=kind,  # type: ignore[arg-type]
                text=text,
                payload=payload,
                timestamp=when,
                raw=body,
                info=info,
            )
        ]

    @staticmethod
    def _event_oa(body: Mapping[str, Any], event: str) -> str | None:
        """The OA an event belongs to, when the body says."""
        if body.get("oa_id"):
            return str(body["oa_id"])
        if event.startswith("user_"):
            # user_send_* / user_submit_info: the OA is the recipient; receipts: the OA is the sender.
            return _id(body.get("sender" if event in ("user_received_message", "user_seen_message") else "recipient"))
        if event.startswith("oa_send_"):
            return _id(body.get("sender"))
        return None

    # -- outbound ----------------------------------------------------------------------------------------------

    def _render_part(self, text: str, choices: Sequence[ChoiceLike]) -> dict[str, Any]:
        """``message`` object: text, plus ``oa.query.*`` buttons when there are choices."""
        message: dict[str, Any] = {"text": text}
        if choices:
            message["attachment"] = {
                "type": "template",
                "payload": {
                    "buttons": [
                        {
                            "title": truncate(c.label, self.capabilities.button_title_limit or 100),
                            "type": self.button_type,
                            "payload": self.payload_prefix + c.payload,
                        }
                        for c in choices
                    ]
                },
            }
        return message

    def _send_part(self, user_ref: str, body: dict[str, Any]) -> SendResult:
        """Post one consultation message; on a token error refresh once and resend once."""
        request = {"recipient": {"user_id": user_ref}, "message": body}
        try:
            token = self.tokens.get()
        except TokenError as exc:
            return self._failure(exc.code, str(exc), retryable=exc.retryable)
        result, token_rejected = self._post(token, request)
        if not token_rejected:
            return result
        try:
            fresh = self.tokens.refresh(token)
        except TokenError as exc:
            return self._failure(exc.code, str(exc), retryable=exc.retryable)
        result, token_rejected = self._post(fresh, request)
        if token_rejected:
            # A brand-new token rejected again is not going to fix itself: configuration / permissions.
            return self._failure(
                result.error_code or "token_rejected",
                f"Zalo OA rejected a freshly refreshed token: {result.error_message}",
            )
        return result

    def _post(self, token: str, request: dict[str, Any]) -> tuple[SendResult, bool]:
        """POST ``/v3.0/oa/message/cs``; return the result and whether the token was rejected."""
        reply = self._http(
            "POST",
            self.send_url,
            json_body=request,
            headers={"access_token": token, "Content-Type": "application/json"},
        )
        if reply.failure is not None:
            return reply.failure, False
        response, body = reply.response, reply.body
        assert response is not None
        if response.status_code != 200 or not isinstance(body, dict):
            return self._http_status_failure(response, body, "", f"HTTP {response.status_code} from Zalo OA"), False
        # Errors come with HTTP 200: the ``error`` field is the status.
        try:
            code = int(body.get("error", 0) or 0)
        except (TypeError, ValueError):
            code = -1
        message = str(body.get("message") or "")
        if code == 0:
            data = as_dict(body.get("data"))
            return SendResult(ok=True, provider_message_id=_str_or_none(data.get("message_id"))), False
        if code in self.TOKEN_ERRORS:
            return self._failure(str(code), message, retryable=False), True
        if code in self.UNREACHABLE_ERRORS:
            return self._failure(str(code), message, unreachable=True), False
        if code in self.RETRYABLE_ERRORS:
            return self._failure(str(code), message, retryable=True, retry_after=self.RETRYABLE_ERRORS[code]), False
        return self._failure(str(code), message), False


def _id(value: Any) -> str | None:
    """``value["id"]`` as a string (Zalo ids exceed 2^53: never through float)."""
    if isinstance(value, dict) and value.get("id") not in (None, ""):
        return str(value["id"])
    return None


def _str_or_none(value: Any) -> str | None:
    """``str(value)`` unless None or empty."""
    return None if value in (None, "") else str(value)


def _user_info(info: Any) -> dict[str, str]:
    """Normalise a ``user_submit_info.info`` object: both documented shapes (§1.4 [S]) to one flat dict."""
    if not isinstance(info, dict):
        return {}
    flat: dict[str, Any] = dict(info)
    full = info.get("full_address")
    if isinstance(full, dict):
        flat.setdefault("address", full.get("user_address"))
        flat.setdefault("city", full.get("user_city"))
        flat.setdefault("district", full.get("user_district"))
        flat.setdefault("ward", full.get("user_ward"))
    names = {"name": "name", "phone": "phone", "address": "address", "city": "city", "district": "district",
             "ward": "ward", "user_dob": "dob", "dob": "dob", "gender": "gender"}  # fmt: skip
    out: dict[str, str] = {}
    for key, target in names.items():
        value = flat.get(key)
        if value not in (None, "") and not isinstance(value, (dict, list)):
            out.setdefault(target, normalize(str(value)))
    return out


def _parse_variants(text: str) -> list[tuple[str, str]]:
    """Parse ``ZALO_OA_SIGNATURE_VARIANTS`` (``app_id:oa_secret,oa_id:oa_secret``).

    Raises:
        ChannelConfigError: An item is not ``<id>:<secret>``.
    """
    variants: list[tuple[str, str]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        id_term, _, secret_term = item.partition(":")
        id_term, secret_term = id_term.strip(), (secret_term.strip() or "oa_secret")
        if id_term not in _ID_TERMS or secret_term not in _SECRET_TERMS:
            raise ChannelConfigError(
                f"ZALO_OA_SIGNATURE_VARIANTS item {item!r} is not <app_id|oa_id>:<oa_secret|app_secret>"
            )
        variants.append((id_term, secret_term))
    return variants
