"""Small shared pieces of the reports package: labels, indicators, place names, time bounds."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Final

from assessment import default_standards
from assessment.geo import commune_by_code, province_name
from bot.store.repository import VIETNAM_TZ

from .periods import Period

__all__ = [
    "NEW_STANDARD_ID",
    "REVIEW_LABELS_VI",
    "STATUSES",
    "STATUS_LABELS_VI",
    "commune_names",
    "indicators",
    "utc_bounds",
]

#: The household statuses of the legal core, in the order reports show them.
STATUSES: Final = ("poor", "near_poor", "average_living", "not_poor")
STATUS_LABELS_VI: Final = {
    "poor": "Hộ nghèo",
    "near_poor": "Hộ cận nghèo",
    "average_living": "Hộ có mức sống trung bình",
    "not_poor": "Không thuộc diện nghèo, cận nghèo",
    "": "Chưa xác định",
}
REVIEW_LABELS_VI: Final = {
    "queued": "Chờ rà soát",
    "recognised_poor": "Công nhận hộ nghèo",
    "recognised_near_poor": "Công nhận hộ cận nghèo",
    "not_recognised": "Không công nhận",
}
#: Standard of the 2027–2030 period (Decree 351/2025/NĐ-CP): reports show every household under it too.
NEW_STANDARD_ID: Final = "decree351_2027"


@lru_cache(maxsize=1)
def indicators() -> tuple[tuple[str, str], ...]:
    """Return ``(id, Vietnamese name)`` of every indicator of every standard, first appearance first.

    The 2022 and 2027 standards share eleven indicators and differ in one each (information devices, household
    waste), so exports carry the union and leave a cell empty where the row's standard has no such indicator.
    """
    seen: dict[str, str] = {}
    for standard in default_standards():
        for indicator in standard.indicators:
            seen.setdefault(indicator.id, indicator.name_vi)
    return tuple(seen.items())


@lru_cache(maxsize=8)
def standard_indicator_ids(standard_id: str) -> frozenset[str]:
    """Return the indicator ids of one standard (empty for an unknown id)."""
    for standard in default_standards():
        if standard.id == standard_id:
            return frozenset(i.id for i in standard.indicators)
    return frozenset()


@lru_cache(maxsize=8192)
def commune_names(code: str) -> tuple[str, str, str]:
    """Return ``(province code, province name, commune name)`` for a commune code ("" when unknown)."""
    commune = commune_by_code(code) if code else None
    if commune is None:
        return "", "", ""
    return commune.province_code, commune.province_name, commune.name


@lru_cache(maxsize=128)
def province_label(code: str) -> str:
    """Return the province's name, or "" when the code is unknown."""
    return (province_name(code) or "") if code else ""


def utc_bounds(period: Period) -> tuple[dt.datetime, dt.datetime]:
    """Return the aware UTC instants ``[start, end)`` of a period of Vietnam calendar days."""
    start = dt.datetime.combine(period.start, dt.time.min, VIETNAM_TZ)
    end = dt.datetime.combine(period.end + dt.timedelta(days=1), dt.time.min, VIETNAM_TZ)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)
