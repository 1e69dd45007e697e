"""Access to the recorded webhook fixtures in ``tests/fixtures/channels/<channel>/``.

Each channel folder holds one file per delivery (the exact bytes a provider sends), ``expected.json`` (what
parsing each file must produce, plus the settings the fixtures were recorded with) and ``signatures.json``
(signature vectors computed with ``openssl``, independently of the adapters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.channels import InboundEvent

__all__ = ["FIXTURES", "assert_events", "delivery_files", "expected", "raw", "signatures"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "channels"
_META = {"expected.json", "signatures.json"}


def raw(channel: str, name: str) -> bytes:
    """The exact bytes of one recorded delivery."""
    return (FIXTURES / channel / name).read_bytes()


def expected(channel: str) -> dict[str, Any]:
    """The channel's ``expected.json``."""
    data: dict[str, Any] = json.loads((FIXTURES / channel / "expected.json").read_text("utf-8"))
    return data


def signatures(channel: str) -> dict[str, Any]:
    """The channel's ``signatures.json``."""
    data: dict[str, Any] = json.loads((FIXTURES / channel / "signatures.json").read_text("utf-8"))
    return data


def delivery_files(channel: str) -> list[str]:
    """Every recorded delivery of ``channel`` (file names)."""
    return sorted(p.name for p in (FIXTURES / channel).glob("*.json") if p.name not in _META)


def assert_events(channel: str, got: list[InboundEvent], want: list[dict[str, Any]]) -> None:
    """Compare parsed events with their expected fields (``timestamp_ms`` None = not checked)."""
    assert len(got) == len(want), f"{len(got)} events, expected {len(want)}: {got}"
    for event, spec in zip(got, want, strict=True):
        assert event.channel == channel
        assert event.kind == spec["kind"]
        assert event.message_id == spec["message_id"]
        assert event.user_ref == spec["user_ref"]
        assert event.text == spec["text"]
        assert event.payload == spec["payload"]
        if spec.get("timestamp_ms") is not None:
            assert int(event.timestamp.timestamp() * 1000) == spec["timestamp_ms"]
        assert event.timestamp.tzinfo is not None
        assert event.info == spec.get("info", {})
        assert isinstance(event.raw, dict) and event.raw
