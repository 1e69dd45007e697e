"""Numbers typed by people: digits and Vietnamese number words.

``parse_int("bốn") == 4``, ``parse_number("12,5") == 12.5``,
``parse_int("hai mươi mốt") == 21``, ``parse_int("4 người") == 4``.

The grammar engine here (tokeniser + recursive descent over scale words) is
shared with :mod:`bot.parsing.money`, which adds money-only scale words
("củ", "lít", "k", ...). Values are kept as ``Fraction`` so that "1,2 tỷ" is
exactly 1,200,000,000.

Conventions (documented because Vietnamese number talk is loose):

* Separators: "1.000" / "1,000" (one separator followed by exactly three
  digits) and "1.500.000" are thousands; "12,5" / "12.5" / "0.500" are decimals;
  "1.000,5" uses the last separator as decimal; "1 500 000" is space-grouped.
* Shorthand after a scale word fills the next digits: "một trăm hai" = 120,
  "hai nghìn ba" = 2,300, "1 triệu 2" = 1,200,000, "1 triệu 25" = 1,250,000,
  "triệu tư" = 1,400,000; "rưỡi" is half the scale: "triệu rưỡi" = 1,500,000.
* "trăm" directly after "triệu"/"tỷ" means hundreds of the next scale:
  "1 triệu 2 trăm" = 1,200,000 (nobody means 1,000,200).
* "năm" directly after a finished number is the word "year": "5 năm" → 5;
  after a single digit word it is ambiguous ("bốn năm" = four or five) → None.
* "tư", "mốt", "lăm" are units only after "mươi"/"linh" or a scale word;
  "bốn năm" (four or five) is ambiguous and gives None.
* Negative numbers are not accepted (None).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from bot.parsing.text import fold

__all__ = ["parse_int", "parse_number"]

# Token kinds.
LIT: Final = "lit"  # a number written with digits
DIG: Final = "dig"  # a digit word: "không".."chín"
UNIT: Final = "unit"  # unit-only digit words: "mốt" (1), "tư" (4), "lăm"/"nhăm" (5)
TEN: Final = "ten"  # "mười"
MUOI: Final = "muoi"  # "mươi" (tens multiplier)
MUOI_ANY: Final = "muoi?"  # unaccented "muoi": "mười" or "mươi", decided by position
CHUC: Final = "chuc"  # "chục" (ten, as in "hai chục")
LINH: Final = "linh"  # "linh"/"lẻ" (zero tens: "một trăm linh năm")
RUOI: Final = "ruoi"  # "rưỡi": plus half the preceding scale
NUA: Final = "nua"  # "nửa": one half, as in "nửa triệu"
SCALE: Final = "scale"  # trăm, nghìn, triệu, tỷ (+ money slang)
APPROX: Final = "approx"  # khoảng, tầm, ...: not numeric, marks an estimate
NEG: Final = "neg"  # không / ko / chưa as "none"
WORD: Final = "word"  # anything else
SYM: Final = "sym"  # punctuation

_NUMERIC_KINDS: Final = frozenset({LIT, DIG, UNIT, TEN, MUOI, MUOI_ANY, CHUC, LINH, RUOI, NUA, SCALE})
_BASE_KINDS: Final = frozenset({LIT, DIG, TEN, MUOI_ANY, NUA})

# Accented spellings. A token that carries diacritics is looked up here only,
# so "tầm" (about) is not "tám" (8) and "tí" (a bit) is not "tỉ" (billion).
_ACCENTED: dict[str, tuple[str, int]] = {
    "không": (DIG, 0), "một": (DIG, 1), "mốt": (UNIT, 1), "hai": (DIG, 2), "ba": (DIG, 3),
    "bốn": (DIG, 4), "tư": (UNIT, 4), "năm": (DIG, 5), "lăm": (UNIT, 5), "nhăm": (UNIT, 5),
    "sáu": (DIG, 6), "bảy": (DIG, 7), "bẩy": (DIG, 7), "tám": (DIG, 8), "chín": (DIG, 9),
    "mười": (TEN, 10), "mươi": (MUOI, 10), "chục": (CHUC, 10),
    "linh": (LINH, 0), "lẻ": (LINH, 0), "rưỡi": (RUOI, 0), "rưởi": (RUOI, 0), "nửa": (NUA, 0),
    "trăm": (SCALE, 100), "nghìn": (SCALE, 1000), "ngàn": (SCALE, 1000), "ngìn": (SCALE, 1000),
    "triệu": (SCALE, 10**6), "tỷ": (SCALE, 10**9), "tỉ": (SCALE, 10**9),
    "khoảng": (APPROX, 0), "tầm": (APPROX, 0), "chừng": (APPROX, 0), "cỡ": (APPROX, 0),
    "độ": (APPROX, 0), "hơn": (APPROX, 0), "gần": (APPROX, 0), "trên": (APPROX, 0),
    "dưới": (APPROX, 0), "xấp": (APPROX, 0), "sấp": (APPROX, 0), "xỉ": (APPROX, 0),
    "ước": (APPROX, 0), "hông": (NEG, 0), "chưa": (NEG, 0),
}
# Unaccented spellings (people typing without a Vietnamese keyboard).
_PLAIN: dict[str, tuple[str, int]] = {
    "khong": (DIG, 0), "mot": (DIG, 1), "hai": (DIG, 2), "ba": (DIG, 3), "bon": (DIG, 4),
    "tu": (UNIT, 4), "nam": (DIG, 5), "lam": (UNIT, 5), "nham": (UNIT, 5), "sau": (DIG, 6),
    "bay": (DIG, 7), "tam": (DIG, 8), "chin": (DIG, 9), "muoi": (MUOI_ANY, 10), "chuc": (CHUC, 10),
    "linh": (LINH, 0), "le": (LINH, 0), "ruoi": (RUOI, 0), "nua": (NUA, 0),
    "tram": (SCALE, 100), "nghin": (SCALE, 1000), "ngan": (SCALE, 1000), "ngin": (SCALE, 1000),
    "k": (SCALE, 1000), "tr": (SCALE, 10**6), "trieu": (SCALE, 10**6), "ty": (SCALE, 10**9),
    "ti": (SCALE, 10**9),
    "khoang": (APPROX, 0), "chung": (APPROX, 0), "hon": (APPROX, 0), "gan": (APPROX, 0),
    "tren": (APPROX, 0), "duoi": (APPROX, 0), "xap": (APPROX, 0), "sap": (APPROX, 0),
    "xi": (APPROX, 0), "uoc": (APPROX, 0),
    "ko": (NEG, 0), "kh": (NEG, 0), "kg": (NEG, 0), "hong": (NEG, 0), "hok": (NEG, 0),
    "chua": (NEG, 0),
}

_TOKEN = re.compile(
    r"(?P<lit>\d{1,3}(?:[ \u00a0]\d{3})+(?![\d.,])|\d+(?:[.,]\d+)*)"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<sym>[^\w\s])"
)


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, numeric value, digit count (literals) and text."""

    kind: str
    value: Fraction
    ndigits: int = 0
    plain: bool = False  # literal written as an integer (no decimal part)
    text: str = ""  # lower-case, accented
    key: str = ""  # folded


