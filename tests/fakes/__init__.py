"""Fake provider servers for the channel adapter tests (no live provider calls in tests)."""

from tests.fakes.messenger import FakeMessenger
from tests.fakes.server import Delay, FakeServer, Recorded, Reply
from tests.fakes.telegram import FakeTelegram
from tests.fakes.zalo_bot import FakeZaloBot
from tests.fakes.zalo_oa import FakeZaloOA

__all__ = ["Delay", "FakeMessenger", "FakeServer", "FakeTelegram", "FakeZaloBot", "FakeZaloOA", "Recorded", "Reply"]
