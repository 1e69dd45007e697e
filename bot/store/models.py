"""Database models of the chat bot: identities, conversations, answers, decisions, messages.

Every table here is created and changed only by an Alembic revision in
``migrations/versions`` (``tests/test_migrations.py`` fails when the models and
the revisions drift apart). The pipeline's hot path writes them through
:mod:`bot.store.repository` with Core statements built from these models.
Personal data sits in clearly named columns so that
:func:`bot.store.repository.erase_identity` can remove it and leave the
anonymous :class:`AggregateDaily` counts untouched.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AggregateCommuneDeprivationMonthly",
    "AggregateCommuneMonthly",
    "AggregateDaily",
    "AggregateDeprivationMonthly",
    "AggregateMonthly",
    "AuditLog",
    "ChannelToken",
    "Hamlet",
    "ImportJob",
    "LinkCode",
    "OfficialListEntry",
    "Review",
    "ReviewStatus",
    "User",
    "UserRole",
    "UserScope",
    "Answer",
    "Assessment",
    "Base",
    "Consent",
    "ConsentMode",
    "Conversation",
    "ConversationStatus",
    "Identity",
    "InboundMessage",
    "OutboundMessage",
    "OutboundStatus",
    "Provenance",
    "utcnow",
]

#: Stable constraint names, so migrations can refer to (and SQLite batch mode can
#: recreate) constraints by name on every database.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always stored and returned as aware UTC.

    SQLite has no timezone-aware type and hands back naive values; comparing
    those with the aware ``now`` the pipeline passes around raises, so every
    value is normalised here instead of at each call site.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        value = value.astimezone(dt.UTC)
        # SQLite stores text; drop the offset so values sort and compare as strings.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


#: JSON documents; JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
#: ``none_as_null``: Python ``None`` is SQL NULL (what erasure writes), not the JSON text ``null``.
JSONDocument = JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)

#: Integer primary keys: BIGINT on PostgreSQL (message tables grow without bound),
#: INTEGER on SQLite where only ``INTEGER PRIMARY KEY`` is the fast rowid alias.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class ConversationStatus(enum.StrEnum):
    """Lifecycle of one run through the questionnaire."""

    ACTIVE = "active"
    PAUSED = "paused"
    DONE = "done"
    EXPIRED = "expired"  # idle past CONVERSATION_EXPIRY_DAYS, or abandoned by a restart


class Provenance(enum.StrEnum):
    """Who supplied an answer or an assessment."""

    SELF = "self"  # the household member chatting
    COLLABORATOR = "collaborator"  # a village collaborator (cộng tác viên) helping them
    IMPORTED = "imported"  # loaded from another system


class ConsentMode(enum.StrEnum):
    """What the person agreed to do with their result."""

    ANONYMOUS = "anonymous"  # counted in anonymous statistics only
    SHARE = "share"  # the decision record may be shown to commune officials


class OutboundStatus(enum.StrEnum):
    """Delivery state of one outbox row."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # Stored as VARCHAR + CHECK (not a PostgreSQL ENUM type) so that adding a value
    # is a plain batch migration on both databases.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(16, *(len(m.value) for m in cls)),
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    """Declarative base shared by all tables of the bot."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
    }


class Identity(Base):
    """One person on one channel, known only by a keyed hash of their channel id.

    ``user_hash`` is HMAC-SHA256(PSEUDONYM_KEY, "channel:raw id"): stable, so a
    returning user finds their conversation, but useless without the key.
    ``address`` is the raw id, kept only because push channels need it to reply;
    erasure nulls it.
    """

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("channel", "user_hash"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_hash: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(Text)
    #: Last outbox sequence number used; bumped under the identity lock, so the
    #: ``seq`` of a person's replies is gap-free and ordered.
    outbound_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    erased_at: Mapped[dt.datetime | None]
    #: Set when a collaborator linked this chat identity to their account with a one-time code.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    #: Push channels: the person cannot be messaged any more (blocked, window closed for good).
    unreachable_at: Mapped[dt.datetime | None]


class Conversation(Base):
    """The engine's saved state for one run through the questionnaire."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_identity_id_id", "identity_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    state: Mapped[dict[str, Any] | None]
    status: Mapped[ConversationStatus] = mapped_column(
        _enum(ConversationStatus, "conversation_status"), default=ConversationStatus.ACTIVE
    )
    questionnaire_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Optimistic lock: every UPDATE checks and bumps it, so a writer that skipped
    #: the row lock cannot silently overwrite a newer state.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}


