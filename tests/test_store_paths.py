"""The fast ways of storing a chat message write exactly what the plain transaction writes.

:func:`bot.pipeline.process_inbound` computes each step ahead of any lock and, on PostgreSQL, stores a step
that only records answers or a consent in one statement (``repo.store_answer_step``); with ``precompute=False``
every message takes the plain path (lock, read, step, write, commit). The same whole assessment, with a
correction, a redelivered message and a restart, is run both ways for two people at the same instants, and
every row either way must be the same apart from ids. Runs on SQLite and, with ``TEST_DATABASE_URL``, on
PostgreSQL (where the one-statement path is taken).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from bot.conversation import Inbound
from bot.pipeline import PipelineConfig, PipelineResult, get_engine, process_inbound
from bot.store import repository as repo
from bot.store.db import Store
from bot.store.models import (
    Answer,
    Consent,
    Conversation,
    Identity,
    InboundMessage,
    OutboundMessage,
)

pytestmark = pytest.mark.db

START = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
CONFIG = PipelineConfig(pseudonym_key="paths-key")

#: (kind, value, message id): a household in quick self mode, with a correction and a redelivery.
SCRIPT: tuple[tuple[str, str, str | None], ...] = (
    ("follow", "", "m0"),
    ("tap", "Chỉ xem thử", "m1"),
    ("say", "thuong phuoc 1", "m2"),
    ("tap", "Đúng", "m3"),
    ("say", "4", "m4"),
    ("say", "4", "m4"),  # the channel delivered it again: processed once
    ("tap", "Không có", "m5"),
    ("say", "0", "m6"),
    ("say", "1tr5", "m7"),  # read back: "Bạn nhập 1.500.000 đồng mỗi tháng, đúng không?"
    ("say", "quay lại", "m8"),
    ("say", "2 triệu", "m9"),
    ("tap", "Không có", "m10"),
    ("tap", "Bán kiên cố", None),  # a channel without delivery ids
    ("say", "45", "m12"),
    ("tap", "Giếng khoan", "m13"),
    ("tap", "Tự hoại", "m14"),
    ("say", "1,4,6", "m15"),
    ("tap", "Được thu gom", "m16"),
    ("say", "sửa câu 2", "m17"),
    ("say", "5", "m18"),
    ("tap", "Đúng", "m19"),
    ("say", "bắt đầu", "m20"),
)


def _converse(store: Store, user: str, *, precompute: bool = True, steps: int = len(SCRIPT)) -> list[PipelineResult]:
    """Send the first ``steps`` messages of :data:`SCRIPT` as ``user``, one second apart."""
    engine = get_engine(CONFIG.expiry)
    results: list[PipelineResult] = []
    for i, (kind, value, message_id) in enumerate(SCRIPT[:steps]):
        if kind == "follow":
            inbound = Inbound(kind="follow")
        elif kind == "say":
            inbound = Inbound(text=value, kind="text")
        else:
            buttons = [c for m in results[-1].messages for c in m["choices"]]
            inbound = Inbound(
                payload=next(c["payload"] for c in buttons if c["label"].startswith(value)), kind="payload"
            )
        with store.sessions() as session:
            results.append(
                process_inbound(
                    session,
                    "web",
                    user,
                    message_id,
                    inbound,
                    START + dt.timedelta(seconds=i),
                    engine=engine,
                    config=CONFIG,
                    synchronous=True,
                    store_address=False,
                    precompute=precompute,
                )
            )
    return results


def _rows(store: Store, user: str) -> dict[str, Any]:
    """Everything stored for ``user``, without ids."""
    with store.sessions() as session:
        identity = session.execute(
            select(Identity).where(Identity.user_hash == repo.pseudonymise(CONFIG.pseudonym_key, "web", user))
        ).scalar_one()
        conversations = (
            session.execute(
                select(Conversation).where(Conversation.identity_id == identity.id).order_by(Conversation.id)
            )
            .scalars()
            .all()
        )
        ids = [c.id for c in conversations]
        return {
            "identity": (identity.outbound_seq, identity.last_seen_at, identity.address),
            "conversations": [
                (c.state, c.status, c.version, c.questionnaire_version, c.created_at, c.updated_at)
                for c in conversations
            ],
            "answers": [
                (ids.index(a.conversation_id), a.question_id, a.value, a.raw, a.provenance, a.created_at)
                for a in session.execute(
                    select(Answer).where(Answer.conversation_id.in_(ids)).order_by(Answer.id)
                ).scalars()
            ],
            "consents": [
                (c.mode, c.text_version, c.given_at, c.withdrawn_at)
                for c in session.execute(
                    select(Consent).where(Consent.identity_id == identity.id).order_by(Consent.id)
                ).scalars()
            ],
            "inbound": [
                (m.message_id, m.received_at, m.payload, m.processed_at, m.reply)
                for m in session.execute(
                    select(InboundMessage).where(InboundMessage.identity_id == identity.id).order_by(InboundMessage.id)
                ).scalars()
            ],
            "outbox": [
                (o.seq, o.payload, o.status, o.attempts, o.next_attempt_at, o.created_at, o.sent_at, o.parts_sent)
                for o in session.execute(
                    select(OutboundMessage)
                    .where(OutboundMessage.identity_id == identity.id)
                    .order_by(OutboundMessage.seq)
                ).scalars()
            ],
            "replies_per_inbound": [
                len(session.execute(select(OutboundMessage.id).where(OutboundMessage.inbound_message_id == m)).all())
                for m in session.execute(
                    select(InboundMessage.id)
                    .where(InboundMessage.identity_id == identity.id)
                    .order_by(InboundMessage.id)
                ).scalars()
            ],
        }


def test_a_step_stored_ahead_or_in_one_statement_writes_what_the_plain_transaction_writes(
    store: Store, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_statement: list[int] = []
    original = repo.store_answer_step

    def spy(*args: Any, **kwargs: Any) -> int | None:
        one_statement.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(repo, "store_answer_step", spy)
    with app.app_context():
        plain = _converse(store, "plain", precompute=False)
        fast = _converse(store, "fast", precompute=True)
    assert [(r.messages, r.question_id, r.done, r.assessment, r.duplicate) for r in fast] == [
        (r.messages, r.question_id, r.done, r.assessment, r.duplicate) for r in plain
    ]
    assert plain[5].duplicate and plain[-2].done and plain[-1].question_id == "consent"  # as the script says
    expected, got = _rows(store, "plain"), _rows(store, "fast")
    for table in expected:
        assert got[table] == expected[table], table
    assert [seq for seq, *_ in got["outbox"]] == list(range(1, got["identity"][0] + 1))  # gap-free, in order
    # PostgreSQL stored most messages in one statement; SQLite never takes that path.
    assert (len(one_statement) > len(SCRIPT) // 2) == (store.dialect == "postgresql")


def test_a_step_whose_conversation_moved_on_is_stepped_again_from_the_new_state(
    store: Store, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two messages stepped from the same snapshot: the later one must not overwrite the earlier one's answer."""
    from bot import pipeline

    with app.app_context():
        engine = get_engine(CONFIG.expiry)
        _converse(store, "racer", steps=4)  # now at the household size question
        now = START + dt.timedelta(minutes=5)
        with store.sessions() as session, pipeline.outside_transaction(session):
            stale = pipeline.step_ahead(
                session, "web", "racer", "late", Inbound(text="6", kind="text"), now, engine=engine, config=CONFIG
            )
        assert stale is not None and stale.result.question_id == "children"
        with store.sessions() as session:  # meanwhile the person's other message got through first
            process_inbound(
                session, "web", "racer", "first", Inbound(text="5", kind="text"), now, engine=engine, config=CONFIG
            )
        monkeypatch.setattr(pipeline, "step_ahead", lambda *args, **kwargs: stale)
        with store.sessions() as session:
            late = process_inbound(
                session, "web", "racer", "late", Inbound(text="6", kind="text"), now, engine=engine, config=CONFIG
            )
    rows = _rows(store, "racer")
    sizes = [a[2] for a in rows["answers"] if a[1] == "household_size"]
    assert sizes == [5]  # "6" was taken as the answer to the next question (children), not a second size
    assert rows["conversations"][-1][0]["answers"]["household_size"]["value"] == 5
    assert late.question_id == "children"  # 6 children in a household of 5: asked again, with a hint
    assert rows["conversations"][-1][2] == 7  # version: 1 + follow, consent, commune ×2, size, then "6"
