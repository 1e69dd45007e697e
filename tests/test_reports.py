"""Reports and exports: periods, household and aggregate exports (round trips, suppression), report totals.

The row functions are tested directly with a ``Scope``; the routes (auth, audit, scope checks) are in
``tests/test_reports_routes.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assessment import assess
from bot.accounts.scope import Scope
from bot.reports.exports import (
    SUPPRESSED,
    AggregateFilters,
    HouseholdFilters,
    aggregate_columns,
    aggregate_rows,
    csv_chunks,
    household_columns,
    household_rows,
    suppress,
    write_xlsx,
)
from bot.reports.periods import Period, PeriodError, parse_period, reporting_period
from bot.reports.regime import ADDITIVE_GROUPS, build_report, report_sheet_rows
from bot.store.db import Store
from bot.store.migrate import upgrade
from bot.store.models import AggregateMonthly, Assessment, Review, ReviewStatus
from bot.store.repository import VIETNAM_TZ, record_assessment
from bot.store.testing import temporary_database

THUONG_PHUOC = "29971"  # Xã Thường Phước, Đồng Tháp (82)
MY_THO = "28261"  # Phường Mỹ Tho, Đồng Tháp
HOAN_KIEM = "00070"  # Phường Hoàn Kiếm, Hà Nội (01)

ADMIN = Scope(user_id=1, role="admin")
COMMUNE_OFFICIAL = Scope(user_id=2, role="official", communes=frozenset({THUONG_PHUOC}))
PROVINCE_OFFICIAL = Scope(user_id=3, role="official", province_code="82")
COLLABORATOR = Scope(
    user_id=4, role="collaborator", communes=frozenset({THUONG_PHUOC}), hamlets={THUONG_PHUOC: frozenset({"Ấp 1"})}
)


# ------------------------------------------------------------------------------------------------ periods


def test_reporting_periods_end_with_the_last_full_month_before_the_due_date() -> None:
    h1 = reporting_period("h1", 2026)
    assert (h1.start, h1.end) == (dt.date(2025, 12, 1), dt.date(2026, 5, 31))
    annual = reporting_period("annual", 2026)
    assert (annual.start, annual.end) == (dt.date(2025, 11, 1), dt.date(2026, 10, 31))
    assert "10/6" in h1.label_vi and "10/11" in annual.label_vi
    assert h1.whole_months and annual.whole_months
    # Annual periods tile the calendar: the next one starts the day after.
    assert reporting_period("annual", 2027).start == annual.end + dt.timedelta(days=1)


def test_parse_period_accepts_keys_and_ranges_and_refuses_nonsense() -> None:
    today = dt.date(2026, 7, 1)
    assert parse_period({"period": "annual-2026"}, today=today) == reporting_period("annual", 2026)
    p = parse_period({"from": "2026-02-10", "to": "2026-03-05"}, today=today)
    assert (p.start, p.end) == (dt.date(2026, 2, 10), dt.date(2026, 3, 5))
    assert (p.widened().start, p.widened().end) == (dt.date(2026, 2, 1), dt.date(2026, 3, 31))
    assert parse_period({}, today=today).end == today
    for bad in ({"period": "q3-2026"}, {"from": "2026-13-01"}, {"from": "2026-05-01", "to": "2026-04-01"}):
        with pytest.raises(PeriodError) as info:
            parse_period(bad, today=today)
        assert info.value.message_vi
    custom = reporting_period("h1", 2026, {"h1": {"last_month": 6, "months": 6, "due": "10/7", "name_vi": "6 tháng"}})
    assert (custom.start, custom.end) == (dt.date(2026, 1, 1), dt.date(2026, 6, 30))


# ------------------------------------------------------------------------------------------------ suppression


def test_suppress_hides_small_cells_and_one_more_when_a_total_would_give_one_back() -> None:
    groups = [["a", "b", "c"]]
    out = suppress({"total": 30, "a": 20, "b": 7, "c": 3}, groups)
    assert out == {"total": 30, "a": 20, "b": SUPPRESSED, "c": SUPPRESSED}
    out = suppress({"total": 30, "a": 20, "b": 8, "c": 2, "x": 0}, groups)
    assert out["x"] == SUPPRESSED and out["b"] == SUPPRESSED
    # Two hidden cells already: the total gives only their sum; nothing more is hidden.
    out = suppress({"total": 30, "a": 26, "b": 2, "c": 2}, groups)
    assert out == {"total": 30, "a": 26, "b": SUPPRESSED, "c": SUPPRESSED}
    assert all(v == SUPPRESSED for v in suppress({"total": 4, "a": 4, "b": 0, "c": 0}, groups).values())
    assert suppress({"total": 50, "a": 20, "b": 30, "c": 5}, groups) == {"total": 50, "a": 20, "b": 30, "c": 5}


# ------------------------------------------------------------------------------------------------ data


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """A session on a fresh, migrated database (no app: the row functions need none)."""
    with temporary_database(tmp_path) as url:
        store = Store.from_url(url)
        upgrade(store.engine)
        with store.sessions() as s:
            yield s
        store.engine.dispose()


def _household(rng: random.Random, commune: str) -> dict[str, Any]:
    return {
        "commune_code": commune,
        "household_size": rng.randint(1, 7),
        "monthly_income_vnd": rng.choice([2_000_000, 4_000_000, 6_500_000, 9_000_000, 15_000_000, 30_000_000]),
        "housing": rng.choice(["durable", "semi_durable", "less_durable", "simple"]),
        "toilet": rng.choice(["septic", "pit", "none"]),
        "water_source": rng.choice(["piped", "surface_water"]),
        "internet": rng.choice([True, False]),
        "member_6plus_without_health_insurance": rng.choice([True, False]),
        "waste": rng.choice(["collected", "dumped"]),
    }


def seed(session: Session, n: int = 60, seed_value: int = 7) -> list[int]:
    """Store ``n`` assessments through the repository (as the chat and imports do) over 2025-11 … 2026-06."""
    rng = random.Random(seed_value)
    ids = []
    places = [(THUONG_PHUOC, "Ấp 1"), (THUONG_PHUOC, "Ấp 2"), (THUONG_PHUOC, None), (MY_THO, None), (HOAN_KIEM, None)]
    for i in range(n):
        commune, hamlet = places[i % len(places)]
        day = dt.date(2025, 11, 1) + dt.timedelta(days=rng.randint(0, 240))
        now = dt.datetime.combine(day, dt.time(rng.randint(0, 23), 30), VIETNAM_TZ)
        data = _household(rng, commune)
        result = assess(data, on=day).to_dict()
        ids.append(
            record_assessment(
                session,
                input=data,
                result=result,
                now=now,
                provenance=rng.choice(["self", "collaborator", "imported"]),
                shared=i % 3 != 0,
                channel=rng.choice(["web", "zalo_oa", "import"]),
                hamlet=hamlet,
            )
        )
    # Some reviews decided.
    reviews = session.scalars(select(Review).order_by(Review.id)).all()
    for review, status in zip(reviews, [ReviewStatus.RECOGNISED_POOR, ReviewStatus.NOT_RECOGNISED,
                                         ReviewStatus.RECOGNISED_NEAR_POOR] * 3, strict=False):
        review.status = status
    session.commit()
    return ids


# ------------------------------------------------------------------------------------------------ households


def _expected_households(session: Session, scope: Scope, period: Period) -> list[Assessment]:
    start = dt.datetime.combine(period.start, dt.time.min, VIETNAM_TZ)
    end = dt.datetime.combine(period.end + dt.timedelta(days=1), dt.time.min, VIETNAM_TZ)
    stmt = scope.restrict(
        select(Assessment).where(
            Assessment.shared.is_(True), Assessment.created_at >= start, Assessment.created_at < end
        )
    )
    return list(session.scalars(stmt))


@pytest.mark.db
@pytest.mark.parametrize("scope", [ADMIN, COMMUNE_OFFICIAL, PROVINCE_OFFICIAL, COLLABORATOR], ids=lambda s: s.role + str(s.user_id))
def test_household_csv_round_trip_equals_the_database(session: Session, scope: Scope) -> None:
    seed(session)
    period = reporting_period("h1", 2026)
    columns = household_columns()
    text = "".join(csv_chunks(columns, household_rows(session, scope, HouseholdFilters(period)), flush_rows=7))
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0] == [c.heading for c in columns]
    keys = [c.key for c in columns]
    got = {int(r[0]): dict(zip(keys, r, strict=True)) for r in rows[1:]}
    expected = {a.id: a for a in _expected_households(session, scope, period)}
    assert set(got) == set(expected) and expected
    reviews = {r.assessment_id: r.status for r in session.scalars(select(Review))}
    for aid, a in expected.items():
        row = got[aid]
        assert row["commune_code"] == a.commune_code
        assert row["hamlet"] == (a.hamlet or "")
        assert row["status"] == a.status and row["standard_id"] == a.standard_id
        assert row["next_status"] == (a.next_status or "")
        assert row["income_per_capita_vnd"] == str(a.income_per_capita_vnd)
        assert row["income_line_vnd"] == str(a.income_line_vnd)
        assert int(row["deprivation_count"]) == a.deprivation_count == len(a.deprivations or [])
        assert {k[len("deprived_"):] for k, v in row.items() if k.startswith("deprived_") and v == "1"} == set(a.deprivations or [])
        assert row["date"] == a.created_at.astimezone(VIETNAM_TZ).date().isoformat()
        assert row["review_status"] == reviews[aid].value
        assert row["province_code"] == "82" if a.commune_code != HOAN_KIEM else row["province_code"] == "01"
    if scope is COLLABORATOR:
        assert {r["hamlet"] for r in got.values()} == {"Ấp 1"}
    if scope is COMMUNE_OFFICIAL:
        assert {r["commune_code"] for r in got.values()} == {THUONG_PHUOC}


@pytest.mark.db
def test_household_xlsx_round_trip_and_commune_filter(session: Session, tmp_path: Any) -> None:
    seed(session)
    period = parse_period({"from": "2025-11-01", "to": "2026-06-30"}, today=dt.date(2026, 7, 1))
    filters = HouseholdFilters(period, commune_code=THUONG_PHUOC)
    columns = household_columns()
    path = tmp_path / "h.xlsx"
    with open(path, "wb") as sink:
        write_xlsx(sink, [("Hộ gia đình", columns, household_rows(session, ADMIN, filters))], notes=["x"])
    sheet = load_workbook(path)["Hộ gia đình"]
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == [c.heading for c in columns]
    keys = [c.key for c in columns]
    got = {r[0]: dict(zip(keys, r, strict=True)) for r in rows[1:]}
    expected = {a.id: a for a in _expected_households(session, ADMIN, period) if a.commune_code == THUONG_PHUOC}
    assert set(got) == set(expected)
    for aid, a in expected.items():
        assert got[aid]["income_per_capita_vnd"] == a.income_per_capita_vnd
        assert got[aid]["deprivation_count"] == a.deprivation_count
        assert got[aid]["status"] == a.status


# ------------------------------------------------------------------------------------------------ aggregates


def _monthly_totals(session: Session, period: Period, level: str) -> Counter[tuple[str, ...]]:
    first, last = period.widened().start, period.widened().end
    m = AggregateMonthly
    cols = {"province": [m.province_code], "commune": [m.province_code, m.commune_code],
            "hamlet": [m.province_code, m.commune_code, m.hamlet]}[level]
    rows = session.execute(select(*cols, func.sum(m.count)).where(m.month >= first, m.month <= last).group_by(*cols))
    return Counter({tuple(r[:-1]): int(r[-1]) for r in rows})


@pytest.mark.db
@pytest.mark.parametrize("level", ["province", "commune", "hamlet"])
def test_aggregate_export_round_trip_for_an_admin(session: Session, level: str) -> None:
    seed(session)
    period = reporting_period("annual", 2026)
    columns = aggregate_columns(level)
    keys = [c.key for c in columns]
    rows = [dict(zip(keys, r, strict=True)) for r in aggregate_rows(session, ADMIN, AggregateFilters(period, level=level))]
    expected = _monthly_totals(session, period, level)
    place = {"province": ["province_code"], "commune": ["province_code", "commune_code"],
             "hamlet": ["province_code", "commune_code", "hamlet"]}[level]
    assert {tuple(r[k] for k in place): r["total"] for r in rows} == dict(expected)
    for r in rows:
        assert r["in_scope"] == "có"
        assert sum(r[f"status_{s}"] for s in ("poor", "near_poor", "average_living", "not_poor")) == r["total"]
        assert sum(r[k] for k in keys if k.startswith("next_")) == r["total"]


@pytest.mark.db
def test_aggregates_outside_the_viewers_scope_are_suppressed(session: Session, tmp_path: Any) -> None:
    seed(session)
    period = reporting_period("annual", 2026)
    columns = aggregate_columns("commune")
    keys = [c.key for c in columns]
    admin = {r[2]: dict(zip(keys, r, strict=True)) for r in aggregate_rows(session, ADMIN, AggregateFilters(period))}
    mine = {r[2]: dict(zip(keys, r, strict=True)) for r in aggregate_rows(session, COMMUNE_OFFICIAL, AggregateFilters(period))}
    assert set(mine) == set(admin)  # any area may be exported...
    assert mine[THUONG_PHUOC] == admin[THUONG_PHUOC]  # ...exact inside the viewer's own scope...
    outside = mine[MY_THO]
    assert outside["in_scope"] == "không"
    count_keys = keys[keys.index("total"):]
    small = [k for k in count_keys if admin[MY_THO][k] < 5]
    assert small, "the fixture should give the other commune some small cells"
    for k in count_keys:  # ...and small cells hidden elsewhere, never a small number shown
        value = outside[k]
        assert value == SUPPRESSED or (value == admin[MY_THO][k] and value >= 5)
        if admin[MY_THO][k] < 5:
            assert value == SUPPRESSED
    # The same through a CSV and an XLSX file.
    text = "".join(csv_chunks(columns, aggregate_rows(session, COMMUNE_OFFICIAL, AggregateFilters(period))))
    csv_rows = {r[2]: r for r in csv.reader(io.StringIO(text[1:]))}
    assert csv_rows[MY_THO][keys.index(small[0])] == "<5"
    path = tmp_path / "a.xlsx"
    with open(path, "wb") as sink:
        write_xlsx(sink, [("Tổng hợp", columns, aggregate_rows(session, COMMUNE_OFFICIAL, AggregateFilters(period)))])
    sheet = load_workbook(path)["Tổng hợp"]
    xrows = {r[2]: r for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert xrows[MY_THO][keys.index(small[0])] == "<5"
    assert xrows[THUONG_PHUOC][keys.index("total")] == admin[THUONG_PHUOC]["total"]


@pytest.mark.db
def test_a_collaborator_sees_only_their_hamlet_exactly(session: Session) -> None:
    seed(session)
    period = reporting_period("annual", 2026)
    keys = [c.key for c in aggregate_columns("hamlet")]
    rows = [dict(zip(keys, r, strict=True)) for r in aggregate_rows(session, COLLABORATOR, AggregateFilters(period, level="hamlet"))]
    inside = [r for r in rows if r["in_scope"] == "có"]
    assert [(r["commune_code"], r["hamlet"]) for r in inside] == [(THUONG_PHUOC, "Ấp 1")]
    commune_rows = list(aggregate_rows(session, COLLABORATOR, AggregateFilters(period, level="commune")))
    assert all(r[keys.index("in_scope") - 1] == "không" for r in commune_rows)


# ------------------------------------------------------------------------------------------------ report tables


@pytest.mark.db
@pytest.mark.parametrize("scope", [ADMIN, PROVINCE_OFFICIAL, COMMUNE_OFFICIAL, COLLABORATOR], ids=lambda s: s.role + str(s.user_id))
def test_report_totals_add_up_to_the_rows_and_to_the_database(session: Session, scope: Scope) -> None:
    seed(session)
    period = reporting_period("annual", 2026)
    report = build_report(session, scope, period)
    keys = [c.key for c in report.columns]
    for block in report.communes:
        for key in keys:  # commune row = sum of its hamlet rows
            assert report.value(block.row, key) == sum(report.value(h, key) for h in block.hamlets)
        for group in ADDITIVE_GROUPS:  # each breakdown adds up to the row's total
            assert sum(report.value(block.row, k) for k in group) == report.value(block.row, "total")
    for key in keys:  # total row = sum of commune rows
        assert report.value(report.total, key) == sum(report.value(b.row, key) for b in report.communes)
    # ...and the total is what the database holds for this scope and period.
    m = AggregateMonthly
    expected_total = session.scalar(
        scope.restrict(select(func.coalesce(func.sum(m.count), 0)), m.commune_code, m.hamlet).where(
            m.month >= period.start, m.month <= period.end
        )
    )
    assert report.value(report.total, "total") == expected_total > 0
    start = dt.datetime.combine(period.start, dt.time.min, VIETNAM_TZ)
    end = dt.datetime.combine(period.end + dt.timedelta(days=1), dt.time.min, VIETNAM_TZ)
    reviews = Counter(
        s.value
        for s in session.scalars(
            scope.restrict(select(Review.status).join(Assessment, Assessment.id == Review.assessment_id)).where(
                Assessment.created_at >= start, Assessment.created_at < end
            )
        )
    )
    for status in ("queued", "recognised_poor", "recognised_near_poor", "not_recognised"):
        assert report.value(report.total, f"review_{status}") == reviews[status]
    poor = session.scalars(scope.restrict(select(Assessment)).where(
        Assessment.created_at >= start, Assessment.created_at < end, Assessment.status == "poor"))
    assert report.value(report.total, "status_poor") == len(list(poor))
    _headings, rows = report_sheet_rows(report, by_hamlet=True)
    table = list(rows)
    assert table[-1][3] == report.value(report.total, "total")
    if scope is COMMUNE_OFFICIAL or scope is COLLABORATOR:
        assert [b.row.commune_code for b in report.communes] == [THUONG_PHUOC]
    if scope is COLLABORATOR:
        assert [h.hamlet for h in report.communes[0].hamlets] == ["Ấp 1"]
