"""The collaborators' web form (``/dashboard/c/<commune>/new``, issue D).

Runs on SQLite, and on PostgreSQL when ``TEST_DATABASE_URL`` is set (marked ``db``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

import assessment
from bot.store import get_store
from bot.store.models import AggregateMonthly, Assessment, AuditLog, Review
from bot.store.testing import temporary_database
from tests.dashboard_support import (
    COMMUNE_A,
    COMMUNE_B,
    HAMLET_X,
    HAMLET_Y,
    add_hamlets,
    add_user,
    csrf_token,
    login,
    make_app,
)

pytestmark = pytest.mark.db

FORM_A = f"/dashboard/c/{COMMUNE_A}/new"
FORM_B = f"/dashboard/c/{COMMUNE_B}/new"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Flask, dict[str, int]]]:
    """Commune A with two hamlets (B keeps no list); a collaborator of A/X, a commune-wide one, officials."""
    with temporary_database(tmp_path) as url:
        app = make_app(url)
        add_hamlets(app, COMMUNE_A, [HAMLET_X, HAMLET_Y])
        users = {
            "ctv": add_user(app, "ctv", "collaborator", scopes=[(COMMUNE_A, HAMLET_X)]),
            "ctv_b": add_user(app, "ctv_b", "collaborator", scopes=[(COMMUNE_B, None)]),
            "official_a": add_user(app, "official_a", "official", scopes=[(COMMUNE_A, None)]),
        }
        yield app, users
        get_store(app).engine.dispose()


def _client(app: Flask, username: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client, csrf_token(client, FORM_A if username != "ctv_b" else FORM_B)


def _form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "hamlet": HAMLET_X,
        "household_head": "Trần Thị Bình",
        "phone": "0912 345 678",
        "household_code": "TP-0042",
        "on": "2026-05-20",
        "household_size": "4",
        "income_basis": "total",
        "income": "5tr",
        "dependants": "2",
        "working_age_unemployed_or_no_contract": "yes",
        "member_6plus_without_health_insurance": "no",
        "housing": "semi_durable",
        "floor_area_m2": "40",
        "water_source": "drilled_well",
        "toilet": "none",
        "internet": "no",
        "information_devices": ["smartphone", "tv"],
        "waste": "collected",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _count(app: Flask, model: Any = Assessment) -> int:
    with get_store(app).sessions() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_collaborator_creates_an_assessment(world: tuple[Flask, dict[str, int]]) -> None:
    app, users = world
    client, token = _client(app, "ctv")
    response = client.post(FORM_A, data={**_form(), "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    match = re.fullmatch(r"/dashboard/household/(\d+)", response.headers["Location"])
    assert match, response.headers["Location"]
    assessment_id = int(match.group(1))

    expected = assessment.assess(
        {"commune_code": COMMUNE_A, "household_size": 4, "monthly_income_vnd": 5_000_000, "dependants": 2,
         "working_age_unemployed_or_no_contract": True, "member_6plus_without_health_insurance": False,
         "housing": "semi_durable", "floor_area_m2": 40, "water_source": "drilled_well", "toilet": "none",
         "internet": False, "information_devices": ["smartphone", "tv"], "waste": "collected"},
        on="2026-05-20",
    ).to_dict()
    with get_store(app).sessions() as session:
        row = session.get(Assessment, assessment_id)
        assert row is not None
        assert row.status == expected["status"]
        assert row.deprivations == expected["deprivations"]
        assert str(getattr(row.provenance, "value", row.provenance)) == "collaborator"
        assert row.shared is True
        assert row.channel == "web_form"
        assert row.commune_code == COMMUNE_A
        assert row.hamlet == HAMLET_X
        assert row.household_head == "Trần Thị Bình"
        assert row.phone == "0912345678"
        assert row.household_code == "TP-0042"
        assert row.collaborator_user_id == users["ctv"]
        assert row.identity_id is None and row.conversation_id is None
        assert row.input["on"] == "2026-05-20" and row.result["on"] == "2026-05-20"
        review = session.execute(select(Review).where(Review.assessment_id == assessment_id)).scalar_one()
        assert str(getattr(review.status, "value", review.status)) == "queued"
        counted = session.execute(
            select(func.sum(AggregateMonthly.count)).where(
                AggregateMonthly.commune_code == COMMUNE_A, AggregateMonthly.hamlet == HAMLET_X,
                AggregateMonthly.channel == "web_form", AggregateMonthly.provenance == "collaborator",
                AggregateMonthly.status == expected["status"],
            )
        ).scalar_one()
        assert counted == 1
        audit = session.execute(select(AuditLog).where(AuditLog.action == "create_assessment")).scalar_one()
        assert audit.user_id == users["ctv"] and audit.object_id == str(assessment_id)

    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert "Trần Thị Bình" in page.get_data(as_text=True)


def test_form_page_lists_hamlets_and_today(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    client, _token = _client(app, "official_a")
    html = client.get(FORM_A).get_data(as_text=True)
    assert "Thêm hộ (phiếu web)" in html and 'name="csrf_token"' in html
    assert f'<option value="{HAMLET_Y}"' in html and f'<option value="{HAMLET_X}"' in html
    assert 'type="date"' in html and re.search(r'name="on" type="date" value="\d{4}-\d{2}-\d{2}"', html)
    assert "Có trẻ dưới 16 tuổi suy dinh dưỡng" in html and "Chưa trả lời" in html
    # Commune B keeps no hamlet list: a text field instead of a select.
    client_b, _ = _client(app, "ctv_b")
    html_b = client_b.get(FORM_B).get_data(as_text=True)
    assert '<input id="hamlet" name="hamlet" type="text"' in html_b


def test_links_on_commune_and_hamlet_pages(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    official, _ = _client(app, "official_a")
    assert f'href="{FORM_A}"' in official.get(f"/dashboard/c/{COMMUNE_A}").get_data(as_text=True)
    # Official A's province page of commune B shows B, but B is outside A's scope: no button there.
    assert "web-form-link" not in official.get(f"/dashboard/c/{COMMUNE_B}").get_data(as_text=True)
    ctv, _ = _client(app, "ctv")
    hamlet_page = ctv.get(f"/dashboard/c/{COMMUNE_A}/h/{HAMLET_X}").get_data(as_text=True)
    assert "Thêm hộ (phiếu web)" in hamlet_page and "web-form-link" in hamlet_page


def test_out_of_scope_is_forbidden(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    client, token = _client(app, "ctv")
    assert client.get(FORM_B).status_code == 403
    assert client.post(FORM_B, data={**_form(hamlet=""), "csrf_token": token}).status_code == 403
    assert client.get("/dashboard/c/99999/new").status_code == 404
    assert _count(app) == 0


def test_narrowed_collaborator_only_enters_own_hamlets(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    client, token = _client(app, "ctv")
    html = client.get(FORM_A).get_data(as_text=True)
    assert f'<option value="{HAMLET_Y}"' not in html
    for hamlet in (HAMLET_Y, ""):
        response = client.post(FORM_A, data={**_form(hamlet=hamlet), "csrf_token": token})
        assert response.status_code == 200
        assert "thôn, ấp" in response.get_data(as_text=True)
    assert _count(app) == 0


def test_anonymous_goes_to_login(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    client = app.test_client()
    token = csrf_token(client)  # the login page's: without one the CSRF check answers 400 before anything else
    for response in (client.get(FORM_A), client.post(FORM_A, data={**_form(), "csrf_token": token})):
        assert response.status_code == 302
        assert response.headers["Location"].split("?")[0].endswith("/login")
    assert _count(app) == 0


def test_missing_csrf_token_is_refused(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    client, _token = _client(app, "ctv")
    response = client.post(FORM_A, data=_form())
    assert response.status_code == 400
    assert _count(app) == 0 and _count(app, Review) == 0


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"household_size": "0"}, "household_size", "Số người trong hộ phải từ 1"),
        ({"household_size": None}, "household_size", "Cần cho biết số người trong hộ"),
        ({"income": "abc"}, "income", "Không đọc được số tiền “abc”"),
        ({"income_basis": ["total", "per_capita"]}, "income", "Chọn một cách tính thu nhập"),
        ({"income_basis": None}, "income", "Chọn một cách tính thu nhập"),
        ({"household_head": " "}, "household_head", "Cần ghi họ và tên chủ hộ"),
        ({"phone": "12345"}, "phone", "Số điện thoại chưa đúng"),
        ({"dependants": "9"}, "dependants", "nhiều hơn số người trong hộ"),
        ({"floor_area_m2": "0"}, "floor_area_m2", "Diện tích nhà"),
        ({"housing": "castle"}, "housing", "Loại nhà không hợp lệ"),
        ({"on": "2026-02-30"}, "on", "NĂM-THÁNG-NGÀY"),
        ({"on": "1990-01-01"}, "on", "nằm ngoài các giai đoạn có chuẩn nghèo"),
        ({"information_devices": ["none", "tv"]}, "information_devices", "không có thiết bị nào"),
    ],
)
def test_bad_inputs_come_back_with_vietnamese_errors(
    world: tuple[Flask, dict[str, int]], overrides: dict[str, Any], field: str, message: str
) -> None:
    app, _ = world
    client, token = _client(app, "ctv")
    response = client.post(FORM_A, data={**_form(**overrides), "csrf_token": token})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Phiếu chưa được lưu" in html
    error = re.search(rf'<p class="field-error" id="e-{field}">([^<]*)</p>', html)
    assert error, f"no error beside {field}"
    assert message in error.group(1)
    # What was typed is kept.
    assert 'value="Trần Thị Bình"' in html or field == "household_head"
    assert 'value="TP-0042"' in html
    assert _count(app) == 0 and _count(app, Review) == 0 and _count(app, AggregateMonthly) == 0


def test_money_shorthand_and_per_capita(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    client, token = _client(app, "official_a")
    only_required = {"household_head": "Lê Văn Cường", "household_size": "3", "income_basis": "per_capita",
                     "income": "1tr5", "on": "2026-05-20", "csrf_token": token}
    response = client.post(FORM_A, data=only_required)
    assert response.status_code == 302
    assessment_id = int(response.headers["Location"].rsplit("/", 1)[1])
    expected = assessment.assess(
        {"commune_code": COMMUNE_A, "household_size": 3, "monthly_income_per_capita_vnd": 1_500_000}, on="2026-05-20"
    ).to_dict()
    with get_store(app).sessions() as session:
        row = session.get(Assessment, assessment_id)
        assert row is not None
        assert row.input["monthly_income_per_capita_vnd"] == 1_500_000
        assert "monthly_income_vnd" not in row.input
        assert row.income_per_capita_vnd == 1_500_000
        assert row.status == expected["status"]
        # Questions left "not answered" are listed as such by the core.
        assert row.result["unanswered"] == expected["unanswered"] and "water" in row.result["unanswered"]
        assert row.hamlet is None and row.phone is None


def test_yearly_income_is_spread_over_months(world: tuple[Flask, dict[str, int]]) -> None:
    app, _ = world
    client, token = _client(app, "official_a")
    response = client.post(FORM_A, data={**_form(income="60 triệu một năm"), "csrf_token": token})
    assert response.status_code == 302
    with get_store(app).sessions() as session:
        row = session.execute(select(Assessment)).scalar_one()
        assert row.input["monthly_income_vnd"] == 5_000_000
