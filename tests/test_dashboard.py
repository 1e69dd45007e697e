"""The dashboard: new assessment columns and aggregates, totals that add up, suppression, audit, hand-off,
official-list comparison, near-line list, Mẫu số 01."""

from __future__ import annotations

import datetime as dt
import random
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bot.dashboard.official_list import compare, parse_csv
from bot.dashboard.rollup import rebuild_rollups
from bot.dashboard.suppression import cell, rate_cell
from bot.pipeline import PipelineConfig, process_inbound
from bot.store import get_store
from bot.store import repository as repo
from bot.store.models import (
    AggregateCommuneDeprivationMonthly,
    AggregateCommuneMonthly,
    AggregateDeprivationMonthly,
    AggregateMonthly,
    Assessment,
    AuditLog,
    OfficialListEntry,
    OutboundMessage,
    OutboundStatus,
    Review,
    ReviewStatus,
)
from bot.store.testing import FakeEngine, FakeInbound, temporary_database
from tests.dashboard_support import (
    COMMUNE_A,
    COMMUNE_B,
    HAMLET_X,
    HAMLET_Y,
    NOW,
    PROVINCE,
    add_assessment,
    add_hamlets,
    add_user,
    csrf_token,
    login,
    make_app,
    number,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import dashboard as bench


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with temporary_database(tmp_path) as url:
        app = make_app(url)
        add_hamlets(app, COMMUNE_A, [HAMLET_X, HAMLET_Y])
        yield app
        get_store(app).engine.dispose()


def logged_in(app: Flask, username: str, role: str = "official", **kwargs: object) -> FlaskClient:
    add_user(app, username, role, **kwargs)  # type: ignore[arg-type]
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


# -- suppression -------------------------------------------------------------------------------------------------


def test_suppression_hides_one_to_four_outside_the_scope_only() -> None:
    assert [cell(n, inside=False).text for n in (0, 1, 4, 5, 1234)] == ["0", "<5", "<5", "5", "1.234"]
    assert [cell(n, inside=True).text for n in (0, 1, 4, 5)] == ["0", "1", "4", "5"]
    assert cell(3, inside=False).plot == 0 and cell(3, inside=False).value is None
    assert rate_cell(3, 100, inside=False).text == "<5"  # numerator hidden
    assert rate_cell(10, 4, inside=False).suppressed  # denominator hidden
    assert rate_cell(3, 100, inside=True).text == "3%"
    assert rate_cell(0, 0, inside=True).text == "—"
    assert rate_cell(5, 20, inside=False).text == "25%"


# -- what the store keeps ------------------------------------------------------------------------------------------


@pytest.mark.db
def test_pipeline_fills_the_new_columns_and_the_monthly_aggregates(app: Flask) -> None:
    store = get_store(app)
    config = PipelineConfig(pseudonym_key="k")
    for text in ("đồng ý", "3", "2 triệu"):
        with store.sessions() as session:
            process_inbound(session, "telegram", "tg-1", None, FakeInbound(text=text), NOW, engine=FakeEngine(),
                            config=config)
    with store.sessions() as session:
        row = session.execute(select(Assessment)).scalar_one()
        assert (row.channel, row.shared, row.deprivation_count, row.commune_code) == ("telegram", True, 1, COMMUNE_A)
        review = session.execute(select(Review)).scalar_one()
        assert review.assessment_id == row.id and review.status is ReviewStatus.QUEUED and review.notified_at is None
        monthly = session.execute(select(AggregateMonthly)).scalar_one()
        assert (monthly.month, monthly.province_code, monthly.channel, monthly.provenance, monthly.status,
                monthly.count) == (dt.date(2026, 6, 1), PROVINCE, "telegram", "self", "poor", 1)
        deprived = session.execute(select(AggregateDeprivationMonthly)).scalar_one()
        assert (deprived.indicator, deprived.count) == ("health_insurance", 1)
        assert session.execute(select(AggregateCommuneMonthly.count)).scalar_one() == 1
        assert session.execute(select(AggregateCommuneDeprivationMonthly.count)).scalar_one() == 1


@pytest.mark.db
def test_record_assessment_keeps_the_figures_and_the_commune_spelling_of_the_hamlet(app: Flask) -> None:
    first = add_assessment(app, COMMUNE_A, "near_poor", hamlet="ap phu loi", income=1_450_000, next_status="poor",
                           deprivations=["water"], household_code="HC-1")
    add_assessment(app, COMMUNE_A, "near_poor", hamlet=HAMLET_X, income=1_450_000, deprivations=["water", "telecom"])
    with get_store(app).sessions() as session:
        row = session.get(Assessment, first)
        assert row is not None
        assert (row.hamlet, row.income_per_capita_vnd, row.income_line_vnd, row.deprivation_count) == (
            HAMLET_X, 1_450_000, 1_500_000, 1)
        assert (row.next_standard_id, row.next_status, row.household_code) == ("decree351_2027", "poor", "HC-1")
        # Both in one hamlet row: the accent-free spelling counted with the commune's own.
        assert session.execute(select(AggregateMonthly.hamlet, AggregateMonthly.count)).all() == [(HAMLET_X, 2)]
        water = session.execute(
            select(AggregateDeprivationMonthly.count).where(AggregateDeprivationMonthly.indicator == "water")
        ).scalar_one()
        assert water == 2


@pytest.mark.db
def test_erasure_removes_the_household_identification(app: Flask) -> None:
    assessment_id = add_assessment(app, COMMUNE_A, user_ref="erase-me", household_code="HC-9")
    with get_store(app).sessions() as session:
        identity = repo.lock_identity(session, "zalo_oa", repo.pseudonymise("k", "zalo_oa", "erase-me"), now=NOW)
        repo.erase_identity(session, identity, now=NOW)
        session.commit()
        row = session.get(Assessment, assessment_id)
        assert row is not None and (row.household_head, row.phone, row.household_code) == (None, None, None)
        assert session.execute(select(AggregateMonthly.count)).scalar_one() == 1  # counts stay


# -- totals --------------------------------------------------------------------------------------------------------


def _units(page: str) -> dict[str, list[str]]:
    """The units table: data-unit -> cell texts."""
    rows = re.findall(r'<tr class="[^"]*" data-unit="([^"]*)">(.*?)</tr>', page, re.DOTALL)
    return {unit: [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.DOTALL)]
            for unit, body in rows}


