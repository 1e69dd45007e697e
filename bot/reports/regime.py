"""The 6-month and annual report tables of the reporting regime (seed plan, section VI).

One row per commune of the viewer's scope (and, on request, one per hamlet under it) with:

* ``total``: assessments made in the period (lượt tự đánh giá; the anonymous tables cannot tell two
  assessments of one household apart), split by who supplied the data (``prov_*``: self, collaborator, import);
* ``status_*``: the estimated status under the standard in force on the day of each assessment;
* ``s2027_*``: the status under the 2027–2030 standard (Decree 351/2025/NĐ-CP): the assessment's own status
  when it was already assessed under that standard, else its ``next_status``; ``s2027_none`` when neither;
* ``deprived_*``: households deprived on each indicator (under the standard they were assessed with);
* ``review_*``: the commune review of the shared assessments of the period, by their outcome now.

Counts come from the monthly aggregate tables (kept after erasure) and the reviews; a commune row is the sum
of its hamlet rows and the total row the sum of the commune rows, so every total adds up to what it sums.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from bot.store.models import AggregateDeprivationMonthly, AggregateMonthly, Assessment, Review

from .common import NEW_STANDARD_ID, REVIEW_LABELS_VI, STATUS_LABELS_VI, STATUSES, commune_names, indicators, utc_bounds
from .exports import Column
from .periods import Period, month_starts
from .scoping import ScopeLike, scope_clause

__all__ = ["NO_HAMLET_VI", "RegimeReport", "ReportRow", "build_report", "report_columns", "report_sheet_rows"]

NO_HAMLET_VI: Final = "(chưa rõ thôn/ấp)"
PROVENANCES: Final = ("self", "collaborator", "imported")
PROVENANCE_LABELS_VI: Final = {"self": "Tự khai", "collaborator": "Cộng tác viên hỗ trợ", "imported": "Nhập từ tệp"}
REVIEW_STATUSES: Final = ("queued", "recognised_poor", "recognised_near_poor", "not_recognised")


def report_columns() -> list[Column]:
    """Return the count columns of the report, in order (the place columns come before them)."""
    columns = [Column("total", "Số lượt tự đánh giá")]
    columns += [Column(f"prov_{p}", f"Trong đó: {PROVENANCE_LABELS_VI[p]}") for p in PROVENANCES]
    columns += [Column(f"status_{s}", f"{STATUS_LABELS_VI[s]} (chuẩn đang áp dụng)") for s in STATUSES]
    columns += [Column(f"s2027_{s}", f"{STATUS_LABELS_VI[s]} (chuẩn 2027–2030)") for s in STATUSES]
    columns.append(Column("s2027_none", "Chưa xác định theo chuẩn 2027–2030"))
    columns += [Column(f"deprived_{iid}", f"Thiếu hụt: {name}") for iid, name in indicators()]
    columns += [Column(f"review_{r}", REVIEW_LABELS_VI[r]) for r in REVIEW_STATUSES]
    return columns


#: Groups of columns that add up to ``total`` (checked by the tests).
ADDITIVE_GROUPS: Final = (
    tuple(f"prov_{p}" for p in PROVENANCES),
    tuple(f"status_{s}" for s in STATUSES),
    (*(f"s2027_{s}" for s in STATUSES), "s2027_none"),
)


@dataclass
class ReportRow:
    """One line of the report: a commune (``hamlet is None``), a hamlet of it, or the total."""

    commune_code: str
    commune_name: str
    hamlet: str | None
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: ReportRow) -> None:
        """Add another row's counts into this one."""
        for key, value in other.counts.items():
            self.counts[key] += value


@dataclass
class CommuneBlock:
    """A commune row and its hamlet rows (which add up to it)."""

    row: ReportRow
    hamlets: list[ReportRow]


@dataclass
class RegimeReport:
    """The whole report: period, columns, one block per commune, and the total row."""

    period: Period
    columns: list[Column]
    communes: list[CommuneBlock]
    total: ReportRow
    generated_at: dt.datetime

    def value(self, row: ReportRow, key: str) -> int:
        """Return one count of a row (0 when absent)."""
        return int(row.counts.get(key, 0))