def parse_literal(text: str) -> tuple[Fraction, int, bool] | None:
    """Read a digit literal: ``(value, digits_written, is_integer)`` or None if malformed."""
    text = text.replace(" ", "").replace("\u00a0", "")
    seps = [c for c in text if c in ".,"]
    if not seps:
        return Fraction(int(text)), len(text), True
    groups = re.split(r"[.,]", text)
    if len(set(seps)) == 2:
        # "1.000,5": the last separator is the decimal mark, the others group thousands.
        if seps[-1] in seps[:-1] or not _thousands(groups[:-1]):
            return None
        whole = "".join(groups[:-1])
        return Fraction(int(whole)) + Fraction(int(groups[-1]), 10 ** len(groups[-1])), 99, False
    if len(seps) >= 2:
        if not _thousands(groups):
            return None
        whole = "".join(groups)
        return Fraction(int(whole)), len(whole), True
    head, tail = groups
    if len(tail) == 3 and head != "0" and len(head) <= 3:
        # "1.500" and "1,500": thousands (Vietnamese writes thousands with dots).
        return Fraction(int(head + tail)), len(head + tail), True
    return Fraction(int(head)) + Fraction(int(tail), 10 ** len(tail)), 99, False


def _thousands(groups: list[str]) -> bool:
    """True if ``groups`` look like "1", "500", "000" (1-3 digits then triples)."""
    return 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])


