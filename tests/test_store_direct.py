"""Statements executed straight on the driver (:mod:`bot.store.direct`) behave as through SQLAlchemy.

Same values written and read back (JSON with Vietnamese text, aware UTC timestamps, enums),
the same exception classes (so retries still happen), and anything this path does not
handle is left to ``Connection.execute``. Runs on SQLite, and on PostgreSQL with
``TEST_DATABASE_URL``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.store import direct
from bot.store.db import Store
from bot.store.models import Conversation, ConversationStatus, Identity

pytestmark = pytest.mark.db

NOW = dt.datetime(2026, 11, 29, 5, 30, 15, 123456, tzinfo=dt.UTC)
STATE = {"q": "ho_ten", "answers": {"xa": "Xã Thường Phước", "thu_nhap": 1_500_000}, "tags": [1, None, True]}

_INSERT_IDENTITY = insert(Identity).returning(Identity.id)
_INSERT_CONVERSATION = insert(Conversation).returning(Conversation.id, Conversation.created_at)
_READ_CONVERSATION = select(Conversation.id, Conversation.state, Conversation.status, Conversation.updated_at).where(
    Conversation.id == bindparam("conversation_id")
)
_BUMP_VERSION = (
    update(Conversation)
    .where(Conversation.id == bindparam("conversation_id"), Conversation.version == bindparam("expected"))
    .values(version=Conversation.version + 1, updated_at=bindparam("now"))
)


@pytest.fixture
def connection(store: Store) -> Iterator[Connection]:
    """A connection in an open transaction on a migrated, empty database (rolled back afterwards)."""
    with store.engine.connect() as connection:
        connection.begin()
        yield connection
        connection.rollback()


def _identity(connection: Connection, user_hash: str = "h1") -> int:
    row = direct.execute(
        connection,
        _INSERT_IDENTITY,
        {
            "channel": "web",
            "user_hash": user_hash,
            "address": None,
            "outbound_seq": 0,
            "created_at": NOW,
            "last_seen_at": NOW,
        },
    ).one()
    return int(row.id)


def _conversation(connection: Connection, identity_id: int) -> int:
    row = direct.execute(
        connection,
        _INSERT_CONVERSATION,
        {
            "identity_id": identity_id,
            "state": STATE,
            "status": ConversationStatus.ACTIVE,
            "questionnaire_version": "2026.2",
            "created_at": NOW,
            "updated_at": NOW,
            "version": 1,
        },
    ).one()
    assert row.created_at == NOW  # RETURNING goes through the column's result processing too
    return int(row.id)


def test_values_written_directly_read_back_the_same_through_sqlalchemy(connection: Connection) -> None:
    conversation_id = _conversation(connection, _identity(connection))
    row = connection.execute(_READ_CONVERSATION, {"conversation_id": conversation_id}).one()
    assert row.state == STATE
    assert row.status is ConversationStatus.ACTIVE
    assert row.updated_at == NOW and row.updated_at.tzinfo is not None


def test_values_written_by_sqlalchemy_read_back_the_same_directly(connection: Connection) -> None:
    identity_id = _identity(connection)
    conversation_id = connection.execute(
        insert(Conversation).returning(Conversation.id),
        {
            "identity_id": identity_id,
            "state": STATE,
            "status": ConversationStatus.DONE,
            "created_at": NOW,
            "updated_at": NOW,
        },
    ).scalar_one()
    row = direct.execute(connection, _READ_CONVERSATION, {"conversation_id": conversation_id}).one()
    assert row.id == row[0] == conversation_id  # attribute and index access, like SQLAlchemy's Row
    assert row.state == STATE
    assert row.status is ConversationStatus.DONE
    assert row.updated_at == NOW


def test_a_literal_in_the_statement_and_the_rowcount_work_as_through_sqlalchemy(connection: Connection) -> None:
    conversation_id = _conversation(connection, _identity(connection))
    later = NOW + dt.timedelta(minutes=1)
    first = direct.execute(connection, _BUMP_VERSION, {"conversation_id": conversation_id, "expected": 1, "now": later})
    stale = direct.execute(connection, _BUMP_VERSION, {"conversation_id": conversation_id, "expected": 1, "now": later})
    assert (first.rowcount, stale.rowcount) == (1, 0)
    assert connection.execute(select(Conversation.version)).scalar_one() == 2


def test_several_rows_are_inserted_in_one_call(connection: Connection) -> None:
    rows = [
        {
            "channel": "web",
            "user_hash": f"h{i}",
            "address": None,
            "outbound_seq": 0,
            "created_at": NOW,
            "last_seen_at": NOW,
        }
        for i in range(3)
    ]
    direct.execute(connection, insert(Identity), rows)
    assert connection.execute(select(Identity.user_hash).order_by(Identity.user_hash)).scalars().all() == [
        "h0",
        "h1",
        "h2",
    ]


def test_a_duplicate_key_raises_sqlalchemys_integrity_error_so_the_transaction_is_retried(
    connection: Connection,
) -> None:
    _identity(connection, "same")
    with pytest.raises(IntegrityError):
        _identity(connection, "same")


def test_a_statement_needing_a_callable_default_is_left_to_sqlalchemy(connection: Connection) -> None:
    # created_at and last_seen_at default to utcnow(), computed by SQLAlchemy's execution context.
    result = direct.execute(connection, insert(Identity), {"channel": "web", "user_hash": "h9"})
    assert not isinstance(result, direct.DirectResult)
    created = connection.execute(select(Identity.created_at).where(Identity.user_hash == "h9")).scalar_one()
    assert created is not None and created.tzinfo is not None


def test_one_and_one_or_none_say_when_the_row_count_is_wrong(connection: Connection) -> None:
    from sqlalchemy.exc import NoResultFound

    missing = direct.execute(connection, _READ_CONVERSATION, {"conversation_id": 12345})
    assert missing.one_or_none() is None and missing.scalar_one_or_none() is None
    with pytest.raises(NoResultFound):
        missing.one()
