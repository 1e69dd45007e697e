"""Accounts of collaborators, officials and admins; their scope; the audit log (docs/CONTRACTS.md §7).

Residents have no account. Collaborators are assigned communes or hamlets, officials one commune (or more) or a
whole province, admins manage accounts and read the audit log::

    from bot.accounts import Scope, current_scope, require_roles, audit

    @bp.get("/dashboard/...")
    @require_roles("official", "admin")          # not logged in -> login page / 401 JSON; wrong role -> 403
    def view():
        scope = current_scope()
        scope.allows(commune_code, hamlet=None)   # bool
        stmt = scope.restrict(select(Assessment))  # WHERE for the user's communes / hamlets / province
        audit("view_household", "assessment", str(id))

Link codes for collaborators' chats live in :mod:`bot.accounts.links`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.accounts.scope import ANONYMOUS, Scope

if TYPE_CHECKING:
    from flask import Blueprint, Flask

__all__ = [
    "ANONYMOUS",
    "Scope",
    "audit",
    "blueprint",
    "current_scope",
    "init_app",
    "require_roles",
]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # The Flask-dependent helpers load on first use, so ``Scope`` stays importable without the web stack.
    if name in {"audit", "current_scope", "require_roles", "current_account", "hash_password", "verify_password"}:
        from bot.accounts import security

        return getattr(security, name)
    raise AttributeError(f"module 'bot.accounts' has no attribute {name!r}")


def blueprint() -> Blueprint:
    """Return the blueprint of the login, account and admin pages."""
    from bot.accounts.views import bp

    return bp


def init_app(app: Flask) -> None:
    """Install sessions (Flask-Login), CSRF protection, login throttling and the ``flask users`` command."""
    from bot.accounts import cli, security

    security.init_app(app)
    cli.init_app(app)
