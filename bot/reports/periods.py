"""Reporting periods of the poverty-reduction reporting regime, and date filters for exports.

The seed plan (Kế hoạch thực hiện Chương trình MTQG giảm nghèo bền vững, section VI "Chế độ báo cáo") asks
communes for a **6-month report sent before 10 June** and an **annual report sent before 10 November**. It
gives no cut-off dates, and a report due on 10 June cannot cover a half-year ending 30 June. We therefore use
whole calendar months that end with the last full month before the due date:

* 6-month report of year Y ("báo cáo 6 tháng"): 1 December Y-1 → 31 May Y (6 months, 10 days to compile);
* annual report of year Y ("báo cáo năm"): 1 November Y-1 → 31 October Y (12 months).

Consecutive annual periods tile the calendar without gap or overlap (November and December, the busiest
months of the periodic review, fall in the next year's report rather than in none), and the periods start in
the previous year as the general reporting regime of state agencies (Nghị định 09/2019/NĐ-CP, Điều 12; not checked against the gazette here) does;
that decree's own cut-off days (the 14th of June and of December) fall after this plan's due dates, so they
are not used. Whole months also match the monthly aggregate tables exactly, so a report never needs the
household rows that erasure removes. A deployment whose province sets other dates changes ``REPORT_PERIODS``
(last month and length of each kind) in the configuration; no code changes.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_REPORT_PERIODS",
    "Period",
    "PeriodError",
    "month_starts",
    "parse_period",
    "reporting_period",
]

#: kind -> (last month of the period, length in months, due day "DD/MM", Vietnamese name).
DEFAULT_REPORT_PERIODS: Final[dict[str, dict[str, Any]]] = {
    "h1": {"last_month": 5, "months": 6, "due": "10/6", "name_vi": "Báo cáo 6 tháng"},
    "annual": {"last_month": 10, "months": 12, "due": "10/11", "name_vi": "Báo cáo năm"},
}

_PERIOD_KEY = re.compile(r"^(h1|annual)-(\d{4})$")


class PeriodError(ValueError):
    """A period or date filter that cannot be used; ``message_vi`` is shown to the user."""

    def __init__(self, field: str, message_vi: str) -> None:
        super().__init__(f"{field}: {message_vi}")
        self.field = field
        self.message_vi = message_vi


@dataclass(frozen=True, slots=True)
class Period:
    """An inclusive range of days, with a label for headings and file names."""

    start: dt.date
    end: dt.date
    label_vi: str
    key: str

    @property
    def whole_months(self) -> bool:
        """True when the range starts on a 1st and ends on a month's last day (aggregates answer it exactly)."""
        last = calendar.monthrange(self.end.year, self.end.month)[1]
        return self.start.day == 1 and self.end.day == last

    def widened(self) -> Period:
        """Return the smallest whole-month period containing this one (what the monthly tables can count)."""
        end = self.end.replace(day=calendar.monthrange(self.end.year, self.end.month)[1])
        start = self.start.replace(day=1)
        if start == self.start and end == self.end:
            return self
        label = f"{start:%d/%m/%Y} – {end:%d/%m/%Y}"
        return Period(start, end, label, f"{start:%Y%m%d}-{end:%Y%m%d}")

    def contains(self, day: dt.date) -> bool:
        """Return whether ``day`` falls in the period."""
        return self.start <= day <= self.end


def _shift_month(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def reporting_period(kind: str, year: int, config: Mapping[str, Any] | None = None) -> Period:
    """Return the period covered by the ``kind`` report ("h1" or "annual") of ``year``.

    Args:
        kind: ``"h1"`` (6-month report) or ``"annual"``.
        year: The year the report is sent in.
        config: ``REPORT_PERIODS`` override (same shape as :data:`DEFAULT_REPORT_PERIODS`).

    Raises:
        PeriodError: For an unknown kind or a year outside 2000–2100.
    """
    table = dict(DEFAULT_REPORT_PERIODS)
    if config:
        table.update(config)
    spec = table.get(kind)
    if spec is None:
        raise PeriodError("period", "Kỳ báo cáo không hợp lệ (h1 hoặc annual).")
    if not 2000 <= year <= 2100:
        raise PeriodError("year", "Năm báo cáo không hợp lệ.")
    last_month = int(spec["last_month"])
    months = int(spec["months"])
    end = dt.date(year, last_month, calendar.monthrange(year, last_month)[1])
    start_year, start_month = _shift_month(year, last_month, -(months - 1))
    start = dt.date(start_year, start_month, 1)
    label = f"{spec['name_vi']} năm {year} (số liệu {start:%d/%m/%Y} – {end:%d/%m/%Y}, gửi trước {spec['due']})"
    return Period(start, end, label, f"{kind}-{year}")


def _date(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise PeriodError(field, "Ngày không hợp lệ (dạng YYYY-MM-DD).") from None


def parse_period(
    args: Mapping[str, Any],
    *,
    today: dt.date,
    config: Mapping[str, Any] | None = None,
) -> Period:
    """Read the period of an export from request arguments.

    ``period=h1-2026`` / ``period=annual-2026`` names a reporting period; otherwise ``from`` and ``to``
    (ISO dates, both optional) give a range, open ends meaning "since 2022" and "today".

    Raises:
        PeriodError: On a malformed key or date, or ``from`` after ``to``.
    """
    key = (args.get("period") or "").strip()
    if key:
        match = _PERIOD_KEY.match(key)
        if match is None:
            raise PeriodError("period", "Kỳ báo cáo không hợp lệ (ví dụ: h1-2026 hoặc annual-2026).")
        return reporting_period(match.group(1), int(match.group(2)), config)
    raw_from = (args.get("from") or "").strip()
    raw_to = (args.get("to") or "").strip()
    start = _date(raw_from, "from") if raw_from else dt.date(2022, 1, 1)
    end = _date(raw_to, "to") if raw_to else today
    if start > end:
        raise PeriodError("from", "Ngày bắt đầu phải trước ngày kết thúc.")
    return Period(start, end, f"{start:%d/%m/%Y} – {end:%d/%m/%Y}", f"{start:%Y%m%d}-{end:%Y%m%d}")


def month_starts(period: Period) -> tuple[dt.date, dt.date]:
    """Return the first and last month (as first days) that a whole-month period covers."""
    wide = period.widened()
    return wide.start, wide.end.replace(day=1)
