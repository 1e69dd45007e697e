"""Commune-level administrative geography after the July 2025 reorganisation.

Vietnam has had two levels of local government since 1/7/2025: province →
commune (xã / phường / đặc khu). The data come from the ``vietnam-provinces``
package (2025.10.1: 34 provinces, 3,321 communes, codes of the National
Statistics Office). This module is pure: it imports nothing from the web stack.

The area type used by the poverty standard follows the division type: a
*phường* is urban; a *xã* or *đặc khu* is rural (see the reference, section
6.3, for the open question about units whose type changed in 2025).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["Commune", "commune_by_code", "iter_communes", "iter_provinces", "province_name"]

DivisionType = Literal["xã", "phường", "đặc khu"]
Area = Literal["rural", "urban"]

_AREA_BY_TYPE: dict[str, Area] = {"xã": "rural", "đặc khu": "rural", "phường": "urban"}
_PREFIXES = ("Đặc khu ", "Phường ", "Xã ")


@dataclass(frozen=True, slots=True)
class Commune:
    """One commune-level unit (xã, phường or đặc khu) and its province.

    ``code`` is the 5-digit statistics code ("29971"); ``province_code`` the
    2-digit province code ("82", "01").
    """

    code: str
    name: str
    division_type: DivisionType
    province_code: str
    province_name: str
    area: Area

    @property
    def short_name(self) -> str:
        """The name without its division prefix ("Thường Phước")."""
        for prefix in _PREFIXES:
            if self.name.startswith(prefix):
                return self.name[len(prefix):]
        return self.name


# Built on first use: importing the package data costs ~0.1 s, which web
# workers that never look up a commune should not pay.
_BY_CODE: dict[int, Commune] | None = None
_PROVINCES: dict[int, str] | None = None


def _index() -> dict[int, Commune]:
    """Return the code → Commune map, building it once."""
    global _BY_CODE, _PROVINCES
    if _BY_CODE is None:
        from vietnam_provinces import Province, Ward

        provinces = {int(p.code): p.name for p in Province.iter_all()}
        by_code: dict[int, Commune] = {}
        for ward in Ward.iter_all():
            code = int(ward.code)
            province_code = int(ward.province_code)
            division_type = ward.division_type.value
            by_code[code] = Commune(
                code=f"{code:05d}",
                name=ward.name,
                division_type=division_type,  # type: ignore[arg-type]
                province_code=f"{province_code:02d}",
                province_name=provinces[province_code],
                area=_AREA_BY_TYPE[division_type],
            )
        _PROVINCES = provinces
        _BY_CODE = by_code
    return _BY_CODE


def _to_int(code: str | int) -> int | None:
    """Return ``code`` as an int, or None if it is not a non-negative integer code."""
    if isinstance(code, bool):  # bool is an int subclass; True is not code 1
        return None
    if isinstance(code, int):
        return code if code >= 0 else None
    if isinstance(code, str):
        code = code.strip()
        if code.isascii() and code.isdigit():
            return int(code)
    return None


def commune_by_code(code: str | int) -> Commune | None:
    """Return the commune with this statistics code, or None if there is none.

    Accepts ``"29971"``, ``29971``, ``" 29971 "`` and zero-padded codes such as
    ``"00004"``.
    """
    number = _to_int(code)
    if number is None:
        return None
    return _index().get(number)


def iter_communes(province_code: str | int | None = None) -> Iterator[Commune]:
    """Iterate over all communes, or those of one province ("82", 82, "01")."""
    communes = _index().values()
    if province_code is None:
        return iter(communes)
    number = _to_int(province_code)
    if number is None:
        return iter(())
    wanted = f"{number:02d}"
    return (c for c in communes if c.province_code == wanted)


def iter_provinces() -> Iterator[tuple[str, str]]:
    """Iterate over ``(province_code, province_name)`` pairs, e.g. ``("82", "Đồng Tháp")``."""
    _index()
    assert _PROVINCES is not None
    return ((f"{code:02d}", name) for code, name in _PROVINCES.items())


def province_name(province_code: str | int) -> str | None:
    """Return the name of the province with this code, or None."""
    number = _to_int(province_code)
    if number is None:
        return None
    _index()
    assert _PROVINCES is not None
    return _PROVINCES.get(number)
