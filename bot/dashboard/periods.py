"""The periods a dashboard page can show, in whole months (what the monthly aggregates count).

The seed plan (section VI, "Chế độ báo cáo") asks communes for a 6-month report before 10 June and an annual
report before 10 November. The dashboard offers those two periods with the same month ranges as the exports
(``bot.reports.periods``): the 6-month report of year Y counts December Y-1 to May Y, the annual report
November Y-1 to October Y. Besides them: the last 12 months (the default) and everything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Final

__all__ = ["DEFAULT_PERIOD", "Period", "choices", "parse_period"]

DEFAULT_PERIOD: Final = "12m"

_KEY = re.compile(r"^(h1|annual)-(\d{4})$")


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    """Whole months from ``first`` to ``last`` (first days, inclusive); None means open-ended."""

    key: str
    label: str
    first: dt.date | None
    last: dt.date | None

    def months(self, data_first: dt.date | None = None, data_last: dt.date | None = None) -> list[dt.date]:
        """The months of the period, bounded by the data's first and last month when it is open-ended."""
        first = self.first or data_first
        last = self.last or data_last
        if first is None or last is None or first > last:
            return []
        out: list[dt.date] = []
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            out.append(dt.date(year, month, 1))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out


def _shift(month: dt.date, delta: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + delta
    return dt.date(index // 12, index % 12 + 1, 1)


def parse_period(key: str | None, today: dt.date) -> Period:
    """Return the period named ``key`` (``12m``, ``all``, ``h1-2026``, ``annual-2026``); unknown → last 12 months."""
    this_month = today.replace(day=1)
    key = (key or DEFAULT_PERIOD).strip()
    if key == "all":
        return Period("all", "Toàn bộ thời gian", None, None)
    match = _KEY.match(key)
    if match is not None and 2000 <= int(match.group(2)) <= 2100:
        year = int(match.group(2))
        if match.group(1) == "h1":
            first, last = dt.date(year - 1, 12, 1), dt.date(year, 5, 1)
            return Period(key, f"Báo cáo 6 tháng năm {year} (12/{year - 1} – 5/{year})", first, last)
        first, last = dt.date(year - 1, 11, 1), dt.date(year, 10, 1)
        return Period(key, f"Báo cáo năm {year} (11/{year - 1} – 10/{year})", first, last)
    first = _shift(this_month, -11)
    return Period(DEFAULT_PERIOD, f"12 tháng gần nhất ({first:%m/%Y} – {this_month:%m/%Y})", first, this_month)


def choices(today: dt.date) -> list[Period]:
    """The periods offered in the period picker: last 12 months, this and last year's reports, everything."""
    # From November on, the report being collected is next year's (its months start in November).
    year = today.year + (1 if today.month >= 11 else 0)
    keys = [DEFAULT_PERIOD, f"annual-{year}", f"h1-{year}", f"annual-{year - 1}", f"h1-{year - 1}"]
    keys.append("all")
    seen: list[Period] = []
    for key in keys:
        period = parse_period(key, today)
        if period.key not in {p.key for p in seen}:
            seen.append(period)
    return seen
