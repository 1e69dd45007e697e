"""Scope tests and SQL conditions for the report and export queries.

The authority is ``bot.accounts.Scope`` (docs/CONTRACTS.md §7): every rule (admin, province official, commune
official, collaborator narrowed to hamlets) lives there, and this module only asks it, so an export can never
show more than the dashboard pages do. The aggregate tables name their columns like ``assessments`` does
(``commune_code``, ``hamlet``), so ``Scope.clause`` applies to them unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import ColumnElement

__all__ = ["ScopeLike", "covers", "scope_clause"]


class ScopeLike(Protocol):
    """What this package needs of ``bot.accounts.Scope``."""

    user_id: int | None
    role: str

    def allows(self, commune_code: str | None, hamlet: str | None = None) -> bool: ...

    def covers_province(self, province_code: str | None) -> bool: ...

    def clause(self, commune_column: Any, hamlet_column: Any | None = None) -> ColumnElement[bool]: ...


def covers(
    scope: ScopeLike,
    *,
    province_code: str | None = None,
    commune_code: str | None = None,
    hamlet: str | None = None,
) -> bool:
    """Return whether every household of a unit (a province, a commune, or a hamlet of it) is in the scope."""
    if commune_code is None:
        return scope.covers_province(province_code)
    return scope.allows(commune_code, hamlet)


def scope_clause(scope: ScopeLike, commune_col: Any, hamlet_col: Any | None = None) -> ColumnElement[bool]:
    """Return the WHERE condition restricting ``commune_col`` (and ``hamlet_col``) to the scope."""
    return scope.clause(commune_col, hamlet_col)
