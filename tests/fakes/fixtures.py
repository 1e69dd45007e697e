"""pytest fixtures starting and stopping the fake providers; import the ones a test module needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.messenger import FakeMessenger
from tests.fakes.telegram import FakeTelegram
from tests.fakes.zalo_bot import FakeZaloBot
from tests.fakes.zalo_oa import FakeZaloOA

__all__ = ["fake_messenger", "fake_telegram", "fake_zalo_bot", "fake_zalo_oa"]


@pytest.fixture
def fake_zalo_oa() -> Iterator[FakeZaloOA]:
    """A running fake Zalo OA (Open API + OAuth) server."""
    with FakeZaloOA() as fake:
        yield fake


@pytest.fixture
def fake_zalo_bot() -> Iterator[FakeZaloBot]:
    """A running fake Zalo Bot API server."""
    with FakeZaloBot() as fake:
        yield fake


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    """A running fake Telegram Bot API server."""
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def fake_messenger() -> Iterator[FakeMessenger]:
    """A running fake Messenger Send API server."""
    with FakeMessenger() as fake:
        yield fake
