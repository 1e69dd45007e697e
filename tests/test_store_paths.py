"""The fast ways of storing a chat message write exactly what the plain transaction writes.

:func:`bot.pipeline.process_inbound` computes each step ahead of any lock and, on PostgreSQL, stores a step
that only records answers or a consent, or the household's assessment, in one statement (``repo.store_step``);
with ``precompute=False`` every message takes the plain path (lock, read, step, write, commit). The same whole
assessment, with a correction, a redelivered message and a restart, is run both ways for two people at the same
instants, and every row either way must be the same apart from ids, down to what the assessment adds to the
anonymous counters; so must a shared assessment (queued for review), with and without a hamlet. Runs on SQLite
and, with ``TEST_DATABASE_URL``, on PostgreSQL (where the one-statement path is taken).
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
    AggregateCommuneDeprivationMonthly,
    AggregateCommuneMonthly,
    AggregateDaily,
    AggregateDeprivationMonthly,
    AggregateMonthly,
    Answer,
    Assessment,
    Consent,
    Conversation,
    Identity,
    InboundMessage,
    OutboundMessage,
    Review,
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
    ("say", "đúng", "m19"),  # the result's delivery again: the same result, from the decision record
    ("say", "bắt đầu", "m20"),
)

_HOUSEHOLD: tuple[tuple[str, str, str | None], ...] = tuple(
    ("say", value, f"s{i}")
    for i, value in enumerate(
        ("4", "0", "0", "2 triệu", "không có", "bán kiên cố", "45", "giếng khoan", "tự hoại", "1,4,6", "được thu gom")
    )
)

#: Shared with the commune, hamlet skipped: the record keeps the head's name and phone and is queued for review.
SHARE_SCRIPT: tuple[tuple[str, str, str | None], ...] = (
    ("follow", "", "s-a"),
    ("tap", "Chia sẻ", "s-b"),
    ("say", "thuong phuoc 1", "s-c"),
    ("tap", "Đúng", "s-d"),
    ("say", "bỏ qua", "s-e"),
    ("say", "Nguyễn Văn An", "s-f"),
    ("say", "0912345678", "s-g"),
    *_HOUSEHOLD,
    ("say", "đúng", "s-z"),
)

#: The same with a hamlet, which is matched against the commune's list (in a transaction).
HAMLET_SCRIPT = tuple(("say", "Ấp Phú Lợi", m) if m == "s-e" else (kind, value, m) for kind, value, m in SHARE_SCRIPT)

#: The tables an assessment adds to.
COUNTERS = (
    AggregateDaily,
    AggregateMonthly,
    AggregateCommuneMonthly,
    AggregateDeprivationMonthly,
    AggregateCommuneDeprivationMonthly,
)


def _converse(
    store: Store,
    user: str,
    *,
    precompute: bool = True,
    steps: int | None = None,
    script: tuple[tuple[str, str, str | None], ...] = SCRIPT,
) -> list[PipelineResult]:
    """Send the first ``steps`` messages of ``script`` as ``user``, one second apart."""
    engine = get_engine(CONFIG.expiry)
    results: list[PipelineResult] = []
    for i, (kind, value, message_id) in enumerate(script[:steps]):
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
        assessment_ids = list(
            session.execute(select(Assessment.id).where(Assessment.identity_id == identity.id).order_by(Assessment.id))
            .scalars()
        )

        def reply(document: dict[str, Any] | None) -> dict[str, Any] | None:
            """The reply recorded, naming a decision record by its place among the person's."""
            if document and "assessment_id" in document:
                return {**document, "assessment_id": assessment_ids.index(document["assessment_id"])}
            return document

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
                (m.message_id, m.received_at, m.payload, m.processed_at, reply(m.reply))
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
            "assessments": [
                (
                    ids.index(a.conversation_id),
                    {
                        c.key: getattr(a, c.key)
                        for c in Assessment.__table__.columns
                        if c.key not in ("id", "identity_id", "conversation_id")
                    },
                    [(r.status, r.queued_at) for r in session.execute(select(Review).where(Review.assessment_id == a.id)).scalars()],
                )
                for a in session.execute(
                    select(Assessment).where(Assessment.identity_id == identity.id).order_by(Assessment.id)
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


def _counters(store: Store) -> dict[str, dict[tuple[Any, ...], int]]:
    """Every anonymous counter, by table and key."""
    with store.sessions() as session:
        return {
            model.__tablename__: {
                tuple(getattr(row, c.key) for c in model.__table__.columns if c.key not in ("id", "count")): row.count
                for row in session.execute(select(model)).scalars()
            }
            for model in COUNTERS
        }


def _added(before: dict[str, dict[tuple[Any, ...], int]], after: dict[str, dict[tuple[Any, ...], int]]) -> dict[str, Any]:
    return {
        table: {key: n - before[table].get(key, 0) for key, n in after[table].items() if n != before[table].get(key, 0)}
        for table in after
    }


@pytest.mark.parametrize(
    ("script", "assessed_in_one_statement"),
    [(SCRIPT, True), (SHARE_SCRIPT, True), (HAMLET_SCRIPT, False)],
    ids=["quick check with a correction, a redelivery and a restart", "shared", "shared with a hamlet"],
)
def test_a_step_stored_ahead_or_in_one_statement_writes_what_the_plain_transaction_writes(
    store: Store,
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    script: tuple[tuple[str, str, str | None], ...],
    assessed_in_one_statement: bool,
) -> None:
    one_statement: list[str] = []  # per call: what it stored
    original = repo.store_step

    def spy(*args: Any, **kwargs: Any) -> int | None:
        first, final = kwargs["conversation"] is None, kwargs.get("assessment") is not None
        one_statement.append("first" if first else "assessment" if final else "step")
        return original(*args, **kwargs)

    monkeypatch.setattr(repo, "store_step", spy)
    with app.app_context():
        before = _counters(store)
        plain = _converse(store, "plain", precompute=False, script=script)
        middle = _counters(store)
        fast = _converse(store, "fast", precompute=True, script=script)
        after = _counters(store)
    assert [(r.messages, r.question_id, r.done, r.assessment, r.duplicate) for r in fast] == [
        (r.messages, r.question_id, r.done, r.assessment, r.duplicate) for r in plain
    ]
    expected, got = _rows(store, "plain"), _rows(store, "fast")
    for table in expected:
        assert got[table] == expected[table], table
    assert [seq for seq, *_ in got["outbox"]] == list(range(1, got["identity"][0] + 1))  # gap-free, in order
    assert len(got["assessments"]) == 1 and _added(before, middle) == _added(middle, after) != {}
    shared = script is not SCRIPT
    assert got["assessments"][0][1]["shared"] is shared and len(got["assessments"][0][2]) == shared  # review queued
    if script is SCRIPT:
        assert plain[5].duplicate and plain[-3].done and plain[-1].question_id == "consent"  # as the script says
        assert plain[-2].duplicate and plain[-2].assessment == plain[-3].assessment is not None
    # PostgreSQL stored most messages in one statement, the first one and the assessment too, unless it has a
    # hamlet to match; SQLite never takes that path.
    postgresql = store.dialect == "postgresql"
    assert (len(one_statement) > len(script) // 2) == postgresql
    assert (one_statement[:1] == ["first"]) == postgresql
    assert ("assessment" in one_statement) == (postgresql and assessed_in_one_statement)


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
