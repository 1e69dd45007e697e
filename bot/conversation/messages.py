"""Channel-neutral message types of the conversation engine (contract section 5) and text chunking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from collections.abc import Callable

__all__ = [
    "INBOUND_KINDS",
    "INTERNAL_KINDS",
    "MAX_CHUNK",
    "Choice",
    "Inbound",
    "Outbound",
    "StepResult",
    "split_text",
]

#: Longest text of one outbound message. Zalo's OA text limit is 2,000 characters and the other channels allow
#: more, so one limit keeps every channel adapter free of splitting logic.
MAX_CHUNK: Final = 2000

#: Kinds of inbound events a channel may hand over.
INBOUND_KINDS: Final = frozenset({"text", "payload", "media", "sticker", "follow", "unfollow", "unsupported"})

#: Kinds only the pipeline sends, to tell the engine what became of its ``link`` event (or that the account link
#: was removed elsewhere). ``linked`` carries ``payload`` = JSON ``{"user_id", "name", "communes"}``. A channel
#: must never hand these over: the pipeline turns them into ``unsupported`` when they come from outside.
INTERNAL_KINDS: Final = frozenset({"linked", "link_failed", "unlinked"})


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing the user did: typed ``text``, tapped a button (``payload``) or sent something else (``kind``)."""

    text: str | None = None
    payload: str | None = None
    kind: str = "text"


@dataclass(frozen=True, slots=True)
class Choice:
    """A button: ``label`` shown, ``payload`` sent back in ``Inbound.payload`` when tapped."""

    label: str
    payload: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON-ready form."""
        return {"label": self.label, "payload": self.payload}


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to send: text (at most ``MAX_CHUNK`` characters) and optional buttons."""

    text: str
    choices: list[Choice] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {"text": self.text, "choices": [c.to_dict() for c in self.choices]}


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one ``Engine.step`` produced.

    ``state`` is JSON-serialisable and replaces the saved state; ``events`` are for the store to persist
    (dicts with a ``type``: answer, consent, assessment, erase, restart, pause, link, unlink); ``question_id`` is the question
    now awaiting an answer (None when there is none); ``done`` is true once the result has been given;
    ``assessment`` is the result dict when this step produced one.
    """

    state: dict[str, Any]
    messages: list[Outbound]
    events: list[dict[str, Any]]
    question_id: str | None
    done: bool
    assessment: dict[str, Any] | None = None


def split_text(text: str, limit: int = MAX_CHUNK) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters, at paragraph boundaries when possible.

    Paragraphs (blank-line separated) are packed greedily; a paragraph longer than ``limit`` is split at line
    breaks, then at spaces, and only as a last resort inside a word.
    """
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []

    def by_words(line: str) -> list[str]:
        pieces: list[str] = []
        for word in line.split(" "):
            while len(word) > limit:
                pieces.append(word[:limit])
                word = word[limit:]
            if word:
                pieces.append(word)
        return _pack(pieces, " ", limit, lambda w: [w])

    def by_lines(paragraph: str) -> list[str]:
        return _pack(paragraph.split("\n"), "\n", limit, by_words)

    return _pack(text.split("\n\n"), "\n\n", limit, by_lines)


def _pack(parts: list[str], sep: str, limit: int, split_long: Callable[[str], list[str]]) -> list[str]:
    """Greedily join ``parts`` with ``sep`` into chunks of at most ``limit``; longer parts go through ``split_long``."""
    out: list[str] = []
    current = ""
    for part in parts:
        part = part.strip("\n")
        if not part.strip():
            continue
        pieces = [part] if len(part) <= limit else split_long(part)
        for piece in pieces:
            if not current:
                current = piece
            elif len(current) + len(sep) + len(piece) <= limit:
                current = current + sep + piece
            else:
                out.append(current)
                current = piece
    if current:
        out.append(current)
    return out