def _kpi_total(page: str) -> int:
    match = re.search(r'id="kpi-total">([^<]+)<', page)
    assert match is not None
    return number(match.group(1))


@pytest.mark.db
def test_dashboard_totals_add_up_to_the_rows(app: Flask) -> None:
    engine = get_store(app).engine
    now = dt.datetime.now(dt.UTC)
    bench.seed(engine, 600, now=now, rng=random.Random(5), verbose=False)
    client = logged_in(app, "tinh", province=PROVINCE)
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(Assessment)).scalar_one()
        per_commune = dict(connection.execute(
            select(Assessment.commune_code, func.count()).group_by(Assessment.commune_code)).all())
        per_status = dict(connection.execute(select(Assessment.status, func.count()).group_by(Assessment.status)).all())
    page = client.get(f"/dashboard/p/{PROVINCE}?period=all").get_data(as_text=True)
    assert _kpi_total(page) == total == 600
    units = _units(page)
    assert len(units) == 102
    assert {u: number(cells[1]) for u, cells in units.items() if number(cells[1])} == per_commune
    assert sum(number(cells[1]) for cells in units.values()) == total
    status_rows = dict(re.findall(r'<tr data-status="(\w+)"><td[^>]*>.*?</td><td class="num">([^<]+)</td>', page))
    assert {s: number(v) for s, v in status_rows.items() if number(v)} == per_status

    commune = max(per_commune, key=per_commune.get)  # type: ignore[arg-type]
    page = client.get(f"/dashboard/c/{commune}?period=all").get_data(as_text=True)
    assert _kpi_total(page) == per_commune[commune]
    assert sum(number(cells[1]) for cells in _units(page).values()) == per_commune[commune]

    # The last 12 months (the default) hold everything seeded in the last year.
    assert _kpi_total(client.get(f"/dashboard/p/{PROVINCE}").get_data(as_text=True)) <= total

    # The incrementally kept rollups equal a rebuild from the hamlet-level rows.
    def rollup(session: object) -> Counter[tuple[object, ...]]:
        counts: Counter[tuple[object, ...]] = Counter()
        for *key, count in session.execute(select(  # type: ignore[attr-defined]
                AggregateCommuneMonthly.month, AggregateCommuneMonthly.commune_code, AggregateCommuneMonthly.status,
                AggregateCommuneMonthly.channel, AggregateCommuneMonthly.count)):
            counts[tuple(key)] += count
        return counts

    with get_store(app).sessions() as session:
        before = rollup(session)
        rebuild_rollups(session)
        after = rollup(session)
        assert before == after and sum(after.values()) == total


