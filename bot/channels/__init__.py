"""Chat channel adapters: Zalo OA, Zalo Bot, Telegram, Messenger.

Each adapter verifies and parses its provider's webhook deliveries into :class:`InboundEvent` values and sends
the engine's ``Outbound(text, choices)`` messages, reporting a :class:`SendResult` the outbox worker acts on.
No database, queue or Flask here: the webhook blueprint and the worker wire these in.

Typical use::

    adapters = enabled_channels(os.environ, persist_zalo_tokens=save_pair, load_zalo_tokens=load_pair)
    adapter = adapters["zalo_oa"]
    adapter.verify(request.headers, raw := request.get_data(cache=True), request.args)   # SignatureError → 401
    for event in adapter.parse(raw, request.headers):                                   # ParseError → 400
        ...                                          # dedupe on (event.channel, event.message_id), enqueue
    result = adapter.send(user_ref, outbound, skip_parts=row_parts_sent)                # in the worker
"""

from __future__ import annotations

from bot.channels.base import (
    Capabilities,
    ChannelAdapter,
    ChannelConfigError,
    InboundEvent,
    OutboundLike,
    ParseError,
    SendResult,
    SignatureError,
    StaleEventError,
)
from bot.channels.messenger import MessengerAdapter
from bot.channels.registry import CHANNEL_NAMES, enabled_channels
from bot.channels.telegram import CallbackCodec, TelegramAdapter
from bot.channels.zalo_bot import ZaloBotAdapter
from bot.channels.zalo_oa import ZaloOAAdapter
from bot.channels.zalo_tokens import (
    StaticTokenStore,
    TokenError,
    TokenPair,
    TokenPersistError,
    TokenRefreshError,
    TokenStore,
    ZaloOATokenStore,
)

__all__ = [
    "CHANNEL_NAMES",
    "CallbackCodec",
    "Capabilities",
    "ChannelAdapter",
    "ChannelConfigError",
    "InboundEvent",
    "MessengerAdapter",
    "OutboundLike",
    "ParseError",
    "SendResult",
    "SignatureError",
    "StaleEventError",
    "StaticTokenStore",
    "TelegramAdapter",
    "TokenError",
    "TokenPair",
    "TokenPersistError",
    "TokenRefreshError",
    "TokenStore",
    "ZaloBotAdapter",
    "ZaloOAAdapter",
    "ZaloOATokenStore",
    "enabled_channels",
]
