"""Concurrent messages from one person: none lost, none processed twice, order kept.

Each thread is one request: its own session, one transaction, committed by
:func:`bot.pipeline.process_inbound`. The fake engine sleeps inside ``step`` so
that without the per-identity lock the two transactions would overlap and the
second state write would silently drop the first answer (a lost update).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.pipeline import PipelineConfig, PipelineResult, process_inbound
from bot.store.db import Store
from bot.store.models import (
    Answer,
    Conversation,
    Identity,
    InboundMessage,
    OutboundMessage,
)
from bot.store.testing import FakeEngine, FakeInbound

pytestmark = pytest.mark.db

CONFIG = PipelineConfig(pseudonym_key="test-key")



def run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Start ``jobs`` on threads at the same instant; return results, re-raise errors."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = jobs[i]()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    if errors:
        raise errors[0]
    return results


def sender(
    store: Store, user: str, text: str, *, message_id: str | None = None, delay: float = 0.05
) -> Callable[[], PipelineResult]:
    def send() -> PipelineResult:
        with store.sessions() as session:
            return process_inbound(
                session,
                "zalo",
                user,
                message_id,
                FakeInbound(text=text),
                dt.datetime.now(dt.UTC),
                engine=FakeEngine(delay=delay),
                config=CONFIG,
            )

    return send


def test_two_simultaneous_messages_both_recorded_in_order(store: Store) -> None:
    # The very first two messages of a new person: also races identity creation.
    run_together([sender(store, "new-user", "4"), sender(store, "new-user", "1tr5")])
    with store.sessions() as session:
        assert session.execute(select(func.count()).select_from(Identity)).scalar_one() == 1
        answers = session.execute(select(Answer).order_by(Answer.id)).scalars().all()
        assert sorted(a.raw for a in answers if a.raw) == ["1tr5", "4"]
        state = session.execute(select(Conversation.state)).scalar_one()
        assert state is not None
        # The state saw both messages, in the order the answers were recorded.
        assert state["log"] == [a.raw for a in answers]
        # The first processed answered "size", the second "income".
        assert [a.question_id for a in answers] == ["size", "income"]
        assert state["answers"] == {"size": answers[0].raw, "income": answers[1].raw}


def test_burst_from_one_person_loses_nothing(store: Store) -> None:
    texts = [f"m{i}" for i in range(8)]
    run_together([sender(store, "burst", t, delay=0.01) for t in texts])
    with store.sessions() as session:
        state = session.execute(select(Conversation.state)).scalar_one()
        assert state is not None and sorted(state["log"]) == sorted(texts)
        seqs = session.execute(select(OutboundMessage.seq).order_by(OutboundMessage.seq)).scalars()
        assert list(seqs) == list(range(1, 9))  # gap-free, one reply per message


def test_simultaneous_redeliveries_are_processed_once(store: Store) -> None:
    results = run_together([sender(store, "retry-user", "4", message_id="evt-7") for _ in range(3)])
    assert sorted(r.duplicate for r in results) == [False, True, True]
    assert all(r.messages == results[0].messages for r in results)
    with store.sessions() as session:
        assert session.execute(select(func.count()).select_from(InboundMessage)).scalar_one() == 1
        assert session.execute(select(func.count()).select_from(Answer)).scalar_one() == 1


def test_different_people_do_not_wait_on_each_other_for_correctness(store: Store) -> None:
    users = [f"user-{i}" for i in range(6)]
    run_together([sender(store, u, "4", delay=0.01) for u in users])
    with store.sessions() as session:
        assert session.execute(select(func.count()).select_from(Identity)).scalar_one() == 6
        assert session.execute(select(func.count()).select_from(Conversation)).scalar_one() == 6
