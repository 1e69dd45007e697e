"""Find the commune a user means from what they type.

``resolve_commune("thuong phuoc 1")`` → ``[CommuneMatch(Xã Thường Phước, score=0.98,
matched_alias="Xã Thường Phước 1", exact=True), ...]``, best first.

Accepted: the 5-digit code; the current name with or without diacritics and
with or without a prefix (xã, phường, đặc khu, thị trấn, p., x., tt); an old
(pre-July-2025) unit name listed in ``bot/data/commune_aliases.yaml``; typos
(character-trigram candidates, then ``difflib`` similarity). A trailing
province ("…, Đồng Tháp", "… tỉnh Đồng Tháp") narrows the search like
``province_code``.

Scores: 1.0 exact current name; 0.98 exact old name (alias); fuzzy matches at
most 0.95. A prefix that contradicts the unit's type ("xã" for a phường)
costs 0.05, so "xã Thường Lạc" prefers the old xã (alias) over the current
phường, and both point to the same code.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from difflib import SequenceMatcher
from pathlib import Path

import yaml

from assessment.geo import Commune, commune_by_code, iter_communes, iter_provinces
from bot.parsing.text import fold

__all__ = ["CommuneMatch", "resolve_commune", "ALIASES_PATH"]

ALIASES_PATH = Path(__file__).resolve().parent.parent / "data" / "commune_aliases.yaml"

_EXACT = 1.0
_ALIAS = 0.98
_FUZZY_MAX = 0.95
_FUZZY_MIN = 0.6
_TYPE_PENALTY = 0.05
_CANDIDATES = 30

# Leading words naming the division type, folded; longest first.
_PREFIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("dac", "khu"), "đặc khu"),
    (("thi", "tran"), "thị trấn"),
    (("phuong",), "phường"),
    (("xa",), "xã"),
    (("tt",), "thị trấn"),
    (("p",), "phường"),
    (("f",), "phường"),
    (("x",), "xã"),
)
_PROVINCE_WORDS = ("tinh ", "tp ", "thanh pho ")
_NON_WORD = re.compile(r"[^\w\s]|_")
# "tân hội huyện hồng ngự": the old district after the commune name.
_DISTRICT = re.compile(r"^(?P<name>.+?) (?P<district>(?:huyen|thi xa|quan|tp|thanh pho) .+)$")
_ACCENT_MISS = 0.01  # typed with diacritics that differ: "tân thành" vs "Tân Thạnh"
_DISTRICT_BONUS = 0.02


@dataclass(frozen=True, slots=True)
class CommuneMatch:
    """A candidate commune for the user's text.

    ``score`` in 0..1; ``matched_alias`` the old unit name when the match went
    through the alias table; ``exact`` True when the (current or old) name or
    code matched exactly, False for a fuzzy match.
    """

    commune: Commune
    score: float
    matched_alias: str | None
    exact: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    """One searchable name: a current commune or an old (alias) unit."""

    key: str  # folded name without prefix: "thuong phuoc 1"
    accented: str  # lower-case name without prefix, with diacritics: "thường phước 1"
    commune: Commune
    alias: str | None  # old full name, for alias entries
    division_type: str  # current type, or the old unit's type for aliases
    district: str  # folded old district for aliases ("huyen hong ngu"), else ""


def _split_prefix(key: str) -> tuple[str, str | None]:
    """Return (key without its type prefix, the type the prefix names or None)."""
    words = key.split()
    for prefix, division_type in _PREFIXES:
        n = len(prefix)
        if len(words) > n and tuple(words[:n]) == prefix:
            return " ".join(words[n:]), division_type
    return key, None


def _lower(text: str) -> str:
    """Lower-case, NFC, single-spaced, punctuation-free text that keeps its diacritics."""
    text = unicodedata.normalize("NFC", text).lower()
    return " ".join(_NON_WORD.sub(" ", text).split())


def _district_name(folded: str) -> str:
    """Drop the district-type word: "huyen hong ngu" and "tp hong ngu" → "hong ngu"."""
    for word in ("huyen ", "thi xa ", "quan ", "thanh pho ", "tp ", "tx "):
        if folded.startswith(word):
            return folded[len(word):]
    return folded


def _grams(key: str) -> set[str]:
    """Character trigrams of ``key``, padded so word edges count."""
    padded = f" {key} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


class _Index:
    """Folded names, alias names and a trigram index, built once."""

    def __init__(self) -> None:
        """Fold every current name and alias, and index their trigrams."""
        entries: list[_Entry] = []
        for commune in iter_communes():
            short = commune.short_name
            entries.append(_Entry(fold(short), _lower(short), commune, None, commune.division_type, ""))
        for row in _load_aliases():
            commune = commune_by_code(str(row["new_code"]))
            if commune is None:
                raise ValueError(f"{ALIASES_PATH.name}: unknown new_code {row['new_code']!r}")
            old_name = str(row["old_name"])
            key, old_type = _split_prefix(fold(old_name))
            accented = " ".join(_lower(old_name).split()[-len(key.split()):])
            district = _district_name(fold(str(row.get("old_district") or "")))
            entries.append(_Entry(key, accented, commune, old_name, old_type or "", district))
        self.entries = entries
        self.districts = frozenset(e.district for e in entries if e.district)
        self.exact: dict[str, list[int]] = defaultdict(list)
        self.postings: dict[str, list[int]] = defaultdict(list)
        self.gram_counts: list[int] = []
        for i, entry in enumerate(entries):
            self.exact[entry.key].append(i)
            grams = _grams(entry.key)
            self.gram_counts.append(len(grams))
            for gram in grams:
                self.postings[gram].append(i)
        # Province names, folded, longest first so "thanh pho ho chi minh" wins over shorter ones.
        provinces: list[tuple[str, str]] = []
        for code, name in iter_provinces():
            key = fold(name)
            provinces.append((key, code))
            for word in _PROVINCE_WORDS:
                if key.startswith(word):
                    provinces.append((key[len(word):], code))
        self.provinces = sorted(provinces, key=lambda p: -len(p[0]))


def _load_aliases() -> list[dict[str, object]]:
    """Rows of the alias table (``bot/data/commune_aliases.yaml``)."""
    with ALIASES_PATH.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return list(data.get("aliases") or [])


_INDEX: _Index | None = None


def _index() -> _Index:
    """The search index, built on first use (~0.1 s) and kept for the process."""
    global _INDEX
    if _INDEX is None:
        _INDEX = _Index()
    return _INDEX


def _province_suffix(index: _Index, key: str) -> tuple[str, str | None]:
    """Split "thuong phuoc dong thap" into ("thuong phuoc", "82") when a province ends the text."""
    for name, code in index.provinces:
        if key.endswith(" " + name):
            rest = key[: -len(name) - 1].rstrip()
            for word in ("tinh", "tp", "thanh pho"):
                if rest.endswith(" " + word):
                    rest = rest[: -len(word) - 1].rstrip()
            if rest:
                return rest, code
    return key, None


def resolve_commune(text: str, province_code: str | int | None = None, limit: int = 5) -> list[CommuneMatch]:
    """Return up to ``limit`` communes the user may mean by ``text``, best first.

    ``province_code`` ("82" or 82) restricts the search to one province.
    An empty list means nothing plausible was found.
    """
    if not isinstance(text, str) or limit <= 0:
        return []
    # The fuzzy search costs a few milliseconds and a deployment's residents type the same few names over and
    # over: memoise (the matches are immutable; the caller gets its own list).
    if len(text) > 120:  # no commune name is that long; don't let long messages fill the cache
        return _resolve(text, province_code, limit)
    return list(_resolve_cached(text, None if province_code is None else str(province_code), limit))


@lru_cache(maxsize=4096)
def _resolve_cached(text: str, province_code: str | None, limit: int) -> tuple[CommuneMatch, ...]:
    return tuple(_resolve(text, province_code, limit))


def _resolve(text: str, province_code: str | int | None, limit: int) -> list[CommuneMatch]:
    if province_code is not None:
        if not str(province_code).strip().isdigit():
            return []  # no such province
        province_code = int(str(province_code).strip())
    raw = text.strip()
    if raw.isascii() and raw.isdigit():
        commune = commune_by_code(raw)
        if commune is None or (province_code is not None and not _in_province(commune, province_code)):
            return []
        return [CommuneMatch(commune, _EXACT, None, True)]

    index = _index()
    wanted_province = None if province_code is None else f"{int(province_code):02d}"
    # "thường phước, hồng ngự, đồng tháp": the first part is the commune, the
    # others may name the old district or the province.
    parts = [p for p in raw.split(",") if p.strip()]
    if not parts:
        return []
    accented = _lower(parts[0])
    key = fold(parts[0])
    hinted_province: str | None = None
    district = ""
    for part in parts[1:]:
        folded = fold(part)
        _, code = _province_suffix(index, "x " + folded)
        if code is not None:
            hinted_province = hinted_province or code
        else:
            district = district or folded
    key, division_type = _split_prefix(key)
    stripped, suffix_code = _province_suffix(index, key)
    if suffix_code is not None:
        key, hinted_province = stripped, hinted_province or suffix_code
    if key not in index.exact and (m := _DISTRICT.match(key)):
        key, district = m.group("name"), m.group("district")
    if not key:
        return []
    # Compare accents only on the words of the name (prefix and suffixes cut off).
    accented = _align(accented, key) if not parts[0].isascii() else None
    district = _district_name(district)

    province = wanted_province or hinted_province
    query = _Query(key, accented, division_type, province, district)
    matches = _search(index, query)
    if not matches and province is not None and wanted_province is None:
        # The province hint was wrong (or a commune name ends like a province).
        matches = _search(index, _Query(key, accented, division_type, None, district))
    matches.sort(key=lambda m: (-m.score, m.matched_alias is not None, m.commune.code))
    return matches[:limit]


def _align(accented: str, key: str) -> str | None:
    """The words of ``accented`` that fold to ``key`` (the name without prefix or suffixes)."""
    words = accented.split()
    n = len(key.split())
    for i in range(len(words) - n + 1):
        window = " ".join(words[i:i + n])
        if fold(window) == key:
            return window
    return None


def _in_province(commune: Commune, province_code: str | int) -> bool:
    """True if ``commune`` lies in the province with this code."""
    return commune.province_code == f"{int(province_code):02d}"


@dataclass(frozen=True, slots=True)
class _Query:
    """A normalised search request."""

    key: str  # folded, without prefix, province or district
    accented: str | None  # the same words with the user's diacritics, None if typed without
    division_type: str | None  # named by the prefix the user typed
    province: str | None  # two-digit code to restrict to
    district: str  # folded old district the user named, or ""


def _search(index: _Index, query: _Query) -> list[CommuneMatch]:
    """Score candidates for one query."""
    best: dict[str, CommuneMatch] = {}
    key, province = query.key, query.province
    district_known = bool(query.district) and query.district in index.districts

    def offer(entry: _Entry, score: float, exact: bool) -> None:
        if province is not None and entry.commune.province_code != province:
            return
        if query.division_type is not None and entry.division_type != query.division_type:
            score -= _TYPE_PENALTY
        if query.accented is not None and exact and entry.accented != query.accented:
            score -= _ACCENT_MISS
        if district_known:
            # The user named an old district we have aliases for: prefer its old units.
            score += _DISTRICT_BONUS if entry.district == query.district else -_DISTRICT_BONUS
        score = round(max(0.0, min(1.0, score)), 4)
        current = best.get(entry.commune.code)
        if current is None or score > current.score:
            best[entry.commune.code] = CommuneMatch(entry.commune, score, entry.alias, exact)

    for i in index.exact.get(key, ()):
        entry = index.entries[i]
        offer(entry, _EXACT if entry.alias is None else _ALIAS, True)

    # Fuzzy: trigram Dice coefficient picks candidates, difflib ranks them.
    grams = _grams(key)
    counts: dict[int, int] = defaultdict(int)
    for gram in grams:
        for i in index.postings.get(gram, ()):
            counts[i] += 1
    n = len(grams)
    dice = sorted(
        ((2 * c / (n + index.gram_counts[i]), i) for i, c in counts.items()),
        reverse=True,
    )
    if province is not None:
        dice = [d for d in dice if index.entries[d[1]].commune.province_code == province]
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(key)
    for d, i in dice[:_CANDIDATES]:
        entry = index.entries[i]
        if entry.key == key:
            continue  # already an exact match
        matcher.set_seq1(entry.key)
        score = min(_FUZZY_MAX, (matcher.ratio() + d) / 2)
        if entry.alias is not None:
            score *= _ALIAS
        if score >= _FUZZY_MIN:
            offer(entry, score, False)
    return list(best.values())
