"""Money amounts typed by people, in Vietnamese đồng.

``parse_money("1tr5")`` → ``MoneyParse(amount=1_500_000, period=None, exact=False,
text_vi="1.500.000 đồng")``. No parser on PyPI reads Vietnamese money talk
correctly, so this is our own; it reuses the number grammar of
:mod:`bot.parsing.numbers` and adds money words.

Decisions (the bot echoes ``text_vi`` back, so the user can correct us):

* Slang: "củ" = triệu, "lít" = 100,000 ("5 lít" = 500,000), "k"/"ng"/"nghìn"/
  "ngàn" = 1,000, "tr" = triệu, "tỷ"/"tỉ" = 10^9.
* Shorthand after a scale fills the next digits: "1tr5" = 1,500,000,
  "1 tr 250" = 1,250,000, "1 triệu 25" = 1,250,000, "1 tỷ 2" = 1,200,000,000;
  "rưỡi" adds half the scale: "12 triệu rưỡi" = 12,500,000.
* A bare "trăm" means hundreds of thousands: "2 trăm" = 200,000 and
  "hai trăm rưỡi" = 250,000 (nobody reports an income of 200 đồng).
* Separators: "1.500" is 1,500 đồng (thousands dot), "1.500k" is 1,500,000;
  "1,5 triệu"/"1.5 triệu" is 1,500,000. A decimal with no scale word
  ("1,5") is None: it cannot be an amount of đồng.
* A range "3-4 triệu" / "3 đến 4 triệu" gives the midpoint (3,500,000) with
  ``exact=False``; the left side borrows the right side's scale.
* "không", "không có", "ko có thu nhập", "chưa có" give 0 (``exact=False``).
* ``period`` is "month" for "/tháng", "mỗi tháng", "1 tháng", "hàng tháng",
  "tháng"; "year" for "/năm", "mỗi năm", "một năm", "cả năm", "hàng năm".
  A daily or weekly amount ("200k/ngày", "mỗi tuần") gives None: the contract
  has no such period and the bot must ask for a monthly or yearly figure.
* ``exact`` is True only for a plain written number ("1500000",
  "1.500.000đ", "1 500 000 vnđ") with no estimate word ("khoảng", "tầm"...).
* Negative amounts ("-500000", "âm 5 triệu") and several amounts in one
  message give None.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from bot.parsing.numbers import APPROX, DIG, NEG, SYM, WORD, Grammar, Token, Value, tokenize
from bot.parsing.text import strip_accents

__all__ = ["MoneyParse", "Period", "format_vnd", "parse_money"]

Period = Literal["month", "year"]

_CUR = "cur"  # đồng, đ, vnđ: currency words, ignored
_RANGE = "range"  # "-", "đến", "tới": joins the two ends of a range

_MONEY_WORDS: dict[str, tuple[str, int]] = {
    "củ": ("scale", 10**6), "cu": ("scale", 10**6),
    "lít": ("scale", 10**5), "lit": ("scale", 10**5),
    "ng": ("scale", 1000),
    "đồng": (_CUR, 0), "dong": (_CUR, 0), "đ": (_CUR, 0), "d": (_CUR, 0),
    "vnđ": (_CUR, 0), "vnd": (_CUR, 0), "vn": (_CUR, 0), "đ/": (_CUR, 0),
    "đến": (_RANGE, 0), "den": (_RANGE, 0), "tới": (_RANGE, 0), "toi": (_RANGE, 0),
    "hoặc": (_RANGE, 0), "hoac": (_RANGE, 0),
    "k": ("scale", 1000),
}
_RANGE_SYMBOLS = frozenset({"-", "–", "—", "~"})
_GRAMMAR = Grammar((10**9, 10**6, 10**5, 1000, 100))

# Period phrases, matched on the lower-cased text without accents.
_QUANT = r"(?:moi|hang|mot|1|ca|trong|tren|per|cho)"
_MONTH = re.compile(rf"/\s*(?:1\s*|mot\s+)?(?:thang|th|t)\b|\b(?:{_QUANT}\s+)?thang\b")
_YEAR = re.compile(rf"/\s*(?:1\s*|mot\s+)?(?:nam|n)\b|\b{_QUANT}\s+nam\b")
_OTHER_PERIOD = re.compile(
    r"/\s*(?:1\s*|mot\s+)?(?:ngay|ng|buoi|tuan|gio|h)\b|\b(?:moi|hang|mot|1)\s+(?:ngay|buoi|tuan|gio)\b"
)
_NEGATIVE = re.compile(r"[-−]\s*\d|\bam\s+\d|\bam\s+(?:mot|hai|ba|bon|nam|sau|bay|tam|chin|muoi)\b")
# Words that may follow "không"/"chưa" when the user means "no income".
_NONE_FOLLOWERS = frozenset(
    {"co", "duoc", "kiem", "lam", "thu", "nhap", "tien", "luong", "gi", "dong", "xu", "ai", "nao"}
)
_NEG_KEYS = frozenset({"khong", "ko", "k", "kh", "kg", "hong", "hok", "chua"})


@dataclass(frozen=True, slots=True)
class MoneyParse:
    """A money amount read from text.

    ``amount`` in đồng; ``period`` "month", "year" or None when the text does
    not say; ``exact`` True only for a plain written number; ``text_vi`` the
    amount written back in Vietnamese ("1.500.000 đồng").
    """

    amount: int
    period: Period | None
    exact: bool
    text_vi: str


def format_vnd(amount: int) -> str:
    """Write ``amount`` the Vietnamese way: ``format_vnd(1500000) == "1.500.000 đồng"``."""
    return f"{amount:,}".replace(",", ".") + " đồng"


def _round(value: Fraction) -> int:
    """Round half up to whole đồng."""
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def _find_period(plain: str) -> tuple[Period | None, list[tuple[int, int]], bool]:
    """Return (period, spans to blank out, ok); ok is False for day/week or conflicting periods."""
    if _OTHER_PERIOD.search(plain):
        return None, [], False
    months = [m.span() for m in _MONTH.finditer(plain)]
    years = [m.span() for m in _YEAR.finditer(plain)]
    if months and years:
        return None, [], False
    if months:
        return "month", months, True
    if years:
        return "year", years, True
    return None, [], True


def _is_none_word(tokens: list[Token], i: int) -> bool:
    """True if tokens[i] is "không"/"ko"/"chưa" used as "none" ("không có", "ko")."""
    if tokens[i].key not in _NEG_KEYS:
        return False
    rest = [t for t in tokens[i + 1:] if t.kind != SYM]
    return not rest or rest[0].key in _NONE_FOLLOWERS


def _amount(value: Value) -> Fraction:
    """The expression's value in đồng ("2 trăm" → 200,000)."""
    if value.top_scale == 100:
        return value.value * 1000
    return value.value


