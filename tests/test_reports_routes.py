"""Routes of /reports: who may download what (scope on every route), the audit row, the files' contents."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import add_user, login, make_app
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from test_reports import HOAN_KIEM, MY_THO, THUONG_PHUOC, seed

from bot.store import get_store
from bot.store.models import AuditLog
from bot.store.testing import temporary_database

pytestmark = pytest.mark.db


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with temporary_database(tmp_path) as url:
        app = make_app(url)
        add_user(app, "admin", "admin")
        add_user(app, "xa", "official", scopes=[(THUONG_PHUOC, None)])
        add_user(app, "tinh", "official", province="82")
        add_user(app, "ctv", "collaborator", scopes=[(THUONG_PHUOC, "Ấp 1")])
        with get_store(app).sessions() as session:
            seed(session)
        yield app
        get_store(app).engine.dispose()


def client_for(app: Flask, username: str | None) -> FlaskClient:
    client = app.test_client()
    if username is not None:
        assert login(client, username).status_code == 302
    return client


def get(client: FlaskClient, url: str) -> Any:
    """GET ``url`` and close the response (a real server closes it; the test client leaves that to us)."""
    response = client.get(url)
    response.get_data()
    response.close()
    return response


def rows_of(response: Any) -> list[list[str]]:
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


ROUTES = [
    "/reports/",
    "/reports/households.csv?period=annual-2026",
    "/reports/households.xlsx?period=annual-2026",
    "/reports/aggregates.csv?period=annual-2026",
    "/reports/aggregates.xlsx?period=annual-2026",
    "/reports/regime?kind=annual&year=2026",
    "/reports/regime.xlsx?kind=annual&year=2026",
]
#: Who gets 200 on each route (the others 403; nobody logged in is sent to the login page).
ALLOWED = {
    "/reports/": {"admin", "xa", "tinh", "ctv"},
    "/reports/households.csv?period=annual-2026": {"admin", "xa", "tinh"},
    "/reports/households.xlsx?period=annual-2026": {"admin", "xa", "tinh"},
    "/reports/aggregates.csv?period=annual-2026": {"admin", "xa", "tinh", "ctv"},
    "/reports/aggregates.xlsx?period=annual-2026": {"admin", "xa", "tinh", "ctv"},
    "/reports/regime?kind=annual&year=2026": {"admin", "xa", "tinh"},
    "/reports/regime.xlsx?kind=annual&year=2026": {"admin", "xa", "tinh"},
}


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_checks_login_and_role(app: Flask, route: str) -> None:
    anonymous = get(client_for(app, None), route)
    assert anonymous.status_code in (302, 401)
    for user in ("admin", "xa", "tinh", "ctv"):
        status = get(client_for(app, user), route).status_code
        assert status == (200 if user in ALLOWED[route] else 403), (route, user, status)


def test_household_export_is_limited_to_the_scope_and_audited(app: Flask) -> None:
    client = client_for(app, "xa")
    response = get(client, "/reports/households.csv?period=annual-2026")
    assert response.headers["Cache-Control"] == "no-store"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = rows_of(response)
    assert len(rows) > 1 and {r[3] for r in rows[1:]} == {THUONG_PHUOC}
    with get_store(app).sessions() as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "export_households")).all()
    assert len(audit) == 1 and audit[0].detail["period"] == "annual-2026" and audit[0].detail["format"] == "csv"
    # Another commune's households: refused, not filtered silently.
    assert get(client, f"/reports/households.csv?commune={MY_THO}").status_code == 403
    # The province official sees both communes of Đồng Tháp, never Hà Nội.
    rows = rows_of(get(client_for(app, "tinh"), "/reports/households.csv?period=annual-2026"))
    assert {r[3] for r in rows[1:]} == {THUONG_PHUOC, MY_THO}
    book = load_workbook(io.BytesIO(get(client_for(app, "admin"), 
        "/reports/households.xlsx?period=annual-2026").data))
    assert {r[3] for r in book["Hộ gia đình"].iter_rows(min_row=2, values_only=True)} == {THUONG_PHUOC, MY_THO, HOAN_KIEM}


def test_aggregates_route_suppresses_outside_the_scope(app: Flask) -> None:
    rows = rows_of(get(client_for(app, "xa"), "/reports/aggregates.csv?period=annual-2026&level=commune"))
    header, body = rows[0], {r[2]: r for r in rows[1:]}
    total = header.index("Số lượt tự đánh giá")
    assert body[THUONG_PHUOC][header.index("Trong phạm vi quản lý")] == "có"
    assert body[MY_THO][header.index("Trong phạm vi quản lý")] == "không"
    assert "<5" in body[MY_THO][total:] and "<5" not in body[THUONG_PHUOC][total:]
    assert get(client_for(app, "xa"), "/reports/aggregates.csv?level=village").status_code == 400
    assert get(client_for(app, "xa"), "/reports/aggregates.csv?period=q5-2026").status_code == 400


def test_regime_page_and_workbook_agree(app: Flask) -> None:
    client = client_for(app, "tinh")
    page = get(client, "/reports/regime?kind=annual&year=2026&by_hamlet=1").get_data(as_text=True)
    assert "Báo cáo năm năm 2026" in page and "Tổng cộng" in page and "Ấp 1" in page
    book = load_workbook(io.BytesIO(get(client, "/reports/regime.xlsx?kind=annual&year=2026").data))
    rows = list(book["Báo cáo"].iter_rows(values_only=True))
    communes = [r for r in rows[1:-1]]
    assert {r[0] for r in communes} == {THUONG_PHUOC, MY_THO}
    assert rows[-1][1] == "Tổng cộng"
    assert rows[-1][3] == sum(r[3] for r in communes)
    assert get(client, f"/reports/regime?commune={HOAN_KIEM}").status_code == 403
    assert get(client, "/reports/regime?kind=quarter").status_code == 400
