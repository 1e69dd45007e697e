"""Reading the share-mode details (hamlet, head of household, phone) and the detailed-mode member roster.

Pure functions over plain values, so the engine stays a router: it decides when a detail or a member question is
asked and what to say, these decide what a reply means and whether a saved value is still well-formed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bot.parsing.text import fold

from .contract import MEMBER_FIELD_SPECS

__all__ = [
    "MAX_DETAIL_CHARS",
    "MAX_HAMLET_OPTIONS",
    "clean_name",
    "match_hamlet",
    "member_ok",
    "normalize_phone",
    "phone_ok",
    "split_age_sex",
]

#: Longest hamlet or name kept (the store's columns are 128 characters).
MAX_DETAIL_CHARS: Final = 128
#: Longer hamlet lists are not numbered (a reply names the hamlet instead): a 100-line message helps nobody.
MAX_HAMLET_OPTIONS: Final = 40

# Vietnamese mobile numbers since the 2018 renumbering: 10 digits, 03x / 05x / 07x / 08x / 09x.
_MOBILE: Final = re.compile(r"^0(?:3[2-9]|5[2-9]|7[06-9]|8[1-9]|9\d)\d{7}$")
_PHONE_NOISE: Final = re.compile(r"[\s.\-()]+")
_HAS_LETTER: Final = re.compile(r"[^\W\d_]")
# Words that start a hamlet name but are not the name itself ("ấp Phú Lợi", "khóm 3", "tổ dân phố 5").
_HAMLET_PREFIX: Final = re.compile(r"^(?:ap|khom|thon|xom|ban|buon|lang|phum|soc|to dan pho|tdp|to|khu pho|kp|khu)\s+")
_SEX_WORDS: Final = {
    "nam": "male",
    "trai": "male",
    "con trai": "male",
    "male": "male",
    "nữ": "female",
    "nu": "female",
    "gái": "female",
    "gai": "female",
    "con gái": "female",
    "con gai": "female",
    "female": "female",
}
# With accents, "năm" is the number five and only "nam" is male; typed without any accent, "nam" is read as male
# (an age of 5 is then asked again rather than guessed).
_SEX_ACCENTED: Final = re.compile(r"\b(con trai|con gái|nam|nữ|trai|gái|male|female)\b")
_SEX_PLAIN: Final = re.compile(r"\b(con trai|con gai|nam|nu|trai|gai|male|female)\b")
_AGE_NOISE: Final = re.compile(r"\b(?:tuổi|tuoi|t)\b|[,;:.]")


def normalize_phone(text: str) -> str | None:
    """Return a Vietnamese mobile number as ``0xxxxxxxxx``, or None when ``text`` is not one.

    Spaces, dots, dashes and brackets are ignored; ``+84`` / ``84`` stand for the leading 0.
    """
    digits = _PHONE_NOISE.sub("", text.strip())
    if digits.startswith("+84"):
        digits = "0" + digits[3:]
    elif digits.startswith("84") and len(digits) == 11:
        digits = "0" + digits[2:]
    return digits if _MOBILE.match(digits) else None


def phone_ok(value: Any) -> bool:
    """Check a saved phone answer: a normalised mobile number or None (skipped)."""
    return value is None or (isinstance(value, str) and bool(_MOBILE.match(value)))


def clean_name(text: str) -> str | None:
    """Return a head-of-household name tidied up (NFC, single spaces), or None when it cannot be a name.

    A name has a letter, no digits, and 2 to 128 characters.
    """
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not 2 <= len(name) <= MAX_DETAIL_CHARS or any(ch.isdigit() for ch in name) or not _HAS_LETTER.search(name):
        return None
    return name


def clean_hamlet(text: str) -> str | None:
    """Return a typed hamlet name tidied up, or None when it is empty, too long or has neither letter nor digit."""
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not name or len(name) > MAX_DETAIL_CHARS or not any(ch.isalnum() for ch in name):
        return None
    return name


def detail_ok(value: Any) -> bool:
    """Check a saved hamlet or name answer: a short string, or None (skipped)."""
    return value is None or (isinstance(value, str) and 0 < len(value) <= MAX_DETAIL_CHARS)


def _bare(name: str) -> str:
    return _HAMLET_PREFIX.sub("", fold(name))


def match_hamlet(folded: str, options: Sequence[str]) -> str | None:
    """Return the hamlet of ``options`` a typed (folded) name means, if exactly one fits.

    "ap phu loi", "Phú Lợi" and "phu loi" all mean "Ấp Phú Lợi"; "3" means "Khóm 3" only when no other hamlet is
    numbered 3 (numbers alone are read as list positions before this is called).
    """
    if not folded:
        return None
    exact = [o for o in options if fold(o) == folded]
    if len(exact) == 1:
        return exact[0]
    bare = _bare(folded)
    hits = [o for o in options if _bare(o) == bare]
    return hits[0] if len(hits) == 1 else None


def split_age_sex(text: str, *, accented: bool) -> tuple[str, str | None]:
    """Split "nam 45", "45 tuổi, nữ", "con gai 8" into the text left for the age and the sex named, if any.

    ``text`` is the reply lower-cased (``normalize``); ``accented`` says whether it has any accent, which decides
    whether "nam" may be "năm" (five).
    """
    pattern = _SEX_ACCENTED if accented else _SEX_PLAIN
    sexes = {_SEX_WORDS[m.group(1)] for m in pattern.finditer(text)}
    if len(sexes) > 1:
        return text, None  # "nam nữ 30": no guess
    if not sexes:
        return text, None
    rest = pattern.sub(" ", text)
    rest = " ".join(_AGE_NOISE.sub(" ", rest).split())
    return rest, sexes.pop()


def member_ok(member: Any, max_age: int = 130) -> bool:
    """Check one saved member: known fields only, each of its kind; the age (when given) a whole number."""
    if not isinstance(member, Mapping):
        return False
    for key, value in member.items():
        spec = MEMBER_FIELD_SPECS.get(key) if isinstance(key, str) else None
        if spec is None:
            return False
        if spec.kind == "bool" and not isinstance(value, bool):
            return False
        if spec.kind == "enum" and value not in spec.values:
            return False
        if spec.kind == "int" and (type(value) is not int or not 0 <= value <= max_age):
            return False
    return True