def parse_money(text: str) -> MoneyParse | None:
    """Read one money amount (and its period) from ``text``; None if there is not exactly one."""
    if not isinstance(text, str) or not text.strip():
        return None
    lowered = unicodedata.normalize("NFC", text).lower()
    plain = strip_accents(lowered)
    if len(plain) != len(lowered):  # rare characters changed length: work accent-free
        lowered = plain
    first_digit = re.search(r"\d", plain)
    negative = _NEGATIVE.search(plain)
    if negative and (first_digit is None or first_digit.start() >= negative.start()):
        return None
    period, spans, ok = _find_period(plain)
    if not ok:
        return None
    for start, end in reversed(spans):
        lowered = lowered[:start] + " ; " + lowered[end:]

    tokens = tokenize(lowered, _MONEY_WORDS)
    if tokens is None:
        return None
    # Range marks: "-" between two numbers, "đến", "tới".
    tokens = [
        Token(_RANGE, t.value, text=t.text, key=t.key) if t.kind == SYM and t.text in _RANGE_SYMBOLS else t
        for t in tokens
    ]
    approx = any(t.kind == APPROX for t in tokens)
    values = _GRAMMAR.expressions(tokens, drop_year=False)

    # "không" alone is 0 only as "no income"; in "không biết" it is not a number.
    def zero_word(v: Value) -> bool:
        return v.end - v.start == 1 and tokens[v.start].kind == DIG and tokens[v.start].value == 0

    real = [v for v in values if not zero_word(v)]
    if not real:
        if any(_is_none_word(tokens, i) for i, t in enumerate(tokens) if t.kind in (DIG, NEG, WORD, "scale")):
            return MoneyParse(0, period, False, format_vnd(0))
        return None

    if len(real) == 2:
        left, right = real
        between = tokens[left.end:right.start]
        if any(t.kind == _RANGE for t in between) and all(
            t.kind in (_RANGE, _CUR, APPROX, SYM) for t in between
        ):
            low = _amount(left)
            high = _amount(right)
            if left.top_scale is None and right.top_scale is not None:
                low = left.value * (right.top_scale if right.top_scale != 100 else 100_000)
            amount = _round((low + high) / 2)
            return MoneyParse(amount, period, False, format_vnd(amount))
        return None
    if len(real) != 1:
        return None
    value = real[0]
    amount_f = _amount(value)
    if value.top_scale is None and amount_f.denominator != 1:
        return None  # "1,5" alone: not an amount of đồng
    amount = _round(amount_f)
    exact = value.literal and value.plain and not approx
    return MoneyParse(amount, period, exact, format_vnd(amount))
