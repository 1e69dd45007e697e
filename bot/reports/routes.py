"""Routes of the reports area: exports (CSV, XLSX) and the 6-month / annual report tables.

| route | roles | what |
|---|---|---|
| ``GET /reports/`` | official, admin, collaborator | forms for the exports and reports |
| ``GET /reports/households.csv|.xlsx`` | official, admin | shared assessments in scope (audited) |
| ``GET /reports/aggregates.csv|.xlsx`` | official, admin, collaborator | counts anywhere, small cells hidden out of scope |
| ``GET /reports/regime`` | official, admin | 6-month / annual report table (HTML) |
| ``GET /reports/regime.xlsx`` | official, admin | the same as XLSX |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Final

from flask import Blueprint, Response, abort, current_app, render_template, request, send_file

from bot.store.db import get_session, get_store
from bot.store.repository import VIETNAM_TZ

from .access import audit, current_scope, require_roles
from .exports import (
    AGGREGATE_LEVELS,
    AggregateFilters,
    HouseholdFilters,
    aggregate_columns,
    aggregate_rows,
    csv_chunks,
    household_columns,
    household_rows,
    write_xlsx,
    xlsx_tempfile,
)
from .periods import DEFAULT_REPORT_PERIODS, Period, PeriodError, parse_period, reporting_period
from .regime import build_report, column_groups, hamlet_label, report_sheet_rows

__all__ = ["bp"]

bp = Blueprint("reports", __name__, url_prefix="/reports")

XLSX_MIMETYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OFFICIALS: Final = ("official", "admin")
EVERYONE: Final = ("collaborator", "official", "admin")
SUPPRESSION_NOTE: Final = (
    "Ô dưới 5 của đơn vị ngoài phạm vi quản lý của người xuất được ghi \"<5\" "
    "(và thêm một ô nhỏ nhất khi cần, để tổng không làm lộ ô bị ẩn)."
)


def _today() -> dt.date:
    return dt.datetime.now(VIETNAM_TZ).date()


def _period() -> Period:
    try:
        return parse_period(request.args, today=_today(), config=current_app.config.get("REPORT_PERIODS"))
    except PeriodError as exc:
        abort(Response(exc.message_vi, status=400, mimetype="text/plain"))


def _code(name: str) -> str | None:
    value = (request.args.get(name) or "").strip()
    if value and (not value.isdigit() or len(value) > 5):
        abort(Response(f"Mã không hợp lệ: {name}", status=400, mimetype="text/plain"))
    return value or None


def _no_store(response: Response) -> Response:
    # Household rows are personal data: no shared cache, no browser cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _attachment(body: Any, filename: str, mimetype: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return _no_store(response)


def _send_xlsx(spool: Any, filename: str) -> Response:
    """Send a finished workbook; the temporary file is closed (and removed) when the response is."""
    response = send_file(spool, mimetype=XLSX_MIMETYPE, as_attachment=True, download_name=filename)
    response.call_on_close(spool.close)
    return _no_store(response)


def _stream_rows(producer: Any, scope: Any, filters: Any, columns: Any) -> Iterator[str]:
    """Stream CSV from a connection of its own, opened when the download starts (after the view returned)."""
    engine = get_store().engine

    def generate() -> Iterator[str]:
        # DEFERRED: a long download must not hold SQLite's write lock.
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
            yield from csv_chunks(columns, producer(connection, scope, filters))

    return generate()


@bp.get("/")
@require_roles(*EVERYONE)
def index() -> str:
    """Forms for every export and report."""
    scope = current_scope()
    today = _today()
    return render_template(
        "reports/index.html",
        scope=scope,
        today=today,
        years=list(range(today.year + 1, 2021, -1)),
        levels=AGGREGATE_LEVELS,
        periods=DEFAULT_REPORT_PERIODS,
        officials=str(scope.role) in OFFICIALS,
    )


@bp.get("/households.<fmt>")
@require_roles(*OFFICIALS)
def households(fmt: str) -> Response:
    """Shared assessments of the viewer's scope, one row per household (every download is audited)."""
    if fmt not in ("csv", "xlsx"):
        abort(404)
    scope = current_scope()
    period = _period()
    commune = _code("commune")
    if commune and not scope.reaches(commune):
        abort(403)
    filters = HouseholdFilters(period=period, commune_code=commune)
    audit(
        "export_households",
        "assessment",
        None,
        format=fmt,
        period=period.key,
        start=period.start.isoformat(),
        end=period.end.isoformat(),
        commune=commune,
    )
    get_session().commit()  # the audit row stands even if the download is interrupted
    columns = household_columns()
    name = f"ho-gia-dinh_{period.key}{'_' + commune if commune else ''}"
    if fmt == "csv":
        return _attachment(_stream_rows(household_rows, scope, filters, columns), f"{name}.csv", "text/csv")
    engine = get_store().engine

    def build(sink: Any) -> None:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
            write_xlsx(
                sink,
                [("Hộ gia đình", columns, household_rows(connection, scope, filters))],
                notes=[f"Kỳ: {period.label_vi}", "Chỉ gồm các kết quả người dân đồng ý chia sẻ với UBND xã/phường."],
            )

    return _send_xlsx(xlsx_tempfile(build), f"{name}.xlsx")


