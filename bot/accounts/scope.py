"""What part of the country an account may see: :class:`Scope` (docs/CONTRACTS.md §7).

Residents have no account. The rules, in one place so that every page, export and API applies the same ones:

* an **admin** sees everything;
* a **province official** (``users.province_code`` set) sees every commune of that province;
* a **commune official** sees the communes of their ``user_scopes`` rows (hamlets are ignored for officials);
* a **collaborator** sees the communes of their ``user_scopes`` rows, narrowed to the listed hamlets of a
  commune where any are listed (a row with ``hamlet`` NULL gives the whole commune).

Hamlet names are compared exactly: the store keeps the commune's own spelling (see
``bot.store.repository.record_assessment``) and the ``users assign`` command does the same, so the SQL
condition of :meth:`Scope.restrict` and the Python test of :meth:`Scope.allows` always agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, or_, true

from assessment.geo import commune_by_code, iter_communes

__all__ = ["ANONYMOUS", "Scope", "province_communes", "province_of"]

S = TypeVar("S", bound=Select[Any])

#: Role names (the values of ``bot.store.models.UserRole``), plus the scope of a visitor who is not logged in.
ROLES = ("collaborator", "official", "admin")


@lru_cache(maxsize=64)
def province_communes(province_code: str) -> frozenset[str]:
    """Return the commune codes of a province ("82" → the 102 codes of Đồng Tháp)."""
    return frozenset(c.code for c in iter_communes(province_code))


def province_of(commune_code: str | None) -> str | None:
    """Return the province code of a commune, or None for an unknown code."""
    if not commune_code:
        return None
    commune = commune_by_code(commune_code)
    return commune.province_code if commune is not None else None


@dataclasses.dataclass(frozen=True)
class Scope:
    """The communes and hamlets one account may see.

    Attributes:
        user_id: The account, or None for a visitor who is not logged in.
        role: ``"collaborator"``, ``"official"``, ``"admin"``, or ``"anonymous"``.
        province_code: Set for a province-wide official.
        communes: Commune codes of the account's ``user_scopes`` rows.
        hamlets: Per commune, the hamlets a collaborator is narrowed to (missing or empty: the whole commune).
    """

    user_id: int | None
    role: str
    province_code: str | None = None
    communes: frozenset[str] = frozenset()
    hamlets: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)

    # -- who ----------------------------------------------------------------------------------------------

    @property
    def is_admin(self) -> bool:
        """True for an admin, who sees everything."""
        return self.role == "admin"

    @property
    def is_anonymous(self) -> bool:
        """True for a visitor who is not logged in (sees nothing)."""
        return self.user_id is None or self.role not in ROLES

    def _narrowed(self, commune_code: str) -> frozenset[str]:
        """Hamlets this account is narrowed to in ``commune_code`` (empty: none, i.e. the whole commune)."""
        if self.role != "collaborator":
            return frozenset()
        return frozenset(self.hamlets.get(commune_code) or ())

    def visible_communes(self) -> frozenset[str] | None:
        """Commune codes any part of which this account sees; None means all of them (admin)."""
        if self.is_admin:
            return None
        if self.is_anonymous:
            return frozenset()
        codes = set(self.communes)
        if self.role == "official" and self.province_code:
            codes |= province_communes(self.province_code)
        return frozenset(codes)

    @property
    def home_provinces(self) -> frozenset[str] | None:
        """Provinces this account belongs to (None: all, for an admin).

        Officials may read the anonymous aggregate pages of their own province (numbers outside their scope
        suppressed), not those of other provinces.
        """
        if self.is_admin:
            return None
        provinces = {self.province_code} if self.province_code else set()
        provinces |= {p for p in (province_of(c) for c in self.communes) if p}
        return frozenset(provinces)

    # -- tests ----------------------------------------------------------------------------------------------

    def allows(self, commune_code: str | None, hamlet: str | None = None) -> bool:
        """Return whether the whole unit (a commune, or one hamlet of it) lies inside this scope.

        A collaborator narrowed to some hamlets is allowed those hamlets, not their commune as a whole; a
        household whose hamlet is unknown is then outside.
        """
        if self.is_admin:
            return True
        if self.is_anonymous or not commune_code:
            return False
        visible = self.visible_communes()
        if visible is None:
            return True
        if commune_code not in visible:
            return False
        narrowed = self._narrowed(commune_code)
        if narrowed:
            return hamlet is not None and hamlet in narrowed
        return True

    def reaches(self, commune_code: str | None) -> bool:
        """Return whether any part of the commune lies inside this scope (a collaborator's hamlet will do)."""
        if self.is_admin:
            return True
        visible = self.visible_communes()
        return bool(commune_code) and (visible is None or commune_code in visible)

    def covers_province(self, province_code: str | None) -> bool:
        """Return whether every household of the province lies inside this scope."""
        if self.is_admin:
            return True
        return (
            self.role == "official"
            and bool(self.province_code)
            and self.province_code == province_code
        )

    def in_home_province(self, province_code: str | None) -> bool:
        """Return whether the province is one this account belongs to (admins belong everywhere)."""
        homes = self.home_provinces
        return homes is None or (province_code is not None and province_code in homes)

    # -- SQL ------------------------------------------------------------------------------------------------

    def clause(self, commune_column: Any, hamlet_column: Any | None = None) -> ColumnElement[bool]:
        """Return the WHERE condition that keeps only rows inside this scope.

        Args:
            commune_column: The column holding the commune code.
            hamlet_column: The column holding the hamlet name; without it, a commune a collaborator is
                narrowed in is left out entirely (never shown too much).
        """
        visible = self.visible_communes()
        if visible is None:
            return true()
        if not visible:
            return false()
        whole: list[str] = []
        parts: list[ColumnElement[bool]] = []
        for code in sorted(visible):
            narrowed = self._narrowed(code)
            if not narrowed:
                whole.append(code)
            elif hamlet_column is not None:
                parts.append(and_(commune_column == code, hamlet_column.in_(sorted(narrowed))))
        if whole:
            parts.insert(0, commune_column.in_(whole))
        return or_(*parts) if parts else false()

    def restrict(self, stmt: S, commune_column: Any = None, hamlet_column: Any = None) -> S:
        """Add the WHERE condition of :meth:`clause` to ``stmt`` (default columns: those of ``assessments``)."""
        if commune_column is None:
            from bot.store.models import Assessment

            commune_column = Assessment.commune_code
            hamlet_column = Assessment.hamlet if hamlet_column is None else hamlet_column
        return stmt.where(self.clause(commune_column, hamlet_column))


#: The scope of a visitor who is not logged in: nothing.
ANONYMOUS = Scope(user_id=None, role="anonymous")
