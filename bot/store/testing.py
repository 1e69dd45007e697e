"""Helpers for tests and benchmarks that need a database of their own.

:func:`temporary_database` gives each test run an isolated, empty database:
a new SQLite file, or — when a PostgreSQL URL is given (``TEST_DATABASE_URL``)
— a new randomly named schema in that database, selected through the
connection's ``search_path`` and dropped afterwards, so parallel runs and
earlier crashed runs never collide.

:class:`FakeEngine` is a tiny engine with the contract of
``bot.conversation.Engine`` (docs/CONTRACTS.md §5), for testing the store and
the pipeline apart from the real questionnaire.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.store.db import make_engine

__all__ = ["TEST_DATABASE_ENV", "FakeEngine", "FakeInbound", "temporary_database"]

#: Environment variable naming the PostgreSQL database the tests may use.
TEST_DATABASE_ENV = "TEST_DATABASE_URL"


@contextlib.contextmanager
def temporary_database(directory: Path, base_url: str | None = None) -> Iterator[str]:
    """Yield the URL of a fresh, empty database; remove it afterwards.

    Args:
        directory: Where to put the SQLite file (e.g. pytest's ``tmp_path``).
        base_url: A PostgreSQL URL to create a schema in; default
            ``$TEST_DATABASE_URL``, and SQLite when that is unset too.

    Yields:
        A SQLAlchemy URL.
    """
    base_url = base_url if base_url is not None else os.environ.get(TEST_DATABASE_ENV)
    if not base_url or make_url(base_url).get_backend_name() == "sqlite":
        yield f"sqlite:///{directory / f'store-{uuid.uuid4().hex[:8]}.db'}"
        return

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in base_url else "?"
        # libpq's options: every connection of the app starts with this search_path.
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@dataclasses.dataclass(frozen=True)
class FakeInbound:
    """Stand-in for ``bot.conversation.Inbound`` (same fields)."""

    text: str | None = None
    payload: str | None = None
    kind: str = "text"


@dataclasses.dataclass(frozen=True)
class FakeChoice:
    """Stand-in for ``bot.conversation.Choice``."""

    label: str
    payload: str


@dataclasses.dataclass(frozen=True)
class FakeOutbound:
    """Stand-in for ``bot.conversation.Outbound``."""

    text: str
    choices: list[FakeChoice] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class FakeStep:
    """Stand-in for ``bot.conversation.StepResult``."""

    state: dict[str, Any]
    messages: list[FakeOutbound]
    events: list[dict[str, Any]]
    question_id: str | None
    done: bool
    assessment: dict[str, Any] | None


class FakeEngine:
    """A tiny deterministic engine with the contract of ``bot.conversation.Engine``.

    Two questions (``size`` then ``income``), then an assessment. Commands:
    ``"đồng ý"`` (consent to share), ``"xoá"`` (erase), ``"lại"`` (restart),
    ``"dừng"`` (pause). Every text is also appended to ``state["log"]`` so
    tests can check that no message was lost or reordered. ``delay`` makes
    each step slow, to widen race windows in concurrency tests.
    """

    questionnaire_version = "fake-1"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def step(self, state: dict[str, Any] | None, inbound: Any, now: Any) -> FakeStep:
        """Advance ``state`` by one inbound message."""
        if self.delay:
            time.sleep(self.delay)
        state = copy.deepcopy(state) if state else {"step": "size", "answers": {}, "log": []}
        if inbound.kind == "follow":  # opened the chat: say where we are, record nothing
            step = state["step"]
            message = _ask(step) if step != "done" else FakeOutbound("Đã xong.")
            return FakeStep(
                state, [message], [], None if step == "done" else step, step == "done", None
            )
        said = inbound.payload if inbound.payload is not None else (inbound.text or "")
        state["log"].append(said)
        events: list[dict[str, Any]] = []
        if said == "xoá":
            return FakeStep({}, [FakeOutbound("Đã xoá.")], [{"type": "erase"}], None, False, None)
        if said == "lại":
            fresh = {"step": "size", "answers": {}, "log": []}
            return FakeStep(fresh, [_ask("size")], [{"type": "restart"}], "size", False, None)
        if said == "dừng":
            return FakeStep(
                state, [FakeOutbound("Tạm dừng.")], [{"type": "pause"}], state["step"], False, None
            )
        if said == "đồng ý":
            events.append({"type": "consent", "mode": "share"})
            return FakeStep(state, [_ask(state["step"])], events, state["step"], False, None)
        step = state["step"]
        if step in ("size", "income"):
            state["answers"][step] = said
            events.append({"type": "answer", "question_id": step, "value": said, "raw": said})
            if step == "size":
                state["step"] = "income"
                return FakeStep(state, [_ask("income")], events, "income", False, None)
            state["step"] = "done"
            result = {
                "status": "poor",
                "standard": {"id": "2022-2025"},
                "area": "rural",
                "commune": {"code": "29971"},
                "deprivations": ["health_insurance"],
                "summary_vi": "KẾT QUẢ SƠ BỘ: hộ nghèo",
            }
            events.append({"type": "assessment", "input": dict(state["answers"]), "result": result})
            message = FakeOutbound("KẾT QUẢ SƠ BỘ\nHộ nghèo.")
            return FakeStep(state, [message], events, None, True, result)
        return FakeStep(state, [FakeOutbound("Đã xong.")], events, None, True, None)


def _ask(question_id: str) -> FakeOutbound:
    if question_id == "size":
        return FakeOutbound(
            "Hộ có mấy người?", [FakeChoice("1", "1"), FakeChoice("2", "2"), FakeChoice("3", "3")]
        )
    return FakeOutbound("Thu nhập mỗi tháng?")
