"""Pages of ``bot.accounts``: log in and out, the account page (with the collaborator's link code), and the
admins' pages (accounts, audit log).

Every page is server-rendered Vietnamese HTML; every form post carries the CSRF token (see
:mod:`bot.accounts.security`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_user, logout_user
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from assessment.geo import commune_by_code, province_name
from bot.accounts.security import (
    LOGIN_LIMIT,
    audit,
    current_account,
    limiter,
    load_account,
    login_key,
    read_session,
    require_roles,
    verify_password,
)
from bot.store.db import get_session, run_in_transaction
from bot.store.models import AuditLog, User, UserScope, utcnow

__all__ = ["bp"]

bp = Blueprint("accounts", __name__)

#: Audit rows per page of the admins' audit log.
AUDIT_PAGE_SIZE: Final = 100

ROLE_VI: Final = {"collaborator": "Cộng tác viên", "official": "Cán bộ", "admin": "Quản trị"}


def _safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site (never an open redirect), else None."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def home_url(role: str) -> str:
    """Where an account lands after logging in."""
    return url_for("accounts.account") if role == "collaborator" else url_for("dashboard.index")


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(429)
def _too_many(_exc: Exception) -> tuple[str, int]:
    return (
        render_template(
            "accounts/login.html",
            error="Bạn đã thử đăng nhập quá nhiều lần. Vui lòng đợi một phút rồi thử lại.",
            username=request.form.get("username", ""),
            next=_safe_next(request.values.get("next")),
        ),
        429,
    )


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, key_func=login_key, methods=["POST"])
def login() -> Any:
    """Log in with username and password."""
    next_url = _safe_next(request.values.get("next"))
    account = current_account()
    if account is not None:
        return redirect(next_url or home_url(account.role))
    if request.method == "GET":
        return _no_store(Response(render_template("accounts/login.html", next=next_url, username="")))

    username = (request.form.get("username") or "").strip().casefold()
    password = request.form.get("password") or ""
    session = get_session()
    row = session.execute(
        select(User.id, User.password_hash, User.active).where(User.username == username)
    ).one_or_none()
    ok = verify_password(row.password_hash if row is not None else None, password)
    if row is None or not ok or not row.active:
        session.rollback()
        return (
            render_template(
                "accounts/login.html",
                error="Tên đăng nhập hoặc mật khẩu không đúng, hoặc tài khoản đã bị khoá.",
                username=username,
                next=next_url,
            ),
            401,
        )
    session.rollback()  # end the read; the write below takes the database's write lock on its own

    def work(s: Session) -> None:
        s.execute(update(User).where(User.id == row.id).values(last_login_at=utcnow()))
        audit("login", "user", str(row.id), session=s)

    run_in_transaction(session, work)
    loaded = load_account(read_session(), row.id)
    assert loaded is not None
    login_user(loaded)
    return redirect(next_url or home_url(loaded.role))


@bp.post("/logout")
def logout() -> Any:
    """Log out (a form post, so another site cannot log people out with a link)."""
    logout_user()
    from flask import session as cookie_session

    cookie_session.clear()
    return redirect(url_for("accounts.login"))


def _scope_lines(scope_rows: list[tuple[str, str | None]], province_code: str | None) -> list[str]:
    lines: list[str] = []
    if province_code:
        lines.append(f"Toàn tỉnh {province_name(province_code) or province_code}")
    for commune_code, hamlet in scope_rows:
        commune = commune_by_code(commune_code)
        name = commune.name if commune is not None else commune_code
        lines.append(f"{hamlet}, {name}" if hamlet else name)
    return lines


@bp.get("/account")
@require_roles("collaborator", "official", "admin")
def account() -> Any:
    """The account page: who I am, what I may see; collaborators get the chat link-code button."""
    me = current_account()
    assert me is not None
    session = read_session()
    rows = [
        (r.commune_code, r.hamlet)
        for r in session.execute(
            select(UserScope.commune_code, UserScope.hamlet)
            .where(UserScope.user_id == me.id)
            .order_by(UserScope.commune_code, UserScope.hamlet)
        )
    ]
    hamlet_links = [
        {"commune": c, "hamlet": h, "label": line}
        for (c, h), line in zip(rows, _scope_lines(rows, None), strict=True)
    ]
    return _no_store(
        Response(
            render_template(
                "accounts/account.html",
                me=me,
                role_vi=ROLE_VI.get(me.role, me.role),
                scope_lines=_scope_lines(rows, me.province_code if me.role == "official" else None),
                hamlet_links=hamlet_links,
                code=None,
            )
        )
    )


@bp.post("/account/link-code")
@require_roles("collaborator")
def link_code() -> Any:
    """Make a one-time code that links the collaborator's chat (Zalo, web) to this account; shown once."""
    me = current_account()
    assert me is not None
    try:
        from bot.accounts.links import create_link_code
    except ImportError:  # pragma: no cover - bot.accounts.links ships with the collaborator chat mode
        abort(503)
    session = get_session()
    if session.in_transaction():
        session.rollback()

    def work(s: Session) -> str:
        user = s.get(User, me.id)
        if user is None:  # deleted between the request's start and now
            abort(404)
        code = create_link_code(s, user, utcnow())
        audit("create_link_code", "user", str(me.id), session=s)
        return str(code)

    code = run_in_transaction(session, work)
    return _no_store(
        Response(
            render_template(
                "accounts/account.html",
                me=me,
                role_vi=ROLE_VI.get(me.role, me.role),
                scope_lines=[],
                hamlet_links=[],
                code=code,
            )
        )
    )