class Answer(Base):
    """One recorded answer to one question, with who gave it."""

    __tablename__ = "answers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    question_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSONDocument, nullable=True)
    raw: Mapped[str | None] = mapped_column(Text)
    provenance: Mapped[Provenance] = mapped_column(
        _enum(Provenance, "answer_provenance"), default=Provenance.SELF
    )
    collaborator_name: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Assessment(Base):
    """A decision record: what was assessed, under which standard, with what result.

    The personal part (``input``, ``result``, ``deprivations``, the links to the
    person) is nulled on erasure; the rest is what the anonymous daily aggregate
    already counts.
    """

    __tablename__ = "assessments"
    __table_args__ = (
        # The dashboard's household lists (near the line, review queue, official-list comparison): one commune's
        # shared assessments, newest first.
        Index("ix_assessments_commune_code_shared_created_at", "commune_code", "shared", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL"), index=True
    )
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    input: Mapped[dict[str, Any] | None]
    standard_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    deprivations: Mapped[list[str] | None] = mapped_column(JSONDocument)
    #: The full explanation (``AssessmentResult.to_dict()``).
    result: Mapped[dict[str, Any] | None]
    questionnaire_version: Mapped[str | None] = mapped_column(String(32))
    commune_code: Mapped[str | None] = mapped_column(String(8))
    area: Mapped[str | None] = mapped_column(String(8))
    provenance: Mapped[Provenance] = mapped_column(
        _enum(Provenance, "assessment_provenance"), default=Provenance.SELF
    )
    #: True when the person consented to share it with commune officials.
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    erased_at: Mapped[dt.datetime | None]
    #: Channel the assessment came through (web, zalo_oa, telegram, import, ...).
    channel: Mapped[str | None] = mapped_column(String(32))
    #: Hamlet (ấp / khóm / thôn / tổ dân phố), canonical name when it matched the commune's list.
    hamlet: Mapped[str | None] = mapped_column(String(128))
    #: Personal identification, only in share mode or collaborator mode; nulled on erasure.
    household_head: Mapped[str | None] = mapped_column(String(128))
    phone: Mapped[str | None] = mapped_column(String(32))
    #: The commune's own household code (mã hộ), when known (imports, official list).
    household_code: Mapped[str | None] = mapped_column(String(64))
    #: Collaborator who ran it on behalf of the household.
    collaborator_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    #: Indexed figures for the dashboard (households near the line) without reading ``result``.
    income_per_capita_vnd: Mapped[int | None] = mapped_column(BigInteger)
    income_line_vnd: Mapped[int | None] = mapped_column(BigInteger)
    deprivation_count: Mapped[int | None] = mapped_column(Integer)
    #: Status and standard under the next period's rules, when the result gave one (2026 → 2027).
    next_standard_id: Mapped[str | None] = mapped_column(String(32))
    next_status: Mapped[str | None] = mapped_column(String(32))


class InboundMessage(Base):
    """Every message received, so a redelivered one (same channel, sender and id) runs once.

    The delivery id is unique per sender, not per channel: ids chosen by a
    client (the chat API) may collide between people, and one person's
    ``message_id`` must never replay another person's reply.

    ``reply`` keeps what the pipeline answered besides the outbox texts
    (question id, done, assessment) so a replay can return the same response.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("channel", "identity_id", "message_id"),
        # The delivery worker's queue: push-channel messages recorded by a webhook and not yet processed.
        # Partial, so it holds only the (few) pending rows however large the table grows.
        Index(
            "ix_inbound_messages_pending",
            "identity_id",
            "id",
            postgresql_where=text("processed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    #: The channel's delivery id; NULL when the channel gives none (no dedupe then).
    message_id: Mapped[str | None] = mapped_column(String(128))
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL"), index=True
    )
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any] | None]
    processed_at: Mapped[dt.datetime | None]
    reply: Mapped[dict[str, Any] | None]
    #: Processing attempts of a webhook-recorded message that failed (engine or database error); after
    #: ``DELIVERY_INBOUND_MAX_ATTEMPTS`` it is marked processed with the error, so one poison message does not
    #: hold up the person's later messages for ever.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)


class OutboundMessage(Base):
    """The outbox: one row per reply message, delivered in ``seq`` order per person.

    Synchronous channels (web chat, API) get their replies in the HTTP response
    and record them here already ``sent``; push channels leave them ``pending``
    for the channel worker.
    """

    __tablename__ = "outbound_messages"
    __table_args__ = (
        UniqueConstraint("identity_id", "seq"),
        Index("ix_outbound_messages_identity_id_status_seq", "identity_id", "status", "seq"),
        # The channel worker's query: due pending rows, oldest first.
        Index("ix_outbound_messages_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    inbound_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="SET NULL"), index=True
    )
    #: ``{"text": str, "choices": [{"label", "payload"}]}``; NULL after erasure.
    payload: Mapped[dict[str, Any] | None]
    status: Mapped[OutboundStatus] = mapped_column(
        _enum(OutboundStatus, "outbound_status"), default=OutboundStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    #: Parts of a split message already delivered, so a retry does not send them twice.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Consent(Base):
    """A consent given (and possibly withdrawn) for one identity."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[ConsentMode] = mapped_column(_enum(ConsentMode, "consent_mode"))
    #: Which wording of the consent text was shown (texts are versioned in the questionnaire).
    text_version: Mapped[str] = mapped_column(String(32))
    given_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None]


