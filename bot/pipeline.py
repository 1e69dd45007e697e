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

import dataclasses
import datetime as dt
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, TypedDict

from sqlalchemy.orm import Session

from bot.store import repository as repo
from bot.store.db import run_in_transaction
from bot.store.models import ConsentMode, ConversationStatus, Provenance, utcnow

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "ChoicePayload",
    "MessagePayload",
    "PipelineConfig",
    "PipelineResult",
    "get_engine",
    "handle_inbound",
    "process_inbound",
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


def _clean_inbound(inbound: InboundLike) -> InboundLike:
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

    Returns:
        The replies and the conversation's position.
    """
    now = now or utcnow()
    config = config or _current_config()
    engine = engine or get_engine(config.expiry)
    inbound = _clean_inbound(inbound)
    user_ref = _clean(user_ref)
    message_id = _clean(message_id) if message_id is not None else None

    user_hash = repo.pseudonymise(config.pseudonym_key, channel, user_ref)
    identity = repo.lock_identity(
        session, channel, user_hash, now=now, address=user_ref if store_address else None
    )

    if message_id is not None:
        seen = repo.find_inbound(session, channel, identity, message_id)
        if seen is not None:
            return _replay(session, seen)

    conversation = repo.current_conversation(session, identity)
    result = engine.step(conversation.state if conversation is not None else None, inbound, now)
    version = _questionnaire_version(engine, result.state)
    if conversation is None:
        conversation = repo.start_conversation(
            session, identity, now=now, questionnaire_version=version
        )

    current, paused, erased = _apply_events(
        session, identity, conversation, result.events, now=now, config=config, version=version
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

    messages = [_message_payload(m) for m in result.messages]
    assessment = dict(result.assessment) if result.assessment is not None else None
    inbound_id = repo.record_inbound(
        session,
        identity,
        channel,
        message_id,
        # After an erasure even this message's own text is not kept.
        payload=None if erased else _inbound_document(inbound),
        reply={
            "question_id": result.question_id,
            "done": bool(result.done),
            "assessment": assessment,
        },
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


def _apply_events(
    session: Session,
    identity: repo.IdentityRow,
    conversation: repo.ConversationRow,
    events: Sequence[Mapping[str, Any]],
    *,
    now: dt.datetime,
    config: PipelineConfig,
    version: str | None,
) -> tuple[repo.ConversationRow | None, bool, bool]:
    """Persist the engine's events in order.

    Returns:
        The conversation the new state belongs to (a new one after a restart,
        None after an erasure), whether the person paused, and whether they erased.
    """
    current: repo.ConversationRow | None = conversation
    paused = erased = False
    for event in events:
        kind = event.get("type")
        if kind == "answer":
            if current is None:  # answering right after erasing, in the same step
                current = repo.start_conversation(
                    session, identity, now=now, questionnaire_version=version
                )
            repo.record_answer(
                session,
                current,
                str(event["question_id"]),
                event.get("value"),
                raw=_truncate(event.get("raw")),
                now=now,
                provenance=event.get("provenance") or Provenance.SELF,
                collaborator_name=_truncate(event.get("collaborator"), 128),
            )
        elif kind == "consent":
            repo.record_consent(
                session,
                identity,
                event["mode"],
                text_version=str(event.get("text_version") or config.consent_text_version)[:32],
                now=now,
            )
        elif kind == "assessment":
            mode = repo.active_consent_mode(session, identity)
            repo.record_assessment(
                session,
                input=event.get("input"),
                result=event.get("result") or {},
                now=now,
                identity=identity,
                conversation=current,
                questionnaire_version=version,
                provenance=event.get("provenance") or Provenance.SELF,
                shared=mode is ConsentMode.SHARE,
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
        # Unknown event types are ignored: a newer engine must not break an older store.
    return current, paused, erased


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
        assessment=reply.get("assessment"),
        duplicate=True,
    )


def process_inbound(
    session: Session,
    channel: str,
    user_ref: str,
    message_id: str | None,
    inbound: InboundLike,
    now: dt.datetime | None = None,
    **options: Any,
) -> PipelineResult:
    """Run :func:`handle_inbound` as its own transaction: commit, or retry on conflict.

    Takes the same arguments as :func:`handle_inbound`. ``now`` defaults to
    the time of each attempt.
    """
    return run_in_transaction(
        session,
        lambda s: handle_inbound(s, channel, user_ref, message_id, inbound, now, **options),
    )