@pytest.mark.db
def test_rollups_follow_record_assessment(app: Flask) -> None:
    for i in range(7):
        add_assessment(app, COMMUNE_A if i % 2 else COMMUNE_B, "poor" if i % 3 else "not_poor",
                       hamlet=HAMLET_X if i % 2 else "Ấp Long Bình", channel="web" if i < 3 else "zalo_oa")
    with get_store(app).sessions() as session:
        kept = sorted(tuple(r) for r in session.execute(select(
            AggregateCommuneMonthly.commune_code, AggregateCommuneMonthly.channel, AggregateCommuneMonthly.status,
            AggregateCommuneMonthly.count)))
        rebuild_rollups(session)
        rebuilt = sorted(tuple(r) for r in session.execute(select(
            AggregateCommuneMonthly.commune_code, AggregateCommuneMonthly.channel, AggregateCommuneMonthly.status,
            AggregateCommuneMonthly.count)))
        assert kept == rebuilt and sum(r[-1] for r in kept) == 7


@pytest.mark.db
def test_small_cells_are_hidden_outside_the_scope_and_exact_inside(app: Flask) -> None:
    for _ in range(3):
        add_assessment(app, COMMUNE_A, "poor", hamlet=HAMLET_X, now=dt.datetime.now(dt.UTC))
        add_assessment(app, COMMUNE_B, "poor", hamlet="Ấp Long Bình", now=dt.datetime.now(dt.UTC))
    official_a = logged_in(app, "xa_a", scopes=[(COMMUNE_A, None)])
    own = official_a.get(f"/dashboard/c/{COMMUNE_A}").get_data(as_text=True)
    assert _kpi_total(own) == 3 and "suppression-note" not in own
    neighbour = official_a.get(f"/dashboard/c/{COMMUNE_B}").get_data(as_text=True)
    assert re.search(r'id="kpi-total">&lt;5<', neighbour) and "suppression-note" in neighbour
    assert "Hộ có thu nhập sát chuẩn nghèo" not in neighbour  # no household list outside the scope
    province = official_a.get(f"/dashboard/p/{PROVINCE}").get_data(as_text=True)
    units = _units(province)
    assert units[COMMUNE_A][1] == "3" and units[COMMUNE_B][1] == "&lt;5"
    assert re.search(r'id="kpi-total">5<', province) is None and "&lt;5" in province  # 6 in all: shown
    assert _kpi_total(province) == 6
    # The province official covers both: exact everywhere.
    tinh = logged_in(app, "tinh", province=PROVINCE)
    units = _units(tinh.get(f"/dashboard/p/{PROVINCE}").get_data(as_text=True))
    assert units[COMMUNE_A][1] == "3" and units[COMMUNE_B][1] == "3"


# -- household pages, audit, hand-off ------------------------------------------------------------------------------


@pytest.mark.db
def test_household_view_and_print_are_audited(app: Flask) -> None:
    assessment_id = add_assessment(app, COMMUNE_A, "poor", head="Lê Thị Hoa", income=1_200_000)
    client = logged_in(app, "xa_a", scopes=[(COMMUNE_A, None)])
    page = client.get(f"/dashboard/household/{assessment_id}")
    assert page.status_code == 200 and "Lê Thị Hoa" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    form = client.get(f"/dashboard/household/{assessment_id}/mau-01").get_data(as_text=True)
    assert "GIẤY ĐỀ NGHỊ" in form and "Mẫu số 01" in form
    assert "Kính gửi: Chủ tịch Ủy ban nhân dân Xã Thường Phước" in form
    assert "Lê Thị Hoa" in form and f"{HAMLET_X}, Xã Thường Phước, Đồng Tháp" in form
    assert "☒</span> Hộ nghèo" in form and "NGƯỜI ĐỀ NGHỊ" in form
    with get_store(app).sessions() as session:
        actions = session.execute(
            select(AuditLog.action, AuditLog.object_type, AuditLog.object_id).where(AuditLog.action != "login")
            .order_by(AuditLog.id)
        ).all()
    assert [tuple(a) for a in actions] == [("view_household", "assessment", str(assessment_id)),
                                           ("print_form_01", "assessment", str(assessment_id))]
    admin = logged_in(app, "root", role="admin")
    audit_page = admin.get("/admin/audit?action=view_household").get_data(as_text=True)
    assert "view_household" in audit_page and "xa_a" in audit_page


