"""Sessions, passwords, CSRF, login throttling and the authorisation helpers of ``bot.accounts``.

* **Passwords** are hashed with ``werkzeug.security`` (scrypt, salted); a login for an unknown user still
  checks a dummy hash so that timing does not reveal which usernames exist.
* **Sessions** are Flask-Login on Flask's signed cookie: HttpOnly, SameSite=Lax and Secure except under
  debug or testing (``SECURE_COOKIES`` = true / false overrides). The account is reloaded on every request,
  so disabling it ends its sessions at once.
* **CSRF**: Flask-WTF checks every form post except under ``/api/`` and ``/channels/`` (JSON APIs and
  provider webhooks, which authenticate otherwise and carry no browser cookie).
* **Throttling**: Flask-Limiter, 5 login attempts a minute per client address and username; in-memory
  storage, or Redis when ``REDIS_URL`` is set (needs the ``redis`` package).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
from collections.abc import Callable
from typing import Any, Final, ParamSpec, TypeVar

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    request,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from bot.accounts.scope import ANONYMOUS, Scope
from bot.store.db import SQLITE_BEGIN_OPTION, get_session, run_in_transaction
from bot.store.models import AuditLog, User, UserScope, utcnow

__all__ = [
    "CSRF_EXEMPT_PREFIXES",
    "LOGIN_LIMIT",
    "AccountUser",
    "audit",
    "csrf",
    "current_scope",
    "hash_password",
    "init_app",
    "limiter",
    "load_account",
    "login_manager",
    "read_session",
    "require_roles",
    "verify_password",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Paths whose POSTs are not browser forms (JSON APIs, provider webhooks): no CSRF token expected.
CSRF_EXEMPT_PREFIXES: Final = ("/api/", "/channels/")

#: Login attempts allowed per client address and username.
LOGIN_LIMIT: Final = "5 per minute"

#: Shortest password the ``users`` command accepts.
MIN_PASSWORD_LENGTH: Final = 10

login_manager = LoginManager()
csrf = CSRFProtect()
# The key is set per limit (login: address + username); no default limit applies to other routes.
limiter = Limiter(key_func=get_remote_address, default_limits=[])

# Checked when the username is unknown, so a miss costs as much as a wrong password.
_DUMMY_HASH: Final = generate_password_hash("not-a-real-password-only-for-timing")


def hash_password(password: str) -> str:
    """Return a salted scrypt hash of ``password`` (werkzeug's default method)."""
    return generate_password_hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check ``password`` against a stored hash; an absent hash still costs one check."""
    if not password_hash:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(password_hash, password)


@dataclasses.dataclass
class AccountUser(UserMixin):  # type: ignore[misc]
    """The logged-in account as Flask-Login sees it (a plain snapshot, not an ORM object)."""

    id: int
    username: str
    full_name: str
    role: str
    province_code: str | None
    active: bool
    scope: Scope

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active

    def get_id(self) -> str:
        return str(self.id)


def read_session() -> Session:
    """Return the request's session, in a read-only-friendly transaction.

    On SQLite every transaction normally starts with ``BEGIN IMMEDIATE`` (it takes the write lock, which is how
    the chat pipeline serialises writers). Pages that only read must not hold that lock while they render, or
    residents' messages would queue behind an official's dashboard; so the first statement of a request that
    goes through here begins a ``DEFERRED`` transaction instead. Views that write call
    :func:`bot.store.run_in_transaction` after rolling this one back.
    """
    session = get_session()
    if not session.in_transaction():
        session.connection(execution_options={SQLITE_BEGIN_OPTION: "DEFERRED"})
    return session


def load_account(session: Session, user_id: int) -> AccountUser | None:
    """Load an account and its scope; None when it does not exist."""
    row = session.execute(
        select(
            User.id, User.username, User.full_name, User.role, User.province_code, User.active
        ).where(User.id == user_id)
    ).one_or_none()
    if row is None:
        return None
    communes: set[str] = set()
    hamlets: dict[str, set[str]] = {}
    whole: set[str] = set()
    for commune_code, hamlet in session.execute(
        select(UserScope.commune_code, UserScope.hamlet).where(UserScope.user_id == user_id)
    ):
        communes.add(commune_code)
        if hamlet:
            hamlets.setdefault(commune_code, set()).add(hamlet)
        else:
            # A whole-commune row wins over hamlet rows of the same commune.
            whole.add(commune_code)
    role = str(getattr(row.role, "value", row.role))
    scope = Scope(
        user_id=row.id,
        role=role,
        province_code=row.province_code if role == "official" else None,
        communes=frozenset(communes),
        hamlets={c: frozenset(h) for c, h in hamlets.items() if c not in whole},
    )
    return AccountUser(
        id=row.id,
        username=row.username,
        full_name=row.full_name,
        role=role,
        province_code=row.province_code,
        active=bool(row.active),
        scope=scope,
    )


@login_manager.user_loader
def _load_user(user_id: str) -> AccountUser | None:
    try:
        number = int(user_id)
    except (TypeError, ValueError):
        return None
    account = load_account(read_session(), number)
    # A disabled account is treated as logged out on its very next request.
    return account if account is not None and account.active else None


def current_account() -> AccountUser | None:
    """Return the logged-in account, or None."""
    user = current_user
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user  # type: ignore[no-any-return]


def current_scope() -> Scope:
    """Return the :class:`Scope` of the logged-in account (the empty scope when nobody is logged in)."""
    account = current_account()
    return account.scope if account is not None else ANONYMOUS


def _wants_json() -> bool:
    if request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def login_redirect() -> Response:
    """Send a visitor who is not logged in to the login page, or answer 401 to a JSON client."""
    if _wants_json():
        response = jsonify(
            {
                "error": {
                    "code": "unauthorized",
                    "message_vi": "Cần đăng nhập để dùng chức năng này.",
                    "problems": [],
                }
            }
        )
        response.status_code = 401
        return response
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("accounts.login", next=target))  # type: ignore[return-value]


def require_roles(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Let only logged-in accounts with one of ``roles`` into the view.

    Not logged in (or disabled): the login page for HTML, 401 JSON for API clients. Logged in with another role:
    403. Scope (which communes) is the view's own check, with :func:`current_scope`.
    """
    allowed = frozenset(roles)
    unknown = allowed - {"collaborator", "official", "admin"}
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            account = current_account()
            if account is None:
                return login_redirect()
            if account.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        wrapper.allowed_roles = allowed  # type: ignore[attr-defined]
        return wrapper

    return decorate


def audit(
    action: str,
    object_type: str,
    object_id: str | None = None,
    *,
    detail: dict[str, Any] | None = None,
    session: Session | None = None,
) -> None:
    """Record who did what to which object, in the request's session (or ``session``).

    The row is committed with the request's own work. A view that only reads need not commit: an
    ``after_request`` hook commits the request's session when audit rows are pending and the response is
    not a server error, so a household view is never shown without its audit row being written.
    """
    account = current_account()
    target = session if session is not None else get_session()
    target.add(
        AuditLog(
            user_id=account.id if account is not None else None,
            action=action[:64],
            object_type=object_type[:32],
            object_id=object_id[:64] if object_id is not None else None,
            at=utcnow(),
            ip=(request.remote_addr or "")[:64] or None,
            detail=detail,
        )
    )
    if session is None:
        g._audit_pending = True


def _commit_pending_audit(response: Response) -> Response:
    """Make sure the audit rows of a view that did not commit are written (unless the response is a 500)."""
    if not g.pop("_audit_pending", False) or response.status_code >= 500:
        return response
    session = get_session()
    new = list(session.new)
    if new and all(isinstance(o, AuditLog) for o in new):
        # Only audit rows are pending (a read-only view): write them in a transaction of their own. The view's
        # read transaction may be a DEFERRED SQLite one (see read_session), which cannot always be upgraded to a
        # writer; a fresh transaction queues for the write lock like every other writer.
        for row in new:
            session.expunge(row)
        session.rollback()
        run_in_transaction(session, lambda s: s.add_all(new))
    elif session.in_transaction():
        session.commit()
    return response


def login_key() -> str:
    """Rate-limit key of a login attempt: client address and the (case-folded) username tried."""
    username = (request.form.get("username") or "").strip().casefold()[:64]
    return f"{get_remote_address()}|{username}"


def _configure_cookies(app: Flask) -> None:
    secure = app.config.get("SECURE_COOKIES")
    if secure is None:
        # Browsers treat http://127.0.0.1 and http://localhost as secure, so local runs still log in.
        secure = not (app.debug or app.testing)
    app.config["SESSION_COOKIE_SECURE"] = app.config["REMEMBER_COOKIE_SECURE"] = bool(secure)
    app.config["SESSION_COOKIE_HTTPONLY"] = app.config["REMEMBER_COOKIE_HTTPONLY"] = True
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    # Officials keep a tab open all day: an 8-hour working session, not Flask's 31 days.
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", dt.timedelta(hours=8))


def _limiter_storage(app: Flask) -> str:
    """Redis when ``REDIS_URL`` is set (counts shared by every worker), else this process's memory."""
    redis_url = app.config.get("REDIS_URL") or os.environ.get("REDIS_URL")
    if not redis_url:
        return "memory://"
    try:
        import redis  # noqa: F401  (the driver limits needs for redis:// storage)
    except ImportError:
        # Refusing to start would take the residents' chat down with the login page; count per process instead.
        app.logger.warning("REDIS_URL is set but the redis package is missing: login throttling counts per process")
        return "memory://"
    return str(redis_url)


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except on :data:`CSRF_EXEMPT_PREFIXES`, which get none.

    The JSON APIs and provider webhooks are not browser forms and act for no logged-in
    account, so a cookie must not authenticate anything there (which is also why they need
    no CSRF token). Not opening a session for them keeps it so, and spares each chat
    message the cookie's decoding and signing checks.
    """

    def open_session(self, app: Flask, request: Any) -> SecureCookieSession | None:
        if request.path.startswith(CSRF_EXEMPT_PREFIXES):
            return self.make_null_session(app)  # a NullSession, which is a SecureCookieSession
        return super().open_session(app, request)


#: Endpoints with a rate limit (``@limiter.limit``); the limiter is consulted for these only.
THROTTLED_ENDPOINTS: Final = frozenset({"accounts.login"})


def _limiter_only_on_throttled_views(app: Flask) -> None:
    """Run the limiter's per-request hooks on :data:`THROTTLED_ENDPOINTS` only.

    Only the login form is throttled (there are no default limits), but the limiter's
    ``before_request`` check resolves the limits of every request, chat messages included, and
    its ``after_request`` (rate-limit headers) and ``teardown_request`` hooks set up and reset
    its per-request context each time: a few percent of a worker's CPU per message for nothing.
    Each hook is replaced by one that calls it for a throttled view only.
    """
    # The hooks Limiter.init_app registered: a bound method, a functools.partial over the limiter, a bound method.
    inject_headers = [f for f in app.after_request_funcs.get(None, []) if getattr(f, "args", None) == (limiter,)]
    hooks = (
        (app.before_request_funcs, limiter._check_request_limit),
        (app.after_request_funcs, inject_headers[0] if inject_headers else None),
        (app.teardown_request_funcs, getattr(limiter, "_Limiter__release_context", None)),
    )
    for registry, hook in hooks:
        funcs: list[Any] = registry.setdefault(None, [])
        if hook is None or hook not in funcs:
            continue
        funcs[funcs.index(hook)] = _on_throttled_views(hook)


def _on_throttled_views(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook``, called only when the request is for a view in :data:`THROTTLED_ENDPOINTS`.

    Otherwise it returns its first argument (the response, for an ``after_request`` hook).
    """

    def on_throttled(*args: Any) -> Any:
        if request.endpoint in THROTTLED_ENDPOINTS:
            return hook(*args)
        return args[0] if args else None

    return on_throttled


def _csrf_check() -> None:
    if request.method not in current_app.config["WTF_CSRF_METHODS"] or request.path.startswith(
        CSRF_EXEMPT_PREFIXES
    ):
        return
    # Reading the token parses the form, so an upload view's larger body limit must apply before that: a view
    # declares it as ``view.max_content_length`` (bytes, or a callable returning them).
    view = current_app.view_functions.get(request.endpoint or "")
    limit = getattr(view, "max_content_length", None)
    if limit is not None:
        request.max_content_length = int(limit() if callable(limit) else limit)
    csrf.protect()


def init_app(app: Flask) -> None:
    """Install sessions, CSRF protection and login throttling on ``app``."""
    _configure_cookies(app)

    app.session_interface = _SessionInterface()
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Vui lòng đăng nhập."
    login_manager.init_app(app)

    # The check runs from our own before_request (below), so exemption is by path prefix: blueprints other
    # engineers add under /api/ or /channels/ need no registration here.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    # The token lives as long as the session; an official's form left open over lunch still posts.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    app.before_request(_csrf_check)

    app.config.setdefault("RATELIMIT_STORAGE_URI", _limiter_storage(app))
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # Explicit, because the limiter object is shared by every app of the process and would otherwise keep the
    # last app's setting.
    app.config.setdefault("RATELIMIT_ENABLED", True)
    limiter.init_app(app)
    _limiter_only_on_throttled_views(app)

    app.after_request(_commit_pending_audit)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> tuple[str, int]:
        from flask import render_template

        return render_template("accounts/error.html", code=400, title="Phiên làm việc đã hết hạn",
                               message="Biểu mẫu thiếu mã bảo vệ hoặc mã đã hết hạn. "
                               "Vui lòng tải lại trang rồi gửi lại."), 400
