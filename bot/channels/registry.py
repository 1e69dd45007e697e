"""Which channels are on: one adapter per channel whose settings are present.

A channel is **on** when any of its required variables is set, and then all of them must be (a half-configured
channel is far more likely a deployment mistake than a wish, so it fails start-up loudly with the missing names).
Variable names are listed in each adapter module's docstring; ``CHANNEL_HTTP_TIMEOUT_SECONDS`` applies to all.

``config`` may be ``os.environ``, ``app.config`` or a plain dict. Note that ``bot.config`` only copies
``TUSOAT_``-prefixed variables into ``app.config`` (``TUSOAT_ZALO_OA_APP_ID`` → ``ZALO_OA_APP_ID``): pass
``os.environ`` (or both merged) for the plain names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final

import requests

from bot.channels.base import ChannelAdapter, config_value
from bot.channels.messenger import MessengerAdapter
from bot.channels.telegram import TelegramAdapter
from bot.channels.zalo_bot import ZaloBotAdapter
from bot.channels.zalo_oa import ZaloOAAdapter
from bot.channels.zalo_tokens import TokenPair, TokenStore

__all__ = ["CHANNEL_NAMES", "enabled_channels"]

#: Every adapter, in the order they are listed.
CHANNEL_NAMES: Final = ("zalo_oa", "zalo_bot", "telegram", "messenger")


def _on(config: Mapping[str, Any], names: Iterable[str]) -> bool:
    """Whether any of ``names`` is set."""
    return any(config_value(config, n) for n in names)


def enabled_channels(
    config: Mapping[str, Any],
    *,
    session: requests.Session | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    zalo_tokens: TokenStore | None = None,
    persist_zalo_tokens: Callable[[TokenPair], None] | None = None,
    load_zalo_tokens: Callable[[], TokenPair | None] | None = None,
    zalo_token_lock: AbstractContextManager[Any] | None = None,
    known_payloads: Iterable[str] = (),
) -> dict[str, ChannelAdapter]:
    """Build the adapters of every configured channel.

    Args:
        config: Settings (environment-style names).
        session: Shared HTTP session; each adapter makes its own when None.
        clock: Current aware UTC time (tests).
        zalo_tokens: A ready Zalo OA token store (e.g. database-backed); built from the settings when None.
        persist_zalo_tokens: Saves rotated Zalo OA token pairs (for the built store). Needed in production.
        load_zalo_tokens: Reads the saved pair (for the built store).
        zalo_token_lock: Cross-process lock for Zalo OA refreshes (for the built store).
        known_payloads: Every button payload the questionnaire can send (seeds Telegram's callback codec so
            the webhook process can decode ids the worker process encoded).

    Returns:
        ``{name: adapter}`` for the channels that are on.

    Raises:
        ChannelConfigError: A channel is partly configured or a value is invalid.
    """
    common: dict[str, Any] = {}
    if session is not None:
        common["session"] = session
    if clock is not None:
        common["clock"] = clock
    adapters: dict[str, ChannelAdapter] = {}
    if _on(config, ZaloOAAdapter.REQUIRED) or zalo_tokens is not None:
        adapters["zalo_oa"] = ZaloOAAdapter.from_config(
            config,
            tokens=zalo_tokens,
            persist_tokens=persist_zalo_tokens,
            load_tokens=load_zalo_tokens,
            token_lock=zalo_token_lock,
            **common,
        )
    if _on(config, ZaloBotAdapter.REQUIRED):
        adapters["zalo_bot"] = ZaloBotAdapter.from_config(config, **common)
    if _on(config, TelegramAdapter.REQUIRED):
        adapters["telegram"] = TelegramAdapter.from_config(config, known_payloads=known_payloads, **common)
    if _on(config, MessengerAdapter.REQUIRED):
        adapters["messenger"] = MessengerAdapter.from_config(config, **common)
    return adapters