@pytest.mark.db
def test_review_outcome_is_sent_to_the_household_through_its_channel(app: Flask) -> None:
    pushed = add_assessment(app, COMMUNE_A, "poor", channel="zalo_oa", user_ref="zalo-123")
    web = add_assessment(app, COMMUNE_A, "near_poor", channel="web", user_ref="web-abc")
    client = logged_in(app, "xa_a", scopes=[(COMMUNE_A, None)])
    token = csrf_token(client, "/account")
    response = client.post(f"/dashboard/household/{pushed}/review",
                           data={"csrf_token": token, "status": "recognised_poor", "note": "Đã họp dân ấp",
                                 "send_note": "1"})
    assert response.status_code == 302
    assert "Đã ghi kết quả" in client.get(response.headers["Location"]).get_data(as_text=True)
    with get_store(app).sessions() as session:
        review = session.execute(select(Review).where(Review.assessment_id == pushed)).scalar_one()
        assert review.status is ReviewStatus.RECOGNISED_POOR and review.note == "Đã họp dân ấp"
        assert review.decided_by is not None and review.notified_at is not None
        outbox = session.execute(select(OutboundMessage)).scalar_one()
        assert (outbox.channel, outbox.status, outbox.seq) == ("zalo_oa", OutboundStatus.PENDING, 1)
        text = outbox.payload["text"]
        assert "HỘ NGHÈO" in text and "Xã Thường Phước" in text and "Đã họp dân ấp" in text

    response = client.post(f"/dashboard/household/{web}/review",
                           data={"csrf_token": token, "status": "not_recognised", "note": "nội bộ"})
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "báo trực tiếp" in shown
    with get_store(app).sessions() as session:
        review = session.execute(select(Review).where(Review.assessment_id == web)).scalar_one()
        assert review.status is ReviewStatus.NOT_RECOGNISED and review.notified_at is None
        assert session.execute(select(func.count()).select_from(OutboundMessage)).scalar_one() == 1
        decided = session.execute(select(AuditLog.detail).where(AuditLog.action == "record_review")).scalars().all()
        assert [d["notified"] for d in decided] == [True, False]
    assert client.post(f"/dashboard/household/{web}/review",
                       data={"csrf_token": token, "status": "made_up"}).status_code == 400
    queue = client.get(f"/dashboard/c/{COMMUNE_A}/reviews?show=decided").get_data(as_text=True)
    assert "Đã công nhận hộ nghèo" in queue


@pytest.mark.db
def test_near_line_list_keeps_households_within_ten_percent(app: Flask) -> None:
    near = add_assessment(app, COMMUNE_A, "near_poor", head="Gần Chuẩn", income=1_440_000, user_ref="n1")
    add_assessment(app, COMMUNE_A, "poor", head="Xa Chuẩn", income=1_200_000, user_ref="n2")
    above = add_assessment(app, COMMUNE_A, "average_living", head="Trên Chuẩn", income=1_650_000, user_ref="n3")
    add_assessment(app, COMMUNE_A, "near_poor", head="Không Chia Sẻ", income=1_500_000, shared=False)
    add_assessment(app, COMMUNE_A, "near_poor", head="Ấp Khác", hamlet=HAMLET_Y, income=1_500_000, user_ref="n4")
    client = logged_in(app, "xa_a", scopes=[(COMMUNE_A, None)])
    page = client.get(f"/dashboard/c/{COMMUNE_A}/near-line").get_data(as_text=True)
    assert "Gần Chuẩn" in page and "Trên Chuẩn" in page and "Ấp Khác" in page
    assert "Xa Chuẩn" not in page and "Không Chia Sẻ" not in page
    assert page.index("Gần Chuẩn") < page.index("Trên Chuẩn")  # closest to the line first
    assert f"/dashboard/household/{near}" in page and f"/dashboard/household/{above}" in page
    collaborator = logged_in(app, "ctv", role="collaborator", scopes=[(COMMUNE_A, HAMLET_X)])
    narrowed = collaborator.get(f"/dashboard/c/{COMMUNE_A}/near-line").get_data(as_text=True)
    assert "Gần Chuẩn" in narrowed and "Ấp Khác" not in narrowed


# -- official list -------------------------------------------------------------------------------------------------


def test_official_list_csv_parsing() -> None:
    data = ("\ufeffhamlet;household_head;household_code;status;year\n"
            "Ấp Phú Lợi;Nguyễn Văn An;;Hộ nghèo;2026\n"
            "Ấp Phú Lợi;Trần Thị Bé;HC-2;can ngheo;2026\n"
            ";;;giàu;20x6\n").encode()
    parsed = parse_csv(data)
    assert [(r.household_head, r.status, r.year) for r in parsed.rows] == [
        ("Nguyễn Văn An", "poor", 2026), ("Trần Thị Bé", "near_poor", 2026)]
    assert parsed.errors and parsed.errors[0][0] == 4 and "tên chủ hộ" in parsed.errors[0][1]
    assert parse_csv(b"name,status\nA,poor\n").errors[0][1].startswith("Thiếu cột")