def tokenize(text: str, extra: dict[str, tuple[str, int]] | None = None) -> list[Token] | None:
    """Split ``text`` into tokens; None if a digit literal is malformed ("1.2.3").

    ``extra`` maps additional folded words to kinds (money slang).
    """
    lowered = unicodedata.normalize("NFC", text).lower()
    tokens: list[Token] = []
    for m in _TOKEN.finditer(lowered):
        raw = m.group()
        if m.lastgroup == "lit":
            lit = parse_literal(raw)
            if lit is None:
                return None
            tokens.append(Token(LIT, lit[0], lit[1], lit[2], raw, raw))
        elif m.lastgroup == "word":
            key = fold(raw)
            if key != raw:
                entry = _ACCENTED.get(raw)
                if entry is None and extra is not None:
                    entry = extra.get(raw)
            else:
                entry = _PLAIN.get(key) or (extra.get(key) if extra is not None else None)
            kind, value = entry if entry is not None else (WORD, 0)
            tokens.append(Token(kind, Fraction(value), text=raw, key=key))
        else:
            tokens.append(Token(SYM, Fraction(0), text=raw, key=raw))
    # Unaccented "tam" before a number is "tầm" (about), not "tám" (8).
    for i, tok in enumerate(tokens[:-1]):
        if tok.kind == DIG and tok.text == "tam" and tokens[i + 1].kind in (LIT, DIG):
            tokens[i] = Token(APPROX, Fraction(0), text=tok.text, key=tok.key)
    return tokens


@dataclass(frozen=True, slots=True)
class Value:
    """A parsed number expression.

    ``bare`` is a single digit literal or digit word (so shorthand after a
    scale applies); ``top_scale`` the largest scale word consumed;
    ``literal`` a lone digit literal with no words at all.
    """

    value: Fraction
    ndigits: int
    bare: bool
    top_scale: int | None
    literal: bool
    plain: bool
    start: int
    end: int


