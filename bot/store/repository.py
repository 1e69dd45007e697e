"""Repository functions: the only code that reads and writes the bot's tables.

Every function takes the caller's ``Session``, runs its statements in the
session's transaction and never commits: the pipeline's caller commits once
per inbound message (:func:`bot.store.db.run_in_transaction`).

The statements are written against the typed models but run as Core
statements on the session's connection (``session.connection().execute``),
built once with bound parameters: the pipeline runs about eight of them per
chat message, and the ORM unit of work cost 2-3 times as much CPU for the
same rows (``bench/chat_load.py``). Functions therefore return small
dataclasses rather than ORM objects; the models stay the schema and the way
to query the tables elsewhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import Executable

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
    Provenance,
)

__all__ = [
    "VIETNAM_TZ",
    "ConversationRow",
    "IdentityRow",
    "InboundRow",
    "active_consent_mode",
    "append_outbox",
    "current_conversation",
    "erase_identity",
    "expire_idle_conversations",
    "find_inbound",
    "increment_aggregate",
    "lock_identity",
    "outbox_payloads_for",
    "pseudonymise",
    "record_answer",
    "record_assessment",
    "record_consent",
    "record_inbound",
    "save_conversation",
    "start_conversation",
]

#: Vietnam has had no daylight saving since 1975; aggregates count by its calendar day.
VIETNAM_TZ: Final = dt.timezone(dt.timedelta(hours=7), "ICT")


@dataclasses.dataclass
class IdentityRow:
    """The locked identity: its id and the last outbox sequence number used."""

    id: int
    outbound_seq: int


@dataclasses.dataclass
class ConversationRow:
    """A conversation as loaded for one step; ``version`` is checked when it is saved."""

    id: int
    version: int
    state: dict[str, Any] | None
    status: ConversationStatus
    questionnaire_version: str | None


@dataclasses.dataclass(frozen=True)
class InboundRow:
    """An already-recorded inbound message (for replaying its reply)."""

    id: int
    reply: dict[str, Any] | None


def pseudonymise(key: str | bytes, channel: str, user_ref: str) -> str:
    """Return the keyed hash that stands for ``user_ref`` on ``channel``.

    The channel is part of the message so the same number on two channels
    gives two unrelated identities (no cross-channel linking by the database).

    Args:
        key: PSEUDONYM_KEY (falls back to SECRET_KEY in the app config).
        channel: Channel name, e.g. ``"zalo"``, ``"web"``.
        user_ref: The channel's raw user id.

    Returns:
        64 lower-case hex digits of HMAC-SHA256.
    """
    raw_key = key.encode() if isinstance(key, str) else key
    message = f"{channel}:{user_ref}".encode()
    return hmac.new(raw_key, message, hashlib.sha256).hexdigest()


# -- prebuilt statements ----------------------------------------------------------------


def _upsert_identity(dialect_insert: Callable[..., Any], keep_address: bool) -> Executable:
    statement = dialect_insert(Identity).values(
        channel=bindparam("channel"),
        user_hash=bindparam("user_hash"),
        address=bindparam("address"),
        outbound_seq=0,
        created_at=bindparam("now"),
        last_seen_at=bindparam("now"),
    )
    changes: dict[str, Any] = {"last_seen_at": statement.excluded.last_seen_at}
    if not keep_address:
        changes["address"] = statement.excluded.address
    # DO UPDATE (unlike DO NOTHING) takes the row lock on PostgreSQL, waiting for
    # a concurrent transaction that holds it, and returns the row either way.
    return statement.on_conflict_do_update(
        index_elements=["channel", "user_hash"], set_=changes
    ).returning(Identity.id, Identity.outbound_seq)


def _upsert_aggregate(dialect_insert: Callable[..., Any]) -> Executable:
    statement = dialect_insert(AggregateDaily).values(
        date=bindparam("day"),
        commune_code=bindparam("commune_code"),
        area=bindparam("area"),
        standard_id=bindparam("standard_id"),
        status=bindparam("status"),
        count=bindparam("by"),
    )
    return statement.on_conflict_do_update(
        index_elements=["date", "commune_code", "area", "standard_id", "status"],
        set_={"count": AggregateDaily.count + statement.excluded["count"]},
    )


_DIALECT_INSERTS: Final = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_upserts: dict[tuple[str, str], Executable] = {}


def _upsert(connection: Connection, name: str) -> Executable:
    """Return the prebuilt ``INSERT ... ON CONFLICT`` statement ``name`` for this database."""
    dialect = connection.dialect.name
    statement = _upserts.get((dialect, name))
    if statement is None:
        try:
            dialect_insert = _DIALECT_INSERTS[dialect]
        except KeyError:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise NotImplementedError(f"unsupported database {dialect!r}") from None
        builders = {
            "identity": lambda: _upsert_identity(dialect_insert, keep_address=False),
            "identity_keep_address": lambda: _upsert_identity(dialect_insert, keep_address=True),
            "aggregate": lambda: _upsert_aggregate(dialect_insert),
        }
        statement = _upserts[(dialect, name)] = builders[name]()
    return statement


_FIND_INBOUND: Final = select(InboundMessage.id, InboundMessage.reply).where(
    InboundMessage.channel == bindparam("channel"),
    InboundMessage.identity_id == bindparam("identity_id"),
    InboundMessage.message_id == bindparam("message_id"),
)
_CURRENT_CONVERSATION: Final = (
    select(
        Conversation.id,
        Conversation.version,
        Conversation.state,
        Conversation.status,
        Conversation.questionnaire_version,
    )
    .where(Conversation.identity_id == bindparam("identity_id"))
    .order_by(Conversation.id.desc())
    .limit(1)
)
_INSERT_INBOUND: Final = insert(InboundMessage).returning(InboundMessage.id)
_INSERT_CONVERSATION: Final = insert(Conversation).returning(Conversation.id)
_SAVE_CONVERSATION: Final = (
    update(Conversation)
    .where(Conversation.id == bindparam("conversation_id"))
    .where(Conversation.version == bindparam("expected_version"))
    .values(
        state=bindparam("state"),
        status=bindparam("status"),
        questionnaire_version=bindparam("questionnaire_version"),
        updated_at=bindparam("now"),
        version=Conversation.version + 1,
    )
)
_INSERT_ANSWER: Final = insert(Answer)
_INSERT_OUTBOX: Final = insert(OutboundMessage)
_BUMP_OUTBOX_SEQ: Final = (
    update(Identity)
    .where(Identity.id == bindparam("identity_id"))
    .values(outbound_seq=bindparam("outbound_seq"))
)
_OUTBOX_FOR_INBOUND: Final = (
    select(OutboundMessage.payload)
    .where(OutboundMessage.inbound_message_id == bindparam("inbound_id"))
    .order_by(OutboundMessage.seq)
)


# -- identities and inbound messages -------------------------------------------------------


def lock_identity(
    session: Session,
    channel: str,
    user_hash: str,
    *,
    now: dt.datetime,
    address: str | None = None,
) -> IdentityRow:
    """Get or create the identity and hold its row lock until the transaction ends.

    This lock is what serialises one person's messages: a second message from
    the same person waits here until the first one's transaction commits, then
    sees its conversation state. It is one ``INSERT ... ON CONFLICT DO UPDATE
    ... RETURNING``: on PostgreSQL the update locks the row (as ``SELECT ...
    FOR UPDATE`` would), and two first messages from a new person cannot both
    create it; on SQLite the transaction already holds the write lock
    (``BEGIN IMMEDIATE``).

    Args:
        session: The transaction's session.
        channel: Channel name.
        user_hash: :func:`pseudonymise` of the raw id.
        now: Current time (aware).
        address: Raw id to reply to, for push channels; ``None`` keeps what is stored.

    Returns:
        The identity's id and outbox sequence counter.
    """
    connection = session.connection()
    statement = _upsert(connection, "identity" if address is not None else "identity_keep_address")
    row = connection.execute(
        statement, {"channel": channel, "user_hash": user_hash, "address": address, "now": now}
    ).one()
    return IdentityRow(id=row.id, outbound_seq=row.outbound_seq)


def find_inbound(
    session: Session, channel: str, identity: IdentityRow, message_id: str
) -> InboundRow | None:
    """Return the message this person already sent with this delivery id, if any."""
    row = (
        session.connection()
        .execute(
            _FIND_INBOUND,
            {"channel": channel, "identity_id": identity.id, "message_id": message_id},
        )
        .one_or_none()
    )
    return InboundRow(id=row.id, reply=row.reply) if row is not None else None


def record_inbound(
    session: Session,
    identity: IdentityRow,
    channel: str,
    message_id: str | None,
    *,
    payload: Mapping[str, Any] | None,
    reply: Mapping[str, Any] | None,
    received_at: dt.datetime,
    processed_at: dt.datetime | None,
) -> int:
    """Insert the inbound message row and return its id.

    A duplicate ``(channel, identity, message_id)`` raises ``IntegrityError``
    here; it cannot happen under the identity lock, and a retry would replay it.
    """
    return int(
        session.connection()
        .execute(
            _INSERT_INBOUND,
            {
                "channel": channel,
                "message_id": message_id,
                "identity_id": identity.id,
                "received_at": received_at,
                "payload": dict(payload) if payload is not None else None,
                "processed_at": processed_at,
                "reply": dict(reply) if reply is not None else None,
            },
        )
        .scalar_one()
    )


# -- conversations and answers --------------------------------------------------------------


def current_conversation(session: Session, identity: IdentityRow) -> ConversationRow | None:
    """Return the person's latest conversation, or None if they have none.

    Its status does not matter: a conversation marked expired by
    :func:`expire_idle_conversations` keeps its state, and the engine offers
    to resume it or start over when the person comes back.
    """
    row = (
        session.connection()
        .execute(_CURRENT_CONVERSATION, {"identity_id": identity.id})
        .one_or_none()
    )
    if row is None:
        return None
    return ConversationRow(
        id=row.id,
        version=row.version,
        state=row.state,
        status=ConversationStatus(row.status),
        questionnaire_version=row.questionnaire_version,
    )


def start_conversation(
    session: Session,
    identity: IdentityRow,
    *,
    now: dt.datetime,
    state: dict[str, Any] | None = None,
    questionnaire_version: str | None = None,
) -> ConversationRow:
    """Insert a new active conversation."""
    conversation_id = (
        session.connection()
        .execute(
            _INSERT_CONVERSATION,
            {
                "identity_id": identity.id,
                "state": state,
                "status": ConversationStatus.ACTIVE,
                "questionnaire_version": questionnaire_version,
                "created_at": now,
                "updated_at": now,
                "version": 1,
            },
        )
        .scalar_one()
    )
    return ConversationRow(
        int(conversation_id), 1, state, ConversationStatus.ACTIVE, questionnaire_version
    )


def save_conversation(
    session: Session,
    conversation: ConversationRow,
    *,
    state: dict[str, Any] | None,
    status: ConversationStatus,
    now: dt.datetime,
    questionnaire_version: str | None = None,
) -> None:
    """Save the new state if nobody changed the conversation since it was loaded.

    Raises:
        StaleDataError: when the version moved on (a writer that skipped the
            identity lock); :func:`bot.store.db.run_in_transaction` retries.
    """
    result = session.connection().execute(
        _SAVE_CONVERSATION,
        {
            "conversation_id": conversation.id,
            "expected_version": conversation.version,
            "state": state,
            "status": status,
            "questionnaire_version": questionnaire_version or conversation.questionnaire_version,
            "now": now,
        },
    )
    if result.rowcount != 1:
        raise StaleDataError(
            f"conversation {conversation.id} changed since version {conversation.version}"
        )
    conversation.version += 1
    conversation.state = state
    conversation.status = status


def record_answer(
    session: Session,
    conversation: ConversationRow,
    question_id: str,
    value: Any,
    *,
    raw: str | None,
    now: dt.datetime,
    provenance: Provenance | str = Provenance.SELF,
    collaborator_name: str | None = None,
) -> None:
    """Record one answer (every answer is kept, also when later corrected)."""
    session.connection().execute(
        _INSERT_ANSWER,
        {
            "conversation_id": conversation.id,
            "question_id": question_id[:64],
            "value": value,
            "raw": raw,
            "provenance": Provenance(provenance),
            "collaborator_name": collaborator_name,
            "created_at": now,
        },
    )


def expire_idle_conversations(session: Session, *, idle_since: dt.datetime) -> int:
    """Mark unfinished conversations not touched since ``idle_since`` as expired.

    For statistics and retention jobs; the state is kept (see :func:`current_conversation`).

    Returns:
        How many conversations were marked.
    """
    result = session.connection().execute(
        update(Conversation)
        .where(
            Conversation.status.in_([ConversationStatus.ACTIVE, ConversationStatus.PAUSED]),
            Conversation.updated_at < idle_since,
        )
        .values(status=ConversationStatus.EXPIRED, version=Conversation.version + 1)
    )
    return int(result.rowcount or 0)


# -- consent, decisions, aggregates ----------------------------------------------------------


def active_consent_mode(session: Session, identity: IdentityRow) -> ConsentMode | None:
    """Return the mode of the identity's consent in force (latest not withdrawn), if any."""
    mode = (
        session.connection()
        .execute(
            select(Consent.mode)
            .where(Consent.identity_id == identity.id, Consent.withdrawn_at.is_(None))
            .order_by(Consent.id.desc())
            .limit(1)
        )
        .scalar_one_or_none()
    )
    return ConsentMode(mode) if mode is not None else None