def test_official_list_comparison_matches_by_code_then_folded_name_and_hamlet() -> None:
    class Row:
        def __init__(self, **kw: object) -> None:
            self.__dict__.update({"identity_id": None, "household_code": None, "hamlet": HAMLET_X, **kw})

    listed = [Row(household_head="Nguyễn Văn An", status="poor"),
              Row(household_head="Someone Else", household_code="HC-2", status="near_poor"),
              Row(household_head="Chỉ Trong Danh Sách", status="poor")]
    assessed = [Row(id=1, household_head="nguyen van  an", status="not_poor", identity_id=10),
                Row(id=2, household_head="Tên Khác", household_code="hc-2", status="near_poor", identity_id=11),
                Row(id=3, household_head="Lê Văn Sót", status="poor", identity_id=12),
                Row(id=4, household_head="Lê Văn Sót", status="not_poor", identity_id=12)]  # older: ignored
    result = compare(listed, assessed)
    assert [a.id for a in result.exclusion] == [3]
    assert [(e.household_head, a.id) for e, a in result.inclusion] == [("Nguyễn Văn An", 1)]
    assert len(result.matched) == 2 and [e.household_head for e in result.listed_unmatched] == ["Chỉ Trong Danh Sách"]


@pytest.mark.db
def test_official_list_upload_and_comparison_page(app: Flask) -> None:
    add_assessment(app, COMMUNE_A, "poor", head="Phạm Văn Sót", user_ref="a1")
    add_assessment(app, COMMUNE_A, "not_poor", head="Võ Thị Khá", income=3_000_000, user_ref="a2")
    add_assessment(app, COMMUNE_A, "near_poor", head="Đúng Danh Sách", household_code="HC-7", user_ref="a3")
    client = logged_in(app, "xa_a", scopes=[(COMMUNE_A, None)])
    token = csrf_token(client, "/account")
    csv_bytes = ("hamlet,household_head,household_code,status,year\n"
                 f"{HAMLET_X},VO THI KHA,,poor,2026\n"
                 f"{HAMLET_X},Tên Trong Sổ,HC-7,near_poor,2026\n").encode()
    import io

    response = client.post(f"/dashboard/c/{COMMUNE_A}/official-list",
                           data={"csrf_token": token, "file": (io.BytesIO(csv_bytes), "ds.csv")},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Đã tải lên 2 hộ" in page
    exclusion = page[page.index('id="exclusion"'):page.index('id="inclusion"')]
    inclusion = page[page.index('id="inclusion"'):]
    assert "Phạm Văn Sót" in exclusion and "Đúng Danh Sách" not in exclusion
    assert "VO THI KHA" in inclusion and "Tên Trong Sổ" not in inclusion
    bad = client.post(f"/dashboard/c/{COMMUNE_A}/official-list",
                      data={"csrf_token": token, "file": (io.BytesIO(b"x,y\n1,2\n"), "bad.csv")},
                      content_type="multipart/form-data")
    assert bad.status_code == 400 and "Thiếu cột" in bad.get_data(as_text=True)
    with get_store(app).sessions() as session:
        assert session.execute(select(func.count()).select_from(OfficialListEntry)).scalar_one() == 2
        assert session.execute(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "upload_official_list")
        ).scalar_one() == 1


@pytest.mark.db
def test_collaborator_sees_own_hamlet_page_with_exact_numbers(app: Flask) -> None:
    for _ in range(2):
        add_assessment(app, COMMUNE_A, "poor", hamlet=HAMLET_X, now=dt.datetime.now(dt.UTC))
    collaborator = logged_in(app, "ctv", role="collaborator", scopes=[(COMMUNE_A, HAMLET_X)])
    page = collaborator.get(f"/dashboard/c/{COMMUNE_A}/h/{HAMLET_X}").get_data(as_text=True)
    assert _kpi_total(page) == 2 and "<svg" in page
    assert collaborator.get(f"/dashboard/c/{COMMUNE_A}/h/{HAMLET_Y}").status_code == 403


@pytest.mark.db
def test_rollup_command_rebuilds_from_the_hamlet_level_counts(app: Flask) -> None:
    add_assessment(app, COMMUNE_A, "poor")
    add_assessment(app, COMMUNE_A, "poor", hamlet=HAMLET_Y)
    with get_store(app).sessions() as session:
        session.execute(AggregateCommuneMonthly.__table__.delete())
        session.commit()
    result = app.test_cli_runner().invoke(args=["dashboard", "rollup"])
    assert result.exit_code == 0 and "1 monthly rows" in result.output
    with get_store(app).sessions() as session:
        assert session.execute(select(AggregateCommuneMonthly.count)).scalar_one() == 2
