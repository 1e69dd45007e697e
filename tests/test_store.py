"""The store and the pipeline: models, pseudonyms, events, dedupe, erasure, outbox.

Runs on a fresh SQLite file, or on a fresh PostgreSQL schema when
``TEST_DATABASE_URL`` is set (see :func:`bot.store.testing.temporary_database`).
The conversation engine is :class:`bot.store.testing.FakeEngine`, so these
tests pin the store's behaviour whatever the questionnaire says.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bot.pipeline import PipelineConfig, PipelineResult, process_inbound
from bot.store import repository as repo
from bot.store.db import Store
from bot.store.models import (
    AggregateDaily,
    Answer,
    Assessment,
    Consent,
    ConsentMode,
    Conversation,
    ConversationStatus,
    Identity,
    InboundMessage,
    OutboundMessage,
    OutboundStatus,
)
from bot.store.testing import FakeEngine, FakeInbound

pytestmark = pytest.mark.db

NOW = dt.datetime(2026, 3, 1, 20, 30, tzinfo=dt.UTC)  # 03:30 on 2 March in Vietnam
CONFIG = PipelineConfig(pseudonym_key="test-key")



def send(
    store: Store,
    text: str | None = None,
    *,
    user: str = "u1",
    channel: str = "web",
    message_id: str | None = None,
    payload: str | None = None,
    now: dt.datetime = NOW,
    engine: Any = None,
    **options: Any,
) -> PipelineResult:
    """Process one message in its own session and transaction, like a request."""
    inbound = FakeInbound(text=text, payload=payload, kind="payload" if payload else "text")
    with store.sessions() as session:
        return process_inbound(
            session,
            channel,
            user,
            message_id,
            inbound,
            now,
            engine=engine or FakeEngine(),
            config=CONFIG,
            **options,
        )


def count(session: Session, model: type[Any], *where: Any) -> int:
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_pseudonym_is_keyed_and_per_channel() -> None:
    a = repo.pseudonymise("k1", "zalo", "123")
    assert len(a) == 64 and a == repo.pseudonymise(b"k1", "zalo", "123")
    assert a != repo.pseudonymise("k2", "zalo", "123")  # useless without the key
    assert a != repo.pseudonymise("k1", "web", "123")  # no cross-channel linking
    assert "8412345678901" not in repo.pseudonymise("k1", "zalo", "8412345678901")


def test_first_message_creates_identity_conversation_and_outbox(store: Store) -> None:
    result = send(store, "chào", user="zalo-user-42", channel="zalo", message_id="m1")
    assert result.question_id == "income" and not result.done and not result.duplicate
    with store.sessions() as session:
        identity = session.execute(select(Identity)).scalar_one()
        assert identity.user_hash == repo.pseudonymise("test-key", "zalo", "zalo-user-42")
        assert identity.address == "zalo-user-42"  # kept so the push channel can reply
        assert identity.created_at == NOW and identity.created_at.tzinfo is not None
        conversation = session.execute(select(Conversation)).scalar_one()
        assert conversation.status is ConversationStatus.ACTIVE
        assert conversation.questionnaire_version == "fake-1"
        assert conversation.state is not None and conversation.state["log"] == ["chào"]
        answer = session.execute(select(Answer)).scalar_one()
        assert (answer.question_id, answer.value, answer.provenance) == ("size", "chào", "self")
        outbox = session.execute(select(OutboundMessage)).scalars().all()
        assert [(o.seq, o.status, o.payload) for o in outbox] == [
            (1, OutboundStatus.PENDING, {"text": "Thu nhập mỗi tháng?", "choices": []})
        ]
        assert outbox[0].next_attempt_at == NOW  # due now for the channel worker


def test_synchronous_channel_records_replies_as_sent_and_keeps_no_address(store: Store) -> None:
    send(store, "2", store_address=False, synchronous=True)
    with store.sessions() as session:
        assert session.execute(select(Identity.address)).scalar_one() is None
        row = session.execute(select(OutboundMessage)).scalar_one()
        assert row.status is OutboundStatus.SENT and row.sent_at == NOW and row.attempts == 1


def test_whole_conversation_records_assessment_and_aggregate(store: Store) -> None:
    send(store, "đồng ý")
    send(store, "4")
    result = send(store, "1tr5")
    assert result.done and result.assessment is not None
    assert result.messages[0]["text"].startswith("KẾT QUẢ SƠ BỘ")
    with store.sessions() as session:
        record = session.execute(select(Assessment)).scalar_one()
        assert record.input == {"size": "4", "income": "1tr5"}
        assert (record.status, record.standard_id, record.area, record.commune_code) == (
            "poor",
            "2022-2025",
            "rural",
            "29971",
        )
        assert record.deprivations == ["health_insurance"]
        assert record.shared is True  # consented to share before finishing
        assert record.questionnaire_version == "fake-1"
        conversation = session.execute(select(Conversation)).scalar_one()
        assert record.conversation_id == conversation.id
        assert conversation.status is ConversationStatus.DONE
        aggregate = session.execute(select(AggregateDaily)).scalar_one()
        # Counted on the Vietnamese calendar day (UTC+7), not the UTC one.
        assert aggregate.date == dt.date(2026, 3, 2)
        assert (aggregate.commune_code, aggregate.status, aggregate.count) == ("29971", "poor", 1)
        seqs = session.execute(select(OutboundMessage.seq).order_by(OutboundMessage.id)).scalars()
        assert list(seqs) == [1, 2, 3]


def test_aggregate_counts_accumulate_across_people(store: Store) -> None:
    for user in ("a", "b", "c"):
        send(store, "4", user=user)
        send(store, "1tr", user=user)
    with store.sessions() as session:
        aggregate = session.execute(select(AggregateDaily)).scalar_one()
        assert aggregate.count == 3
        assert count(session, Assessment, Assessment.shared.is_(False)) == 3  # no consent given


def test_duplicate_delivery_is_processed_once_and_replays_the_reply(store: Store) -> None:
    first = send(store, "4", message_id="evt-1", channel="zalo")
    again = send(store, "4", message_id="evt-1", channel="zalo")
    assert again.duplicate and not first.duplicate
    assert again.messages == first.messages and again.question_id == first.question_id
    with store.sessions() as session:
        assert count(session, InboundMessage) == 1
        assert count(session, Answer) == 1
        assert count(session, OutboundMessage) == 1
        state = session.execute(select(Conversation.state)).scalar_one()
        assert state is not None and state["log"] == ["4"]


def test_same_message_id_on_another_channel_is_a_different_message(store: Store) -> None:
    send(store, "4", message_id="1", channel="zalo")
    result = send(store, "4", message_id="1", channel="web")
    assert not result.duplicate


def test_same_message_id_from_another_person_never_replays_their_reply(store: Store) -> None:
    # API clients choose their ids ("1", "2"...): they collide between people.
    mine = send(store, "4", user="alice", message_id="1")
    theirs = send(store, "7", user="bob", message_id="1")
    assert not theirs.duplicate and theirs.messages == mine.messages  # same question, own answer
    with store.sessions() as session:
        assert count(session, Answer) == 2
        assert sorted(session.execute(select(Answer.raw)).scalars()) == ["4", "7"]


def test_messages_without_id_are_never_deduplicated(store: Store) -> None:
    send(store, "4")
    send(store, "4")
    with store.sessions() as session:
        assert count(session, InboundMessage) == 2


def test_replayed_assessment_is_returned_again(store: Store) -> None:
    send(store, "4")
    first = send(store, "1tr", message_id="last")
    again = send(store, "1tr", message_id="last")
    assert again.duplicate and again.done and again.assessment == first.assessment
    with store.sessions() as session:
        assert count(session, Assessment) == 1


def test_erase_removes_personal_data_and_keeps_aggregates(store: Store) -> None:
    send(store, "đồng ý", user="zalo-99", channel="zalo", message_id="a")
    send(store, "4", user="zalo-99", channel="zalo", message_id="b")
    send(store, "1tr", user="zalo-99", channel="zalo", message_id="c")
    send(store, "lại", user="zalo-99", channel="zalo", message_id="d")
    send(store, "5", user="zalo-99", channel="zalo", message_id="e")
    result = send(store, "xoá", user="zalo-99", channel="zalo", message_id="f")
    assert result.messages == [{"text": "Đã xoá.", "choices": []}]

    with store.sessions() as session:
        identity = session.execute(select(Identity)).scalar_one()
        assert identity.address is None and identity.erased_at == NOW
        assert count(session, Answer) == 0
        assert count(session, Conversation) == 0  # the fake engine's post-erase state is empty
        assert count(session, Consent) == 0
        record = session.execute(select(Assessment)).scalar_one()
        assert record.input is None and record.result is None and record.deprivations is None
        assert record.identity_id is None and record.conversation_id is None
        assert record.erased_at == NOW
        # Not personal on its own, and already counted in the aggregate.
        assert (record.status, record.standard_id) == ("poor", "2022-2025")
        inbound = (
            session.execute(select(InboundMessage).order_by(InboundMessage.id)).scalars().all()
        )
        assert len(inbound) == 6 and all(m.payload is None for m in inbound)
        assert all(m.reply is None for m in inbound[:-1])
        # The erase message's own reply record is kept (it holds nothing personal)
        # so that a redelivery of it replays the confirmation.
        assert inbound[-1].reply == {"question_id": None, "done": False, "assessment": None}
        outbox = (
            session.execute(select(OutboundMessage).order_by(OutboundMessage.seq)).scalars().all()
        )
        # The erase confirmation itself is written after the erasure and still goes out.
        assert outbox[-1].payload == {"text": "Đã xoá.", "choices": []}
        assert outbox[-1].status is OutboundStatus.PENDING
        # Earlier undelivered replies lost their text, so they will never be sent.
        assert all(o.payload is None for o in outbox[:-1])
        assert all(o.status is OutboundStatus.FAILED for o in outbox[:-1])
        assert session.execute(select(AggregateDaily.count)).scalar_one() == 1

    # A replay of an erased message must not resurrect anything.
    replay = send(store, "4", user="zalo-99", channel="zalo", message_id="b")
    assert replay.duplicate and replay.messages == [] and replay.assessment is None

    # Writing again starts a new conversation (and the address is needed again).
    result = send(store, "3", user="zalo-99", channel="zalo", message_id="g")
    assert result.question_id == "income"
    with store.sessions() as session:
        assert session.execute(select(Identity.address)).scalar_one() == "zalo-99"
        assert count(session, Identity) == 1


def test_erase_touches_nobody_else(store: Store) -> None:
    send(store, "4", user="keep")
    send(store, "1tr", user="keep")
    send(store, "4", user="gone")
    send(store, "xoá", user="gone")
    with store.sessions() as session:
        assert count(session, Answer) == 2
        assert session.execute(select(Assessment.input)).scalar_one() is not None
        assert count(session, InboundMessage, InboundMessage.payload.is_not(None)) == 2


def test_restart_closes_the_conversation_and_starts_another(store: Store) -> None:
    send(store, "4")
    result = send(store, "lại")
    assert result.question_id == "size"
    with store.sessions() as session:
        rows = session.execute(select(Conversation).order_by(Conversation.id)).scalars().all()
        assert [c.status for c in rows] == [ConversationStatus.EXPIRED, ConversationStatus.ACTIVE]
        assert rows[1].state == {"step": "size", "answers": {}, "log": []}


def test_pause_marks_the_conversation_paused_until_the_next_message(store: Store) -> None:
    send(store, "4")
    send(store, "dừng")
    with store.sessions() as session:
        assert (
            session.execute(select(Conversation.status)).scalar_one() is ConversationStatus.PAUSED
        )
    send(store, "1tr")
    with store.sessions() as session:
        assert session.execute(select(Conversation.status)).scalar_one() is ConversationStatus.DONE


def test_idle_conversations_are_marked_expired_but_keep_their_state(store: Store) -> None:
    send(store, "4", user="idle")
    send(store, "4", user="finished")
    send(store, "1tr", user="finished")
    with store.sessions() as session:
        marked = repo.expire_idle_conversations(session, idle_since=NOW + dt.timedelta(days=7))
        session.commit()
        assert marked == 1  # a finished conversation is not "idle"
    # Coming back: the same conversation continues (the engine offers resume/restart).
    result = send(store, "1tr", user="idle", now=NOW + dt.timedelta(days=8))
    assert result.done
    with store.sessions() as session:
        statuses = session.execute(select(Conversation.status)).scalars().all()
        assert sorted(statuses) == [ConversationStatus.DONE, ConversationStatus.DONE]


def test_consent_replaces_the_previous_one(store: Store) -> None:
    with store.sessions() as session:
        identity = repo.lock_identity(session, "web", "h" * 64, now=NOW)
        repo.record_consent(session, identity, "anonymous", text_version="1", now=NOW)
        later = NOW + dt.timedelta(minutes=1)
        repo.record_consent(session, identity, "share", text_version="2", now=later)
        session.commit()
        rows = session.execute(select(Consent).order_by(Consent.id)).scalars().all()
        assert [(c.mode, c.withdrawn_at) for c in rows] == [("anonymous", later), ("share", None)]
        assert repo.active_consent_mode(session, identity) is ConsentMode.SHARE


def test_optimistic_version_check_rejects_a_stale_write(store: Store) -> None:
    # Two writers that both skipped the identity lock: the second must fail, not overwrite.
    send(store, "4")
    with store.sessions() as first, store.sessions() as second:
        theirs = second.execute(select(Conversation)).scalar_one()
        version = theirs.version
        # Ends the transaction (SQLite allows one writer) but keeps the loaded
        # object and its version: the sessions don't expire objects on commit.
        second.commit()
        mine = first.execute(select(Conversation)).scalar_one()
        mine.state = {"who": "first"}
        first.commit()
        theirs.state = {"who": "second"}
        with pytest.raises(StaleDataError):
            second.commit()
    with store.sessions() as session:
        conversation = session.execute(select(Conversation)).scalar_one()
        assert conversation.state == {"who": "first"} and conversation.version == version + 1


def test_saving_a_state_loaded_before_another_write_fails(store: Store) -> None:
    # The pipeline's own check: the UPDATE names the version it loaded.
    send(store, "4")
    with store.sessions() as session:
        identity = repo.lock_identity(
            session, "web", repo.pseudonymise("test-key", "web", "u1"), now=NOW
        )
        loaded = repo.current_conversation(session, identity)
        assert loaded is not None
        session.commit()
    send(store, "1tr")  # moves the version on
    with store.sessions() as session, pytest.raises(StaleDataError):
        repo.save_conversation(
            session, loaded, state={"lost": True}, status=ConversationStatus.ACTIVE, now=NOW
        )
    with store.sessions() as session:
        state = session.execute(select(Conversation.state)).scalar_one()
        assert state is not None and "lost" not in state


def test_naive_datetimes_are_refused(store: Store) -> None:
    with store.sessions() as session, pytest.raises(Exception, match="naive datetime"):
        repo.lock_identity(session, "web", "x" * 64, now=dt.datetime(2026, 1, 1))
        session.flush()


def test_sqlite_connection_settings(store: Store) -> None:
    if store.dialect != "sqlite":
        pytest.skip("SQLite pragmas")
    with store.engine.connect() as connection:
        driver = connection.connection.dbapi_connection
        assert driver is not None
        assert driver.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert driver.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert driver.execute("PRAGMA foreign_keys").fetchone()[0] == 1
