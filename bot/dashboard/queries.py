"""The dashboard's reads: anonymous counts from the monthly aggregates, household lists from indexed queries.

Counts never touch ``assessments``: ``aggregates_monthly`` and ``aggregates_deprivation_monthly`` are kept up to
date in the transaction that stores each assessment (``bot.store.repository.record_assessment``), and each
page sums them with a few GROUP BY queries whose WHERE matches an index (commune and month). Province pages
read the commune-level rollups of the same counts (``aggregates_commune_monthly``,
``aggregates_commune_deprivation_monthly``), whose unique keys start with the province.
Household lists (near the income line, review queue) read ``assessments`` through
``ix_assessments_commune_code_shared_created_at`` and only ever inside the viewer's scope.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Final

from sqlalchemy import ColumnElement, Date, and_, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from bot.accounts.scope import Scope
from bot.dashboard.periods import Period
from bot.store.models import (
    AggregateCommuneDeprivationMonthly,
    AggregateCommuneMonthly,
    AggregateDeprivationMonthly,
    AggregateMonthly,
    Assessment,
    Review,
    ReviewStatus,
)

__all__ = [
    "NEAR_LINE_SHARE",
    "Counts",
    "deprivations_by_unit",
    "indicator_names",
    "mix",
    "near_line",
    "review_queue",
    "status_by_unit",
    "trend",
]

#: "Near the line": per-capita income within this share of the income line, either side.
NEAR_LINE_SHARE: Final = 0.10

#: Most rows a household list shows (the page says when there are more).
LIST_LIMIT: Final = 200

#: Statuses in display order (worst first), and those at or under the income line.
STATUS_ORDER: Final = ("poor", "near_poor", "average_living", "not_poor")
UNDER_LINE: Final = frozenset({"poor", "near_poor"})


class no_index(FunctionElement[dt.date]):  # SQL-function style name, like func.* constructs
    """The month column, kept out of SQLite's index choice (rendered ``+month`` there, plain elsewhere).

    The province page groups by commune / status / channel and filters by a month range. Given the choice,
    SQLite seeks the month range and then sorts every row for the GROUP BY; with the month filter evaluated
    inside the scan instead, it reads the covering index whose order matches the GROUP BY and sorts nothing
    (about 15 ms instead of 60-110 ms per query at a million assessments).
    """

    type = Date()
    name = "no_index"
    inherit_cache = True


@compiles(no_index)
def _no_index_default(element: no_index, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(no_index, "sqlite")
def _no_index_sqlite(element: no_index, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


@cache
def indicator_names(standard_id: str) -> tuple[tuple[str, str], ...]:
    """The indicators of a standard, in the legal order, as ``(id, name_vi)``."""
    from assessment import standards_catalog

    for standard in standards_catalog():
        if standard["id"] == standard_id:
            return tuple((i["id"], i["name_vi"]) for i in standard.get("indicators", []))
    return ()


@cache
def standard_names() -> dict[str, str]:
    """Vietnamese names of the standards, by id."""
    from assessment import standards_catalog

    return {s["id"]: s["name_vi"] for s in standards_catalog()}


@dataclasses.dataclass
class Counts:
    """Counts of one unit (province, commune or hamlet) over a period."""

    total: int = 0
    status: Counter[str] = dataclasses.field(default_factory=Counter)
    next_status: Counter[str] = dataclasses.field(default_factory=Counter)
    standards: Counter[str] = dataclasses.field(default_factory=Counter)
    #: ``(standard_id, indicator)`` → households deprived.
    deprived: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)

    @property
    def under_line(self) -> int:
        """Poor plus near-poor under the standard in force."""
        return sum(self.status[s] for s in UNDER_LINE)

    @property
    def next_under_line(self) -> int:
        """Poor plus near-poor under the next standard."""
        return sum(self.next_status[s] for s in UNDER_LINE)


@dataclasses.dataclass(frozen=True)
class Where:
    """Which aggregate rows a page counts: a province, a commune, or a hamlet; and a period."""

    period: Period
    province_code: str | None = None
    commune_code: str | None = None
    hamlet: str | None = None

    @property
    def counts_table(self) -> Any:
        """Hamlet-level counts inside a commune; the commune-level rollup for a whole province (far fewer rows)."""
        return AggregateMonthly if self.commune_code is not None else AggregateCommuneMonthly

    @property
    def deprivation_table(self) -> Any:
        return AggregateDeprivationMonthly if self.commune_code is not None else AggregateCommuneDeprivationMonthly

    def clause(self, table: Any) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if self.commune_code is not None:
            parts.append(table.commune_code == self.commune_code)
            if self.hamlet is not None:
                parts.append(table.hamlet == self.hamlet)
        elif self.province_code is not None:
            parts.append(table.province_code == self.province_code)
        month = table.month if self.commune_code is not None else no_index(table.month)
        if self.period.first is not None:
            parts.append(month >= self.period.first)
        if self.period.last is not None:
            parts.append(month <= self.period.last)
        return and_(*parts)


def status_by_unit(session: Session, where: Where, unit: str | None) -> tuple[Counts, dict[str, Counts]]:
    """Count assessments by status and next status, in total and per sub-unit (``"commune_code"``/``"hamlet"``).

    Returns:
        The totals of the whole area, and the counts of each sub-unit (empty when ``unit`` is None).
    """
    table = where.counts_table
    keys: list[Any] = [table.standard_id, table.status, table.next_status]
    if unit is not None:
        keys.insert(0, getattr(table, unit))
    stmt = select(*keys, func.sum(table.count)).where(where.clause(table)).group_by(*keys)
    total = Counts()
    units: dict[str, Counts] = {}
    targets: tuple[Counts, ...]
    for row in session.execute(stmt):
        if unit is not None:
            name, standard_id, status, next_status, count = row
            targets = (total, units.setdefault(name, Counts()))
        else:
            standard_id, status, next_status, count = row
            targets = (total,)
        count = int(count or 0)
        for target in targets:
            target.total += count
            target.status[status] += count
            target.next_status[next_status] += count
            target.standards[standard_id] += count
    return total, units


def deprivations_by_unit(session: Session, where: Where, unit: str | None, counts: Counts,
                         units: dict[str, Counts]) -> None:
    """Add the per-indicator deprivation counts to ``counts`` (whole area) and ``units`` (per sub-unit)."""
    table = where.deprivation_table
    keys: list[Any] = [table.standard_id, table.indicator]
    if unit is not None:
        keys.insert(0, getattr(table, unit))
    stmt = select(*keys, func.sum(table.count)).where(where.clause(table)).group_by(*keys)
    for row in session.execute(stmt):
        if unit is not None:
            name, standard_id, indicator, count = row
            units.setdefault(name, Counts()).deprived[(standard_id, indicator)] += int(count or 0)
        else:
            standard_id, indicator, count = row
        counts.deprived[(standard_id, indicator)] += int(count or 0)


def trend(session: Session, where: Where) -> dict[dt.date, Counter[str]]:
    """Assessments per month and status."""
    table = where.counts_table
    stmt = (
        select(table.month, table.status, func.sum(table.count))
        .where(where.clause(table))
        .group_by(table.month, table.status)
    )
    out: dict[dt.date, Counter[str]] = {}
    for month, status, count in session.execute(stmt):
        out.setdefault(month, Counter())[status] += int(count or 0)
    return dict(sorted(out.items()))


def mix(session: Session, where: Where) -> tuple[Counter[str], Counter[str]]:
    """Assessments per channel and per provenance (who supplied the answers)."""
    table = where.counts_table
    stmt = (
        select(table.channel, table.provenance, func.sum(table.count))
        .where(where.clause(table))
        .group_by(table.channel, table.provenance)
    )
    channels: Counter[str] = Counter()
    provenances: Counter[str] = Counter()
    for channel, provenance, count in session.execute(stmt):
        channels[channel] += int(count or 0)
        provenances[provenance] += int(count or 0)
    return channels, provenances


# -- household lists (always inside the viewer's scope) ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HouseholdRow:
    """One shared assessment as listed on a page."""

    id: int
    created_at: dt.datetime
    hamlet: str | None
    household_head: str | None
    status: str
    next_status: str | None
    income_per_capita_vnd: int | None
    income_line_vnd: int | None
    deprivation_count: int | None
    channel: str | None
    review_status: str | None

    @property
    def gap_share(self) -> float | None:
        """(income − line) / line: negative under the line."""
        if not self.income_line_vnd or self.income_per_capita_vnd is None:
            return None
        return (self.income_per_capita_vnd - self.income_line_vnd) / self.income_line_vnd


_LIST_COLUMNS: Final = (
    Assessment.id,
    Assessment.created_at,
    Assessment.hamlet,
    Assessment.household_head,
    Assessment.status,
    Assessment.next_status,
    Assessment.income_per_capita_vnd,
    Assessment.income_line_vnd,
    Assessment.deprivation_count,
    Assessment.channel,
    Assessment.identity_id,
    Review.status.label("review_status"),
)


def _latest_per_household(rows: Iterable[Any], limit: int) -> tuple[list[HouseholdRow], bool]:
    """Keep each household's newest assessment (rows come newest first); say whether more were left out."""
    seen: set[Any] = set()
    out: list[HouseholdRow] = []
    for row in rows:
        key = ("identity", row.identity_id) if row.identity_id is not None else ("assessment", row.id)
        if key in seen:
            continue
        seen.add(key)
        if len(out) == limit:
            return out, True
        review = row.review_status
        out.append(
            HouseholdRow(
                id=row.id,
                created_at=row.created_at,
                hamlet=row.hamlet,
                household_head=row.household_head,
                status=row.status,
                next_status=row.next_status,
                income_per_capita_vnd=row.income_per_capita_vnd,
                income_line_vnd=row.income_line_vnd,
                deprivation_count=row.deprivation_count,
                channel=row.channel,
                review_status=str(getattr(review, "value", review)) if review is not None else None,
            )
        )
    return out, False


