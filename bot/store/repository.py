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

import contextlib
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import Executable

from bot import jsoncodec
from bot.store import direct
from bot.store.models import (
    AggregateCommuneDeprivationMonthly,
    AggregateCommuneMonthly,
    AggregateDaily,
    AggregateDeprivationMonthly,
    AggregateMonthly,
    Answer,
    Assessment,
    Base,
    ChannelToken,
    Consent,
    ConsentMode,
    Conversation,
    ConversationStatus,
    Hamlet,
    Identity,
    InboundMessage,
    OutboundMessage,
    OutboundStatus,
    Provenance,
    Review,
    ReviewStatus,
    User,
    UserScope,
)

__all__ = [
    "VIETNAM_TZ",
    "AnswerRecord",
    "AssessmentRecord",
    "ChannelTokenRow",
    "ConversationRow",
    "IdentityRow",
    "InboundRow",
    "OutboxClaim",
    "OutboxOutcome",
    "PendingInbound",
    "Snapshot",
    "active_consent_mode",
    "append_outbox",
    "assessment_record",
    "assessment_result",
    "claim_outbox",
    "complete_pending_inbound",
    "current_conversation",
    "due_outbox_identities",
    "erase_identity",
    "expire_idle_conversations",
    "fail_pending_outbox",
    "find_inbound",
    "find_inbound_and_conversation",
    "finish_outbox",
    "hamlet_names",
    "identity_id_for",
    "increment_monthly_aggregates",
    "is_inbound_pending",
    "lending",
    "lent",
    "linked_user_id",
    "load_channel_token",
    "lock_identity",
    "lock_identity_id",
    "month_start",
    "monthly_counter_rows",
    "next_outbox_due",
    "next_pending_inbound",
    "outbox_payloads_for",
    "pending_inbound_identities",
    "pseudonymise",
    "record_answer",
    "record_assessment",
    "record_consent",
    "record_inbound",
    "record_inbound_failure",
    "record_pending_inbound",
    "release_reserved",
    "save_channel_token",
    "save_conversation",
    "snapshot",
    "start_conversation",
    "store_step",
    "unlink_identity",
    "user_communes",
]

#: Vietnam has had no daylight saving since 1975; aggregates count by its calendar day.
VIETNAM_TZ: Final = dt.timezone(dt.timedelta(hours=7), "ICT")


@dataclasses.dataclass
class IdentityRow:
    """The locked identity: its id and the last outbox sequence number used.

    ``reserved``: sequence numbers after ``outbound_seq`` already counted on the row by
    :func:`lock_identity` (``reserve``), so :func:`append_outbox` need not update it again.
    """

    id: int
    outbound_seq: int
    reserved: int = 0


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


# -- the transaction's connection --------------------------------------------------------


#: Key under ``Session.info``: the root transaction and the connection it runs on.
_CONNECTION_KEY: Final = "bot.store.connection"
#: Key under ``Session.info``: a connection lent for a block by :func:`lending`.
_LENT_KEY: Final = "bot.store.lent"


@contextlib.contextmanager
def lending(session: Session, connection: Connection) -> Iterator[None]:
    """Run this module's functions for ``session`` on ``connection`` during the block, outside its transaction.

    For reads and one-statement writes that need no transaction block (see ``bot.pipeline.outside_transaction``).
    """
    session.info[_LENT_KEY] = connection
    try:
        yield
    finally:
        del session.info[_LENT_KEY]


def lent(session: Session) -> bool:
    """Whether :func:`lending` gave ``session`` a connection for now."""
    return _LENT_KEY in session.info


def _connection(session: Session) -> Connection:
    """``session.connection()``, remembered for the rest of the session's transaction (or the lent one).

    ``Session.connection()`` goes through the session's state machine on every
    call (a few tens of µs); the pipeline makes about eight calls per message,
    all on the same connection of the same transaction.
    """
    lent_connection = session.info.get(_LENT_KEY)
    if lent_connection is not None:
        return lent_connection  # type: ignore[no-any-return]
    transaction = session.get_transaction()
    if transaction is not None and transaction.is_active:
        cached = session.info.get(_CONNECTION_KEY)
        if cached is not None and cached[0] is transaction:
            return cached[1]  # type: ignore[no-any-return]
    connection = session.connection()
    session.info[_CONNECTION_KEY] = (session.get_transaction(), connection)
    return connection


def _run(session: Session, statement: Any, params: Any) -> Any:
    """Execute one of this module's per-message statements on the transaction's connection (see :mod:`.direct`)."""
    return direct.execute(_connection(session), statement, params)


# -- prebuilt statements ----------------------------------------------------------------


def _upsert_identity(dialect_insert: Callable[..., Any], keep_address: bool) -> Executable:
    statement = dialect_insert(Identity).values(
        channel=bindparam("channel"),
        user_hash=bindparam("user_hash"),
        address=bindparam("address"),
        outbound_seq=bindparam("reserve"),
        created_at=bindparam("now"),
        last_seen_at=bindparam("now"),
    )
    changes: dict[str, Any] = {
        "last_seen_at": statement.excluded.last_seen_at,
        "outbound_seq": Identity.outbound_seq + statement.excluded.outbound_seq,
    }
    if not keep_address:
        changes["address"] = statement.excluded.address
    # DO UPDATE (unlike DO NOTHING) takes the row lock on PostgreSQL, waiting for
    # a concurrent transaction that holds it, and returns the row either way.
    return statement.on_conflict_do_update(
        index_elements=["channel", "user_hash"], set_=changes
    ).returning(Identity.id, Identity.outbound_seq)


#: The anonymous counter tables: the columns a row is written with, and its unique key (the ON CONFLICT target).
#: Each statement inserts the row with ``count = :by`` or adds ``:by`` to the existing count. Every writer updates
#: them in this order, so two writers never wait on each other's rows in a cycle.
_COUNTERS: Final[dict[str, tuple[type[Base], tuple[str, ...], tuple[str, ...]]]] = {
    "aggregate": (
        AggregateDaily,
        ("date", "commune_code", "area", "standard_id", "status"),
        ("date", "commune_code", "area", "standard_id", "status"),
    ),
    "monthly": (
        AggregateMonthly,
        ("month", "province_code", "commune_code", "hamlet", "channel", "provenance", "standard_id", "status", "next_status"),
        ("month", "commune_code", "hamlet", "channel", "provenance", "standard_id", "status", "next_status"),
    ),
    "commune_monthly": (
        AggregateCommuneMonthly,
        ("month", "province_code", "commune_code", "channel", "provenance", "standard_id", "status", "next_status"),
        ("province_code", "commune_code", "month", "channel", "provenance", "standard_id", "status", "next_status"),
    ),
    "deprivation": (
        AggregateDeprivationMonthly,
        ("month", "province_code", "commune_code", "hamlet", "standard_id", "indicator"),
        ("month", "commune_code", "hamlet", "standard_id", "indicator"),
    ),
    "commune_deprivation": (
        AggregateCommuneDeprivationMonthly,
        ("month", "province_code", "commune_code", "standard_id", "indicator"),
        ("province_code", "commune_code", "month", "standard_id", "indicator"),
    ),
}


def _upsert_counter(dialect_insert: Callable[..., Any], name: str) -> Executable:
    model, columns, key = _COUNTERS[name]
    statement = dialect_insert(model).values(
        **{column: bindparam(column) for column in columns}, count=bindparam("by")
    )
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={"count": model.count + statement.excluded["count"]},  # type: ignore[attr-defined]
    ).inline()  # no implicit RETURNING of the key: nobody reads it, and it runs as executemany


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
            raise RuntimeError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL") from None
        builders = {
            "identity": lambda: _upsert_identity(dialect_insert, keep_address=False),
            "identity_keep_address": lambda: _upsert_identity(dialect_insert, keep_address=True),
        }
        builder = builders.get(name) or (lambda: _upsert_counter(dialect_insert, name))
        statement = _upserts[(dialect, name)] = _cacheable(builder(), dialect)
    return statement


