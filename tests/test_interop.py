"""Interop: the XLSForm (converted and validated with pyxform), Kobo/ODK and quick-form CSV imports, routes, CLI."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import add_user, csrf_token, login, make_app
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from pyxform.xls2xform import convert
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.conversation.questionnaire import load_questionnaire
from bot.interop.importer import count_rows, create_job, run_import
from bot.interop.xlsform import FORM_ID, GROUP, amount_field, build_xlsform, write_xlsform
from bot.store import get_store
from bot.store.db import Store
from bot.store.migrate import upgrade
from bot.store.models import AggregateMonthly, Assessment, ImportJob, Review
from bot.store.testing import temporary_database

FIXTURES = Path(__file__).parent / "fixtures" / "kobo"
KOBO = FIXTURES / "tu_ra_soat_kobo.csv"
QUICK = FIXTURES / "quick_form.csv"
THUONG_PHUOC = "29971"
NOW = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)
HAS_JAVA = shutil.which("java") is not None
XF = "{http://www.w3.org/2002/xforms}"


# ------------------------------------------------------------------------------------------------ XLSForm


@pytest.fixture(scope="module")
def xform(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ET.Element]:
    """The form written as a workbook, converted by pyxform; validated by ODK Validate when Java is there."""
    form = build_xlsform()
    path = tmp_path_factory.mktemp("xlsform") / f"{FORM_ID}.xlsx"
    write_xlsform(path, form)
    warnings: list[str] = []
    # ODK Validate (bundled with pyxform, needs Java) parses every relevance, constraint and calculation.
    result = convert(str(path), validate=HAS_JAVA, warnings=warnings)
    assert not warnings, warnings
    return form, ET.fromstring(result.xform)


def _binds(root: ET.Element) -> dict[str, dict[str, str]]:
    return {b.attrib["nodeset"].rsplit("/", 1)[-1]: b.attrib for b in root.iter(f"{XF}bind")}


def test_every_question_of_the_questionnaire_is_in_the_xform(xform: tuple[Any, ET.Element]) -> None:
    _form, root = xform
    binds = _binds(root)
    qn = load_questionnaire()
    for q in qn.questions:
        if q.role == "summary":
            continue  # the chat's read-back step; a form has its own review
        assert q.id in binds, q.id
    for q in qn.questions:
        if q.helper:
            for c in qn.by_id[q.helper].choices:
                assert amount_field(c.payload) in binds
    # The quick form rides along as calculations.
    for name in ("monthly_income_vnd", "dependants", "water_source", "floor_area_m2", "internet"):
        assert "calculate" in binds[name], name


def test_choice_lists_are_complete(xform: tuple[Any, ET.Element]) -> None:
    form, _root = xform
    listed: dict[str, set[str]] = {}
    for row in form.choices:
        listed.setdefault(row["list_name"], set()).add(row["name"])
    for q in load_questionnaire().questions:
        if q.choices and q.type in ("choice", "multi_choice", "income_sources"):
            assert listed[q.id] == {c.payload for c in q.choices}, q.id
    for row in form.choices:
        assert row["label::Tiếng Việt (vi)"].strip()


def test_relevance_follows_the_skip_conditions(xform: tuple[Any, ET.Element]) -> None:
    _form, root = xform
    binds = _binds(root)
    qn = load_questionnaire()
    for q in qn.questions:
        if q.ask_if is not None and q.linear:
            assert binds[q.id].get("relevant"), q.id
    assert " ".join(binds["area"]["relevant"].split()) == f"/data/{GROUP}/commune = ''"
    assert "none" in binds["floor_area"]["relevant"]
    # Validation becomes constraints, with the questionnaire's own messages.
    assert ">= 1" in binds["household_size"]["constraint"] and "<= 50" in binds["household_size"]["constraint"]
    assert "household_size" in binds["children"]["constraint"]
    assert any(k.endswith("constraintMsg") for k in binds["household_size"])
    # Hidden choices become a choice filter (malnourished only offered when there are children).
    form = xform[0]
    filtered = [r for r in form.survey if r.get("choice_filter")]
    assert filtered and "${children} > 0" in filtered[0]["choice_filter"]


@pytest.mark.skipif(not HAS_JAVA, reason="ODK Validate needs Java")
def test_odk_validate_rejects_a_broken_relevance(tmp_path: Path) -> None:
    """The check above is real: a bad expression fails validation."""
    form = build_xlsform()
    for row in form.survey:
        if row.get("name") == "floor_area":
            row["relevant"] = "${housing} != != 'none'"
    path = tmp_path / "broken.xlsx"
    write_xlsform(path, form)
    with pytest.raises(Exception, match="(?i)invalid|problem"):
        convert(str(path), validate=True)


# ------------------------------------------------------------------------------------------------ imports


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with temporary_database(tmp_path) as url:
        store = Store.from_url(url)
        upgrade(store.engine)
        yield store
        store.engine.dispose()


def _run(store: Store, path: Path, kind: str, *, every: int = 3, commune: str | None = THUONG_PHUOC,
         sessions: Any = None) -> Any:
    with store.sessions() as session:
        job_id = create_job(session, kind=kind, filename=path.name, user_id=None, commune=commune,
                            total_rows=count_rows(path))
        session.commit()
    return run_import(sessions or store.sessions, job_id, path, kind=kind, commune=commune, pseudonym_key="k",
                      every=every, now=NOW)


def _problems(result: Any) -> dict[int, list[tuple[str, str]]]:
    return {e["line"]: [(p["field"], p["message_vi"]) for p in e["problems"]] for e in result.errors}


@pytest.mark.db
def test_kobo_import_with_broken_rows(store: Store) -> None:
    progress: list[int] = []

    def sessions() -> Session:
        session = store.sessions()
        job = session.scalars(select(ImportJob).order_by(ImportJob.id.desc())).first()
        progress.append(job.done_rows if job else -1)
        session.rollback()
        return session

    result = _run(store, KOBO, "kobo", sessions=sessions)
    assert (result.status, result.total_rows, result.ok_rows, result.failed_rows) == ("done", 9, 3, 6)
    problems = _problems(result)
    assert sorted(problems) == [4, 5, 6, 7, 8, 9]
    assert problems[4][0][0] == "ho/household_size" and "bốn" in problems[4][0][1]  # bad number
    assert problems[5][0][0] == "ho/housing" and "castle" in problems[5][0][1]  # unknown choice
    assert problems[6] == [("ho/water", "Thiếu câu trả lời: Nước ăn uống.")]  # missing required
    assert problems[7][0][0] == "_uuid" and "dòng 2" in problems[7][0][1]  # duplicate uuid
    assert problems[8][0][0] == "consent"  # declined
    assert problems[9][0][0] == "ho/allowance" and "(5)" in problems[9][0][1]  # at_most, message of the YAML
    # Progress was written every 3 rows, and the job ends at 100 %.
    assert progress[:4] == [0, 3, 6, 9]
    with store.sessions() as session:
        job = session.get(ImportJob, result.job_id)
        assert (job.status, job.done_rows, job.total_rows, job.ok_rows, job.failed_rows) == ("done", 9, 9, 3, 6)
        rows = session.scalars(select(Assessment).order_by(Assessment.id)).all()
        assert [(a.channel, a.provenance.value, a.commune_code) for a in rows] == [("import", "imported", THUONG_PHUOC)] * 3
        assert [a.shared for a in rows] == [True, False, True]
        assert rows[0].hamlet == "Ấp 1" and rows[0].household_head == "Nguyễn Văn An"
        assert rows[1].household_head is None  # not shared: no personal details kept
        assert rows[1].input["monthly_income_vnd"] == 5_000_000 and rows[1].input["farm_household"] is True
        assert rows[0].created_at == dt.datetime(2026, 3, 2, 1, 10, tzinfo=dt.UTC)  # the submission's time
        assert session.scalar(select(func.count()).select_from(Review)) == 2  # shared ones queued for review
        assert session.scalar(select(func.sum(AggregateMonthly.count))) == 3
    # Importing the same file again adds nothing.
    again = _run(store, KOBO, "kobo")
    assert (again.ok_rows, again.skipped_rows, again.failed_rows) == (0, 3, 6)
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Assessment)) == 3
        assert session.scalar(select(func.sum(AggregateMonthly.count))) == 3


@pytest.mark.db
def test_kobo_import_refuses_a_file_that_is_not_from_the_form(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("name,age\nAn,4\n", encoding="utf-8")
    result = _run(store, path, "kobo")
    assert result.status == "failed" and "_uuid" in (result.message_vi or "")


@pytest.mark.db
def test_quick_form_import_is_idempotent_on_the_row_id(store: Store) -> None:
    result = _run(store, QUICK, "quick", every=2)
    assert (result.ok_rows, result.failed_rows) == (2, 3)
    problems = _problems(result)
    assert problems[4][0][0] == "household_size"
    assert problems[5][0][0] == "housing"
    assert problems[6][0][0] == "id" and "dòng 2" in problems[6][0][1]
    with store.sessions() as session:
        rows = session.scalars(select(Assessment).order_by(Assessment.id)).all()
        assert [(a.shared, a.hamlet, a.status) for a in rows] == [(True, "Ấp 1", "poor"), (False, "Ấp 2", "not_poor")]
        assert rows[0].created_at == dt.datetime(2026, 3, 5, 5, tzinfo=dt.UTC)  # its own date, noon in Vietnam
    again = _run(store, QUICK, "quick")
    assert (again.ok_rows, again.skipped_rows) == (0, 2)


# ------------------------------------------------------------------------------------------------ routes and CLI


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with temporary_database(tmp_path) as url:
        app = make_app(url, IMPORT_IN_BACKGROUND=False, IMPORT_PROGRESS_EVERY=2)
        add_user(app, "ctv", "collaborator", scopes=[(THUONG_PHUOC, None)])
        add_user(app, "xa", "official", scopes=[(THUONG_PHUOC, None)])
        add_user(app, "khac", "official", scopes=[("28261", None)])
        yield app
        get_store(app).engine.dispose()


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def _upload(client: FlaskClient, path: Path, kind: str = "kobo", commune: str = THUONG_PHUOC) -> Any:
    token = csrf_token(client, "/interop/import")
    with open(path, "rb") as handle:
        return client.post("/interop/import", data={"csrf_token": token, "kind": kind, "commune": commune,
                                                    "file": (handle, path.name)})


@pytest.mark.db
def test_xlsform_download_and_cli(app: Flask, tmp_path: Path) -> None:
    response = app.test_client().get("/interop/xlsform.xlsx")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.data))
    assert book.sheetnames == ["survey", "choices", "settings"]
    out = tmp_path / "form.xlsx"
    result = app.test_cli_runner().invoke(args=["export-xlsform", str(out)])
    assert result.exit_code == 0, result.output
    assert load_workbook(out).sheetnames == ["survey", "choices", "settings"]


@pytest.mark.db
def test_upload_runs_the_import_and_the_status_reaches_100(app: Flask) -> None:
    client = _client(app, "ctv")
    assert client.get("/interop/import").status_code == 200
    response = _upload(client, KOBO)
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and "<progress" in page.get_data(as_text=True)
    status = client.get(response.headers["Location"] + ".json").get_json()
    assert (status["status"], status["percent"], status["ok_rows"], status["failed_rows"]) == ("done", 100, 3, 6)
    assert [e["line"] for e in status["errors"]] == [4, 5, 6, 7, 8, 9]
    with get_store(app).sessions() as session:
        assert {a.collaborator_user_id for a in session.scalars(select(Assessment))} != {None}
    # Only its owner (or an admin) sees a job.
    other = _client(app, "xa")
    assert other.get(response.headers["Location"] + ".json").status_code == 404
    assert app.test_client().get(response.headers["Location"] + ".json").status_code in (302, 401)


@pytest.mark.db
def test_background_import_is_polled_to_completion(app: Flask) -> None:
    app.config["IMPORT_IN_BACKGROUND"] = True
    client = _client(app, "xa")
    response = _upload(client, QUICK, kind="quick")
    assert response.status_code == 303
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.get(response.headers["Location"] + ".json").get_json()
        if status["status"] != "running":
            break
        time.sleep(0.1)
    assert (status["status"], status["percent"], status["ok_rows"], status["failed_rows"]) == ("done", 100, 2, 3)


@pytest.mark.db
def test_upload_is_refused_outside_the_scope_and_without_a_token(app: Flask) -> None:
    client = _client(app, "khac")
    assert _upload(client, KOBO).status_code == 403
    with open(KOBO, "rb") as handle:
        no_token = client.post("/interop/import", data={"kind": "kobo", "commune": "28261", "file": (handle, "a.csv")})
    assert no_token.status_code == 400
    assert app.test_client().get("/interop/import").status_code in (302, 401)
    with get_store(app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(ImportJob)) == 0


@pytest.mark.db
def test_import_csv_command(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["import-csv", str(KOBO), "--kind", "kobo", "--commune", THUONG_PHUOC])
    assert result.exit_code == 1  # some rows failed
    assert "dòng 4: ho/household_size" in result.output and "3 đã nhập" in result.output
    again = runner.invoke(args=["import-csv", str(KOBO), "--kind", "kobo", "--commune", THUONG_PHUOC])
    assert "0 đã nhập, 3 đã có từ trước" in again.output


@pytest.mark.db
def test_an_upload_larger_than_the_api_body_limit_is_accepted(app: Flask, tmp_path: Path) -> None:
    # A whole commune's export passes 1 MiB: padding the Kobo file with blank lines makes it 2 MiB.
    big = tmp_path / "big.csv"
    big.write_bytes(KOBO.read_bytes() + b"\n" * (2 * 1024 * 1024))
    client = _client(app, "ctv")
    response = _upload(client, big)
    assert response.status_code == 303