class AggregateDaily(Base):
    """Anonymous count of assessments per day, commune, area, standard and status.

    Incremented in the same transaction that stores the decision record and
    never touched by erasure. Unknown commune / area are stored as ``""`` (not
    NULL) so the unique key, and hence the upsert, also covers them.
    """

    __tablename__ = "aggregates_daily"
    __table_args__ = (UniqueConstraint("date", "commune_code", "area", "standard_id", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    #: Calendar day in Vietnam (UTC+7), when the assessment was made.
    date: Mapped[dt.date] = mapped_column(Date)
    commune_code: Mapped[str] = mapped_column(String(8), default="", server_default="")
    area: Mapped[str] = mapped_column(String(8), default="", server_default="")
    standard_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# --- Accounts, review hand-off and the officials' dashboard (issue D) ------------------------------------------------


class UserRole(enum.StrEnum):
    """What an account may do; residents have no account."""

    COLLABORATOR = "collaborator"
    OFFICIAL = "official"
    ADMIN = "admin"


class ReviewStatus(enum.StrEnum):
    """Where a shared assessment stands in the commune review (Decision 24/2021/QĐ-TTg)."""

    QUEUED = "queued"
    RECOGNISED_POOR = "recognised_poor"
    RECOGNISED_NEAR_POOR = "recognised_near_poor"
    NOT_RECOGNISED = "not_recognised"


class User(Base):
    """A collaborator, official or admin account (hashed password; scope in ``user_scopes``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[UserRole] = mapped_column(_enum(UserRole, "user_role"))
    #: A province-wide official has this set and no commune scopes.
    province_code: Mapped[str | None] = mapped_column(String(4))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]


class UserScope(Base):
    """One commune (optionally one hamlet in it) an account may see or work in."""

    __tablename__ = "user_scopes"
    __table_args__ = (UniqueConstraint("user_id", "commune_code", "hamlet"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    commune_code: Mapped[str] = mapped_column(String(8))
    #: NULL: the whole commune.
    hamlet: Mapped[str | None] = mapped_column(String(128))


class LinkCode(Base):
    """A one-time code a collaborator types in the chat to link that chat identity to their account."""

    __tablename__ = "link_codes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: SHA-256 of the code; the code itself is shown once and never stored.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id", ondelete="SET NULL"))


class Hamlet(Base):
    """A hamlet (ấp, khóm, thôn, tổ dân phố) of a commune, kept by the commune's officials."""

    __tablename__ = "hamlets"
    __table_args__ = (UniqueConstraint("commune_code", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(8), index=True)
    name: Mapped[str] = mapped_column(String(128))


class Review(Base):
    """The commune review of one shared assessment: queued, then the official's recorded outcome."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    assessment_id: Mapped[int] = mapped_column(
        ForeignKey("assessments.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[ReviewStatus] = mapped_column(
        _enum(ReviewStatus, "review_status"), default=ReviewStatus.QUEUED
    )
    queued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)
    #: When the household was told the outcome through its channel.
    notified_at: Mapped[dt.datetime | None]


class OfficialListEntry(Base):
    """One household of the commune's official poor / near-poor list, uploaded by an official."""

    __tablename__ = "official_list_entries"
    __table_args__ = (Index("ix_official_list_entries_commune_code_year", "commune_code", "year"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    commune_code: Mapped[str] = mapped_column(String(8))
    hamlet: Mapped[str | None] = mapped_column(String(128))
    household_head: Mapped[str] = mapped_column(String(128))
    household_code: Mapped[str | None] = mapped_column(String(64))
    #: "poor" or "near_poor".
    status: Mapped[str] = mapped_column(String(32))
    year: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditLog(Base):
    """Who viewed or changed household-level data, and when (admins read it)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None]


class AggregateMonthly(Base):
    """Anonymous monthly counts for the dashboard, kept up to date in the transaction that stores an assessment.

    One row per month, commune, hamlet, channel, provenance, standard, status and next-period status, so the
    province → commune → hamlet pages sum a few thousand rows instead of scanning every assessment. Unknown
    values are ``""``. Never touched by erasure.
    """

    __tablename__ = "aggregates_monthly"
    __table_args__ = (
        UniqueConstraint(
            "month",
            "commune_code",
            "hamlet",
            "channel",
            "provenance",
            "standard_id",
            "status",
            "next_status",
            # Explicit: the generated name passes PostgreSQL's 63-character limit.
            name="uq_aggregates_monthly_key",
        ),
        Index("ix_aggregates_monthly_commune_code_month", "commune_code", "month"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    #: First day of the month (Vietnam time).
    month: Mapped[dt.date] = mapped_column(Date)
    province_code: Mapped[str] = mapped_column(String(4), default="", server_default="", index=True)
    commune_code: Mapped[str] = mapped_column(String(8), default="", server_default="")
    hamlet: Mapped[str] = mapped_column(String(128), default="", server_default="")
    channel: Mapped[str] = mapped_column(String(32), default="", server_default="")
    provenance: Mapped[str] = mapped_column(String(16), default="", server_default="")
    standard_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    next_status: Mapped[str] = mapped_column(String(32), default="", server_default="")
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AggregateDeprivationMonthly(Base):
    """Anonymous monthly count of households deprived on each indicator (the dashboard's heat map)."""

    __tablename__ = "aggregates_deprivation_monthly"
    __table_args__ = (
        UniqueConstraint(
            "month", "commune_code", "hamlet", "standard_id", "indicator", name="uq_aggregates_deprivation_monthly_key"
        ),
        Index("ix_aggregates_deprivation_monthly_commune_code_month", "commune_code", "month"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date)
    province_code: Mapped[str] = mapped_column(String(4), default="", server_default="", index=True)
    commune_code: Mapped[str] = mapped_column(String(8), default="", server_default="")
    hamlet: Mapped[str] = mapped_column(String(128), default="", server_default="")
    standard_id: Mapped[str] = mapped_column(String(32))
    indicator: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AggregateCommuneMonthly(Base):
    """``aggregates_monthly`` without the hamlet: the province pages' rollup, kept in the same transaction.

    A province's monthly rows number about a quarter of its assessments (hamlet × channel × provenance × status
    combinations are sparse); summed per commune they are several times fewer, which is what keeps the
    province page within its time budget at a million assessments (bench/dashboard.py). Maintained by
    ``bot.store.repository.increment_monthly_aggregates``; ``flask dashboard-rollup`` rebuilds it from
    ``aggregates_monthly``.
    """

    __tablename__ = "aggregates_commune_monthly"
    __table_args__ = (
        UniqueConstraint(
            "province_code",
            "commune_code",
            "month",
            "channel",
            "provenance",
            "standard_id",
            "status",
            "next_status",
            name="uq_aggregates_commune_monthly_key",
        ),
        # One covering index per GROUP BY of the province page, in the GROUP BY's order, so SQLite streams
        # each sum from the index without sorting (the page's queries keep month out of the index seek).
        Index(
            "ix_aggregates_commune_monthly_status",
            "province_code", "commune_code", "standard_id", "status", "next_status", "month", "count",
        ),
        Index("ix_aggregates_commune_monthly_month", "province_code", "month", "status", "count"),
        Index("ix_aggregates_commune_monthly_mix", "province_code", "channel", "provenance", "month", "count"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date)
    province_code: Mapped[str] = mapped_column(String(4), default="", server_default="")
    commune_code: Mapped[str] = mapped_column(String(8), default="", server_default="")
    channel: Mapped[str] = mapped_column(String(32), default="", server_default="")
    provenance: Mapped[str] = mapped_column(String(16), default="", server_default="")
    standard_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    next_status: Mapped[str] = mapped_column(String(32), default="", server_default="")
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AggregateCommuneDeprivationMonthly(Base):
    """``aggregates_deprivation_monthly`` without the hamlet: the province heat map's rollup."""

    __tablename__ = "aggregates_commune_deprivation_monthly"
    __table_args__ = (
        UniqueConstraint(
            "province_code",
            "commune_code",
            "month",
            "standard_id",
            "indicator",
            name="uq_aggregates_commune_deprivation_monthly_key",
        ),
        Index(
            "ix_aggregates_commune_deprivation_monthly_heat",
            "province_code", "commune_code", "standard_id", "indicator", "month", "count",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date)
    province_code: Mapped[str] = mapped_column(String(4), default="", server_default="")
    commune_code: Mapped[str] = mapped_column(String(8), default="", server_default="")
    standard_id: Mapped[str] = mapped_column(String(32))
    indicator: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ChannelToken(Base):
    """A provider's rotating OAuth tokens (Zalo OA), persisted before use so a restart never loses them."""

    __tablename__ = "channel_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), unique=True)
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None]
    rotated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ImportJob(Base):
    """A bulk import (Kobo/ODK CSV, quick-form CSV): progress and the per-row error report."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="running")
    total_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    done_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ok_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: [{"line": n, "problems": [{"field", "message_vi"}]}], capped.
    errors: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
