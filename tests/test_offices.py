"""A deployment renames the offices that handle each policy without code changes (reference §6.1: since 7/2025)."""
from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from bot import create_app, offices

POOR = {"area": "rural", "household_size": 4, "monthly_income_vnd": 4_000_000, "housing": "simple",
        "water_source": "surface_water", "toilet": "none", "on": "2026-06-01"}


@pytest.fixture(autouse=True)
def _reset() -> None:
    yield
    offices.configure(None)


def test_a_deployment_file_renames_an_office_in_api_results(tmp_path: Path) -> None:
    names = tmp_path / "offices.yaml"
    names.write_text("nhcsxh: Phòng giao dịch NHCSXH Hồng Ngự\n", encoding="utf-8")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "OFFICES_FILE": str(names)})
    client: FlaskClient = app.test_client()
    policies = client.post("/api/v1/assessments", json=POOR).get_json()["policies"]
    loans = [p for p in policies if p["office_id"] == "nhcsxh"]
    assert loans and all(p["office_vi"] == "Phòng giao dịch NHCSXH Hồng Ngự" for p in loans)


def test_the_chat_uses_the_same_names() -> None:
    offices.configure(None)
    default = {p.office_vi for p in offices.assess(POOR).policies if p.to_dict()["office_id"] == "nhcsxh"}
    assert default and "Hồng Ngự" not in next(iter(default))


@pytest.mark.parametrize("content", ["- not a mapping\n", "unknown_office: X\n"])
def test_a_bad_offices_file_stops_the_app_naming_the_file(tmp_path: Path, content: str) -> None:
    names = tmp_path / "offices.yaml"
    names.write_text(content, encoding="utf-8")
    with pytest.raises(offices.OfficesFileError, match="offices.yaml"):
        create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "OFFICES_FILE": str(names)})