def record_consent(
    session: Session,
    identity: IdentityRow,
    mode: ConsentMode | str,
    *,
    text_version: str,
    now: dt.datetime,
) -> None:
    """Record a consent, withdrawing the one it replaces."""
    connection = session.connection()
    connection.execute(
        update(Consent)
        .where(Consent.identity_id == identity.id, Consent.withdrawn_at.is_(None))
        .values(withdrawn_at=now)
    )
    connection.execute(
        insert(Consent).values(
            identity_id=identity.id,
            mode=ConsentMode(mode),
            text_version=text_version,
            given_at=now,
        )
    )


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def record_assessment(
    session: Session,
    *,
    input: Mapping[str, Any] | None,
    result: Mapping[str, Any],
    now: dt.datetime,
    identity: IdentityRow | None = None,
    conversation: ConversationRow | None = None,
    questionnaire_version: str | None = None,
    provenance: Provenance | str = Provenance.SELF,
    shared: bool = False,
) -> None:
    """Store a decision record and count it in the anonymous daily aggregate.

    Args:
        session: The transaction's session.
        input: What was assessed (the quick-form household document).
        result: ``AssessmentResult.to_dict()`` (see docs/CONTRACTS.md §1).
        now: Time of the decision (aware).
        identity: Who asked, if it came through a chat.
        conversation: The conversation it concluded, if any.
        questionnaire_version: Version of the questions that produced ``input``.
        provenance: Who supplied the data.
        shared: Whether the person consented to share it with officials.
    """
    standard = result.get("standard") or {}
    commune = result.get("commune") or {}
    standard_id = _text(standard.get("id"), 32) or "unknown"
    status = _text(result.get("status"), 32) or "unknown"
    commune_code = _text(commune.get("code"), 8)
    area = _text(result.get("area"), 8)
    connection = session.connection()
    connection.execute(
        insert(Assessment).values(
            identity_id=identity.id if identity is not None else None,
            conversation_id=conversation.id if conversation is not None else None,
            input=dict(input) if input is not None else None,
            standard_id=standard_id,
            status=status,
            deprivations=list(result.get("deprivations") or []),
            result=dict(result),
            questionnaire_version=questionnaire_version,
            commune_code=commune_code,
            area=area,
            provenance=Provenance(provenance),
            shared=shared,
            created_at=now,
        )
    )
    increment_aggregate(
        session,
        day=now.astimezone(VIETNAM_TZ).date(),
        commune_code=commune_code or "",
        area=area or "",
        standard_id=standard_id,
        status=status,
    )