_NAMED_DIALECTS: Final = {"postgresql": postgresql.dialect, "sqlite": sqlite.dialect}


def _cacheable(statement: Executable, dialect: str) -> Executable:
    """The same SQL as ``statement``, as a ``text()`` SQLAlchemy can cache once compiled.

    SQLAlchemy 2.0 cannot make a cache key for ``INSERT ... ON CONFLICT`` (its
    clause has ``inherit_cache = False``), so it compiled these statements on
    every execution: the identity upsert alone was about 15 % of the CPU of a
    chat message. Rendered once here (named parameters, each with its column's
    type, so values are still converted as before), the text is compiled once
    per connection dialect and reused from the statement cache.
    """
    compiled = statement.compile(dialect=_NAMED_DIALECTS[dialect](paramstyle="named"))
    params: dict[str, Any] = {}
    for bind, name in compiled.bind_names.items():
        if name not in params:
            params[name] = (
                bindparam(name, type_=bind.type)
                if bind.required
                else bindparam(name, bind.effective_value, type_=bind.type)
            )
    return text(compiled.string).bindparams(*params.values())


def _find_inbound(identity_id: Any) -> Select[Any]:
    return select(InboundMessage.id, InboundMessage.reply).where(
        InboundMessage.channel == bindparam("channel"),
        InboundMessage.identity_id == identity_id,
        InboundMessage.message_id == bindparam("message_id"),
    )


def _current_conversation(identity_id: Any) -> Select[Any]:
    return (
        select(
            Conversation.id,
            Conversation.version,
            Conversation.state,
            Conversation.status,
            Conversation.questionnaire_version,
        )
        .where(Conversation.identity_id == identity_id)
        .order_by(Conversation.id.desc())
        .limit(1)
    )


def _seen_and_conversation(identity_id: Any) -> Select[Any]:
    """:func:`_find_inbound` and :func:`_current_conversation` in one statement: one row, NULLs where there is none."""
    seen = _find_inbound(identity_id).subquery("seen")
    latest = _current_conversation(identity_id).subquery("latest")
    return select(
        seen.c.id.label("seen_id"),
        seen.c.reply.label("seen_reply"),
        latest.c.id,
        latest.c.version,
        latest.c.state,
        latest.c.status,
        latest.c.questionnaire_version,
    ).select_from(
        select(literal_column("1").label("one"))
        .subquery("one")
        .outerjoin(seen, true())
        .outerjoin(latest, true())
    )


