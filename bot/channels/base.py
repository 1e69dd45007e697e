"""The channel adapter interface and the pieces every adapter shares.

An adapter turns one provider's webhook deliveries into :class:`InboundEvent` values and sends the engine's
``Outbound(text, choices)`` messages through that provider's HTTP API. It knows nothing about the database, the
engine state or the queue: the webhook route calls :meth:`ChannelAdapter.verify` then
:meth:`ChannelAdapter.parse`, the outbox worker calls :meth:`ChannelAdapter.send` and acts on the
:class:`SendResult` flags (``retryable`` → back off and retry, ``unreachable`` → stop messaging this person,
neither → dead-letter and alert).

Rules every adapter follows, and why:

* signatures are computed over the **raw** request bytes, never re-serialised JSON (Zalo OA reads the
  ``timestamp`` term from the decoded body but hashes the raw bytes), and compared with
  :func:`hmac.compare_digest` on bytes (a str compare raises ``TypeError`` on non-ASCII input, which an attacker
  controls);
* every HTTP call has a timeout (a hung provider must not wedge a worker);
* bot tokens travel in URL paths (Telegram, Zalo Bot) and access tokens in headers or query strings, so
  anything that ends up in ``SendResult.error_message`` or a log line goes through :meth:`ChannelAdapter.redact`.
"""

from __future__ import annotations

import abc
import datetime as dt
import email.utils
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol, runtime_checkable

import requests

from bot.channels.text import normalize, numbered_list, split_text

__all__ = [
    "EVENT_KINDS",
    "Capabilities",
    "ChannelAdapter",
    "ChannelConfigError",
    "ChoiceLike",
    "EventKind",
    "InboundEvent",
    "OutboundLike",
    "ParseError",
    "SendResult",
    "SignatureError",
    "StaleEventError",
    "as_outbound",
    "config_float",
    "config_value",
    "header",
    "http_timeout",
    "utc_from_ms",
]

log = logging.getLogger(__name__)

EventKind = Literal["text", "payload", "follow", "unfollow", "user_info", "media", "sticker", "unsupported"]

#: Kinds an :class:`InboundEvent` may have.
EVENT_KINDS: Final = frozenset(
    {"text", "payload", "follow", "unfollow", "user_info", "media", "sticker", "unsupported"}
)

#: (connect, read) seconds. Providers answer sends in well under a second; 10 s of read time covers a slow
#: day without letting a dead connection hold a worker for the OS default (minutes).
DEFAULT_TIMEOUT: Final = (5.0, 10.0)


class SignatureError(Exception):
    """The delivery is not provably from the provider: answer 401/403 and do nothing else."""


class StaleEventError(SignatureError):
    """The signature is valid but the event is older than the replay window.

    A subclass so the edge may treat it like any forgery (401) or, because the sender is authentic, answer 200
    and drop it: a provider that keeps getting errors for a late retry eventually disables the webhook.
    """


class ParseError(ValueError):
    """The (authentic) body is not JSON or not the shape the provider documents: answer 400."""


class ChannelConfigError(ValueError):
    """A channel is half-configured (some of its variables set, others missing) or a value is invalid."""


@runtime_checkable
class ChoiceLike(Protocol):
    """What an adapter reads from a choice: the engine's ``Choice(label, payload)`` fits."""

    @property
    def label(self) -> str:
        """Text shown on the button."""
        ...

    @property
    def payload(self) -> str:
        """Value sent back when the button is tapped."""
        ...


@runtime_checkable
class OutboundLike(Protocol):
    """What an adapter reads from a message: the engine's ``Outbound(text, choices)`` fits.

    A Protocol rather than an import so the adapters do not depend on the engine's module layout.
    """

    @property
    def text(self) -> str:
        """The message text."""
        ...

    @property
    def choices(self) -> Sequence[Any]:
        """The buttons (objects with ``label`` and ``payload``)."""
        ...


@dataclass(frozen=True, slots=True)
class _Choice:
    """A choice rebuilt from the outbox's JSON form."""

    label: str
    payload: str


@dataclass(frozen=True, slots=True)
class _Outbound:
    """A message rebuilt from the outbox's JSON form (``{"text", "choices": [{"label", "payload"}]}``)."""

    text: str
    choices: Sequence[_Choice] = ()


