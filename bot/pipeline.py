"""Channel-neutral handling of one inbound chat message.

Data flows one way: channel adapter → :func:`handle_inbound` → conversation
engine → store → outbox → channel adapter. Every channel (web chat, the JSON
chat API, the terminal, Zalo, ...) calls :func:`handle_inbound` inside one
transaction per inbound message, usually through :func:`process_inbound`,
which owns that transaction and retries it on a write conflict.

Within the transaction:

1. the sender's identity row is created if new and locked, so two messages
   from the same person are processed one after the other, never interleaved;
2. a message whose ``(channel, sender, message_id)`` was already processed
   is not processed again: the reply recorded the first time is returned;
3. the engine steps the saved conversation state; its events are persisted
   (answers, consent, decision record + anonymous aggregate, erase, restart,
   pause), the new state is saved, and the replies are written to the outbox.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, TypedDict

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.store import repository as repo
from bot.store.db import (
    SQLITE_BEGIN_OPTION,
    engine_with,
    is_retryable,
    run_in_transaction,
)
from bot.store.models import ConsentMode, ConversationStatus, Provenance, utcnow

if TYPE_CHECKING:
    from flask import Flask

_log = logging.getLogger(__name__)

__all__ = [
    "ChoicePayload",
    "EventLike",
    "MessagePayload",
    "PipelineConfig",
    "PipelineResult",
    "ProcessedInbound",
    "RecordedEvent",
    "StepAhead",
    "event_document",
    "get_engine",
    "handle_inbound",
    "outside_transaction",
    "process_inbound",
    "process_pending",
    "record_events",
    "step_ahead",
]

#: Longest inbound text kept in the database; anything past it is dropped from
#: storage (the engine still sees the message and answers it).
MAX_STORED_TEXT: Final = 5000


class ChoicePayload(TypedDict):
    """A button under a message: what it shows and what tapping it sends."""

    label: str
    payload: str


class MessagePayload(TypedDict):
    """One reply message, as stored in the outbox and returned to channels."""

    text: str
    choices: list[ChoicePayload]


class InboundLike(Protocol):
    """What the pipeline reads of ``bot.conversation.Inbound``."""

    text: str | None
    payload: str | None
    kind: str


class EngineLike(Protocol):
    """What the pipeline needs of ``bot.conversation.Engine``."""

    def step(self, state: dict[str, Any] | None, inbound: Any, now: dt.datetime) -> Any: ...


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Settings of the pipeline (normally from the Flask app config).

    Attributes:
        pseudonym_key: HMAC key for user ids (PSEUDONYM_KEY, else SECRET_KEY).
            Changing it makes every returning user a new identity.
        expiry: Idle time after which the engine offers to resume or start
            over (CONVERSATION_EXPIRY_DAYS); None keeps the engine's default.
        consent_text_version: Version of the consent wording, recorded with each
            consent when the engine's event does not name one.
    """

    pseudonym_key: str | bytes
    expiry: dt.timedelta | None = dt.timedelta(days=7)
    consent_text_version: str = "1"

    @classmethod
    def from_app(cls, app: Flask) -> PipelineConfig:
        """Read the settings from ``app.config`` (cached on the app)."""
        cached = app.extensions.get("bot.pipeline.config")
        if isinstance(cached, PipelineConfig):
            return cached
        days = app.config.get("CONVERSATION_EXPIRY_DAYS")
        config = cls(
            pseudonym_key=app.config.get("PSEUDONYM_KEY") or app.config["SECRET_KEY"],
            expiry=dt.timedelta(days=float(days)) if days else None,
            consent_text_version=str(app.config.get("CONSENT_TEXT_VERSION") or "1"),
        )
        app.extensions["bot.pipeline.config"] = config
        return config


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What a channel needs to answer one inbound message.

    Attributes:
        messages: Replies in order (also in the outbox).
        question_id: Question now awaiting an answer, if any.
        done: True once the assessment is complete.
        assessment: The result document when this message completed one.
        duplicate: True when this delivery id was already processed and the
            recorded reply is returned instead.
    """

    messages: list[MessagePayload]
    question_id: str | None
    done: bool
    assessment: dict[str, Any] | None
    duplicate: bool = False


_engine_lock = threading.Lock()
_engines: dict[dt.timedelta | None, EngineLike] = {}


def get_engine(expiry: dt.timedelta | None = None) -> EngineLike:
    """Return the process-wide conversation engine (questionnaire compiled once).

    Args:
        expiry: Idle time after which the engine offers to resume or restart
            (CONVERSATION_EXPIRY_DAYS); None keeps the engine's default.
    """
    engine = _engines.get(expiry)
    if engine is None:
        with _engine_lock:
            engine = _engines.get(expiry)
            if engine is None:
                from bot.conversation import Engine, default_engine

                engine = default_engine()
                if expiry is not None and expiry != getattr(engine, "expiry", None):
                    # Same compiled questionnaire, another idle limit.
                    engine = Engine(engine.qn, expiry=expiry)  # type: ignore[attr-defined]
                _engines[expiry] = engine
    return engine


def warm_up(app: Flask) -> None:
    """Load now what every conversation uses, each once per process: the compiled questionnaire, the commune
    names, the poverty standards and the support policies (otherwise the first person to write waits for them).
    """
    from assessment.policies import default_catalog
    from assessment.standards import default_standards
    from bot.parsing.communes import resolve_commune

    get_engine(PipelineConfig.from_app(app).expiry)
    default_standards()
    default_catalog()
    resolve_commune("Thường Phước")  # builds the name index


def _current_config() -> PipelineConfig:
    from flask import current_app

    return PipelineConfig.from_app(current_app)  # type: ignore[arg-type]


def _clean(text: str) -> str:
    """Make ``text`` storable in every database: no NUL, no lone surrogates.

    PostgreSQL refuses NUL in text and JSONB, and a lone surrogate (valid in a
    JSON string, not in UTF-8) cannot be encoded at all; either would turn a
    stray character from a client into a server error.
    """
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


#: Inbound kinds only this module may send the engine (``bot.conversation.INTERNAL_KINDS``): the outcome of a
#: link code. From a channel they would let anyone claim any collaborator account, so they become unsupported.
_INTERNAL_KINDS: Final = frozenset({"linked", "link_failed", "unlinked"})


def _clean_inbound(inbound: InboundLike) -> InboundLike:
    if getattr(inbound, "kind", None) in _INTERNAL_KINDS:
        inbound = dataclasses.replace(inbound, kind="unsupported")  # type: ignore[type-var]
    text, payload = inbound.text, inbound.payload
    clean_text = _clean(text) if isinstance(text, str) else text
    clean_payload = _clean(payload) if isinstance(payload, str) else payload
    if clean_text == text and clean_payload == payload:
        return inbound
    return dataclasses.replace(inbound, text=clean_text, payload=clean_payload)  # type: ignore[type-var]


def _message_payload(message: Any) -> MessagePayload:
    """Convert an engine ``Outbound`` into the stored, channel-neutral document."""
    return {
        "text": str(message.text),
        "choices": [
            {"label": str(choice.label), "payload": str(choice.payload)}
            for choice in (getattr(message, "choices", None) or [])
        ],
    }


def _inbound_document(inbound: InboundLike) -> dict[str, Any]:
    text = inbound.text
    return {
        "kind": getattr(inbound, "kind", "text"),
        "text": text[:MAX_STORED_TEXT] if isinstance(text, str) else None,
        "payload": inbound.payload,
    }


def _questionnaire_version(engine: Any, state: Mapping[str, Any] | None) -> str | None:
    """Version of the questions that produced ``state`` (the engine keeps it as ``qv``)."""
    version = state.get("qv") if state else None
    if version is None:
        version = getattr(engine, "questionnaire_version", None)
    return str(version)[:32] if version is not None else None


def handle_inbound(
    session: Session,
    channel: str,
    user_ref: str,
    message_id: str | None,
    inbound: InboundLike,
    now: dt.datetime | None = None,
    *,
    engine: EngineLike | None = None,
    config: PipelineConfig | None = None,
    synchronous: bool = False,
    store_address: bool = True,
    ahead: StepAhead | None = None,
) -> PipelineResult:
    """Process one inbound message inside the caller's transaction (no commit here).

    Args:
        session: The session of the transaction for this message.
        channel: Channel name (``"web"``, ``"zalo"``, ``"console"``, ...).
        user_ref: The channel's raw user id; only its keyed hash identifies the person.
        message_id: The channel's delivery id, for de-duplication (None: no dedupe).
        inbound: ``bot.conversation.Inbound``.
        now: Current time (aware; default: now).
        engine: Conversation engine (default: :func:`get_engine` with ``config.expiry``).
        config: Settings (default: from the current Flask app).
        synchronous: True when the caller delivers the replies itself (HTTP
            response, terminal): outbox rows are recorded as sent.
        store_address: Keep ``user_ref`` as the reply address (push channels need
            it; synchronous channels don't, so they should pass False).
        ahead: The step :func:`step_ahead` computed for this message from a
            snapshot; used when the conversation has not moved on since (same
            id and version), computed again here otherwise.

    Returns:
        The replies and the conversation's position.
    """
    now = now or utcnow()
    config = config or _current_config()
    engine = engine or get_engine(config.expiry)
    inbound = _clean_inbound(inbound)
    user_ref = _clean(user_ref)
    message_id = _clean(message_id) if message_id is not None else None

    user_hash = ahead.user_hash if ahead is not None else repo.pseudonymise(config.pseudonym_key, channel, user_ref)
    identity = repo.lock_identity(
        session,
        channel,
        user_hash,
        now=now,
        address=user_ref if store_address else None,
        # The step is known: count its replies on the identity row now, not in a second update.
        reserve=len(ahead.result.messages) if ahead is not None else 0,
    )

    if ahead is not None and ahead.conversation is not None and ahead.identity_id == identity.id:
        # Not read again: saving the state checks that the conversation's version has not moved since the
        # snapshot (StaleDataError otherwise, and the retry reads it afresh), and a delivery processed meanwhile
        # fails the inbound row's unique key the same way.
        conversation: repo.ConversationRow | None = ahead.conversation
        result = ahead.result
    else:
        if message_id is not None:
            # One round trip for both reads (both under the identity lock).
            seen, conversation = repo.find_inbound_and_conversation(session, channel, identity, message_id)
            if seen is not None:
                repo.release_reserved(session, identity)
                return _replay(session, seen)
        else:
            conversation = repo.current_conversation(session, identity)
        if ahead is not None and _same_conversation(conversation, ahead.conversation):
            result = ahead.result  # nothing moved since the snapshot (a first message): the step stands
        else:
            with _store_context(session):
                result = engine.step(conversation.state if conversation is not None else None, inbound, now)
    with _store_context(session):
        result = _follow_up(session, identity.id, engine, result, now)
    stored = _store_step(
        session, identity, conversation, result, engine=engine, now=now, config=config, channel=channel
    )

    messages = [_message_payload(m) for m in result.messages]
    assessment = dict(result.assessment) if result.assessment is not None else None
    inbound_id = repo.record_inbound(
        session,
        identity,
        channel,
        message_id,
        # After an erasure even this message's own text is not kept.
        payload=None if stored.erased else _inbound_document(inbound),
        reply=_reply_document(result, assessment, stored.assessment_id),
        received_at=now,
        processed_at=now,
    )
    repo.append_outbox(
        session, identity, channel, messages, now=now, inbound_id=inbound_id, delivered=synchronous
    )
    return PipelineResult(
        messages=messages,
        question_id=result.question_id,
        done=bool(result.done),
        assessment=assessment,
    )


def _store_step(
    session: Session,
    identity: repo.IdentityRow,
    conversation: repo.ConversationRow | None,
    result: Any,
    *,
    engine: Any,
    now: dt.datetime,
    config: PipelineConfig,
    channel: str,
) -> _Stored:
    """Persist one engine step (its events and the new conversation state) for every entry point.

    Returns:
        Whether the step erased the person's data, and the decision record it stored, if any.
    """
    version = _questionnaire_version(engine, result.state)
    if conversation is None:
        conversation = repo.start_conversation(
            session, identity, now=now, questionnaire_version=version
        )

    current, paused, erased, assessment_id = _apply_events(
        session,
        identity,
        conversation,
        result.events,
        now=now,
        config=config,
        version=version,
        channel=channel,
    )
    if current is None:
        # Erased: keep the engine's post-erasure state only if it has one
        # (it carries no personal data; the engine owns what goes in it).
        if result.state:
            repo.start_conversation(
                session, identity, now=now, state=result.state, questionnaire_version=version
            )
    else:
        if result.done:
            status = ConversationStatus.DONE
        elif paused:
            status = ConversationStatus.PAUSED
        else:
            status = ConversationStatus.ACTIVE
        repo.save_conversation(
            session,
            current,
            state=result.state,
            status=status,
            now=now,
            questionnaire_version=version,
        )
    return _Stored(erased, assessment_id)


class _Stored(NamedTuple):
    """What :func:`_store_step` did besides saving the state."""

    erased: bool
    assessment_id: int | None


def _apply_events(
    session: Session,
    identity: repo.IdentityRow,
    conversation: repo.ConversationRow,
    events: Sequence[Mapping[str, Any]],
    *,
    now: dt.datetime,
    config: PipelineConfig,
    version: str | None,
    channel: str | None = None,
) -> tuple[repo.ConversationRow | None, bool, bool, int | None]:
    """Persist the engine's events in order.

    Returns:
        The conversation the new state belongs to (a new one after a restart,
        None after an erasure), whether the person paused, whether they erased,
        and the id of the decision record stored (the last, if several).
    """
    current: repo.ConversationRow | None = conversation
    paused = erased = False
    assessment_id: int | None = None
    for event in events:
        kind = event.get("type")
        if kind == "answer":
            if current is None:  # answering right after erasing, in the same step
                current = repo.start_conversation(
                    session, identity, now=now, questionnaire_version=version
                )
            answer = _answer_record(event)
            repo.record_answer(
                session,
                current,
                answer.question_id,
                answer.value,
                raw=answer.raw,
                now=now,
                provenance=answer.provenance,
                collaborator_name=answer.collaborator_name,
            )
        elif kind == "consent":
            repo.record_consent(
                session, identity, event["mode"], text_version=_consent_version(event, config), now=now
            )
        elif kind == "assessment":
            provenance = Provenance(event.get("provenance") or Provenance.SELF)
            owner: repo.IdentityRow | None = identity
            collaborator_user_id: int | None = None
            if provenance is Provenance.COLLABORATOR:
                # Entered by a collaborator for a household: always shared with the commune; the household, not
                # this chat, is its subject (so the collaborator erasing their chat does not erase it); credited
                # to the account only while this chat is still linked to it.
                shared = True
                owner = None
                claimed = _int_or_none(event.get("collaborator_user_id"))
                if claimed is not None and claimed == repo.linked_user_id(session, identity.id):
                    collaborator_user_id = claimed
            else:
                shared = repo.active_consent_mode(session, identity) is ConsentMode.SHARE
            assessment_id = repo.record_assessment(
                session,
                input=event.get("input"),
                result=event.get("result") or {},
                now=now,
                identity=owner,
                conversation=current,
                questionnaire_version=version,
                provenance=provenance,
                shared=shared,
                channel=channel,
                collaborator_user_id=collaborator_user_id,
                **_personal_details(event, shared),
            )
        elif kind == "erase":
            repo.erase_identity(session, identity, now=now)
            current, erased = None, True
        elif kind == "restart":
            if current is not None and current.status is not ConversationStatus.DONE:
                repo.save_conversation(
                    session,
                    current,
                    state=current.state,
                    status=ConversationStatus.EXPIRED,
                    now=now,
                )
            current = repo.start_conversation(
                session, identity, now=now, questionnaire_version=version
            )
        elif kind == "pause":
            paused = True
        elif kind == "unlink":
            repo.unlink_identity(session, identity.id)
        # ``link`` was answered by _follow_up before; unknown types are ignored: a newer engine must not break an
        # older store.
    return current, paused, erased, assessment_id


# -- what the engine needs from the store: hamlet lists, link codes ---------------------------------------------


@contextlib.contextmanager
def _store_context(session: Session) -> Any:
    """Let the (pure) engine read the commune's hamlet list through ``session`` during the step."""
    from bot.conversation.services import hamlet_source

    def lookup(commune_code: str) -> list[str]:
        if session.in_transaction() or repo.lent(session):
            return repo.hamlet_names(session, commune_code)
        # The delivery worker computes a step ahead of the identity lock, outside any transaction: read in a
        # short transaction of its own that does not take SQLite's write lock.
        session.connection(execution_options={SQLITE_BEGIN_OPTION: "DEFERRED"})
        try:
            return repo.hamlet_names(session, commune_code)
        finally:
            session.rollback()

    with hamlet_source(lookup):
        yield


@dataclasses.dataclass(frozen=True)
class _Step:
    """Two engine steps run for one message, seen as one (same attributes as ``StepResult``)."""

    state: dict[str, Any]
    messages: list[Any]
    events: list[dict[str, Any]]
    question_id: str | None
    done: bool
    assessment: dict[str, Any] | None


def _merge(first: Any, second: Any) -> _Step:
    return _Step(
        state=second.state,
        messages=[*first.messages, *second.messages],
        events=[e for e in first.events if e.get("type") != "link"] + list(second.events),
        question_id=second.question_id,
        done=bool(second.done),
        assessment=second.assessment if second.assessment is not None else first.assessment,
    )


def _follow_up(session: Session, identity_id: int, engine: Any, result: Any, now: dt.datetime) -> Any:
    """Give the engine what only the store knows, by stepping it once more in this message's transaction.

    * A ``link`` event: redeem the code (:mod:`bot.accounts.links`) and report ``linked`` (with the account's name
      and communes) or ``link_failed``.
    * A conversation in collaborator mode whose chat is no longer linked to that account (unlinked or
      deactivated on the web): report ``unlinked``, so the engine stops crediting answers to the account.

    Returns:
        ``result``, or both steps merged (messages of both, state of the second).
    """
    from bot.conversation import Inbound

    links = [e for e in result.events if e.get("type") == "link"]
    if links:
        from bot.accounts.links import redeem_link_code

        user = redeem_link_code(session, str(links[-1].get("code") or ""), identity_id, now)
        if user is not None:
            info = {"user_id": user.id, "name": user.full_name, "communes": repo.user_communes(session, user.id)}
            inbound = Inbound(kind="linked", payload=json.dumps(info, ensure_ascii=False))
        else:
            inbound = Inbound(kind="link_failed")
        return _merge(result, engine.step(result.state, inbound, now))
    state = result.state if isinstance(result.state, Mapping) else {}
    collab = state.get("collab")
    if (
        isinstance(collab, Mapping)
        and collab.get("user_id") is not None
        and repo.linked_user_id(session, identity_id) != collab.get("user_id")
    ):
        return _merge(result, engine.step(result.state, Inbound(kind="unlinked"), now))
    return result


def _reply_document(
    result: Any, assessment: dict[str, Any] | None, assessment_id: int | None = None, *, recorded: bool = False
) -> dict[str, Any]:
    """What is recorded with an inbound message about the reply, so a redelivery can be answered the same.

    An assessment the step stored is named by its record's id (``recorded``: the caller adds it), not copied: it
    is the record's ``result``, tens of kilobytes. One shown without a new record is kept whole.
    """
    document: dict[str, Any] = {"question_id": result.question_id, "done": bool(result.done)}
    if assessment_id is not None:
        document["assessment_id"] = assessment_id
    elif not recorded:
        document["assessment"] = assessment
    return document


def _answer_record(event: Mapping[str, Any]) -> repo.AnswerRecord:
    """What an ``answer`` event stores (texts cut to the columns' lengths)."""
    return repo.AnswerRecord(
        question_id=str(event["question_id"]),
        value=event.get("value"),
        raw=_truncate(event.get("raw")),
        provenance=event.get("provenance") or Provenance.SELF,
        collaborator_name=_truncate(event.get("collaborator"), 128),
    )


class _Personal(TypedDict):
    """The personal columns of a decision record (share or collaborator mode only)."""

    hamlet: str | None
    household_head: str | None
    phone: str | None
    household_code: str | None


def _personal_details(event: Mapping[str, Any], shared: bool) -> _Personal:
    """The personal columns of an ``assessment`` event's record: kept only when shared (contract §5 ``household``)."""
    details = event.get("household")
    household: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    personal: Mapping[str, Any] = {**event, **household} if shared else {}
    return {
        "hamlet": _truncate(personal.get("hamlet"), 128),
        "household_head": _truncate(personal.get("household_head"), 128),
        "phone": _truncate(personal.get("phone"), 32),
        "household_code": _truncate(personal.get("household_code"), 64),
    }


def _consent_version(event: Mapping[str, Any], config: PipelineConfig) -> str:
    """Version of the consent text a ``consent`` event agreed to (the configured one when it names none)."""
    return str(event.get("text_version") or config.consent_text_version)[:32]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _truncate(value: Any, limit: int = MAX_STORED_TEXT) -> str | None:
    if value is None:
        return None
    return str(value)[:limit]


def _replay(session: Session, seen: repo.InboundRow) -> PipelineResult:
    """Build the response recorded for an already-processed delivery."""
    reply = seen.reply or {}
    return PipelineResult(
        messages=[
            {"text": p.get("text", ""), "choices": list(p.get("choices") or [])}
            for p in repo.outbox_payloads_for(session, seen)
        ],
        question_id=reply.get("question_id"),
        done=bool(reply.get("done", False)),
        assessment=(
            repo.assessment_result(session, reply["assessment_id"])
            if isinstance(reply.get("assessment_id"), int)
            else reply.get("assessment")
        ),
        duplicate=True,
    )


def process_inbound(
    session: Session,
    channel: str,
    user_ref: str,
    message_id: str | None,
    inbound: InboundLike,
    now: dt.datetime | None = None,
    *,
    precompute: bool | None = None,
    **options: Any,
) -> PipelineResult:
    """Run :func:`handle_inbound` as its own transaction: commit, or retry on conflict.

    Takes the same arguments as :func:`handle_inbound`. ``now`` defaults to
    the time of the first attempt.

    The engine step is first computed from a snapshot (``precompute``; by
    default unless ``session`` is already in a transaction), by
    :func:`step_ahead`, before any lock is taken; then:

    * SQLite: under the write lock the step is only stored, or computed again
      if the person's conversation moved on meanwhile. The lock is database-wide,
      so a step computed under it (the final one assesses the household and
      writes the whole result) would hold up every other person's message.
    * PostgreSQL: a step that only records answers or a consent (most messages), a new person's
      first message, or the last answer with the household's assessment, is stored by one
      statement outside any transaction block (:func:`_store_in_one_statement`): one round trip
      instead of eight to fourteen, which is most of a message's cost there. Any other step, or
      one whose conversation moved on, takes the usual path.
    """
    if precompute is None:
        # Not when the caller's session is already in a transaction: the snapshot would end it.
        precompute = not session.in_transaction()
    ahead: list[StepAhead | None] = []
    if precompute:
        now = now or utcnow()
        with outside_transaction(session):
            step = step_ahead(
                session,
                channel,
                user_ref,
                message_id,
                inbound,
                now,
                engine=options.get("engine"),
                config=options.get("config"),
            )
            if step is not None and _one_statement(session, step):
                stored = _store_in_one_statement(
                    session, channel, user_ref, message_id, inbound, now, step, **options
                )
                if stored is not None:
                    return stored
                step = None  # moved on, or a redelivery: the usual way, from scratch
        ahead.append(step)

    def work(s: Session) -> PipelineResult:
        # The step computed ahead serves the first attempt only: a retry (the conversation moved on, a
        # duplicate delivery, a busy database) reads the conversation under the lock and steps it afresh.
        step = ahead.pop() if ahead else None
        return handle_inbound(s, channel, user_ref, message_id, inbound, now, ahead=step, **options)

    return run_in_transaction(session, work)


def _one_statement(session: Session, ahead: StepAhead) -> bool:
    """Whether :func:`_store_in_one_statement` can store this step.

    PostgreSQL; a known conversation or a new person, not in collaborator mode; a step that records answers and
    at most one consent, or (a known conversation) the last answer and the household's assessment: the person's
    own, and its hamlet, if any, is matched against the commune's list in a transaction.
    """
    result = ahead.result
    state = result.state if isinstance(result.state, Mapping) else None
    kinds = [event.get("type") for event in result.events]
    if not (
        session.get_bind().dialect.name == "postgresql"
        # A known person's conversation, or a new person's first message (no identity yet, so no conversation).
        and (ahead.identity_id is None) == (ahead.conversation is None)
        and state  # a step with no state to save is not one of these
        and not state.get("collab")  # collaborator mode: _follow_up checks the account link in a transaction
    ):
        return False
    if not result.done:
        return all(kind in ("answer", "consent") for kind in kinds) and kinds.count("consent") <= 1
    if ahead.conversation is None:
        return False
    assessments = [event for event in result.events if event.get("type") == "assessment"]
    return (
        all(kind in ("answer", "assessment") for kind in kinds)
        and len(assessments) == 1
        and (assessments[0].get("provenance") or Provenance.SELF) == Provenance.SELF
        and not _personal_details(assessments[0], ahead.consent_mode is ConsentMode.SHARE)["hamlet"]
    )


def _store_in_one_statement(
    session: Session,
    channel: str,
    user_ref: str,
    message_id: str | None,
    inbound: InboundLike,
    now: dt.datetime,
    ahead: StepAhead,
    *,
    engine: EngineLike | None = None,
    config: PipelineConfig | None = None,
    synchronous: bool = False,
    store_address: bool = True,
) -> PipelineResult | None:
    """In :func:`outside_transaction`, store a step :func:`_one_statement` accepts, in one statement.

    Returns:
        The result, or None when the conversation (or the consent an assessment was shared under) moved on
        since the snapshot, the delivery was recorded meanwhile, or another writer held a counter row in a
        way that could not wait; nothing is written then.
    """
    result = ahead.result
    state: Mapping[str, Any] = result.state
    consents = [event for event in result.events if event.get("type") == "consent"]
    assessments = [event for event in result.events if event.get("type") == "assessment"]
    config = config or _current_config()
    engine = engine or get_engine(config.expiry)
    user_ref = _clean(user_ref)
    version = _questionnaire_version(engine, state)
    messages = [_message_payload(m) for m in result.messages]
    assessment = dict(result.assessment) if result.assessment is not None else None
    record: repo.AssessmentRecord | None = None
    if assessments and ahead.conversation is not None:
        event, shared = assessments[0], ahead.consent_mode is ConsentMode.SHARE
        record = repo.assessment_record(
            input=event.get("input"),
            result=event.get("result") or {},
            now=now,
            identity_id=ahead.identity_id,
            conversation_id=ahead.conversation.id,
            questionnaire_version=version,
            shared=shared,
            channel=channel,
            **_personal_details(event, shared),
        )
    try:
        inbound_id = repo.store_step(
            session,
            identity_id=ahead.identity_id,
            conversation=ahead.conversation,
            user_hash=ahead.user_hash,
            state=dict(state),
            status=ConversationStatus.DONE if result.done else ConversationStatus.ACTIVE,
            questionnaire_version=version,
            answers=[_answer_record(event) for event in result.events if event.get("type") == "answer"],
            consent=(
                (ConsentMode(consents[0]["mode"]), _consent_version(consents[0], config)) if consents else None
            ),
            assessment=record,
            consent_in_force=ahead.consent_mode,
            channel=channel,
            message_id=_clean(message_id) if message_id is not None else None,
            payload=_inbound_document(_clean_inbound(inbound)),
            # With an assessment, the statement adds the id of the record it stores.
            reply=_reply_document(result, assessment, recorded=record is not None),
            messages=messages,
            delivered=synchronous,
            address=user_ref if store_address else None,
            now=now,
        )
    except DBAPIError as exc:
        if not is_retryable(exc):
            raise
        return None  # a duplicate delivery, a deadlock on a counter row: the usual way sorts it out
    if inbound_id is None:
        return None
    return PipelineResult(
        messages=messages, question_id=result.question_id, done=bool(result.done), assessment=assessment
    )


@dataclasses.dataclass(frozen=True)
class StepAhead:
    """An engine step computed before the transaction, and what it was computed from."""

    identity_id: int | None
    conversation: repo.ConversationRow | None
    result: Any
    consent_mode: ConsentMode | None
    #: The person's keyed hash (:func:`repo.pseudonymise`), computed once per message.
    user_hash: str


def step_ahead(
    session: Session,
    channel: str,
    user_ref: str,
    message_id: str | None,
    inbound: InboundLike,
    now: dt.datetime,
    *,
    engine: EngineLike | None = None,
    config: PipelineConfig | None = None,
) -> StepAhead | None:
    """Compute the engine step for a message from a snapshot of the person's conversation, taking no lock.

    Runs on the session's connection as :func:`outside_transaction` opened it (the caller's block); the step
    is stored later only if the conversation is still the same.

    Returns:
        The step, or None when there is nothing to compute ahead: a delivery already processed (replayed under
        the lock), or a failure (the step is computed again under the lock, where an error surfaces as usual).
    """
    config = config or _current_config()
    engine = engine or get_engine(config.expiry)
    user_hash = repo.pseudonymise(config.pseudonym_key, channel, _clean(user_ref))
    try:
        found = repo.snapshot(
            session, channel, user_hash, _clean(message_id) if message_id is not None else None
        )
        if found.seen is not None:
            return None
        conversation = found.conversation
        with _store_context(session):
            state = conversation.state if conversation is not None else None
            result = engine.step(state, _clean_inbound(inbound), now)
    except Exception:  # noqa: BLE001 - computed again under the lock, where it fails visibly
        _log.debug("step ahead failed; computing it under the lock", exc_info=True)
        return None
    return StepAhead(found.identity_id, conversation, result, found.consent_mode, user_hash)


@contextlib.contextmanager
def outside_transaction(session: Session) -> Iterator[None]:
    """Give ``session`` a connection that takes no lock and waits for no writer, for the block; release it after.

    No transaction block: each statement is its own snapshot and, if it writes, commits on its own (SQLite: no
    ``BEGIN``; PostgreSQL: autocommit, so a read costs one round trip).
    """
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    options = {SQLITE_BEGIN_OPTION: "NONE"} if engine.dialect.name == "sqlite" else {"isolation_level": "AUTOCOMMIT"}
    # A connection of the session's pool lent to the repository for the block, not the session's own: switching
    # the session's connection to autocommit and back costs more than the read it is for.
    with engine_with(engine, **options).connect() as connection, repo.lending(session, connection):
        yield


# -- push channels: events recorded by a webhook, processed later by the delivery worker ---------------------
#
# A webhook must answer the provider within its deadline (2 s for Zalo) whatever the engine or the database is
# doing, so it only verifies the delivery and calls :func:`record_events` (one INSERT per event, unique on
# channel + sender + delivery id, so a redelivery is recorded once). The delivery worker then calls
# :func:`process_pending` for the person: their recorded messages are stepped through the engine one at a
# time in arrival order, each in one transaction that also saves the state and queues the replies.


class EventLike(Protocol):
    """What :func:`record_events` reads of ``bot.channels.InboundEvent`` (read-only: it is frozen)."""

    @property
    def channel(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def user_ref(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def text(self) -> str | None: ...
    @property
    def payload(self) -> str | None: ...
    @property
    def timestamp(self) -> dt.datetime: ...
    @property
    def raw(self) -> dict[str, Any]: ...
    @property
    def info(self) -> dict[str, str]: ...


@dataclasses.dataclass(frozen=True)
class RecordedEvent:
    """A newly recorded event: its row and the person it is from."""

    inbound_id: int
    identity_id: int
    channel: str


@dataclasses.dataclass(frozen=True)
class ProcessedInbound:
    """A recorded message :func:`process_pending` is done with.

    Attributes:
        inbound_id: Its row.
        identity_id: The sender.
        channel: Channel name.
        document: The event as recorded (kind, text, payload, user_ref, timestamp, raw, info): what a channel
            needs to acknowledge it (Telegram button taps).
        replies: Replies queued for it.
        error: Set when it was given up after repeated failures (no replies then).
    """

    inbound_id: int
    identity_id: int
    channel: str
    message_id: str | None
    document: dict[str, Any]
    replies: int = 0
    error: str | None = None


#: Engine ``Inbound.kind`` values (docs/CONTRACTS.md §5); any other recorded kind is ``unsupported``.
_ENGINE_KINDS: Final = frozenset({"text", "payload", "media", "sticker", "follow", "unfollow", "unsupported"})

#: Longest stored delivery id (``inbound_messages.message_id``); longer ids are stored as a digest.
MAX_MESSAGE_ID: Final = 128


def _clean_json(value: Any) -> Any:
    """:func:`_clean` every string in a JSON document (provider bodies may carry ``\\u0000``)."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def _message_key(message_id: str) -> str:
    """The stored delivery id: as given, or a digest when longer than the column."""
    message_id = _clean(message_id)
    if len(message_id) <= MAX_MESSAGE_ID:
        return message_id
    import hashlib

    return "sha256:" + hashlib.sha256(message_id.encode("utf-8")).hexdigest()


def event_document(event: EventLike) -> dict[str, Any]:
    """The JSON document recorded for a webhook event until it is processed.

    The provider's raw event is kept only until then (a Telegram tap is acknowledged with its id); processing
    replaces the document with the usual ``{kind, text, payload}`` (or NULL after an erasure).
    """
    return _clean_json(
        {
            "kind": event.kind,
            "text": event.text[:MAX_STORED_TEXT] if isinstance(event.text, str) else None,
            "payload": event.payload,
            "user_ref": event.user_ref,
            "timestamp": event.timestamp.astimezone(dt.UTC).isoformat() if event.timestamp else None,
            "raw": event.raw,
            "info": dict(event.info or {}),
        }
    )


def record_events(
    session: Session,
    events: Sequence[EventLike],
    *,
    config: PipelineConfig | None = None,
    now: dt.datetime | None = None,
) -> list[RecordedEvent]:
    """Record webhook events for later processing, inside the caller's transaction (no commit here).

    Never waits on a row lock held by a worker processing the same person (see
    :func:`bot.store.repository.identity_id_for`). Events already recorded are skipped.

    Returns:
        The events that were new, in order.
    """
    now = now or utcnow()
    config = config or _current_config()
    recorded: list[RecordedEvent] = []
    for event in events:
        user_ref = _clean(event.user_ref)
        user_hash = repo.pseudonymise(config.pseudonym_key, event.channel, user_ref)
        identity_id = repo.identity_id_for(session, event.channel, user_hash, address=user_ref, now=now)
        inbound_id = repo.record_pending_inbound(
            session,
            identity_id,
            event.channel,
            _message_key(event.message_id),
            payload=event_document(event),
            received_at=now,
        )
        if inbound_id is not None:
            recorded.append(RecordedEvent(inbound_id, identity_id, event.channel))
    return recorded


def _engine_inbound(document: Mapping[str, Any]) -> Any:
    """The engine's ``Inbound`` for a recorded event document."""
    from bot.conversation import Inbound

    kind = str(document.get("kind") or "unsupported")
    text, payload = document.get("text"), document.get("payload")
    return Inbound(
        text=text if isinstance(text, str) else None,
        payload=payload if isinstance(payload, str) else None,
        kind=kind if kind in _ENGINE_KINDS else "unsupported",
    )


def _same_conversation(a: repo.ConversationRow | None, b: repo.ConversationRow | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (a.id, a.version) == (b.id, b.version)


def process_pending(
    session: Session,
    identity_id: int,
    *,
    engine: EngineLike | None = None,
    config: PipelineConfig | None = None,
    limit: int = 50,
    max_attempts: int = 5,
    clock: Any = utcnow,
    precompute: bool | None = None,
) -> list[ProcessedInbound]:
    """Process one person's recorded messages, oldest first, each in its own committed transaction.

    On SQLite the engine step is computed first from a snapshot of the conversation, outside any write lock
    (SQLite's write lock is database-wide, and a webhook must never wait behind a slow engine); then, under the
    identity lock, the step is stored if the conversation is unchanged, or recomputed if another worker moved it
    on meanwhile. On PostgreSQL the identity lock is a row lock that webhooks never wait for, so the step is
    simply computed under it (one transaction, four round trips fewer per message). The message is marked processed in the same transaction that saves
    the state and queues the replies, so a crash at any point leaves it either wholly done or still pending.

    An engine error is counted on the message (``attempts``, ``last_error``) and processing of this person
    stops until the next call; after ``max_attempts`` the message is marked processed with the error so the
    person's later messages are not held up for ever. Database errors propagate uncounted (an outage must not
    use up attempts).

    Args:
        session: A session for this worker (its transactions are committed or rolled back here).
        identity_id: The person.
        engine: Conversation engine (default: :func:`get_engine`).
        config: Settings (default: from the current Flask app).
        limit: Most messages to process in this call (a chatty person must not starve the others).
        max_attempts: Processing attempts before a message is given up.
        clock: Returns the current aware UTC time.
        precompute: Compute the step before taking the lock (default: on SQLite only).

    Returns:
        The messages processed (or given up) in this call, in order.
    """
    config = config or _current_config()
    engine = engine or get_engine(config.expiry)
    if precompute is None:
        precompute = session.get_bind().dialect.name == "sqlite"
    done: list[ProcessedInbound] = []
    while len(done) < limit:
        session.rollback()
        head: repo.PendingInbound | None = None
        snapshot: repo.ConversationRow | None = None
        document: dict[str, Any] = {}
        inbound: Any = None
        precomputed: Any = None
        precompute_error: Exception | None = None
        if precompute:
            # 1. Snapshot: the head of the queue and the conversation it applies to (a read; never blocks).
            session.connection(execution_options={"sqlite_begin": "DEFERRED"})
            head = repo.next_pending_inbound(session, identity_id)
            snapshot = repo.current_conversation(session, repo.IdentityRow(identity_id, 0)) if head else None
            session.rollback()
            if head is None:
                break
            document = dict(head.payload or {})
            inbound = _clean_inbound(_engine_inbound(document))
        now = clock()
        if head is not None:
            try:
                with _store_context(session):
                    precomputed = engine.step(snapshot.state if snapshot is not None else None, inbound, now)
            except Exception as exc:  # noqa: BLE001 - recorded on the message below
                precompute_error = exc
        #: The message the transaction worked on, for the failure path.
        seen: list[repo.PendingInbound] = []

        def work(s: Session, head: repo.PendingInbound | None = head) -> ProcessedInbound | None:
            peek = head if head is not None else repo.next_pending_inbound(s, identity_id)
            if peek is None:
                return None  # nothing pending: do not touch the identity
            address = (peek.payload or {}).get("user_ref")
            identity = repo.lock_identity_id(
                s, identity_id, now=now, address=str(address) if isinstance(address, str) else None
            )
            if identity is None:
                return None
            current_head = repo.next_pending_inbound(s, identity_id)
            if current_head is None:
                return None  # another worker processed it meanwhile
            seen[:] = [current_head]
            row_document, row_inbound = document, inbound
            result, error = precomputed, precompute_error
            if head is None or current_head.id != head.id:
                # An older message became visible after the snapshot: take it first (order per person).
                row_document = dict(current_head.payload or {})
                row_inbound = _clean_inbound(_engine_inbound(row_document))
                result = error = None
            conversation = repo.current_conversation(s, identity)
            with _store_context(s):
                if head is None or current_head.id != head.id or not _same_conversation(conversation, snapshot):
                    result = engine.step(conversation.state if conversation is not None else None, row_inbound, now)
                elif error is not None:
                    raise error
                result = _follow_up(s, identity.id, engine, result, now)
            stored = _store_step(
                s,
                identity,
                conversation,
                result,
                engine=engine,
                now=now,
                config=config,
                channel=current_head.channel,
            )
            messages = [_message_payload(m) for m in result.messages]
            assessment = dict(result.assessment) if result.assessment is not None else None
            repo.complete_pending_inbound(
                s,
                current_head.id,
                payload=None if stored.erased else _inbound_document(row_inbound),
                reply=_reply_document(result, assessment, stored.assessment_id),
                processed_at=now,
            )
            repo.append_outbox(
                s, identity, current_head.channel, messages, now=now, inbound_id=current_head.id, delivered=False
            )
            return ProcessedInbound(
                current_head.id,
                identity_id,
                current_head.channel,
                current_head.message_id,
                row_document,
                replies=len(messages),
            )

        try:
            processed = run_in_transaction(session, work)
        except DBAPIError:
            raise
        except Exception as exc:  # noqa: BLE001 - an engine (or data) problem with this one message
            failed = seen[0] if seen else head
            if failed is None:
                raise
            head, document = failed, dict(failed.payload or {})
            error = f"{type(exc).__name__}: {exc}"
            give_up = head.attempts + 1 >= max_attempts
            _log.exception(
                "processing %s message %s failed (attempt %d%s)",
                head.channel,
                head.id,
                head.attempts + 1,
                ", given up" if give_up else "",
            )
            failed_id = head.id
            run_in_transaction(
                session,
                lambda s: repo.record_inbound_failure(s, failed_id, error=error, give_up=give_up, now=now),
            )
            if not give_up:
                break
            done.append(
                ProcessedInbound(head.id, identity_id, head.channel, head.message_id, document, error=error)
            )
            continue
        if processed is None:
            if head is None:
                break  # nothing (more) pending
            continue
        done.append(processed)
    return done