@bp.get("/admin/users")
@require_roles("admin")
def admin_users() -> Any:
    """Every account with its role, scope and state (accounts are managed with ``flask users``)."""
    session = read_session()
    users = session.execute(select(User).order_by(User.role, User.username)).scalars().all()
    scopes: dict[int, list[tuple[str, str | None]]] = {}
    for row in session.execute(
        select(UserScope.user_id, UserScope.commune_code, UserScope.hamlet).order_by(
            UserScope.commune_code, UserScope.hamlet
        )
    ):
        scopes.setdefault(row.user_id, []).append((row.commune_code, row.hamlet))
    listed = [
        {
            "user": u,
            "role_vi": ROLE_VI.get(str(getattr(u.role, "value", u.role)), str(u.role)),
            "scope": "; ".join(_scope_lines(scopes.get(u.id, []), u.province_code)) or "—",
        }
        for u in users
    ]
    return _no_store(Response(render_template("accounts/admin_users.html", users=listed)))


@bp.get("/admin/audit")
@require_roles("admin")
def admin_audit() -> Any:
    """The audit log, newest first, filterable by action and account."""
    session = read_session()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    action = (request.args.get("action") or "").strip()[:64]
    username = (request.args.get("user") or "").strip().casefold()[:64]
    stmt = select(AuditLog, User.username).join(User, User.id == AuditLog.user_id, isouter=True)
    count_stmt = select(func.count()).select_from(AuditLog)
    if action:
        stmt = stmt.where(AuditLog.action == action)
        count_stmt = count_stmt.where(AuditLog.action == action)
    if username:
        user_ids = select(User.id).where(User.username == username).scalar_subquery()
        stmt = stmt.where(AuditLog.user_id == user_ids)
        count_stmt = count_stmt.where(AuditLog.user_id == user_ids)
    total = session.execute(count_stmt).scalar_one()
    rows = session.execute(
        stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc())
        .limit(AUDIT_PAGE_SIZE)
        .offset((page - 1) * AUDIT_PAGE_SIZE)
    ).all()
    actions = session.execute(select(AuditLog.action).distinct().order_by(AuditLog.action)).scalars().all()
    return _no_store(
        Response(
            render_template(
                "accounts/admin_audit.html",
                rows=rows,
                page=page,
                pages=max(1, -(-total // AUDIT_PAGE_SIZE)),
                total=total,
                action=action,
                username=username,
                actions=actions,
                vn=lambda t: t.astimezone(dt.timezone(dt.timedelta(hours=7))).strftime("%d/%m/%Y %H:%M:%S"),
            )
        )
    )
