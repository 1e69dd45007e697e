"""Household-level and aggregate exports, as row iterators plus streaming CSV and XLSX writers.

The row functions are pure over ``(session or connection, scope, filters)`` so they are tested without HTTP;
the routes in :mod:`bot.reports.routes` add authentication, the audit row and the response.

* Household export: only **shared** (consented) assessments, not erased, inside the viewer's scope.
* Aggregate export: from the monthly aggregate tables (anonymous, kept after erasure), for any part of the
  country; a cell of a unit outside the viewer's own scope is shown as ``"<5"`` when under 5 (primary
  suppression), and when that leaves exactly one hidden cell in a group that adds up to the row's total, the
  next smallest cell is hidden too (secondary suppression), so the total does not give it away.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from bot.store.models import (
    AggregateDeprivationMonthly,
    AggregateMonthly,
    Assessment,
    Review,
)
from bot.store.repository import VIETNAM_TZ

from .common import (
    STATUS_LABELS_VI,
    STATUSES,
    commune_names,
    indicators,
    province_label,
    standard_indicator_ids,
    utc_bounds,
)
from .periods import Period, month_starts
from .scoping import ScopeLike, covers, scope_clause

__all__ = [
    "AGGREGATE_LEVELS",
    "SMALL_CELL",
    "SUPPRESSED",
    "AggregateFilters",
    "Column",
    "HouseholdFilters",
    "aggregate_columns",
    "aggregate_rows",
    "csv_chunks",
    "household_columns",
    "household_rows",
    "suppress",
    "write_xlsx",
]

#: Counts under this are hidden outside the viewer's own scope.
SMALL_CELL: Final = 5
SUPPRESSED: Final = "<5"
AGGREGATE_LEVELS: Final = ("province", "commune", "hamlet")
#: Rows fetched per round trip when streaming (server-side cursor on PostgreSQL).
FETCH_ROWS: Final = 1000


@dataclass(frozen=True, slots=True)
class Column:
    """One export column: a stable key (tests, API users) and its Vietnamese heading."""

    key: str
    heading: str


@dataclass(frozen=True, slots=True)
class HouseholdFilters:
    """What a household export covers: a period and optionally one commune."""

    period: Period
    commune_code: str | None = None


@dataclass(frozen=True, slots=True)
class AggregateFilters:
    """What an aggregate export covers."""

    period: Period
    level: str = "commune"
    province_code: str | None = None
    commune_code: str | None = None
    by_month: bool = False


def _connection(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


# -------------------------------------------------------------------------------------------- household export


def household_columns() -> list[Column]:
    """Return the columns of the household export, in order."""
    columns = [
        Column("id", "Mã phiếu"),
        Column("province_code", "Mã tỉnh"),
        Column("province_name", "Tỉnh/thành phố"),
        Column("commune_code", "Mã xã"),
        Column("commune_name", "Xã/phường"),
        Column("hamlet", "Thôn/ấp/khóm"),
        Column("household_code", "Mã hộ"),
        Column("date", "Ngày tự đánh giá"),
        Column("channel", "Kênh"),
        Column("provenance", "Nguồn"),
        Column("standard_id", "Chuẩn áp dụng"),
        Column("status", "Kết quả ước tính"),
        Column("next_standard_id", "Chuẩn giai đoạn sau"),
        Column("next_status", "Kết quả theo chuẩn giai đoạn sau"),
        Column("income_per_capita_vnd", "Thu nhập bình quân (đồng/người/tháng)"),
        Column("income_line_vnd", "Chuẩn thu nhập (đồng/người/tháng)"),
        Column("deprivation_count", "Số chỉ số thiếu hụt"),
    ]
    columns += [Column(f"deprived_{iid}", f"Thiếu hụt: {name}") for iid, name in indicators()]
    columns.append(Column("review_status", "Kết quả rà soát"))
    return columns


def household_rows(db: Session | Connection, scope: ScopeLike, filters: HouseholdFilters) -> Iterator[list[Any]]:
    """Yield one row per shared, not erased assessment of the period inside the scope (column order above).

    Streams: rows are fetched ``FETCH_ROWS`` at a time and never held all at once.
    """
    start, end = utc_bounds(filters.period)
    stmt = (
        select(
            Assessment.id,
            Assessment.commune_code,
            Assessment.hamlet,
            Assessment.household_code,
            Assessment.created_at,
            Assessment.channel,
            Assessment.provenance,
            Assessment.standard_id,
            Assessment.status,
            Assessment.next_standard_id,
            Assessment.next_status,
            Assessment.income_per_capita_vnd,
            Assessment.income_line_vnd,
            Assessment.deprivation_count,
            Assessment.deprivations,
            Review.status.label("review_status"),
        )
        .outerjoin(Review, Review.assessment_id == Assessment.id)
        .where(
            Assessment.shared.is_(True),
            Assessment.erased_at.is_(None),
            Assessment.created_at >= start,
            Assessment.created_at < end,
        )
        .order_by(Assessment.commune_code, Assessment.created_at, Assessment.id)
    )
    if filters.commune_code:
        stmt = stmt.where(Assessment.commune_code == filters.commune_code)
    stmt = stmt.where(scope_clause(scope, Assessment.commune_code, Assessment.hamlet))
    indicator_ids = [iid for iid, _ in indicators()]
    result = _connection(db).execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(stmt)
    for row in result:
        province_code, province_name, commune_name = commune_names(row.commune_code or "")
        deprived = set(row.deprivations or ())
        applicable = standard_indicator_ids(row.standard_id)
        flags = [
            (1 if iid in deprived else 0) if row.deprivations is not None and iid in applicable else None
            for iid in indicator_ids
        ]
        count = row.deprivation_count if row.deprivation_count is not None else (
            len(deprived) if row.deprivations is not None else None
        )
        yield [
            row.id,
            province_code,
            province_name,
            row.commune_code or "",
            commune_name,
            row.hamlet or "",
            row.household_code or "",
            row.created_at.astimezone(VIETNAM_TZ).date(),
            row.channel or "",
            str(getattr(row.provenance, "value", row.provenance) or ""),
            row.standard_id,
            row.status,
            row.next_standard_id or "",
            row.next_status or "",
            row.income_per_capita_vnd,
            row.income_line_vnd,
            count,
            *flags,
            str(getattr(row.review_status, "value", row.review_status) or ""),
        ]


# -------------------------------------------------------------------------------------------- aggregate export


def aggregate_columns(level: str, by_month: bool = False) -> list[Column]:
    """Return the columns of the aggregate export at ``level``."""
    columns = [Column("province_code", "Mã tỉnh"), Column("province_name", "Tỉnh/thành phố")]
    if level in ("commune", "hamlet"):
        columns += [Column("commune_code", "Mã xã"), Column("commune_name", "Xã/phường")]
    if level == "hamlet":
        columns.append(Column("hamlet", "Thôn/ấp/khóm"))
    if by_month:
        columns.append(Column("month", "Tháng"))
    columns.append(Column("in_scope", "Trong phạm vi quản lý"))
    columns.append(Column("total", "Số lượt tự đánh giá"))
    columns += [Column(f"status_{s}", f"{STATUS_LABELS_VI[s]} (chuẩn áp dụng)") for s in STATUSES]
    columns += [Column(f"next_{s}", f"{STATUS_LABELS_VI[s]} (chuẩn giai đoạn sau)") for s in STATUSES]
    columns.append(Column("next_none", "Chưa có kết quả theo chuẩn giai đoạn sau"))
    columns += [Column(f"deprived_{iid}", f"Thiếu hụt: {name}") for iid, name in indicators()]
    return columns


def _additive_groups() -> list[list[str]]:
    return [
        [f"status_{s}" for s in STATUSES],
        [*(f"next_{s}" for s in STATUSES), "next_none"],
    ]


def suppress(values: Mapping[str, int], groups: Sequence[Sequence[str]], total_key: str = "total") -> dict[str, Any]:
    """Return ``values`` with small counts hidden (for a unit outside the viewer's own scope).

    Every count under :data:`SMALL_CELL` becomes ``"<5"`` (zero too, so a hidden cell cannot be told apart
    from an empty one). In each group of cells that adds up to ``total_key``, when the total is shown and
    exactly one cell of the group is hidden, the smallest shown cell of the group is hidden as well:
    otherwise the total minus the shown cells would give the hidden one back.
    """
    out: dict[str, Any] = {k: (SUPPRESSED if v < SMALL_CELL else v) for k, v in values.items()}
    if out.get(total_key) == SUPPRESSED:
        return out
    for group in groups:
        hidden = [k for k in group if out.get(k) == SUPPRESSED]
        if len(hidden) == 1:
            shown = [k for k in group if k in out and out[k] != SUPPRESSED]
            if shown:
                smallest = min(shown, key=lambda k: (values[k], k))
                out[smallest] = SUPPRESSED
    return out


def aggregate_rows(db: Session | Connection, scope: ScopeLike, filters: AggregateFilters) -> Iterator[list[Any]]:
    """Yield the aggregate export rows (see :func:`aggregate_columns`), small cells suppressed out of scope.

    Counts come from the monthly tables, so the period is widened to whole months (the caller shows the
    months actually covered, :meth:`Period.widened`).
    """
    if filters.level not in AGGREGATE_LEVELS:
        raise ValueError(f"unknown level {filters.level!r}")
    first, last = month_starts(filters.period)
    conn = _connection(db)

    def unit_columns(table: Any) -> list[Any]:
        cols = [table.province_code]
        if filters.level in ("commune", "hamlet"):
            cols.append(table.commune_code)
        if filters.level == "hamlet":
            cols.append(table.hamlet)
        if filters.by_month:
            cols.append(table.month)
        return cols

    def where(table: Any) -> list[Any]:
        conditions = [table.month >= first, table.month <= last]
        if filters.province_code:
            conditions.append(table.province_code == filters.province_code)
        if filters.commune_code:
            conditions.append(table.commune_code == filters.commune_code)
        return conditions

    units: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    m = AggregateMonthly
    keys = unit_columns(m)
    stmt = (
        select(*keys, m.standard_id, m.status, m.next_status, func.sum(m.count).label("n"))
        .where(*where(m))
        .group_by(*keys, m.standard_id, m.status, m.next_status)
    )
    for row in conn.execute(stmt):
        unit = tuple(row[: len(keys)])
        counts = units[unit]
        n = int(row.n or 0)
        counts["total"] += n
        counts[f"status_{row.status}"] += n
        counts[f"next_{row.next_status}" if row.next_status else "next_none"] += n
    d = AggregateDeprivationMonthly
    dkeys = unit_columns(d)
    dstmt = (
        select(*dkeys, d.indicator, func.sum(d.count).label("n")).where(*where(d)).group_by(*dkeys, d.indicator)
    )
    for row in conn.execute(dstmt):
        units[tuple(row[: len(dkeys)])][f"deprived_{row.indicator}"] += int(row.n or 0)

    columns = aggregate_columns(filters.level, filters.by_month)
    count_keys = [c.key for c in columns[columns.index(next(c for c in columns if c.key == "total")) :]]
    groups = _additive_groups()
    for unit in sorted(units, key=lambda u: tuple("" if v is None else str(v) for v in u)):
        counts = units[unit]
        parts = list(unit)
        province_code = str(parts.pop(0) or "")
        commune_code = str(parts.pop(0) or "") if filters.level in ("commune", "hamlet") else None
        hamlet = str(parts.pop(0) or "") if filters.level == "hamlet" else None
        month = parts.pop(0) if filters.by_month else None
        if commune_code is not None:
            inside = covers(scope, commune_code=commune_code, hamlet=hamlet if filters.level == "hamlet" else None)
        else:
            inside = covers(scope, province_code=province_code)
        values = {k: int(counts.get(k, 0)) for k in count_keys}
        shown: Mapping[str, Any] = values if inside else suppress(values, groups)
        line: list[Any] = [province_code, province_label(province_code)]
        if commune_code is not None:
            line += [commune_code, commune_names(commune_code)[2]]
        if hamlet is not None:
            line.append(hamlet)
        if month is not None:
            line.append(month.strftime("%Y-%m") if isinstance(month, dt.date) else str(month))
        line.append("có" if inside else "không")
        line += [shown[k] for k in count_keys]
        yield line


# -------------------------------------------------------------------------------------------- writers


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def csv_chunks(columns: Sequence[Column], rows: Iterable[Sequence[Any]], *, flush_rows: int = 500) -> Iterator[str]:
    """Yield a CSV document (UTF-8 BOM so Excel reads the Vietnamese, then the header) in chunks.

    A generator for ``Response``: a chunk goes out every ``flush_rows`` rows, so memory stays flat and the
    download starts at once.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([c.heading for c in columns])
    pending = 0
    for row in rows:
        writer.writerow([_cell_text(v) for v in row])
        pending += 1
        if pending >= flush_rows:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def write_xlsx(
    sink: IO[bytes],
    sheets: Sequence[tuple[str, Sequence[Column] | Sequence[str], Iterable[Sequence[Any]]]],
    *,
    notes: Sequence[str] = (),
) -> None:
    """Write an XLSX workbook with openpyxl's write-only mode (rows go to disk as they come, not to memory).

    Args:
        sink: Binary file to write the workbook into.
        sheets: ``(title, columns or headings, rows)`` per sheet.
        notes: Lines written on a last sheet "Ghi chú" (period, source, suppression rule).
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    bold = Font(bold=True)
    for title, columns, rows in sheets:
        sheet = workbook.create_sheet(title=title[:31])
        header = []
        for column in columns:
            cell = WriteOnlyCell(sheet, value=column.heading if isinstance(column, Column) else str(column))
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for row in rows:
            sheet.append(list(row))
    if notes:
        sheet = workbook.create_sheet(title="Ghi chú")
        for line in notes:
            sheet.append([line])
    workbook.save(sink)


def xlsx_tempfile(writer: Callable[[IO[bytes]], None]) -> IO[bytes]:
    """Run ``writer`` into a temporary file (spilled to disk past 8 MiB) and return it rewound."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - returned to the caller
    writer(spool)
    spool.seek(0)
    return spool