@bp.get("/aggregates.<fmt>")
@require_roles(*EVERYONE)
def aggregates(fmt: str) -> Response:
    """Anonymous counts for any area, small cells hidden outside the viewer's own scope."""
    if fmt not in ("csv", "xlsx"):
        abort(404)
    scope = current_scope()
    period = _period()
    level = request.args.get("level") or "commune"
    if level not in AGGREGATE_LEVELS:
        abort(Response("Cấp tổng hợp không hợp lệ (province, commune hoặc hamlet).", status=400, mimetype="text/plain"))
    filters = AggregateFilters(
        period=period,
        level=level,
        province_code=_code("province"),
        commune_code=_code("commune"),
        by_month=request.args.get("by_month") in ("1", "true", "on"),
    )
    columns = aggregate_columns(level, filters.by_month)
    covered = period.widened()
    name = f"tong-hop_{level}_{covered.key}"
    if fmt == "csv":
        return _attachment(_stream_rows(aggregate_rows, scope, filters, columns), f"{name}.csv", "text/csv")
    engine = get_store().engine

    def build(sink: Any) -> None:
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
            write_xlsx(
                sink,
                [("Tổng hợp", columns, aggregate_rows(connection, scope, filters))],
                notes=[f"Số liệu theo tháng: {covered.label_vi}", SUPPRESSION_NOTE],
            )

    return _send_xlsx(xlsx_tempfile(build), f"{name}.xlsx")


def _regime_period() -> Period:
    kind = request.args.get("kind") or "h1"
    try:
        year = int(request.args.get("year") or _today().year)
        return reporting_period(kind, year, current_app.config.get("REPORT_PERIODS"))
    except (ValueError, PeriodError) as exc:
        message = exc.message_vi if isinstance(exc, PeriodError) else "Năm báo cáo không hợp lệ."
        abort(Response(message, status=400, mimetype="text/plain"))


def _regime_report() -> tuple[Any, Any, str | None, bool]:
    """The report the request asks for, in the viewer's scope: (report, period, commune, by hamlet)."""
    scope = current_scope()
    period = _regime_period()
    commune = _code("commune")
    if commune and not scope.reaches(commune):
        abort(403)
    by_hamlet = request.args.get("by_hamlet") in ("1", "true", "on")
    with get_store().engine.connect().execution_options(sqlite_begin="DEFERRED") as connection:
        report = build_report(connection, scope, period, commune_code=commune)
    return report, period, commune, by_hamlet


@bp.get("/regime")
@require_roles(*OFFICIALS)
def regime() -> str:
    """The 6-month or annual report table for the viewer's communes."""
    report, period, commune, by_hamlet = _regime_report()
    return render_template(
        "reports/regime.html",
        report=report,
        by_hamlet=by_hamlet,
        groups=column_groups(report.columns),
        hamlet_label=hamlet_label,
        kind=request.args.get("kind") or "h1",
        year=period.end.year,
        commune=commune or "",
    )


@bp.get("/regime.xlsx")
@require_roles(*OFFICIALS)
def regime_xlsx() -> Response:
    """The report table as an XLSX workbook."""
    report, period, commune, by_hamlet = _regime_report()
    headings, rows = report_sheet_rows(report, by_hamlet=by_hamlet)

    def build(sink: Any) -> None:
        write_xlsx(
            sink,
            [("Báo cáo", headings, rows)],
            notes=[
                period.label_vi,
                "Nguồn: số liệu tổng hợp ẩn danh của Tự rà soát; kết quả chỉ là ước tính, không thay thế rà soát.",
                "Lượt tự đánh giá: một hộ làm nhiều lần được đếm nhiều lần.",
            ],
        )

    return _send_xlsx(xlsx_tempfile(build), f"bao-cao_{period.key}.xlsx")
