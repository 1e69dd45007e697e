"""Accent-insensitive text normalisation for Vietnamese.

``fold`` is the one normalisation used for every accent-insensitive comparison
in the bot (commune names, keywords, number words). It is a table lookup
(``str.translate``) plus one regular expression, so it is cheap enough for
per-message and per-row use.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["fold", "strip_accents"]


def _build_table() -> dict[int, str | None]:
    """Map every precomposed Latin letter with diacritics to its bare ASCII letter."""
    table: dict[int, str | None] = {}
    # Latin-1 supplement, Latin extended A/B and Latin extended additional
    # (the Vietnamese stacked vowels such as "ệ" live in U+1E00..U+1EFF).
    ranges = [(0x00C0, 0x0250), (0x1E00, 0x1F00)]
    for start, stop in ranges:
        for cp in range(start, stop):
            ch = chr(cp)
            base = unicodedata.normalize("NFD", ch)[0]
            if base != ch and base.isascii() and base.isalpha():
                table[cp] = base.lower()
    # "đ"/"Đ" do not decompose in Unicode; they are their own letters.
    table[ord("đ")] = "d"
    table[ord("Đ")] = "d"
    # Stray combining marks (text typed with decomposed accents that NFC could
    # not recompose, or legacy VNI-like input) are dropped.
    for cp in range(0x0300, 0x0370):
        table[cp] = None
    return table


_TABLE = _build_table()

# Punctuation (anything not a letter, digit or space) becomes a space, except a
# "." or "," between two digits, which is a decimal or thousands separator.
_PUNCT = re.compile(r"(?<!\d)[.,]|[.,](?!\d)|[^\w\s.,]|_")


def strip_accents(text: str) -> str:
    """Return ``text`` NFC-normalised, lower-cased and without diacritics.

    Punctuation and spacing are kept as they are (the money parser needs "/"
    and "-").
    """
    return unicodedata.normalize("NFC", text).lower().translate(_TABLE)


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Return the accent-insensitive matching key of ``text``.

    NFC-normalises, lower-cases, removes Vietnamese diacritics (including
    "đ" → "d"), replaces punctuation with spaces (keeping "." and "," between
    digits, e.g. "1.500" or "12,5") and collapses whitespace.

    >>> fold("  Xã THƯỜNG Phước-1 ")
    'xa thuong phuoc 1'
    """
    return " ".join(_PUNCT.sub(" ", strip_accents(text)).split())
