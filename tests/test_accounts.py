"""Accounts: scope rules, ``flask users``, login and logout, CSRF, throttling, cookies, disabled accounts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from bot.accounts import Scope
from bot.accounts.scope import province_communes
from bot.store import get_store
from bot.store.models import Assessment, AuditLog, User, UserScope
from bot.store.testing import temporary_database
from tests.dashboard_support import (
    COMMUNE_A,
    COMMUNE_B,
    COMMUNE_OTHER,
    HAMLET_X,
    HAMLET_Y,
    PASSWORD,
    PROVINCE,
    add_assessment,
    add_hamlets,
    add_user,
    csrf_token,
    login,
    make_app,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    with temporary_database(tmp_path) as url:
        app = make_app(url)
        yield app
        get_store(app).engine.dispose()


# -- Scope ---------------------------------------------------------------------------------------------------


COLLABORATOR = Scope(7, "collaborator", communes=frozenset({COMMUNE_A}), hamlets={COMMUNE_A: frozenset({HAMLET_X})})
COMMUNE_OFFICIAL = Scope(8, "official", communes=frozenset({COMMUNE_A}))
PROVINCE_OFFICIAL = Scope(9, "official", province_code=PROVINCE)
ADMIN = Scope(1, "admin")


def test_scope_rules() -> None:
    assert ADMIN.allows(COMMUNE_OTHER) and ADMIN.covers_province("01") and ADMIN.home_provinces is None
    assert PROVINCE_OFFICIAL.allows(COMMUNE_A) and PROVINCE_OFFICIAL.allows(COMMUNE_B, HAMLET_Y)
    assert not PROVINCE_OFFICIAL.allows(COMMUNE_OTHER)
    assert PROVINCE_OFFICIAL.covers_province(PROVINCE) and not PROVINCE_OFFICIAL.covers_province("01")
    assert COMMUNE_OFFICIAL.allows(COMMUNE_A) and COMMUNE_OFFICIAL.allows(COMMUNE_A, HAMLET_Y)
    assert not COMMUNE_OFFICIAL.allows(COMMUNE_B) and not COMMUNE_OFFICIAL.covers_province(PROVINCE)
    assert COMMUNE_OFFICIAL.home_provinces == frozenset({PROVINCE})
    # A collaborator narrowed to hamlet X: X only, not the commune as a whole, not an unknown hamlet.
    assert COLLABORATOR.allows(COMMUNE_A, HAMLET_X)
    assert not COLLABORATOR.allows(COMMUNE_A) and not COLLABORATOR.allows(COMMUNE_A, HAMLET_Y)
    assert not COLLABORATOR.allows(COMMUNE_A, None) and COLLABORATOR.reaches(COMMUNE_A)
    assert not COLLABORATOR.reaches(COMMUNE_B)
    anonymous = Scope(None, "anonymous")
    assert not anonymous.allows(COMMUNE_A) and anonymous.visible_communes() == frozenset()
    assert len(province_communes(PROVINCE)) == 102  # Đồng Tháp after the 2025 reorganisation


@pytest.mark.db
def test_restrict_agrees_with_allows(app: Flask) -> None:
    placed = [(COMMUNE_A, HAMLET_X), (COMMUNE_A, HAMLET_Y), (COMMUNE_A, None), (COMMUNE_B, HAMLET_X),
              (COMMUNE_OTHER, None)]
    for commune, hamlet in placed:
        add_assessment(app, commune, hamlet=hamlet)
    with get_store(app).sessions() as session:
        rows = session.execute(select(Assessment.id, Assessment.commune_code, Assessment.hamlet)).all()
        for scope in (COLLABORATOR, COMMUNE_OFFICIAL, PROVINCE_OFFICIAL, ADMIN, Scope(None, "anonymous")):
            got = set(session.execute(scope.restrict(select(Assessment.id))).scalars())
            want = {r.id for r in rows if scope.allows(r.commune_code, r.hamlet)}
            assert got == want, scope.role
        assert len(set(session.execute(COLLABORATOR.restrict(select(Assessment.id))).scalars())) == 1


# -- flask users ---------------------------------------------------------------------------------------------


@pytest.mark.db
def test_users_cli(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = app.test_cli_runner()
    monkeypatch.setenv("NEW_PASSWORD", PASSWORD)
    add_hamlets(app, COMMUNE_A, [HAMLET_X])

    result = runner.invoke(args=["users", "create", "--username", "Lan", "--role", "official", "--full-name",
                                 "Nguyễn Thị Lan", "--password-env", "NEW_PASSWORD"])
    assert result.exit_code == 0, result.output
    assert "Created official 'lan'" in result.output
    again = runner.invoke(args=["users", "create", "--username", "lan", "--role", "official", "--full-name", "X",
                                "--password-env", "NEW_PASSWORD"])
    assert again.exit_code != 0 and "already exists" in again.output

    # Prompted password (twice, hidden); too short is refused.
    prompted = runner.invoke(args=["users", "create", "--username", "ctv1", "--role", "collaborator",
                                   "--full-name", "Trần Văn Ba"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    short = runner.invoke(args=["users", "create", "--username", "ctv2", "--role", "collaborator",
                                "--full-name", "B"], input="short\nshort\n")
    assert short.exit_code != 0 and "at least" in short.output
    wrong = runner.invoke(args=["users", "create", "--username", "pp1", "--role", "collaborator", "--full-name", "C",
                                "--province", "82", "--password-env", "NEW_PASSWORD"])
    assert wrong.exit_code != 0 and "only for officials" in wrong.output
    province = runner.invoke(args=["users", "create", "--username", "tinh", "--role", "official", "--full-name",
                                   "Tỉnh", "--province", "82", "--password-env", "NEW_PASSWORD"])
    assert province.exit_code == 0, province.output

    assert runner.invoke(args=["users", "assign", "lan", "--commune", COMMUNE_A]).exit_code == 0
    # The hamlet takes the commune's own spelling ("ap phu loi" → "Ấp Phú Lợi").
    assigned = runner.invoke(args=["users", "assign", "ctv1", "--commune", COMMUNE_A, "--hamlet", "ap phu loi"])
    assert assigned.exit_code == 0 and HAMLET_X in assigned.output
    assert runner.invoke(args=["users", "assign", "lan", "--commune", "99999"]).exit_code != 0
    assert runner.invoke(args=["users", "assign", "lan", "--commune", COMMUNE_A, "--hamlet", "X"]).exit_code != 0
    assert runner.invoke(args=["users", "assign", "tinh", "--commune", COMMUNE_A]).exit_code != 0
    with get_store(app).sessions() as session:
        scopes = session.execute(select(UserScope.commune_code, UserScope.hamlet).order_by(UserScope.id)).all()
        assert [tuple(s) for s in scopes] == [(COMMUNE_A, None), (COMMUNE_A, HAMLET_X)]
        assert session.execute(select(User.password_hash).where(User.username == "lan")).scalar_one() != PASSWORD

    client = app.test_client()
    assert login(client, "lan").status_code == 302
    assert runner.invoke(args=["users", "disable", "lan"]).exit_code == 0
    assert client.get("/account").status_code == 302  # the open session ends at its next request
    assert login(app.test_client(), "lan").status_code == 401
    assert runner.invoke(args=["users", "enable", "lan"]).exit_code == 0
    assert login(app.test_client(), "lan").status_code == 302
    listing = runner.invoke(args=["users", "list"])
    assert "lan\tofficial\tactive\t29971" in listing.output and "tinh\tofficial\tactive\tprovince 82" in listing.output


# -- login, sessions, CSRF, throttling -------------------------------------------------------------------------


@pytest.mark.db
def test_login_logout_and_audit(app: Flask) -> None:
    add_user(app, "lan", "official", scopes=[(COMMUNE_A, None)])
    client = app.test_client()
    assert client.get("/dashboard/").headers["Location"].startswith("/login?next=")
    response = login(client, "LAN")  # usernames are case-insensitive
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard/"
    assert client.get("/dashboard/").headers["Location"] == f"/dashboard/c/{COMMUNE_A}"
    with get_store(app).sessions() as session:
        assert session.execute(select(User.last_login_at)).scalar_one() is not None
        assert session.execute(select(AuditLog.action)).scalars().all() == ["login"]
    token = csrf_token(client, "/account")
    assert client.post("/logout", data={"csrf_token": token}).headers["Location"] == "/login"
    assert client.get("/account").status_code == 302

    bad = app.test_client()
    response = login(bad, "lan", "wrong password")
    assert response.status_code == 401 and "không đúng" in response.get_data(as_text=True)


@pytest.mark.db
def test_next_is_followed_only_within_the_site(app: Flask) -> None:
    add_user(app, "lan", "official", scopes=[(COMMUNE_A, None)])
    for target, expected in (("/dashboard/c/29971?period=all", "/dashboard/c/29971?period=all"),
                             ("//evil.example/x", "/dashboard/"), ("https://evil.example/", "/dashboard/")):
        client = app.test_client()
        token = csrf_token(client)
        response = client.post("/login", data={"username": "lan", "password": PASSWORD, "csrf_token": token,
                                               "next": target})
        assert response.headers["Location"] == expected


@pytest.mark.db
def test_form_posts_without_csrf_token_are_400(app: Flask) -> None:
    add_user(app, "lan", "official", scopes=[(COMMUNE_A, None)])
    client = app.test_client()
    response = client.post("/login", data={"username": "lan", "password": PASSWORD})
    assert response.status_code == 400 and "mã bảo vệ" in response.get_data(as_text=True)
    assert login(client, "lan").status_code == 302
    assert client.post("/logout").status_code == 400
    assert client.post(f"/dashboard/c/{COMMUNE_A}/official-list").status_code == 400
    assert client.get("/account").status_code == 200  # still logged in
    # The JSON API is not a browser form: no token needed.
    api = client.post("/api/v1/assessments", json={"area": "rural", "household_size": 2, "monthly_income_vnd": 1})
    assert api.status_code == 200


@pytest.mark.db
def test_sixth_login_attempt_in_a_minute_is_429(app: Flask) -> None:
    add_user(app, "lan", "official", scopes=[(COMMUNE_A, None)])
    client = app.test_client()
    token = csrf_token(client)
    statuses = [
        client.post("/login", data={"username": "lan", "password": f"guess {i}", "csrf_token": token}).status_code
        for i in range(6)
    ]
    assert statuses == [401, 401, 401, 401, 401, 429]
    blocked = client.post("/login", data={"username": "lan", "password": PASSWORD, "csrf_token": token})
    assert blocked.status_code == 429 and "quá nhiều lần" in blocked.get_data(as_text=True)
    assert blocked.headers["X-RateLimit-Remaining"] == "0" and "Retry-After" in blocked.headers
    # Nothing else is throttled, or told about limits.
    chat = client.post("/api/v1/chat", json={"user": "u1", "event": "follow"})
    assert chat.status_code == 200 and "X-RateLimit-Limit" not in chat.headers
    # Per address and username: another account from the same address is not locked out.
    add_user(app, "binh", "official", scopes=[(COMMUNE_A, None)])
    assert login(client, "binh").status_code == 302


def test_every_rate_limited_view_is_checked_by_the_limiter(app: Flask) -> None:
    from bot.accounts.security import THROTTLED_ENDPOINTS, limiter

    decorated = limiter.limit_manager._decorated_limits  # view "module.name[.endpoint]" -> limits
    limited = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if any(key.startswith(f"{view.__module__}.{view.__name__}") for key in decorated)
    }
    assert limited and limited <= THROTTLED_ENDPOINTS


@pytest.mark.db
def test_the_json_apis_ignore_the_session_cookie_and_set_none(app: Flask) -> None:
    add_user(app, "lan", "official", scopes=[(COMMUNE_A, None)])
    client = app.test_client()
    login(client, "lan")
    assert client.get("/account").status_code == 200  # logged in on the site
    response = client.post("/api/v1/chat", json={"user": "u1", "event": "follow"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers and "Cookie" not in response.headers.get("Vary", "")
    standards = client.get("/api/v1/standards")
    assert standards.status_code == 200 and "Set-Cookie" not in standards.headers


@pytest.mark.db
def test_session_cookie_flags(app: Flask, tmp_path: Path) -> None:
    add_user(app, "lan", "official", scopes=[(COMMUNE_A, None)])
    client = app.test_client()
    cookie = login(client, "lan").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # testing: plain http
    production_like = make_app(app.config["DATABASE_URL"], TESTING=False)
    try:
        assert production_like.config["SESSION_COOKIE_SECURE"] is True
        assert production_like.config["SESSION_COOKIE_SAMESITE"] == "Lax"
        assert production_like.config["SESSION_COOKIE_HTTPONLY"] is True
        secure_client = production_like.test_client()
        assert "Secure" in login(secure_client, "lan").headers["Set-Cookie"]
    finally:
        get_store(production_like).engine.dispose()


@pytest.mark.db
def test_api_clients_get_401_json_and_roles_get_403(app: Flask) -> None:
    response = app.test_client().get("/dashboard/", headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
    add_user(app, "ctv", "collaborator", scopes=[(COMMUNE_A, HAMLET_X)])
    client = app.test_client()
    assert login(client, "ctv").headers["Location"] == "/account"
    assert client.get("/admin/audit").status_code == 403
    assert client.get(f"/dashboard/p/{PROVINCE}").status_code == 403


@pytest.mark.db
def test_disabled_account_cannot_log_in(app: Flask) -> None:
    add_user(app, "old", "official", scopes=[(COMMUNE_A, None)], active=False)
    assert login(app.test_client(), "old").status_code == 401
    with get_store(app).sessions() as session:
        session.execute(update(User).values(active=True))
        session.commit()
        assert session.execute(select(func.count()).select_from(AuditLog)).scalar_one() == 0
    assert login(app.test_client(), "old").status_code == 302


@pytest.mark.db
def test_collaborator_link_code_button(app: Flask) -> None:
    pytest.importorskip("bot.accounts.links")
    add_user(app, "ctv", "collaborator", scopes=[(COMMUNE_A, HAMLET_X)])
    client = app.test_client()
    login(client, "ctv")
    page = client.get("/account").get_data(as_text=True)
    assert "Tạo mã liên kết" in page and HAMLET_X in page
    response = client.post("/account/link-code", data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 200
    import re

    assert re.search(r'id="link-code">\d{8}<', response.get_data(as_text=True))
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.db
def test_audit_rows_of_a_read_only_view_are_written_after_the_response(app: Flask) -> None:
    from flask import Blueprint

    from bot.accounts import audit, require_roles
    from bot.accounts.security import read_session

    probe = Blueprint("probe", __name__)

    @probe.get("/probe")
    @require_roles("official")
    def view() -> str:
        read_session().execute(select(func.count()).select_from(User))  # a read, in a DEFERRED transaction
        audit("export_csv", "commune", COMMUNE_A, detail={"rows": 3})
        return "ok"

    app.register_blueprint(probe)
    add_user(app, "lan", "official", scopes=[(COMMUNE_A, None)])
    client = app.test_client()
    login(client, "lan")
    assert client.get("/probe").status_code == 200
    with get_store(app).sessions() as session:
        row = session.execute(select(AuditLog).where(AuditLog.action == "export_csv")).scalar_one()
        assert (row.object_type, row.object_id, row.detail) == ("commune", COMMUNE_A, {"rows": 3})
        assert row.user_id is not None and row.ip == "127.0.0.1"


@pytest.mark.db
def test_an_upload_view_can_raise_its_body_limit_before_the_csrf_check(app: Flask) -> None:
    import io

    from flask import Blueprint, request

    uploads = Blueprint("uploads", __name__)

    @uploads.post("/big-upload")
    def big_upload() -> str:
        return str(len(request.files["file"].read()))

    big_upload.max_content_length = lambda: 4 * 1024 * 1024  # type: ignore[attr-defined]
    app.register_blueprint(uploads)
    client = app.test_client()
    token = csrf_token(client)
    body = b"x" * (2 * 1024 * 1024)  # over the app's 1 MiB default
    response = client.post("/big-upload", data={"csrf_token": token, "file": (io.BytesIO(body), "a.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 200 and response.get_data(as_text=True) == str(len(body))