def increment_aggregate(
    session: Session,
    *,
    day: dt.date,
    commune_code: str,
    area: str,
    standard_id: str,
    status: str,
    by: int = 1,
) -> None:
    """Add ``by`` to one anonymous daily count (an upsert; safe under concurrency)."""
    connection = session.connection()
    connection.execute(
        _upsert(connection, "aggregate"),
        {
            "day": day,
            "commune_code": commune_code,
            "area": area,
            "standard_id": standard_id,
            "status": status,
            "by": by,
        },
    )


# -- the outbox ---------------------------------------------------------------------------


def append_outbox(
    session: Session,
    identity: IdentityRow,
    channel: str,
    payloads: Sequence[Mapping[str, Any]],
    *,
    now: dt.datetime,
    inbound_id: int | None = None,
    delivered: bool = False,
) -> None:
    """Queue reply messages for ``identity`` with consecutive sequence numbers.

    Must run while holding the identity lock (:func:`lock_identity`): the
    counter on the identity row is what keeps ``seq`` gap-free and ordered.

    Args:
        session: The transaction's session.
        identity: Recipient (locked).
        channel: Channel to deliver on.
        payloads: ``{"text", "choices"}`` documents, in order.
        now: Current time (aware).
        inbound_id: The message these reply to (lets a duplicate delivery replay them).
        delivered: True for synchronous channels whose reply is the HTTP response:
            the rows are recorded as already sent.
    """
    if not payloads:
        return
    first = identity.outbound_seq + 1
    rows = [
        {
            "identity_id": identity.id,
            "channel": channel,
            "seq": first + i,
            "inbound_message_id": inbound_id,
            "payload": dict(payload),
            "status": OutboundStatus.SENT if delivered else OutboundStatus.PENDING,
            "attempts": 1 if delivered else 0,
            "next_attempt_at": None if delivered else now,
            "last_error": None,
            "created_at": now,
            "sent_at": now if delivered else None,
        }
        for i, payload in enumerate(payloads)
    ]
    connection = session.connection()
    connection.execute(_INSERT_OUTBOX, rows)
    identity.outbound_seq += len(rows)
    connection.execute(
        _BUMP_OUTBOX_SEQ, {"identity_id": identity.id, "outbound_seq": identity.outbound_seq}
    )