def _shared_in(scope: Scope, commune_code: str, hamlet: str | None) -> Any:
    stmt = (
        select(*_LIST_COLUMNS)
        .join(Review, Review.assessment_id == Assessment.id, isouter=True)
        .where(
            Assessment.commune_code == commune_code,
            Assessment.shared.is_(True),
            Assessment.erased_at.is_(None),
        )
    )
    if hamlet is not None:
        stmt = stmt.where(Assessment.hamlet == hamlet)
    return scope.restrict(stmt)


def near_line(
    session: Session, scope: Scope, commune_code: str, hamlet: str | None = None, *, limit: int = LIST_LIMIT
) -> tuple[list[HouseholdRow], bool]:
    """Shared assessments whose income per person is within 10 % of the line, to prioritise visits.

    Closest to the line first; each household once (its newest assessment).
    """
    income, line = Assessment.income_per_capita_vnd, Assessment.income_line_vnd
    # Integer arithmetic (×10) so both databases compare exactly, with no float rounding at the edges.
    stmt = _shared_in(scope, commune_code, hamlet).where(
        line > 0,
        income * 10 >= line * 9,
        income * 10 <= line * 11,
    )
    rows = session.execute(stmt.order_by(Assessment.created_at.desc()).limit(limit * 5)).all()
    households, more = _latest_per_household(rows, limit)
    households.sort(key=lambda h: (abs(h.gap_share or 0.0), h.id))
    return households, more


def review_queue(
    session: Session, scope: Scope, commune_code: str, statuses: Sequence[str] = (ReviewStatus.QUEUED.value,),
    *, limit: int = LIST_LIMIT
) -> tuple[list[HouseholdRow], bool]:
    """Shared assessments of the commune by review status, newest first."""
    stmt = _shared_in(scope, commune_code, None).where(Review.status.in_(list(statuses)))
    rows = session.execute(stmt.order_by(Assessment.created_at.desc()).limit(limit + 1)).all()
    out, _ = _latest_per_household(rows, limit + 1)
    return out[:limit], len(rows) > limit