class Grammar:
    """Recursive-descent reader of number expressions over a token list."""

    def __init__(self, scales: tuple[int, ...]) -> None:
        """``scales``: the scale values in decreasing order, e.g. (10**9, 10**6, 1000, 100)."""
        self.scales = scales

    def expressions(self, tokens: list[Token], drop_year: bool = True) -> list[Value]:
        """Return every number expression in ``tokens``, left to right."""
        found: list[Value] = []
        i = 0
        n = len(tokens)
        while i < n:
            tok = tokens[i]
            if tok.kind not in _BASE_KINDS:
                i += 1
                continue
            if drop_year and tok.key == "nam" and found and found[-1].end == i:
                prev = found[-1]
                if prev.bare and not prev.literal and prev.value < 10:
                    # "bốn năm" is "four or five": ambiguous, keep both numbers.
                    pass
                else:
                    # "5 năm", "mười năm": the word for "year", not another 5.
                    i += 1
                    continue
            got = self._level(tokens, i, 0)
            if got is None:
                i += 1
                continue
            found.append(got)
            i = got.end
        return found

    def _level(self, toks: list[Token], i: int, k: int) -> Value | None:
        if k == len(self.scales):
            return self._base(toks, i)
        left = self._level(toks, i, k + 1)
        if left is None:
            return None
        j = left.end
        scale = self.scales[k]
        n = len(toks)
        if not (j < n and toks[j].kind == SCALE and toks[j].value == scale):
            return left
        j += 1
        value = left.value * scale
        if j < n and toks[j].kind == RUOI:
            value += Fraction(scale, 2)
            j += 1
        elif (
            j + 1 < n
            and toks[j].kind == LINH
            and toks[j + 1].kind in (DIG, UNIT)
        ):
            value += toks[j + 1].value
            j += 2
        else:
            tail = self._level(toks, j, k + 1) if j < n else None
            if tail is not None:
                zeros = len(str(scale)) - 1
                if tail.top_scale is None and tail.bare and tail.ndigits < zeros:
                    # "1 triệu 25": the tail fills the leading digits below the scale.
                    value += tail.value * scale / 10**tail.ndigits
                    j = tail.end
                elif tail.top_scale == 100 and scale >= 10**6:
                    # "1 triệu 2 trăm": hundreds of thousands, not 1,000,200.
                    value += tail.value * (scale // 1000)
                    j = tail.end
                elif tail.value < scale:
                    value += tail.value
                    j = tail.end
        return Value(value, 0, False, max(scale, left.top_scale or 0), False, False, i, j)

    @staticmethod
    def _unit(tok: Token) -> Fraction | None:
        """Value of a unit digit after "mươi"/"mười" ("năm" there means "year", not 5)."""
        if tok.kind == UNIT or (tok.kind == DIG and tok.key != "nam" and tok.value > 0):
            return tok.value
        return None

    def _base(self, toks: list[Token], i: int) -> Value | None:
        n = len(toks)
        if i >= n:
            return None
        tok = toks[i]
        if tok.kind == LIT:
            if i + 1 < n and toks[i + 1].kind == CHUC:
                return Value(tok.value * 10, 2, False, None, False, False, i, i + 2)
            return Value(tok.value, tok.ndigits, True, None, True, tok.plain, i, i + 1)
        if tok.kind == NUA:
            return Value(Fraction(1, 2), 1, False, None, False, False, i, i + 1)
        if tok.kind in (TEN, MUOI_ANY):
            value = Fraction(10)
            j = i + 1
            if j < n and (u := self._unit(toks[j])) is not None:
                value += u
                j += 1
            return Value(value, 2, False, None, False, False, i, j)
        unit_after_scale = tok.kind == UNIT and i > 0 and toks[i - 1].kind == SCALE
        if tok.kind == DIG or unit_after_scale:
            d = tok.value
            j = i + 1
            nxt = toks[j] if j < n else None
            if nxt is not None and nxt.kind in (MUOI, MUOI_ANY) and d > 0:
                value = d * 10
                j += 1
                if j < n and (u := self._unit(toks[j])) is not None:
                    value += u
                    j += 1
                return Value(value, 2, False, None, False, False, i, j)
            if nxt is not None and nxt.kind == CHUC and d > 0:
                return Value(d * 10, 2, False, None, False, False, i, j + 1)
            if nxt is not None and nxt.kind == UNIT and d > 0:
                # Colloquial "hai lăm" = 25, "ba mốt" = 31.
                return Value(d * 10 + nxt.value, 2, True, None, False, False, i, j + 1)
            return Value(d, 1, True, None, False, False, i, j)
        return None


_GRAMMAR = Grammar((10**9, 10**6, 1000, 100))


def _single(text: str) -> Fraction | None:
    """The one number in ``text``, or None if there is none, several, or a minus sign."""
    if not isinstance(text, str):
        return None
    tokens = tokenize(text)
    if not tokens:
        return None
    values = _GRAMMAR.expressions(tokens)
    if len(values) != 1:
        return None
    start = values[0].start
    if start > 0 and tokens[start - 1].text in ("-", "−", "–") and tokens[start - 1].kind == SYM:
        return None
    return values[0].value


def parse_number(text: str) -> float | None:
    """Return the one number in ``text`` ("12,5" → 12.5, "bốn" → 4.0), or None."""
    value = _single(text)
    return None if value is None else float(value)


def parse_int(text: str) -> int | None:
    """Return the one whole number in ``text`` ("4 người" → 4, "mười hai" → 12), or None.

    A non-integer ("12,5") gives None.
    """
    value = _single(text)
    if value is None or value.denominator != 1:
        return None
    return int(value)