def outbox_payloads_for(session: Session, inbound: InboundRow) -> list[dict[str, Any]]:
    """Return the reply payloads recorded for ``inbound``, in delivery order."""
    payloads = (
        session.connection().execute(_OUTBOX_FOR_INBOUND, {"inbound_id": inbound.id}).scalars()
    )
    return [p for p in payloads if p is not None]


# -- erasure --------------------------------------------------------------------------------


def erase_identity(session: Session, identity: IdentityRow, *, now: dt.datetime) -> None:
    """Erase a person's personal data, keeping only anonymous aggregates.

    Deletes their conversations (state), answers and consents; nulls the raw
    address, inbound payloads, outbox texts and the personal part of their
    decision records (input, result, deprivations, links). The identity row
    stays as a bare keyed hash so the outbox sequence continues and the erasure
    itself is on record; :class:`~bot.store.models.AggregateDaily` counts were
    incremented when each assessment was stored and are not touched.

    Args:
        session: The transaction's session.
        identity: The person (locked).
        now: Time of the erasure (aware).
    """
    connection = session.connection()
    conversation_ids = select(Conversation.id).where(Conversation.identity_id == identity.id)
    connection.execute(
        update(Assessment)
        .where(Assessment.identity_id == identity.id)
        .values(
            input=None,
            result=None,
            deprivations=None,
            identity_id=None,
            conversation_id=None,
            erased_at=now,
        )
    )
    # Explicit deletes rather than relying on ON DELETE CASCADE, so erasure does not
    # depend on a per-connection SQLite pragma being set.
    connection.execute(delete(Answer).where(Answer.conversation_id.in_(conversation_ids)))
    connection.execute(delete(Conversation).where(Conversation.identity_id == identity.id))
    connection.execute(delete(Consent).where(Consent.identity_id == identity.id))
    connection.execute(
        update(InboundMessage)
        .where(InboundMessage.identity_id == identity.id)
        .values(payload=None, reply=None)
    )
    # Undelivered replies can no longer be sent (their text is gone): fail them.
    connection.execute(
        update(OutboundMessage)
        .where(
            OutboundMessage.identity_id == identity.id,
            OutboundMessage.status == OutboundStatus.PENDING,
        )
        .values(status=OutboundStatus.FAILED, last_error="erased", next_attempt_at=None)
    )
    connection.execute(
        update(OutboundMessage)
        .where(OutboundMessage.identity_id == identity.id)
        .values(payload=None)
    )
    connection.execute(
        update(Identity).where(Identity.id == identity.id).values(address=None, erased_at=now)
    )
