"""The commune's official poor / near-poor list: CSV upload, and comparison with the households' self-assessments.

CSV columns (a header row, any order, UTF-8 with or without BOM, comma or semicolon separated):
``hamlet, household_head, household_code, status, year``. ``status`` is ``poor`` / ``near_poor`` or the
Vietnamese "hộ nghèo" / "nghèo" / "hộ cận nghèo" / "cận nghèo" (accents optional).

Matching a listed household with a self-assessment: the household code when both have one, otherwise the
head's name and the hamlet, both folded (``bot.parsing.text.fold``: no accents, lower case, single spaces).
Then:

* **possible exclusion errors**: self-assessed poor or near-poor (latest assessment of the household), not on
  the list: households the review may have missed;
* **possible inclusion errors**: on the list, self-assessed above the line: to re-check at the next review.

Both are hints for the review, never decisions: a self-assessment is an estimate.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Sequence
from typing import Any, Final

from bot.parsing.text import fold

__all__ = ["Comparison", "ListRow", "ParseResult", "compare", "match_key", "parse_csv"]

COLUMNS: Final = ("hamlet", "household_head", "household_code", "status", "year")
MAX_ROWS: Final = 20_000
MAX_ERRORS: Final = 50

_STATUS_WORDS: Final = {
    "poor": "poor",
    "near_poor": "near_poor",
    "near poor": "near_poor",
    "ngheo": "poor",
    "ho ngheo": "poor",
    "can ngheo": "near_poor",
    "ho can ngheo": "near_poor",
}


@dataclasses.dataclass(frozen=True)
class ListRow:
    """One household of the official list."""

    hamlet: str | None
    household_head: str
    household_code: str | None
    status: str
    year: int


@dataclasses.dataclass
class ParseResult:
    """Rows read from the file and the problems found, each with its line number."""

    rows: list[ListRow]
    errors: list[tuple[int, str]]


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1258"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace")


def parse_csv(data: bytes) -> ParseResult:
    """Read an official-list CSV; rows with problems are reported and left out."""
    text = _decode(data)
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    errors: list[tuple[int, str]] = []
    try:
        header = next(reader)
    except StopIteration:
        return ParseResult([], [(1, "Tệp trống.")])
    names = [fold(h).replace(" ", "_") for h in header]
    missing = [c for c in ("household_head", "status", "year") if c not in names]
    if missing:
        return ParseResult([], [(1, "Thiếu cột: " + ", ".join(missing) + ". Cần các cột: " + ", ".join(COLUMNS) + ".")])
    index: dict[str, int] = {name: names.index(name) for name in COLUMNS if name in names}
    rows: list[ListRow] = []
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(rows) >= MAX_ROWS:
            errors.append((line, f"Quá {MAX_ROWS} dòng; phần còn lại bị bỏ qua."))
            break

        def get(name: str, record: list[str] = record) -> str:
            i = index.get(name)
            return record[i].strip() if i is not None and i < len(record) else ""

        head = get("household_head")
        status = _STATUS_WORDS.get(fold(get("status")).replace("_", " ")) or _STATUS_WORDS.get(fold(get("status")))
        year_text = get("year")
        problems = []
        if not head:
            problems.append("thiếu tên chủ hộ")
        if status is None:
            problems.append(f"tình trạng '{get('status')}' không hợp lệ (hộ nghèo / hộ cận nghèo)")
        year = int(year_text) if year_text.isdigit() else None
        if year is None or not 2000 <= year <= 2100:
            problems.append(f"năm '{year_text}' không hợp lệ")
        if problems:
            if len(errors) < MAX_ERRORS:
                errors.append((line, "; ".join(problems)))
            continue
        assert status is not None and year is not None
        rows.append(
            ListRow(
                hamlet=get("hamlet")[:128] or None,
                household_head=head[:128],
                household_code=get("household_code")[:64] or None,
                status=status,
                year=year,
            )
        )
    return ParseResult(rows, errors)


def match_key(head: str | None, hamlet: str | None) -> tuple[str, str] | None:
    """The name-and-hamlet key used when no household code matches; None without a name."""
    if not head or not fold(head):
        return None
    return fold(head), fold(hamlet or "")


@dataclasses.dataclass
class Comparison:
    """The outcome of comparing the list with the self-assessments."""

    matched: list[tuple[Any, Any]]
    exclusion: list[Any]
    inclusion: list[Any]
    listed_unmatched: list[Any]


UNDER_LINE: Final = frozenset({"poor", "near_poor"})


def compare(listed: Sequence[Any], assessed: Iterable[Any]) -> Comparison:
    """Compare list entries (``household_head``, ``household_code``, ``hamlet``, ``status``) with self-assessments.

    ``assessed`` are shared assessments newest first (``household_head``, ``household_code``, ``hamlet``,
    ``status``, ``identity_id``, ``id``); each household counts once, with its newest assessment.
    """
    by_code: dict[str, Any] = {}
    by_name: dict[tuple[str, str], Any] = {}
    for entry in listed:
        if entry.household_code:
            by_code.setdefault(entry.household_code.strip().casefold(), entry)
        key = match_key(entry.household_head, entry.hamlet)
        if key is not None:
            by_name.setdefault(key, entry)
    seen_households: set[Any] = set()
    matched_entries: set[int] = set()
    matched: list[tuple[Any, Any]] = []
    exclusion: list[Any] = []
    inclusion: list[Any] = []
    for row in assessed:
        household = ("identity", row.identity_id) if row.identity_id is not None else None
        if household is None:
            key = match_key(row.household_head, row.hamlet)
            household = ("code", row.household_code) if row.household_code else ("name", key or row.id)
        if household in seen_households:
            continue
        seen_households.add(household)
        entry = None
        if row.household_code:
            entry = by_code.get(row.household_code.strip().casefold())
        if entry is None:
            key = match_key(row.household_head, row.hamlet)
            entry = by_name.get(key) if key is not None else None
        if entry is None:
            if row.status in UNDER_LINE:
                exclusion.append(row)
            continue
        matched_entries.add(id(entry))
        matched.append((entry, row))
        if row.status not in UNDER_LINE:
            inclusion.append((entry, row))
    unmatched = [e for e in listed if id(e) not in matched_entries]
    return Comparison(matched=matched, exclusion=exclusion, inclusion=inclusion, listed_unmatched=unmatched)