def as_outbound(message: OutboundLike | Mapping[str, Any]) -> OutboundLike:
    """Accept an ``Outbound`` or the JSON dict the outbox stores (``Outbound.to_dict()``).

    Raises:
        TypeError: ``message`` is neither.
    """
    if isinstance(message, Mapping):
        choices = tuple(_Choice(str(c["label"]), str(c["payload"])) for c in message.get("choices") or ())
        return _Outbound(str(message.get("text") or ""), choices)
    if isinstance(message, OutboundLike):
        return message
    raise TypeError(f"not an outbound message: {type(message).__name__}")


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One thing a user did on a channel, in a channel-neutral shape.

    Attributes:
        channel: Adapter name (``zalo_oa``, ``zalo_bot``, ``telegram``, ``messenger``).
        message_id: The provider's unique id of this delivery, the de-duplication key (at most ~128 chars).
            Synthesised as ``"<event>:<user>:<timestamp>"`` where the provider gives none (Zalo follow events).
        user_ref: The provider's id of the person (or private chat) to reply to.
        kind: ``text`` | ``payload`` (a button tap) | ``follow`` | ``unfollow`` | ``user_info`` | ``media`` |
            ``sticker`` | ``unsupported``.
        text: What the user typed (or a caption / button title), NFC-normalised; None when there is none.
        payload: The tapped button's payload; None unless ``kind == "payload"``.
        timestamp: When the provider says it happened (UTC, aware); receive time when it gives none.
        raw: The provider's event object, for logging and for fields not mapped here.
        info: ``user_info`` events only: the submitted fields, normalised (name, phone, address, city, district,
            ward, dob, gender); empty otherwise.
    """

    channel: str
    message_id: str
    user_ref: str
    kind: EventKind
    text: str | None
    payload: str | None
    timestamp: dt.datetime
    raw: dict[str, Any]
    info: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject a kind outside :data:`EVENT_KINDS` (an adapter bug) at once."""
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")

    def to_inbound(self) -> Any:
        """Return the engine's ``Inbound(text, payload, kind)`` for this event.

        ``user_info`` is not an engine kind (contract section 5) and becomes ``unsupported``; the submitted
        fields stay available in :attr:`info` for whoever wants them. Imported lazily so the adapters import
        without the engine.
        """
        from bot.conversation.messages import Inbound

        kind = "unsupported" if self.kind == "user_info" else self.kind
        return Inbound(text=self.text, payload=self.payload, kind=kind)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one :meth:`ChannelAdapter.send` (or other API call).

    Attributes:
        ok: Every part was accepted by the provider.
        provider_message_id: The provider's id of the last part sent.
        retryable: A temporary failure (network, timeout, 429, 5xx, rate or quota limit): try again later.
        unreachable: The provider will not deliver to this person now (window closed, blocked, not a
            follower, gone): do not retry, mark the person unreachable.
        error_code: The provider's error code (as text), or ``timeout`` / ``network`` / ``http_<status>``.
        error_message: Human-readable, with secrets redacted.
        retry_after: Seconds the provider asked us to wait, when it said.
        parts_sent: How many parts (long texts are split) were accepted before the failure. The worker passes
            it back as ``skip_parts`` when it retries, so the parts already delivered are not sent twice.
    """

    ok: bool
    provider_message_id: str | None = None
    retryable: bool = False
    unreachable: bool = False
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    parts_sent: int = 0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can render.

    Attributes:
        text_limit: Longest text of one provider message.
        max_buttons: Most buttons on one message (0 when there are none).
        supports_buttons: False when choices are rendered as a numbered list in the text.
        button_title_limit: Longest button label (longer ones are shortened with an ellipsis).
        payload_limit: Longest button payload, in the provider's unit (bytes for Telegram).
    """

    text_limit: int
    max_buttons: int
    supports_buttons: bool
    button_title_limit: int | None = None
    payload_limit: int | None = None


def header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """Return header ``name`` from ``headers`` ignoring case (werkzeug ``Headers`` or a plain dict)."""
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        lname = name.lower()
        for key, val in headers.items():
            if isinstance(key, str) and key.lower() == lname:
                value = val
                break
    return None if value is None else str(value)


