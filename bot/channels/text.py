"""Outbound text hygiene shared by the adapters: NFC normalisation, splitting, numbered lists, truncation.

The engine already hands over chunks of at most 2,000 characters, but limits are enforced here again *after*
normalisation and in each provider's own unit (Telegram counts UTF-16 code units), so an adapter never sends a
message the provider would reject as too long.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["normalize", "numbered_list", "split_text", "truncate", "utf16_len"]

#: Where a sentence may end: after . ! ? … (optionally closed by a quote or bracket) and before whitespace.
_SENTENCE_END: Final = re.compile(r"(?<=[.!?…][\"'”’)\]])\s+|(?<=[.!?…])\s+")

ELLIPSIS: Final = "…"


def normalize(text: str) -> str:
    """NFC-normalise ``text``: Vietnamese typed on some keyboards arrives decomposed (NFD)."""
    return unicodedata.normalize("NFC", text)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts message length in."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """Split ``text`` into chunks no longer than ``limit`` (as ``measure`` counts).

    Boundaries are tried coarse to fine: paragraphs (blank lines), lines, sentences, words; a single word longer
    than the limit is cut, never inside a combining sequence. Chunks are packed greedily so there are as few as
    possible. Whitespace at chunk edges is dropped; no other character is lost.

    Args:
        text: The text to split.
        limit: Longest chunk allowed (must be positive).
        measure: Length function in the provider's unit.

    Returns:
        The chunks, in order; ``[]`` for blank text.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    text = text.strip()
    if not text:
        return []
    if measure(text) <= limit:
        return [text]
    return _split(text, limit, measure, 0)


#: (separator regex, joiner) from coarse to fine.
_LEVELS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"\n[ \t]*\n\s*"), "\n\n"),
    (re.compile(r"\n"), "\n"),
    (_SENTENCE_END, " "),
    (re.compile(r"[ \t]+"), " "),
)


def _split(text: str, limit: int, measure: Callable[[str], int], level: int) -> list[str]:
    """Split at ``_LEVELS[level]`` boundaries, recursing into pieces still too long."""
    if level >= len(_LEVELS):
        return _hard_cut(text, limit, measure)
    pattern, joiner = _LEVELS[level]
    out: list[str] = []
    current = ""
    for piece in pattern.split(text):
        piece = piece.strip()
        if not piece:
            continue
        if measure(piece) > limit:
            if current:
                out.append(current)
                current = ""
            out.extend(_split(piece, limit, measure, level + 1))
            continue
        candidate = f"{current}{joiner}{piece}" if current else piece
        if measure(candidate) <= limit:
            current = candidate
        else:
            out.append(current)
            current = piece
    if current:
        out.append(current)
    return out


def _hard_cut(text: str, limit: int, measure: Callable[[str], int]) -> list[str]:
    """Cut a word longer than ``limit`` into pieces, keeping combining marks with their base character.

    ``measure`` is taken per code point and summed, which is exact for both units used (characters and UTF-16
    code units) and keeps this linear.
    """
    out: list[str] = []
    start = 0
    while start < len(text):
        end = start
        used = 0
        while end < len(text) and used + measure(text[end]) <= limit:
            used += measure(text[end])
            end += 1
        end = max(end, start + 1)  # always make progress, even on a code point wider than the limit
        # Never end a piece right before a combining mark: it would render on nothing.
        while end < len(text) and end - start > 1 and unicodedata.combining(text[end]):
            end -= 1
        out.append(text[start:end])
        start = end
    return out


def numbered_list(labels: Sequence[str]) -> str:
    """Render choices as ``1. label`` lines, for channels without buttons (the engine accepts the numbers)."""
    return "\n".join(f"{i}. {label}" for i, label in enumerate(labels, 1))


def truncate(text: str, limit: int) -> str:
    """Shorten ``text`` to at most ``limit`` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    return text[: limit - 1].rstrip() + ELLIPSIS