_FIND_INBOUND: Final = _find_inbound(bindparam("identity_id"))
_CURRENT_CONVERSATION: Final = _current_conversation(bindparam("identity_id"))
_SEEN_AND_CONVERSATION: Final = _seen_and_conversation(bindparam("identity_id"))
_KNOWN_IDENTITY: Final = (
    select(Identity.id)
    .where(Identity.channel == bindparam("channel"), Identity.user_hash == bindparam("user_hash"))
    .scalar_subquery()
)
#: :func:`snapshot`: the identity found by channel and keyed hash, with :data:`_SEEN_AND_CONVERSATION`.
_SNAPSHOT: Final = _seen_and_conversation(_KNOWN_IDENTITY).add_columns(
    _KNOWN_IDENTITY.label("identity_id"),
    select(Consent.mode)
    .where(Consent.identity_id == _KNOWN_IDENTITY, Consent.withdrawn_at.is_(None))
    .order_by(Consent.id.desc())
    .limit(1)
    .scalar_subquery()
    .label("consent_mode"),
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
    reserve: int = 0,
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
        reserve: Outbox sequence numbers to count on the row now, when the caller
            already knows how many replies it will queue (saves an update later).

    Returns:
        The identity's id and outbox sequence counter (before the reservation).
    """
    connection = _connection(session)
    statement = _upsert(connection, "identity" if address is not None else "identity_keep_address")
    row = direct.execute(
        connection,
        statement,
        {"channel": channel, "user_hash": user_hash, "address": address, "now": now, "reserve": reserve},
    ).one()
    return IdentityRow(id=row.id, outbound_seq=row.outbound_seq - reserve, reserved=reserve)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What :func:`snapshot` read: the person (None if new), a delivery already processed, their conversation,
    and the mode of their consent in force (as :func:`active_consent_mode`)."""

    identity_id: int | None
    seen: InboundRow | None
    conversation: ConversationRow | None
    consent_mode: ConsentMode | None = None


def snapshot(session: Session, channel: str, user_hash: str, message_id: str | None) -> Snapshot:
    """Read a person's identity, conversation, consent and (with ``message_id``) an earlier delivery, in one statement.

    A plain read that locks nothing: what it returns may change before the caller's next transaction (see
    :func:`bot.pipeline.step_ahead`, which checks it by the conversation's version when saving).
    """
    row = _run(
        session, _SNAPSHOT, {"channel": channel, "user_hash": user_hash, "message_id": message_id}
    ).one()
    seen = InboundRow(id=row.seen_id, reply=row.seen_reply) if row.seen_id is not None else None
    consent = ConsentMode(row.consent_mode) if row.consent_mode is not None else None
    return Snapshot(row.identity_id, seen, _conversation_row(row), consent)


def find_inbound(
    session: Session, channel: str, identity: IdentityRow, message_id: str
) -> InboundRow | None:
    """Return the message this person already sent with this delivery id, if any."""
    row = (
        _connection(session)
        .execute(
            _FIND_INBOUND,
            {"channel": channel, "identity_id": identity.id, "message_id": message_id},
        )
        .one_or_none()
    )
    return InboundRow(id=row.id, reply=row.reply) if row is not None else None


def find_inbound_and_conversation(
    session: Session, channel: str, identity: IdentityRow, message_id: str
) -> tuple[InboundRow | None, ConversationRow | None]:
    """:func:`find_inbound` and :func:`current_conversation` in one statement (one round trip).

    Returns:
        The message already sent with this delivery id (or None), and the
        person's latest conversation (or None).
    """
    row = (
        _run(
            session,
            _SEEN_AND_CONVERSATION,
            {"channel": channel, "identity_id": identity.id, "message_id": message_id},
        )
        .one()
    )
    seen = InboundRow(id=row.seen_id, reply=row.seen_reply) if row.seen_id is not None else None
    return seen, _conversation_row(row)


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
        _run(
            session,
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
    return _conversation_row(
        _run(session, _CURRENT_CONVERSATION, {"identity_id": identity.id})
        .one_or_none()
    )


def _conversation_row(row: Any) -> ConversationRow | None:
    if row is None or row.id is None:
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
        _run(
            session,
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
    result = _run(
        session,
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
    _run(
        session,
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
    result = _connection(session).execute(
        update(Conversation)
        .where(
            Conversation.status.in_([ConversationStatus.ACTIVE, ConversationStatus.PAUSED]),
            Conversation.updated_at < idle_since,
        )
        .values(status=ConversationStatus.EXPIRED, version=Conversation.version + 1)
    )
    return int(result.rowcount or 0)


# -- consent, decisions, aggregates ----------------------------------------------------------


_ACTIVE_CONSENT: Final = (
    select(Consent.mode)
    .where(Consent.identity_id == bindparam("identity_id"), Consent.withdrawn_at.is_(None))
    .order_by(Consent.id.desc())
    .limit(1)
)
_WITHDRAW_CONSENT: Final = (
    update(Consent)
    .where(Consent.identity_id == bindparam("owner_id"), Consent.withdrawn_at.is_(None))
    .values(withdrawn_at=bindparam("now"))
)
_INSERT_CONSENT: Final = insert(Consent)
_INSERT_ASSESSMENT: Final = insert(Assessment).returning(Assessment.id)
_INSERT_REVIEW: Final = insert(Review)
_HAMLET_NAMES: Final = select(Hamlet.name).where(Hamlet.commune_code == bindparam("commune_code"))


def active_consent_mode(session: Session, identity: IdentityRow) -> ConsentMode | None:
    """Return the mode of the identity's consent in force (latest not withdrawn), if any."""
    mode = _run(session, _ACTIVE_CONSENT, {"identity_id": identity.id}).scalar_one_or_none()
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
    _run(session, _WITHDRAW_CONSENT, {"owner_id": identity.id, "now": now})
    _run(
        session,
        _INSERT_CONSENT,
        {"identity_id": identity.id, "mode": ConsentMode(mode), "text_version": text_version, "given_at": now},
    )


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _whole(value: Any) -> int | None:
    """An integer figure from the result document (VND amounts, counts); None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(round(value))


def _canonical_hamlet(connection: Connection, commune_code: str | None, hamlet: str | None) -> str | None:
    """Return the commune's own spelling of ``hamlet`` when it is on the commune's list, else ``hamlet`` trimmed.

    Matching is accent- and case-insensitive (``bot.parsing.text.fold``), so "ap phu loi" counts with "Ấp Phú Lợi"
    on the dashboard instead of becoming a second hamlet.
    """
    name = _text(hamlet.strip() if isinstance(hamlet, str) else None, 128)
    if name is None or not commune_code:
        return name
    from bot.parsing.text import fold

    wanted = fold(name)
    for (known,) in direct.execute(connection, _HAMLET_NAMES, {"commune_code": commune_code}).all():
        if fold(known) == wanted:
            return known
    return name


def month_start(moment: dt.datetime) -> dt.date:
    """First day of the month of ``moment`` in Vietnam time (the key of the monthly aggregates)."""
    return moment.astimezone(VIETNAM_TZ).date().replace(day=1)


@dataclasses.dataclass(frozen=True)
class AssessmentRecord:
    """A decision record as it is stored: the ``assessments`` row and what it adds to each anonymous counter.

    ``counters`` maps a counter table's name in :data:`_COUNTERS` to its parameter rows (an ``INSERT ... ON
    CONFLICT`` each; ``by`` is what they add).
    """

    row: dict[str, Any]
    counters: dict[str, list[dict[str, Any]]]


def assessment_record(
    *,
    input: Mapping[str, Any] | None,
    result: Mapping[str, Any],
    now: dt.datetime,
    identity_id: int | None = None,
    conversation_id: int | None = None,
    questionnaire_version: str | None = None,
    provenance: Provenance | str = Provenance.SELF,
    shared: bool = False,
    channel: str | None = None,
    hamlet: str | None = None,
    household_head: str | None = None,
    phone: str | None = None,
    household_code: str | None = None,
    collaborator_user_id: int | None = None,
) -> AssessmentRecord:
    """What :func:`record_assessment` writes, computed without the database (``hamlet`` already canonical)."""
    standard = result.get("standard") or {}
    commune = result.get("commune") or {}
    next_result = result.get("next_standard") or {}
    standard_id = _text(standard.get("id"), 32) or "unknown"
    status = _text(result.get("status"), 32) or "unknown"
    commune_code = _text(commune.get("code"), 8)
    area = _text(result.get("area"), 8)
    deprivations = [d for d in (result.get("deprivations") or []) if isinstance(d, str) and d]
    deprivation_count = _whole(result.get("deprivation_count"))
    next_standard_id = _text((next_result.get("standard") or {}).get("id"), 32)
    next_status = _text(next_result.get("status"), 32)
    province_code = _text(commune.get("province_code"), 4)
    if province_code is None and commune_code:
        from assessment.geo import commune_by_code

        known = commune_by_code(commune_code)
        province_code = known.province_code if known is not None else None
    channel = _text(channel, 32)
    provenance = Provenance(provenance)
    row = {
        "identity_id": identity_id,
        "conversation_id": conversation_id,
        "input": dict(input) if input is not None else None,
        "standard_id": standard_id,
        "status": status,
        "deprivations": deprivations,
        "result": dict(result),
        "questionnaire_version": questionnaire_version,
        "commune_code": commune_code,
        "area": area,
        "provenance": provenance,
        "shared": shared,
        "created_at": now,
        "channel": channel,
        "hamlet": hamlet,
        "household_head": _text(household_head, 128),
        "phone": _text(phone, 32),
        "household_code": _text(household_code, 64),
        "collaborator_user_id": collaborator_user_id,
        "income_per_capita_vnd": _whole(result.get("income_per_capita_vnd")),
        "income_line_vnd": _whole(result.get("income_line_vnd")),
        "deprivation_count": deprivation_count if deprivation_count is not None else len(deprivations),
        "next_standard_id": next_standard_id,
        "next_status": next_status,
    }
    daily = {
        "date": now.astimezone(VIETNAM_TZ).date(),
        "commune_code": commune_code or "",
        "area": area or "",
        "standard_id": standard_id,
        "status": status,
        "by": 1,
    }
    monthly = monthly_counter_rows(
        month=month_start(now),
        province_code=province_code or "",
        commune_code=commune_code or "",
        hamlet=hamlet or "",
        channel=channel or "",
        provenance=provenance.value,
        standard_id=standard_id,
        status=status,
        next_status=next_status or "",
        deprivations=deprivations,
    )
    # Every writer takes the counter rows' locks in one order (:data:`_COUNTERS`), so none waits on another in a
    # cycle.
    counters = {name: [daily] if name == "aggregate" else monthly[name] for name in _COUNTERS}
    return AssessmentRecord(row, counters)


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
    channel: str | None = None,
    hamlet: str | None = None,
    household_head: str | None = None,
    phone: str | None = None,
    household_code: str | None = None,
    collaborator_user_id: int | None = None,
) -> int:
    """Store a decision record, count it in the anonymous aggregates and, when shared, queue it for review.

    Everything happens in the caller's transaction: the daily aggregate, the monthly dashboard aggregates
    (``aggregates_monthly`` and one ``aggregates_deprivation_monthly`` row per deprived indicator, and their
    commune rollups) and, for a shared assessment, the ``reviews`` row that puts it in the commune's review queue.

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
        channel: Channel it came through (``web``, ``zalo_oa``, ``import``, ...).
        hamlet: Hamlet name as given; stored in the commune's spelling when it is on the commune's list.
        household_head: Name of the head of household (share or collaborator mode only).
        phone: Contact number (share or collaborator mode only).
        household_code: The commune's household code, when known.
        collaborator_user_id: The collaborator account that ran it for the household.

    Returns:
        The id of the new assessment.
    """
    connection = _connection(session)
    commune_code = _text((result.get("commune") or {}).get("code"), 8)
    record = assessment_record(
        input=input,
        result=result,
        now=now,
        identity_id=identity.id if identity is not None else None,
        conversation_id=conversation.id if conversation is not None else None,
        questionnaire_version=questionnaire_version,
        provenance=provenance,
        shared=shared,
        channel=channel,
        hamlet=_canonical_hamlet(connection, commune_code, hamlet),
        household_head=household_head,
        phone=phone,
        household_code=household_code,
        collaborator_user_id=collaborator_user_id,
    )
    assessment_id = int(direct.execute(connection, _INSERT_ASSESSMENT, record.row).scalar_one())
    if shared:
        # The hand-off: a consented assessment waits in the commune's review queue (Decision 24/2021).
        direct.execute(
            connection,
            _INSERT_REVIEW,
            {"assessment_id": assessment_id, "status": ReviewStatus.QUEUED, "queued_at": now},
        )
    _count(connection, record.counters)
    return assessment_id


def _count(connection: Connection, counters: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Run the counter upserts of :class:`AssessmentRecord` ``counters`` (one executemany per table)."""
    for name, rows in counters.items():
        if rows:
            direct.execute(connection, _upsert(connection, name), list(rows) if len(rows) > 1 else rows[0])


def increment_monthly_aggregates(
    session: Session,
    *,
    month: dt.date,
    province_code: str,
    commune_code: str,
    hamlet: str,
    channel: str,
    provenance: str,
    standard_id: str,
    status: str,
    next_status: str,
    deprivations: Sequence[str] = (),
    by: int = 1,
) -> None:
    """Add ``by`` to the dashboard's monthly counts: one status row and one row per deprived indicator.

    Each goes to the hamlet-level table (``aggregates_monthly``, ``aggregates_deprivation_monthly``) and to its
    commune-level rollup (``aggregates_commune_monthly``, ``aggregates_commune_deprivation_monthly``).

    Upserts, so concurrent writers add up instead of colliding. Unknown values are ``""`` (see
    :class:`~bot.store.models.AggregateMonthly`). Imports that store many assessments at once may call this
    with ``by`` > 1 for rows that share every key.
    """
    _count(
        _connection(session),
        monthly_counter_rows(
            month=month,
            province_code=province_code,
            commune_code=commune_code,
            hamlet=hamlet,
            channel=channel,
            provenance=provenance,
            standard_id=standard_id,
            status=status,
            next_status=next_status,
            deprivations=deprivations,
            by=by,
        ),
    )


def monthly_counter_rows(
    *,
    month: dt.date,
    province_code: str,
    commune_code: str,
    hamlet: str,
    channel: str,
    provenance: str,
    standard_id: str,
    status: str,
    next_status: str,
    deprivations: Sequence[str] = (),
    by: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """The parameter rows of :func:`increment_monthly_aggregates`, by counter table (see :data:`_COUNTERS`)."""
    counts = {
        "month": month,
        "province_code": province_code,
        "commune_code": commune_code,
        "hamlet": hamlet,
        "channel": channel,
        "provenance": provenance,
        "standard_id": standard_id,
        "status": status,
        "next_status": next_status,
        "by": by,
    }
    # Sorted, so concurrent writers lock the indicator rows in one order.
    indicators = sorted({d[:32] for d in deprivations if d})
    rows = [
        {
            "month": month,
            "province_code": province_code,
            "commune_code": commune_code,
            "hamlet": hamlet,
            "standard_id": standard_id,
            "indicator": indicator,
            "by": by,
        }
        for indicator in indicators
    ]
    return {
        "monthly": [counts],
        # The same counts without the hamlet: the province pages' rollups (see AggregateCommuneMonthly).
        "commune_monthly": [{k: v for k, v in counts.items() if k != "hamlet"}],
        "deprivation": rows,
        "commune_deprivation": [{k: v for k, v in row.items() if k != "hamlet"} for row in rows],
    }


# -- one statement for a whole step (PostgreSQL) ------------------------------------------------


#: What :func:`bot.pipeline.handle_inbound` writes for a step, as parts of one PostgreSQL statement. First the
#: person (``ident``, returning ``id`` and the outbox counter after this step's replies) and their conversation
#: (``conv``), either :data:`_KNOWN_PERSON` or :data:`_NEW_PERSON`; every other part depends on both, so when
#: they are not as read before the step, nothing is written. Then :data:`_STEP_TAIL`: the answers, the consent
#: replacing the one in force, the inbound message with its reply, and the replies in the outbox numbered from
#: the identity's counter.
#:
#: A known person: the state is saved if the conversation is still at the version read (``{gate}`` adds
#: conditions), and the identity's last contact and reply address as :func:`lock_identity` would.
_KNOWN_PERSON: Final = """
conv AS (
    UPDATE conversations
       SET state = CAST(:state AS JSONB), status = :conversation_status, questionnaire_version = :questionnaire_version,
           updated_at = :now, version = version + 1
     WHERE id = :conversation_id AND version = :expected_version{gate}
    RETURNING id
), ident AS (
    UPDATE identities
       SET last_seen_at = :now, address = COALESCE(:address, address), outbound_seq = outbound_seq + :replies
     WHERE id = :identity_id AND EXISTS (SELECT FROM conv)
    RETURNING id, outbound_seq
)"""

#: A person's first message: the identity (if nobody created it meanwhile) and their first conversation, at
#: version 2 as :func:`start_conversation` (1) and :func:`save_conversation` leave it.
_NEW_PERSON: Final = """
ident AS (
    INSERT INTO identities (channel, user_hash, address, outbound_seq, created_at, last_seen_at)
    VALUES (:channel, :user_hash, :address, :replies, :now, :now)
    ON CONFLICT (channel, user_hash) DO NOTHING
    RETURNING id, outbound_seq
), conv AS (
    INSERT INTO conversations (identity_id, state, status, questionnaire_version, created_at, updated_at, version)
    SELECT id, CAST(:state AS JSONB), :conversation_status, :questionnaire_version, :now, :now, 2 FROM ident
    RETURNING id
)"""

#: ``{assessment}``: parts the inbound row's ``{reply}`` may refer to.
_STEP_TAIL: Final = """, ans AS (
    INSERT INTO answers (conversation_id, question_id, value, raw, provenance, collaborator_name, created_at)
    SELECT conv.id, a.question_id, a.value, a.raw, a.provenance, a.collaborator_name, :now
      FROM conv CROSS JOIN jsonb_to_recordset(CAST(:answers AS JSONB))
           AS a(question_id VARCHAR, value JSONB, raw TEXT, provenance VARCHAR, collaborator_name VARCHAR)
), withdrawn AS (
    UPDATE consents SET withdrawn_at = :now
     WHERE identity_id = (SELECT id FROM ident) AND withdrawn_at IS NULL
       AND CAST(:consent_mode AS VARCHAR) IS NOT NULL
), given AS (
    INSERT INTO consents (identity_id, mode, text_version, given_at)
    SELECT ident.id, CAST(:consent_mode AS VARCHAR), :consent_text_version, :now
      FROM ident WHERE CAST(:consent_mode AS VARCHAR) IS NOT NULL
){assessment}, inb AS (
    INSERT INTO inbound_messages (channel, message_id, identity_id, received_at, payload, processed_at, reply,
                                  attempts)
    SELECT :channel, :message_id, ident.id, :now, CAST(:payload AS JSONB), :now, {reply}, 0
      FROM ident
    RETURNING id
), outb AS (
    INSERT INTO outbound_messages (identity_id, channel, seq, inbound_message_id, payload, status, attempts,
                                   next_attempt_at, created_at, sent_at, parts_sent)
    SELECT ident.id, :channel, ident.outbound_seq - :replies + m.ord, inb.id, m.payload, :status,
           :attempts, :next_attempt_at, :now, :sent_at, 0
      FROM inb CROSS JOIN ident
           CROSS JOIN jsonb_array_elements(CAST(:messages AS JSONB)) WITH ORDINALITY AS m(payload, ord)
)"""

#: A step that assesses the household also needs the consent it was computed under to be the one still in force
#: (it decides whether the record is shared).
_CONSENT_GATE: Final = """
       AND (SELECT mode FROM consents WHERE identity_id = :identity_id AND withdrawn_at IS NULL
             ORDER BY id DESC LIMIT 1) IS NOT DISTINCT FROM CAST(:consent_in_force AS VARCHAR)"""

#: The columns of a decision record written by :data:`_STORE_FINAL_STEP` (:func:`assessment_record`'s ``row``).
_ASSESSMENT_JSON_COLUMNS: Final = frozenset({"input", "deprivations", "result"})


def _counter_part(name: str) -> str:
    """The ``INSERT ... ON CONFLICT`` of counter table ``name`` (:data:`_COUNTERS`) as a part of a statement.

    Parameters are the counter's columns prefixed ``c_``; a per-indicator table takes one row per element of
    ``c_indicators`` (a JSON array, sorted as :func:`monthly_counter_rows` sorts them).
    """
    model, columns, key = _COUNTERS[name]
    table = model.__tablename__
    values = ", ".join("d.indicator" if column == "indicator" else f":c_{column}" for column in columns)
    source = "conv"
    if "indicator" in columns:
        source += " CROSS JOIN jsonb_array_elements_text(CAST(:c_indicators AS JSONB)) AS d(indicator)"
    return (
        f"count_{name} AS (\n    INSERT INTO {table} ({', '.join(columns)}, count)\n    SELECT {values}, :c_by FROM {source}\n"
        f"    ON CONFLICT ({', '.join(key)}) DO UPDATE SET count = {table}.count + EXCLUDED.count\n)"
    )


def _assessment_parts() -> str:
    """The decision record and its review when shared (``asmt``, ``review``), as parts of a statement."""
    columns = [c.name for c in Assessment.__table__.columns if c.name not in ("id", "erased_at")]
    values = [f"CAST(:a_{c} AS JSONB)" if c in _ASSESSMENT_JSON_COLUMNS else f":a_{c}" for c in columns]
    return (
        f", asmt AS (\n    INSERT INTO assessments ({', '.join(columns)})\n    SELECT {', '.join(values)} FROM conv\n"
        "    RETURNING id\n), review AS (\n    INSERT INTO reviews (assessment_id, status, queued_at)\n"
        "    SELECT id, :review_status, :now FROM asmt WHERE :a_shared\n)"
    )


_PLAIN_INBOUND: Final = {"assessment": "", "reply": "CAST(:reply AS JSONB)"}

#: A step that only records answers (and possibly a consent): one statement, one round trip instead of eight.
_STORE_ANSWER_STEP: Final = text(
    "WITH " + _KNOWN_PERSON.format(gate="") + _STEP_TAIL.format(**_PLAIN_INBOUND) + "\nSELECT (SELECT id FROM inb) AS inbound_id"
)
#: The same for a new person's first message: one round trip instead of nine.
_STORE_FIRST_STEP: Final = text(
    "WITH " + _NEW_PERSON + _STEP_TAIL.format(**_PLAIN_INBOUND) + "\nSELECT (SELECT id FROM inb) AS inbound_id"
)
#: The step that answers the last question and assesses the household: also the decision record (which the
#: inbound row's reply names), its review when shared, and every anonymous counter (:func:`record_assessment`):
#: one round trip instead of fourteen.
_STORE_FINAL_STEP: Final = text(
    "WITH "
    + _KNOWN_PERSON.format(gate=_CONSENT_GATE)
    + _STEP_TAIL.format(
        assessment=_assessment_parts(),
        reply="CAST(:reply AS JSONB) || jsonb_build_object('assessment_id', (SELECT id FROM asmt))",
    )
    + ", "
    + ", ".join(_counter_part(name) for name in _COUNTERS)
    + "\nSELECT (SELECT id FROM inb) AS inbound_id"
)


@dataclasses.dataclass(frozen=True)
class AnswerRecord:
    """One answer of a step, as :func:`record_answer` takes it."""

    question_id: str
    value: Any
    raw: str | None
    provenance: Provenance | str = Provenance.SELF
    collaborator_name: str | None = None


def store_step(
    session: Session,
    *,
    identity_id: int | None,
    conversation: ConversationRow | None,
    user_hash: str | None = None,
    state: dict[str, Any],
    status: ConversationStatus,
    questionnaire_version: str | None,
    answers: Sequence[AnswerRecord],
    consent: tuple[ConsentMode, str] | None = None,
    assessment: AssessmentRecord | None = None,
    consent_in_force: ConsentMode | None = None,
    channel: str,
    message_id: str | None,
    payload: Mapping[str, Any] | None,
    reply: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    delivered: bool,
    address: str | None,
    now: dt.datetime,
) -> int | None:
    """Store a whole step in one statement (PostgreSQL; the session's connection in autocommit).

    Writes the same rows as :func:`record_answer`, :func:`record_consent` (``consent``: mode and text
    version), :func:`save_conversation`, :func:`record_inbound` and :func:`append_outbox` would, the
    identity's ``last_seen_at`` and reply address as :func:`lock_identity`, and with ``assessment`` what
    :func:`record_assessment` would (its ``row`` carries the hamlet already canonical). With neither
    ``identity_id`` nor ``conversation``, a new person's first message: the identity (keyed ``user_hash``) and
    the conversation are created as :func:`lock_identity` and :func:`start_conversation` would.

    Args:
        consent_in_force: With ``assessment``: the consent mode it was computed under (its ``shared``); the
            step is stored only if that is still the one in force.

    Returns:
        The inbound message's id, or None when the conversation is no longer at ``conversation.version``, the
        consent in force changed or the new person's identity was created meanwhile (nothing was written; the
        caller processes the message the usual way).

    Raises:
        IntegrityError: this delivery id was recorded meanwhile (nothing was written either).
    """
    delivery = _outbox_delivery(delivered, now)
    params: dict[str, Any] = {
        "state": jsoncodec.dumps(state),
        "conversation_status": ConversationStatus(status).value,
        "questionnaire_version": questionnaire_version,
        "address": address,
        "replies": len(messages),
        "answers": jsoncodec.dumps(
            [
                {
                    "question_id": a.question_id[:64],
                    "value": a.value,
                    "raw": a.raw,
                    "provenance": Provenance(a.provenance).value,
                    "collaborator_name": a.collaborator_name,
                }
                for a in answers
            ]
        ),
        "consent_mode": ConsentMode(consent[0]).value if consent is not None else None,
        "consent_text_version": consent[1] if consent is not None else None,
        "channel": channel,
        "message_id": message_id,
        "payload": jsoncodec.dumps(dict(payload)) if payload is not None else None,
        "reply": jsoncodec.dumps(dict(reply)),
        "messages": jsoncodec.dumps([dict(m) for m in messages]),
        **delivery,
        "status": delivery["status"].value,
        "now": now,
    }
    if conversation is None:
        if identity_id is not None or assessment is not None or user_hash is None:
            raise ValueError("a new person's first step needs their user_hash and no identity or assessment")
        statement = _STORE_FIRST_STEP
        params["user_hash"] = user_hash
    else:
        statement = _STORE_ANSWER_STEP if assessment is None else _STORE_FINAL_STEP
        params.update(
            conversation_id=conversation.id,
            expected_version=conversation.version,
            identity_id=identity_id,
            questionnaire_version=questionnaire_version or conversation.questionnaire_version,
        )
        if assessment is not None:
            params.update(_final_step_params(assessment, consent_in_force))
    row = _run(session, statement, params).one()
    if row.inbound_id is None:
        return None
    if conversation is not None:
        conversation.version += 1
        conversation.state = state
        conversation.status = ConversationStatus(status)
    return int(row.inbound_id)


def _final_step_params(record: AssessmentRecord, consent_in_force: ConsentMode | None) -> dict[str, Any]:
    """The parameters :data:`_STORE_FINAL_STEP` adds: the record's columns (``a_``) and counters (``c_``)."""
    params: dict[str, Any] = {
        "consent_in_force": ConsentMode(consent_in_force).value if consent_in_force is not None else None,
        "review_status": ReviewStatus.QUEUED.value,
    }
    for column, value in record.row.items():
        if column in _ASSESSMENT_JSON_COLUMNS:
            value = jsoncodec.dumps(value) if value is not None else None
        elif isinstance(value, enum.Enum):
            value = value.value
        params[f"a_{column}"] = value
    for rows in record.counters.values():
        for counter in rows:
            params.update({f"c_{key}": value for key, value in counter.items() if key != "indicator"})
    params["c_indicators"] = jsoncodec.dumps([counter["indicator"] for counter in record.counters["deprivation"]])
    return params


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
        release_reserved(session, identity)
        return
    first = identity.outbound_seq + 1
    delivery = _outbox_delivery(delivered, now)
    rows = [
        {
            "identity_id": identity.id,
            "channel": channel,
            "seq": first + i,
            "inbound_message_id": inbound_id,
            "payload": dict(payload),
            **delivery,
            "last_error": None,
            "created_at": now,
        }
        for i, payload in enumerate(payloads)
    ]
    _run(session, _INSERT_OUTBOX, rows)
    identity.outbound_seq += len(rows)
    identity.reserved -= len(rows)
    release_reserved(session, identity)


def _outbox_delivery(delivered: bool, now: dt.datetime) -> dict[str, Any]:
    """The outbox columns that say whether a reply still has to be sent (synchronous channels: already sent)."""
    if delivered:
        return {"status": OutboundStatus.SENT, "attempts": 1, "next_attempt_at": None, "sent_at": now}
    return {"status": OutboundStatus.PENDING, "attempts": 0, "next_attempt_at": now, "sent_at": None}


def release_reserved(session: Session, identity: IdentityRow) -> None:
    """Set the identity's counter to the sequence numbers really used, when :func:`lock_identity` reserved others.

    Keeps ``seq`` gap-free: reserved numbers no reply used are given back, and replies beyond the reservation
    (or with none) are counted.
    """
    if identity.reserved:
        identity.reserved = 0
        _run(session, _BUMP_OUTBOX_SEQ, {"identity_id": identity.id, "outbound_seq": identity.outbound_seq})


def assessment_result(session: Session, assessment_id: int) -> dict[str, Any] | None:
    """The explanation stored with a decision record (``AssessmentResult.to_dict()``); None once erased."""
    return _connection(session).execute(
        select(Assessment.result).where(Assessment.id == assessment_id)
    ).scalar_one_or_none()


def outbox_payloads_for(session: Session, inbound: InboundRow) -> list[dict[str, Any]]:
    """Return the reply payloads recorded for ``inbound``, in delivery order."""
    payloads = (
        _connection(session).execute(_OUTBOX_FOR_INBOUND, {"inbound_id": inbound.id}).scalars()
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
    connection = _connection(session)
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
            # The personal identification columns of revision 0002 go too (the dashboard never lists erased rows).
            household_head=None,
            phone=None,
            household_code=None,
            # The hamlet narrows a household down too (already counted in the monthly aggregates).
            hamlet=None,
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
        # Messages still waiting in the delivery queue were sent after the erase request: they are processed
        # (and their text dropped then) rather than silently lost.
        .where(InboundMessage.identity_id == identity.id, InboundMessage.processed_at.is_not(None))
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
        # A collaborator's link to their account goes too: the bare hash is all that remains.
        update(Identity).where(Identity.id == identity.id).values(address=None, erased_at=now, user_id=None)
    )


# -- collaborator mode: account links and hamlets -------------------------------------------------------------


def linked_user_id(session: Session, identity_id: int) -> int | None:
    """The account this chat identity is linked to, if the link exists and the account is active."""
    return _connection(session).execute(
        select(Identity.user_id)
        .join(User, User.id == Identity.user_id)
        .where(Identity.id == identity_id, User.active.is_(True))
    ).scalar_one_or_none()


def unlink_identity(session: Session, identity_id: int) -> None:
    """Remove the link of a chat identity to a collaborator account ("hủy liên kết")."""
    _connection(session).execute(update(Identity).where(Identity.id == identity_id).values(user_id=None))


def user_communes(session: Session, user_id: int) -> list[str]:
    """The commune codes in an account's scope, sorted (none for a province-wide or unscoped account)."""
    return sorted(
        set(
            _connection(session)
            .execute(select(UserScope.commune_code).where(UserScope.user_id == user_id))
            .scalars()
        )
    )


def _natural(name: str) -> tuple[Any, ...]:
    """Sort key in Vietnamese reading order: accents aside ("Ấp" with the a's), "Ấp 2" before "Ấp 10"."""
    from bot.parsing.text import fold

    return tuple(int(part) if part.isdigit() else fold(part) for part in re.split(r"(\d+)", name))


def hamlet_names(session: Session, commune_code: str) -> list[str]:
    """The hamlets (ấp, khóm, thôn, tổ dân phố) a commune keeps, in natural order; empty when it keeps none."""
    names = (
        _connection(session)
        .execute(select(Hamlet.name).where(Hamlet.commune_code == commune_code[:8]))
        .scalars()
        .all()
    )
    return sorted(names, key=_natural)


# -- the delivery queue: webhook-recorded inbound messages (push channels) ------------------------------
#
# A webhook only records what arrived (:func:`record_pending_inbound`, ``processed_at`` NULL) and answers
# the provider; the delivery worker later takes each person's pending rows in ``id`` order under the
# identity lock. None of these functions block on a row another transaction holds, so a webhook is never
# held up by a worker busy with the same person.


@dataclasses.dataclass(frozen=True)
class PendingInbound:
    """A recorded, not yet processed inbound message."""

    id: int
    identity_id: int
    channel: str
    message_id: str | None
    payload: dict[str, Any] | None
    attempts: int
    received_at: dt.datetime


_FIND_IDENTITY: Final = select(Identity.id).where(
    Identity.channel == bindparam("channel"), Identity.user_hash == bindparam("user_hash")
)
_NEXT_PENDING: Final = (
    select(
        InboundMessage.id,
        InboundMessage.identity_id,
        InboundMessage.channel,
        InboundMessage.message_id,
        InboundMessage.payload,
        InboundMessage.attempts,
        InboundMessage.received_at,
    )
    .where(
        InboundMessage.identity_id == bindparam("identity_id"),
        InboundMessage.processed_at.is_(None),
    )
    .order_by(InboundMessage.id)
    .limit(1)
)
_LOCK_IDENTITY_ID: Final = (
    update(Identity)
    .where(Identity.id == bindparam("identity_id"))
    .values(
        last_seen_at=bindparam("now"),
        address=func.coalesce(bindparam("address"), Identity.address),
        # The person wrote again: a channel that refused to deliver (window closed, blocked) may accept now.
        unreachable_at=None,
    )
    .returning(Identity.id, Identity.outbound_seq)
)
_COMPLETE_PENDING: Final = (
    update(InboundMessage)
    .where(InboundMessage.id == bindparam("inbound_id"), InboundMessage.processed_at.is_(None))
    .values(
        payload=bindparam("payload"),
        reply=bindparam("reply"),
        processed_at=bindparam("processed_at"),
    )
)


_insert_ignoring: dict[tuple[str, tuple[str, ...]], Executable] = {}


def _insert_ignoring_conflict(connection: Connection, table: Any, keys: list[str], values: dict[str, Any]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING id``: the new id, or None when the row exists.

    Written as one textual statement with typed parameters, built once per table and column set: SQLAlchemy
    does not cache the compiled form of the dialect ``insert().on_conflict_do_nothing()`` constructs, and a
    webhook runs this on every delivery, where compiling cost more than executing. The syntax is the same on
    PostgreSQL and SQLite (3.35+).
    """
    cache_key = (table.__tablename__, tuple(values))
    statement = _insert_ignoring.get(cache_key)
    if statement is None:
        columns = table.__table__.c
        names = list(values)
        sql = (
            f"INSERT INTO {table.__tablename__} ({', '.join(names)}) "
            f"VALUES ({', '.join(':' + n for n in names)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO NOTHING RETURNING id"
        )
        statement = _insert_ignoring[cache_key] = (
            text(sql).bindparams(*(bindparam(n, type_=columns[n].type) for n in names)).columns(columns.id)
        )
    return connection.execute(statement, values).scalar_one_or_none()


def identity_id_for(
    session: Session, channel: str, user_hash: str, *, address: str | None, now: dt.datetime
) -> int:
    """Return the id of the identity, creating it when new, **without** locking it.

    A plain ``SELECT`` first: it never waits, even while a worker holds the identity's row lock (an
    ``INSERT ... ON CONFLICT`` on an existing row may wait for that worker's transaction on PostgreSQL). Only
    a new person costs an insert.
    """
    connection = _connection(session)
    params = {"channel": channel, "user_hash": user_hash}
    found = connection.execute(_FIND_IDENTITY, params).scalar_one_or_none()
    if found is not None:
        return int(found)
    new_id = _insert_ignoring_conflict(
        connection,
        Identity,
        ["channel", "user_hash"],
        {
            "channel": channel,
            "user_hash": user_hash,
            "address": address,
            "outbound_seq": 0,
            "created_at": now,
            "last_seen_at": now,
        },
    )
    if new_id is None:  # created by a concurrent delivery since the SELECT
        new_id = connection.execute(_FIND_IDENTITY, params).scalar_one()
    return int(new_id)


def record_pending_inbound(
    session: Session,
    identity_id: int,
    channel: str,
    message_id: str,
    *,
    payload: Mapping[str, Any],
    received_at: dt.datetime,
) -> int | None:
    """Record a webhook event for later processing; return its id, or None when it was already recorded.

    The unique ``(channel, identity, message_id)`` makes a provider's redelivery a no-op, whether the first
    copy is still queued or long processed.
    """
    new_id = _insert_ignoring_conflict(
        _connection(session),
        InboundMessage,
        ["channel", "identity_id", "message_id"],
        {
            "channel": channel,
            "message_id": message_id,
            "identity_id": identity_id,
            "received_at": received_at,
            "payload": dict(payload),
            "processed_at": None,
            "reply": None,
        },
    )
    return None if new_id is None else int(new_id)


def next_pending_inbound(session: Session, identity_id: int) -> PendingInbound | None:
    """Return the person's oldest unprocessed recorded message, if any."""
    row = _connection(session).execute(_NEXT_PENDING, {"identity_id": identity_id}).one_or_none()
    if row is None:
        return None
    return PendingInbound(
        id=row.id,
        identity_id=row.identity_id,
        channel=row.channel,
        message_id=row.message_id,
        payload=row.payload,
        attempts=row.attempts,
        received_at=row.received_at,
    )


def pending_inbound_identities(
    session: Session, *, limit: int, received_before: dt.datetime | None = None
) -> list[int]:
    """Identities with unprocessed recorded messages, the longest-waiting first (served by the partial index).

    Args:
        session: Any session.
        limit: Most identities to return.
        received_before: Only count messages recorded before this time (a sweeper leaving fresh ones to the
            queue that was told about them).
    """
    conditions: list[Any] = [InboundMessage.processed_at.is_(None), InboundMessage.identity_id.is_not(None)]
    if received_before is not None:
        conditions.append(InboundMessage.received_at < received_before)
    statement = (
        select(InboundMessage.identity_id)
        .where(*conditions)
        .group_by(InboundMessage.identity_id)
        .order_by(func.min(InboundMessage.id))
        .limit(limit)
    )
    return [int(i) for i in _connection(session).execute(statement).scalars() if i is not None]


def lock_identity_id(
    session: Session, identity_id: int, *, now: dt.datetime, address: str | None
) -> IdentityRow | None:
    """Lock a known identity for processing one of its messages (see :func:`lock_identity`).

    Also records the interaction (``last_seen_at``, what the channels' reply windows count from), refreshes
    the reply address and clears ``unreachable_at``. None when the identity no longer exists.
    """
    row = (
        _connection(session)
        .execute(_LOCK_IDENTITY_ID, {"identity_id": identity_id, "now": now, "address": address})
        .one_or_none()
    )
    return None if row is None else IdentityRow(id=row.id, outbound_seq=row.outbound_seq)


def complete_pending_inbound(
    session: Session,
    inbound_id: int,
    *,
    payload: Mapping[str, Any] | None,
    reply: Mapping[str, Any] | None,
    processed_at: dt.datetime,
) -> bool:
    """Mark a recorded message processed; False if it already was (another worker got there first)."""
    result = _connection(session).execute(
        _COMPLETE_PENDING,
        {
            "inbound_id": inbound_id,
            "payload": dict(payload) if payload is not None else None,
            "reply": dict(reply) if reply is not None else None,
            "processed_at": processed_at,
        },
    )
    return result.rowcount == 1


def is_inbound_pending(session: Session, inbound_id: int) -> bool:
    """Whether a recorded message is still unprocessed."""
    processed = _connection(session).execute(
        select(InboundMessage.id).where(InboundMessage.id == inbound_id, InboundMessage.processed_at.is_(None))
    )
    return processed.first() is not None


def record_inbound_failure(
    session: Session, inbound_id: int, *, error: str, give_up: bool, now: dt.datetime
) -> int:
    """Count a failed processing attempt; with ``give_up``, mark the message processed with the error.

    Returns:
        The attempts now recorded.
    """
    values: dict[str, Any] = {"attempts": InboundMessage.attempts + 1, "last_error": error[:2000]}
    if give_up:
        values.update(processed_at=now, reply={"error": error[:500]})
    connection = _connection(session)
    connection.execute(
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.processed_at.is_(None))
        .values(**values)
    )
    attempts = connection.execute(
        select(InboundMessage.attempts).where(InboundMessage.id == inbound_id)
    ).scalar_one_or_none()
    return int(attempts or 0)


# -- the outbox worker ------------------------------------------------------------------------------------
#
# Only the head of a person's queue (their lowest pending ``seq``) is ever claimed, so a later reply can
# never overtake an earlier one that is still being sent or waiting for a retry. A claim is a lease: the
# row stays ``pending`` but its ``next_attempt_at`` moves to the end of the lease, which hides it (and so
# the rest of that person's queue) from every other worker until the result is recorded; a worker killed
# mid-send leaves a row that becomes due again when the lease ends. On PostgreSQL the claiming SELECT
# skips rows another worker is claiming (``FOR UPDATE SKIP LOCKED``), so workers never wait on each other.


@dataclasses.dataclass(frozen=True)
class OutboxClaim:
    """An outbox row leased to one worker, with what it needs to send it."""

    id: int
    identity_id: int
    channel: str
    seq: int
    payload: dict[str, Any] | None
    parts_sent: int
    #: Attempts including this one.
    attempts: int
    created_at: dt.datetime
    #: The lease: also the token that must still be on the row when the result is recorded.
    lease_until: dt.datetime
    address: str | None
    last_seen_at: dt.datetime | None
    unreachable_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class OutboxOutcome:
    """What happened to one claimed row.

    ``status`` is ``sent`` | ``failed`` | ``pending`` (retry at ``next_attempt_at``).
    """

    claim: OutboxClaim
    status: OutboundStatus
    parts_sent: int
    error: str | None = None
    next_attempt_at: dt.datetime | None = None
    #: The person cannot be reached: mark the identity and fail the rest of their queue.
    unreachable: bool = False


def _outbox_due_conditions(
    o: Any, *, due_before: dt.datetime, channels: Sequence[str], identity_id: int | None
) -> list[Any]:
    """WHERE clause of a due head-of-queue outbox row (``o`` is the outer alias)."""
    p = OutboundMessage.__table__.alias("p")
    head_seq = (
        select(func.min(p.c.seq))
        .where(p.c.identity_id == o.c.identity_id, p.c.status == OutboundStatus.PENDING)
        .scalar_subquery()
    )
    conditions = [
        o.c.status == OutboundStatus.PENDING,
        or_(o.c.next_attempt_at <= due_before, o.c.next_attempt_at.is_(None)),
        o.c.channel.in_(list(channels)),
        o.c.seq == head_seq,
    ]
    if identity_id is not None:
        conditions.append(o.c.identity_id == identity_id)
    return conditions


def claim_outbox(
    session: Session,
    *,
    now: dt.datetime,
    lease_until: dt.datetime,
    channels: Sequence[str],
    limit: int,
    identity_id: int | None = None,
    due_before: dt.datetime | None = None,
) -> list[OutboxClaim]:
    """Lease up to ``limit`` due rows, each the head of a different person's queue.

    Args:
        session: The claiming transaction (commit it before sending).
        now: Current time.
        lease_until: End of the lease (recorded as ``next_attempt_at``).
        channels: Channels this worker can send on.
        limit: Most rows.
        identity_id: Only this person's queue.
        due_before: Only rows due before this time (default ``now``; a sweeper passes an earlier time).
    """
    if not channels or limit <= 0:
        return []
    o = OutboundMessage.__table__.alias("o")
    statement = (
        select(o.c.id)
        .where(*_outbox_due_conditions(o, due_before=due_before or now, channels=channels, identity_id=identity_id))
        .order_by(o.c.next_attempt_at, o.c.id)
        .limit(limit)
        .with_for_update(of=o, skip_locked=True)
    )
    connection = _connection(session)
    ids = [int(i) for i in connection.execute(statement).scalars()]
    if not ids:
        return []
    connection.execute(
        update(OutboundMessage)
        .where(OutboundMessage.id.in_(ids))
        .values(next_attempt_at=lease_until, attempts=OutboundMessage.attempts + 1)
    )
    rows = connection.execute(
        select(
            OutboundMessage.id,
            OutboundMessage.identity_id,
            OutboundMessage.channel,
            OutboundMessage.seq,
            OutboundMessage.payload,
            OutboundMessage.parts_sent,
            OutboundMessage.attempts,
            OutboundMessage.created_at,
            Identity.address,
            Identity.last_seen_at,
            Identity.unreachable_at,
        )
        .join(Identity, Identity.id == OutboundMessage.identity_id)
        .where(OutboundMessage.id.in_(ids))
        .order_by(OutboundMessage.id)
    ).all()
    return [
        OutboxClaim(
            id=r.id,
            identity_id=r.identity_id,
            channel=r.channel,
            seq=r.seq,
            payload=r.payload,
            parts_sent=r.parts_sent,
            attempts=r.attempts,
            created_at=r.created_at,
            lease_until=lease_until,
            address=r.address,
            last_seen_at=r.last_seen_at,
            unreachable_at=r.unreachable_at,
        )
        for r in rows
    ]


def finish_outbox(session: Session, outcomes: Sequence[OutboxOutcome], *, now: dt.datetime) -> int:
    """Record the results of claimed rows whose lease is still this worker's.

    A row whose ``next_attempt_at`` is no longer the claim's lease was re-leased by another worker after this
    one's lease ran out; its result is not recorded (the other worker's will be).

    Returns:
        How many outcomes were recorded.
    """
    connection = _connection(session)
    recorded = 0
    for outcome in outcomes:
        claim = outcome.claim
        values: dict[str, Any] = {
            "status": outcome.status,
            "parts_sent": outcome.parts_sent,
            "next_attempt_at": outcome.next_attempt_at if outcome.status is OutboundStatus.PENDING else None,
        }
        if outcome.error:
            # A success keeps the error of the attempt before it: the row's history stays readable.
            values["last_error"] = outcome.error[:2000]
        if outcome.status is OutboundStatus.SENT:
            values["sent_at"] = now
        result = connection.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.id == claim.id,
                OutboundMessage.status == OutboundStatus.PENDING,
                OutboundMessage.next_attempt_at == claim.lease_until,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            continue
        recorded += 1
        if outcome.unreachable:
            connection.execute(
                update(Identity).where(Identity.id == claim.identity_id).values(unreachable_at=now)
            )
            fail_pending_outbox(session, claim.identity_id, reason=f"unreachable: {outcome.error or ''}".strip())
    return recorded


def fail_pending_outbox(session: Session, identity_id: int, *, reason: str) -> int:
    """Give up every pending reply to one person (they cannot be reached); returns how many."""
    result = _connection(session).execute(
        update(OutboundMessage)
        .where(OutboundMessage.identity_id == identity_id, OutboundMessage.status == OutboundStatus.PENDING)
        .values(status=OutboundStatus.FAILED, last_error=reason[:2000], next_attempt_at=None)
    )
    return int(result.rowcount or 0)


def due_outbox_identities(
    session: Session, *, due_before: dt.datetime, channels: Sequence[str], limit: int
) -> list[int]:
    """People whose queue head is due (for a sweeper that hands them to other workers)."""
    if not channels:
        return []
    o = OutboundMessage.__table__.alias("o")
    statement = (
        select(o.c.identity_id)
        .where(*_outbox_due_conditions(o, due_before=due_before, channels=channels, identity_id=None))
        .order_by(o.c.next_attempt_at)
        .limit(limit)
    )
    return [int(i) for i in _connection(session).execute(statement).scalars()]


def next_outbox_due(session: Session, identity_id: int) -> dt.datetime | None:
    """When the head of one person's queue is next due (None when nothing is pending)."""
    o = OutboundMessage.__table__.alias("o")
    p = OutboundMessage.__table__.alias("p")
    head_seq = (
        select(func.min(p.c.seq))
        .where(p.c.identity_id == identity_id, p.c.status == OutboundStatus.PENDING)
        .scalar_subquery()
    )
    return _connection(session).execute(
        select(o.c.next_attempt_at).where(and_(o.c.identity_id == identity_id, o.c.seq == head_seq))
    ).scalar_one_or_none()


# -- provider tokens (Zalo OA) ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChannelTokenRow:
    """The saved token pair of one channel."""

    access_token: str
    refresh_token: str | None
    expires_at: dt.datetime | None
    rotated_at: dt.datetime


def load_channel_token(session: Session, channel: str) -> ChannelTokenRow | None:
    """Return the saved token pair of ``channel``, if any."""
    row = (
        _connection(session)
        .execute(
            select(
                ChannelToken.access_token,
                ChannelToken.refresh_token,
                ChannelToken.expires_at,
                ChannelToken.rotated_at,
            ).where(ChannelToken.channel == channel)
        )
        .one_or_none()
    )
    if row is None:
        return None
    return ChannelTokenRow(row.access_token, row.refresh_token, row.expires_at, row.rotated_at)


def save_channel_token(
    session: Session,
    channel: str,
    *,
    access_token: str,
    refresh_token: str | None,
    expires_at: dt.datetime | None,
    rotated_at: dt.datetime,
) -> None:
    """Insert or replace the token pair of ``channel`` (an upsert on the unique channel)."""
    connection = _connection(session)
    dialect_insert = _DIALECT_INSERTS[connection.dialect.name]
    values = {
        "channel": channel,
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_at": expires_at,
        "rotated_at": rotated_at,
    }
    statement: Any = dialect_insert(ChannelToken).values(**values)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["channel"],
            set_={k: statement.excluded[k] for k in ("access_token", "refresh_token", "expires_at", "rotated_at")},
        )
    )