def config_value(config: Mapping[str, Any], name: str) -> str | None:
    """Return setting ``name`` as a stripped string, None when unset or blank.

    Values may come from ``os.environ`` (strings) or from Flask's ``from_prefixed_env``, which JSON-parses them:
    a numeric Zalo app id arrives as an int, so everything is coerced back to text.
    """
    value = config.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def config_float(config: Mapping[str, Any], name: str, default: float) -> float:
    """Return setting ``name`` as a float (``default`` when unset).

    Raises:
        ChannelConfigError: The value is not a number.
    """
    value = config_value(config, name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ChannelConfigError(f"{name} must be a number, got {value!r}") from None


def http_timeout(config: Mapping[str, Any]) -> tuple[float, float]:
    """(connect, read) timeout from ``CHANNEL_HTTP_TIMEOUT_SECONDS`` (the read timeout; connect is at most 5 s).

    Raises:
        ChannelConfigError: Not a positive number.
    """
    read = config_float(config, "CHANNEL_HTTP_TIMEOUT_SECONDS", DEFAULT_TIMEOUT[1])
    if read <= 0:
        raise ChannelConfigError("CHANNEL_HTTP_TIMEOUT_SECONDS must be positive")
    return (min(DEFAULT_TIMEOUT[0], read), read)


def utc_from_ms(value: Any, fallback: dt.datetime | None = None) -> dt.datetime:
    """Convert an epoch-milliseconds value (int or numeric string) to an aware UTC datetime.

    Zalo sends ``timestamp`` as a string of milliseconds; converting through ``int`` (never float) keeps it exact.
    """
    try:
        return dt.datetime.fromtimestamp(int(str(value)) / 1000, tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback or dt.datetime.now(dt.UTC)


def loads(raw_body: bytes) -> Any:
    """Decode a JSON body.

    Raises:
        ParseError: The body is not UTF-8 JSON.
    """
    try:
        return json.loads(raw_body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"body is not JSON: {exc}") from None


def secrets_equal(got: str | None, want: str) -> bool:
    """Constant-time comparison of two secrets, as UTF-8 bytes (``compare_digest`` rejects non-ASCII str)."""
    if got is None:
        return False
    return hmac.compare_digest(got.encode("utf-8"), want.encode("utf-8"))


def check_secret_header(headers: Mapping[str, str] | Any, name: str, expected: str) -> None:
    """Check a shared-secret header (Telegram, Zalo Bot) in constant time; raise SignatureError if missing or wrong."""
    got = header(headers, name)
    if got is None:
        raise SignatureError(f"missing {name}")
    if not secrets_equal(got, expected):
        raise SignatureError(f"wrong {name}")


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Parse an HTTP ``Retry-After`` header: delay seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A completed HTTP exchange, or the failure that prevented one (``response is None``)."""

    response: requests.Response | None
    body: Any = None
    failure: SendResult | None = None


class ChannelAdapter(abc.ABC):
    """Base of every channel adapter.

    Subclasses set :attr:`name`, :attr:`capabilities` and :attr:`interaction_window`, and implement
    :meth:`verify`, :meth:`parse` and :meth:`_send_part`. :meth:`send` renders and splits an ``Outbound``
    (the same way for every channel) and sends the parts in order.
    """

    #: Adapter name, also the ``channel`` of its events and of the store's rows.
    name: str = ""
    capabilities: Capabilities
    #: How long after the user's last message the channel lets us reply; None when unlimited.
    interaction_window: dt.timedelta | None = None

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        """Set up the HTTP session, timeout and clock shared by all adapters.

        Args:
            session: HTTP session (connection pooling); a new one when None.
            timeout: ``requests`` timeout, seconds or (connect, read). Never None: a hung provider would block
                the worker forever.
            clock: Returns the current aware UTC time; injectable for replay-window tests.
        """
        self.session = session or requests.Session()
        self.timeout = timeout
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.UTC))
        self._secrets: list[str] = []

    # -- inbound -----------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def verify(self, headers: Mapping[str, str], raw_body: bytes, query: Mapping[str, str] | None = None) -> None:
        """Check that a POST delivery comes from the provider.

        Args:
            headers: Request headers (any case).
            raw_body: The exact bytes received (``request.get_data(cache=True)``), never re-serialised JSON.
            query: Query-string arguments.

        Raises:
            SignatureError: Missing, wrong or stale proof; the edge answers 401/403.
        """

    @abc.abstractmethod
    def parse(self, raw_body: bytes, headers: Mapping[str, str] | None = None) -> list[InboundEvent]:
        """Turn a verified delivery into events; ``[]`` for deliveries the bot ignores (receipts, echoes).

        Raises:
            ParseError: The body is not JSON or not a JSON object.
        """

    def acknowledge(self, event: InboundEvent) -> SendResult | None:
        """Tell the provider an event was handled, where it needs that (Telegram button taps); else None."""
        return None

    # -- outbound ----------------------------------------------------------------------------------------------

    def within_window(self, last_user_interaction: dt.datetime | None, now: dt.datetime | None = None) -> bool:
        """Whether the channel still lets us message someone whose last interaction was at the given time.

        Args:
            last_user_interaction: When the user last messaged, followed or tapped (aware UTC); None = never.
            now: Current time (defaults to the adapter's clock).
        """
        if self.interaction_window is None:
            return True
        if last_user_interaction is None:
            return False
        now = now or self.clock()
        return now - last_user_interaction < self.interaction_window

    def render(self, message: OutboundLike | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the provider request bodies (without recipient) that :meth:`send` would post, in order.

        Texts are NFC-normalised, then split under :attr:`Capabilities.text_limit`; buttons go on the last part
        so they sit under the complete question. When the choices cannot be buttons here (too many, a payload
        too long, or a channel without buttons) they are appended to the text as a numbered list, which the
        engine accepts as typed answers. A blank message renders to ``[]``.
        """
        message = as_outbound(message)
        text = normalize(message.text)
        choices = [_Choice(normalize(str(c.label)), str(c.payload)) for c in message.choices]
        as_buttons = bool(choices) and self._fits_buttons(choices)
        if choices and not as_buttons:
            text = (
                f"{text}\n\n{numbered_list([c.label for c in choices])}"
                if text
                else numbered_list([c.label for c in choices])
            )
        parts = split_text(text, self.capabilities.text_limit, measure=self.measure)
        if not parts:
            return []  # nothing to say; every provider rejects an empty text
        bodies = [self._render_part(part, []) for part in parts[:-1]]
        bodies.append(self._render_part(parts[-1], choices if as_buttons else []))
        return bodies

    def send(self, user_ref: str, message: OutboundLike | Mapping[str, Any], *, skip_parts: int = 0) -> SendResult:
        """Send one engine message to ``user_ref``: render, split, post each part in order.

        Args:
            user_ref: The provider's user / chat id (``InboundEvent.user_ref``).
            message: An ``Outbound`` or its ``to_dict()`` form.
            skip_parts: Parts already delivered by an earlier attempt (``SendResult.parts_sent``).

        Returns:
            The result of the last call made; ``parts_sent`` counts parts accepted so far, including skipped ones.
        """
        bodies = self.render(message)
        if not bodies:
            # An engine bug, not a delivery problem: dead-letter it rather than let the provider refuse it.
            return self._failure("empty_message", "the message has no text and no choices")
        sent = min(skip_parts, len(bodies))
        result = SendResult(ok=True, parts_sent=sent)
        for body in bodies[sent:]:
            part = self._send_part(user_ref, body)
            if not part.ok:
                return _with_parts(part, sent)
            sent += 1
            result = _with_parts(part, sent)
        return result

    def measure(self, text: str) -> int:
        """Length of ``text`` in the provider's unit (characters unless a subclass says otherwise)."""
        return len(text)

    def _fits_buttons(self, choices: Sequence[ChoiceLike]) -> bool:
        """Whether ``choices`` can be rendered as this channel's buttons."""
        caps = self.capabilities
        if not caps.supports_buttons or len(choices) > caps.max_buttons:
            return False
        return all(self._payload_fits(c.payload) for c in choices)

    def _payload_fits(self, payload: str) -> bool:
        """Whether one payload fits the channel's payload limit."""
        limit = self.capabilities.payload_limit
        return limit is None or 0 < len(payload) <= limit

    @abc.abstractmethod
    def _render_part(self, text: str, choices: Sequence[ChoiceLike]) -> dict[str, Any]:
        """Return one request body (without recipient) for ``text`` with ``choices`` as buttons."""

    @abc.abstractmethod
    def _send_part(self, user_ref: str, body: dict[str, Any]) -> SendResult:
        """Post one rendered part to ``user_ref``."""

    # -- HTTP helpers ------------------------------------------------------------------------------------------

    def _register_secret(self, *values: str | None) -> None:
        """Remember values that must never appear in error messages or logs."""
        self._secrets.extend(v for v in values if v and len(v) >= 4)

    def redact(self, text: str) -> str:
        """Replace every registered secret in ``text`` with ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _http(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """Make one HTTP call; map transport failures to a retryable :class:`SendResult`.

        The body is decoded as JSON when possible (``body`` stays None otherwise); HTTP status handling is left
        to the caller because each provider signals errors differently (Zalo: HTTP 200 with ``error != 0``).
        """
        try:
            response = self.session.request(
                method, url, json=json_body, data=data, headers=dict(headers or {}), params=params, timeout=self.timeout
            )
        except requests.Timeout as exc:
            return HttpReply(None, failure=self._failure("timeout", f"timed out: {exc}", retryable=True))
        except requests.RequestException as exc:
            return HttpReply(None, failure=self._failure("network", f"{type(exc).__name__}: {exc}", retryable=True))
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        return HttpReply(response, body)

    def _failure(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        unreachable: bool = False,
        retry_after: float | None = None,
    ) -> SendResult:
        """Build a failed :class:`SendResult` with a redacted message, and log it (without secrets)."""
        message = self.redact(message)
        log.warning(
            "%s send failed: code=%s retryable=%s unreachable=%s: %s", self.name, code, retryable, unreachable, message
        )
        return SendResult(
            ok=False,
            retryable=retryable,
            unreachable=unreachable,
            error_code=code,
            error_message=message[:500],
            retry_after=retry_after,
        )

    def _bot_api_call(
        self, url: str, payload: dict[str, Any], provider: str
    ) -> tuple[SendResult | None, requests.Response | None, Any]:
        """POST a Bot-API-style method (Telegram, Zalo Bot) and settle what the ``{ok, result}`` envelope settles.

        Returns ``(result, response, body)``: ``result`` is set for a transport failure, a success (with the
        ``message_id`` of ``result``) or a body that is not an object; otherwise it is None and the caller
        classifies the provider's ``error_code`` envelope in ``body``.
        """
        reply = self._http("POST", url, json_body=payload)
        if reply.failure is not None:
            return reply.failure, None, None
        response, body = reply.response, reply.body
        assert response is not None
        if isinstance(body, dict) and body.get("ok") is True:
            result = body.get("result")
            message_id = result.get("message_id") if isinstance(result, dict) else None
            sent = SendResult(ok=True, provider_message_id=None if message_id is None else str(message_id))
            return sent, response, body
        if not isinstance(body, dict):
            failure = self._http_status_failure(response, body, "", f"HTTP {response.status_code} from {provider}")
            return failure, response, body
        return None, response, body

    def _http_status_failure(self, response: requests.Response, body: Any, code: str, message: str) -> SendResult:
        """Classify a non-2xx status nobody handled more precisely: 429/5xx retryable, other 4xx final."""
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
        retryable = status == 429 or status >= 500 or status == 408
        return self._failure(
            code or f"http_{status}", message or f"HTTP {status}", retryable=retryable, retry_after=retry_after
        )


def _with_parts(result: SendResult, parts: int) -> SendResult:
    """Return ``result`` with ``parts_sent`` set."""
    return replace(result, parts_sent=parts)


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty dict (provider bodies are parsed defensively)."""
    return value if isinstance(value, dict) else {}


def first(values: Iterable[Any]) -> Any:
    """Return the first value that is not None or empty, else None."""
    for value in values:
        if value not in (None, ""):
            return value
    return None