def _connection(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def build_report(
    db: Session | Connection,
    scope: ScopeLike,
    period: Period,
    *,
    commune_code: str | None = None,
    now: dt.datetime | None = None,
) -> RegimeReport:
    """Count the report for the communes of ``scope`` (optionally one commune) over ``period``.

    The period should be whole months (reporting periods are); a partial month is counted whole.
    """
    conn = _connection(db)
    first, last = month_starts(period)
    hamlet_rows: dict[tuple[str, str], ReportRow] = {}

    def row_for(code: str | None, hamlet: str | None) -> ReportRow:
        key = (code or "", hamlet or "")
        row = hamlet_rows.get(key)
        if row is None:
            row = hamlet_rows[key] = ReportRow(key[0], commune_names(key[0])[2], key[1])
        return row

    m = AggregateMonthly
    stmt = (
        select(m.commune_code, m.hamlet, m.provenance, m.standard_id, m.status, m.next_status, func.sum(m.count))
        .where(m.month >= first, m.month <= last, scope_clause(scope, m.commune_code, m.hamlet))
        .group_by(m.commune_code, m.hamlet, m.provenance, m.standard_id, m.status, m.next_status)
    )
    if commune_code:
        stmt = stmt.where(m.commune_code == commune_code)
    for code, hamlet, provenance, standard_id, status, next_status, n in conn.execute(stmt):
        counts = row_for(code, hamlet).counts
        n = int(n or 0)
        counts["total"] += n
        counts[f"prov_{provenance}"] += n
        counts[f"status_{status}"] += n
        under_2027 = status if standard_id == NEW_STANDARD_ID else (next_status or "")
        counts[f"s2027_{under_2027}" if under_2027 else "s2027_none"] += n

    d = AggregateDeprivationMonthly
    dstmt = (
        select(d.commune_code, d.hamlet, d.indicator, func.sum(d.count))
        .where(d.month >= first, d.month <= last, scope_clause(scope, d.commune_code, d.hamlet))
        .group_by(d.commune_code, d.hamlet, d.indicator)
    )
    if commune_code:
        dstmt = dstmt.where(d.commune_code == commune_code)
    for code, hamlet, indicator, n in conn.execute(dstmt):
        row_for(code, hamlet).counts[f"deprived_{indicator}"] += int(n or 0)

    start, end = utc_bounds(period.widened())
    a = Assessment
    rstmt = (
        select(a.commune_code, a.hamlet, Review.status, func.count())
        .join(Review, Review.assessment_id == a.id)
        .where(a.created_at >= start, a.created_at < end, scope_clause(scope, a.commune_code, a.hamlet))
        .group_by(a.commune_code, a.hamlet, Review.status)
    )
    if commune_code:
        rstmt = rstmt.where(a.commune_code == commune_code)
    for code, hamlet, status, n in conn.execute(rstmt):
        row_for(code, hamlet).counts[f"review_{getattr(status, 'value', status)}"] += int(n or 0)

    blocks: dict[str, CommuneBlock] = {}
    for (code, _hamlet), hrow in sorted(hamlet_rows.items()):
        block = blocks.get(code)
        if block is None:
            block = blocks[code] = CommuneBlock(ReportRow(code, commune_names(code)[2], None), [])
        block.hamlets.append(hrow)
        block.row.add(hrow)
    total = ReportRow("", "Tổng cộng", None)
    for block in blocks.values():
        total.add(block.row)
    return RegimeReport(
        period=period,
        columns=report_columns(),
        communes=list(blocks.values()),
        total=total,
        generated_at=now or dt.datetime.now(dt.UTC),
    )


def report_sheet_rows(report: RegimeReport, *, by_hamlet: bool) -> tuple[list[str], Iterator[list[Any]]]:
    """Return the headings and rows of the report as a flat table (XLSX sheet)."""
    headings = ["Mã xã", "Xã/phường", "Thôn/ấp/khóm", *(c.heading for c in report.columns)]
    keys = [c.key for c in report.columns]

    def line(row: ReportRow, name: str, hamlet: str) -> list[Any]:
        return [row.commune_code, name, hamlet, *(report.value(row, k) for k in keys)]

    def rows() -> Iterator[list[Any]]:
        for block in report.communes:
            yield line(block.row, block.row.commune_name or block.row.commune_code or "(chưa rõ xã)", "")
            if by_hamlet:
                for hrow in block.hamlets:
                    yield line(hrow, "", hrow.hamlet or NO_HAMLET_VI)
        yield line(report.total, report.total.commune_name, "")

    return headings, rows()


def hamlet_label(row: ReportRow) -> str:
    """Return how a hamlet row is named on screen."""
    return row.hamlet or NO_HAMLET_VI


def column_groups(columns: Sequence[Column]) -> list[tuple[str, int]]:
    """Return ``(group heading, span)`` for the two-line header of the HTML table."""
    spans: list[tuple[str, int]] = []
    names = {"total": "Tự đánh giá", "prov": "Nguồn", "status": "Chuẩn đang áp dụng", "s2027": "Chuẩn 2027–2030",
             "deprived": "Số hộ thiếu hụt theo chỉ số", "review": "Kết quả rà soát"}
    for column in columns:
        group = names[column.key.split("_", 1)[0]]
        if spans and spans[-1][0] == group:
            spans[-1] = (group, spans[-1][1] + 1)
        else:
            spans.append((group, 1))
    return spans
