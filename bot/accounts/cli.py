"""``flask users ...``: create accounts, give them communes or hamlets, disable and re-enable them.

::

    flask users create --username lan --role official --full-name "Nguyễn Thị Lan" [--province 82]
                       [--password-env LAN_PASSWORD]      # else prompted twice, never echoed
    flask users assign lan --commune 29971 [--hamlet "Ấp Phú Lợi"]
    flask users disable lan
    flask users enable lan
    flask users list

An official created with ``--province`` sees the whole province; one without is a commune official and gets
communes with ``assign``. Collaborators get communes, optionally narrowed to hamlets. Admins see everything
and need no scope.
"""

from __future__ import annotations

import os
import re
from typing import Final

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm import Session

from assessment.geo import commune_by_code, province_name
from bot.accounts.security import MIN_PASSWORD_LENGTH, hash_password
from bot.parsing.text import fold
from bot.store.db import get_session, run_in_transaction
from bot.store.models import Hamlet, User, UserRole, UserScope, utcnow

__all__ = ["init_app", "users"]

USERNAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")

users = AppGroup("users", help="Manage collaborator, official and admin accounts.")


def _user(session: Session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username.strip().casefold())).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"no account named {username!r}")
    return user


def _password(password_env: str | None) -> str:
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise click.ClickException(f"environment variable {password_env} is empty or not set")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


@users.command("create")
@click.option("--username", required=True, help="Login name: 3-64 of a-z 0-9 . _ - (stored lower-case).")
@click.option("--role", required=True, type=click.Choice([r.value for r in UserRole]))
@click.option("--full-name", required=True, help="Name shown on pages and in the audit log.")
@click.option("--province", "province_code", default=None, help="Province code: makes an official province-wide.")
@click.option("--password-env", default=None, help="Read the password from this environment variable.")
def create(username: str, role: str, full_name: str, province_code: str | None, password_env: str | None) -> None:
    """Create an account (the password is prompted for unless --password-env is given)."""
    username = username.strip().casefold()
    if not USERNAME.match(username):
        raise click.ClickException("username: 3-64 characters of a-z, 0-9, '.', '_' or '-'")
    if not full_name.strip():
        raise click.ClickException("--full-name must not be empty")
    if province_code is not None:
        if role != UserRole.OFFICIAL.value:
            raise click.ClickException("--province is only for officials (province-wide scope)")
        province_code = province_code.strip().zfill(2)
        if province_name(province_code) is None:
            raise click.ClickException(f"unknown province code {province_code!r}")
    password = _password(password_env)
    session = get_session()
    if session.execute(select(User.id).where(User.username == username)).first() is not None:
        raise click.ClickException(f"an account named {username!r} already exists")
    session.rollback()

    def work(s: Session) -> int:
        user = User(
            username=username,
            password_hash=hash_password(password),
            full_name=full_name.strip()[:128],
            role=UserRole(role),
            province_code=province_code,
            active=True,
            created_at=utcnow(),
        )
        s.add(user)
        s.flush()
        return user.id

    user_id = run_in_transaction(session, work)
    where = f", province {province_code}" if province_code else ""
    click.echo(f"Created {role} {username!r} (id {user_id}{where}).")


def _canonical_hamlet(session: Session, commune_code: str, hamlet: str) -> str:
    """Use the commune's own spelling of the hamlet when it is on the commune's list."""
    wanted = fold(hamlet)
    for known in session.execute(select(Hamlet.name).where(Hamlet.commune_code == commune_code)).scalars():
        if fold(known) == wanted:
            return known
    return hamlet.strip()[:128]


@users.command("assign")
@click.argument("username")
@click.option("--commune", "commune_code", required=True, help="Commune code (5 digits, e.g. 29971).")
@click.option("--hamlet", default=None, help="Collaborators only: narrow to this hamlet of the commune.")
def assign(username: str, commune_code: str, hamlet: str | None) -> None:
    """Give an account a commune, or (collaborators) one hamlet of a commune."""
    commune = commune_by_code(commune_code)
    if commune is None:
        raise click.ClickException(f"unknown commune code {commune_code!r}")
    session = get_session()
    user = _user(session, username)
    role = str(getattr(user.role, "value", user.role))
    if role == UserRole.ADMIN.value:
        raise click.ClickException("admins see everything; they take no communes")
    if role == UserRole.OFFICIAL.value and user.province_code:
        raise click.ClickException("a province-wide official already sees every commune of the province")
    if hamlet is not None and role != UserRole.COLLABORATOR.value:
        raise click.ClickException("--hamlet is for collaborators; officials see whole communes")
    name = _canonical_hamlet(session, commune.code, hamlet) if hamlet else None
    if hamlet is not None and not name:
        raise click.ClickException("--hamlet must not be empty")
    exists = session.execute(
        select(UserScope.id).where(
            UserScope.user_id == user.id,
            UserScope.commune_code == commune.code,
            UserScope.hamlet.is_(None) if name is None else UserScope.hamlet == name,
        )
    ).first()
    user_id = user.id
    session.rollback()
    if exists is None:
        run_in_transaction(
            session,
            lambda s: s.add(UserScope(user_id=user_id, commune_code=commune.code, hamlet=name)),
        )
    where = f"{name}, {commune.name}" if name else commune.name
    click.echo(f"{username!r} now sees {where} ({commune.code}).")


def _set_active(username: str, active: bool) -> None:
    session = get_session()
    user = _user(session, username)
    user_id = user.id
    session.rollback()

    def work(s: Session) -> None:
        s.get(User, user_id).active = active  # type: ignore[union-attr]

    run_in_transaction(session, work)


@users.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Disable an account: it cannot log in, and its open sessions end at their next request."""
    _set_active(username, False)
    click.echo(f"Disabled {username!r}.")


@users.command("enable")
@click.argument("username")
def enable(username: str) -> None:
    """Re-enable a disabled account."""
    _set_active(username, True)
    click.echo(f"Enabled {username!r}.")


@users.command("list")
def list_users() -> None:
    """List the accounts with role, state and scope."""
    session = get_session()
    scopes: dict[int, list[str]] = {}
    for row in session.execute(select(UserScope).order_by(UserScope.commune_code, UserScope.hamlet)).scalars():
        scopes.setdefault(row.user_id, []).append(f"{row.commune_code}/{row.hamlet}" if row.hamlet else row.commune_code)
    for user in session.execute(select(User).order_by(User.username)).scalars():
        role = str(getattr(user.role, "value", user.role))
        where = [f"province {user.province_code}"] if user.province_code else []
        where += scopes.get(user.id, [])
        state = "active" if user.active else "disabled"
        click.echo(f"{user.username}\t{role}\t{state}\t{', '.join(where) or '-'}\t{user.full_name}")


def init_app(app: Flask) -> None:
    """Register ``flask users`` on ``app``."""
    app.cli.add_command(users)
