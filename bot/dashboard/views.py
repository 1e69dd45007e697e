"""The officials' dashboard: province → commune → hamlet, household lists, review hand-off, Mẫu số 01.

Who sees what (the rules are :class:`bot.accounts.Scope`'s; every view checks them):

==========================  ============================  =====================================================
page                        roles                         scope
==========================  ============================  =====================================================
index                       all                           redirects to the account's own area
province, commune           official, admin               own province; cells < 5 hidden outside own scope
hamlet                      official, admin, collaborator officials: own province (suppressed outside scope);
                                                          collaborators: their own hamlets only
near-line list              official, admin, collaborator commune must be (partly) in scope; rows restricted
review queue, official list official, admin (+ upload:    commune in scope
                            official)
household, Mẫu số 01        official, admin, collaborator household in scope and shared, else 404
record review outcome       official                      household in scope, else 404
web form (new household)    official, admin, collaborator commune in scope (collaborators: their own hamlets);
                                                          see :mod:`bot.dashboard.web_form`
==========================  ============================  =====================================================

Unknown provinces, communes and hamlets are 404. Every household-level page writes an audit row.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Final

from flask import (
    Response,
    abort,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session

from assessment.geo import Commune, commune_by_code, iter_communes, province_name
from bot.accounts.scope import Scope
from bot.accounts.security import (
    audit,
    current_account,
    current_scope,
    read_session,
    require_roles,
)
from bot.dashboard import bp, charts, handoff, queries
from bot.dashboard.official_list import compare, parse_csv
from bot.dashboard.periods import Period, choices, parse_period
from bot.dashboard.queries import STATUS_ORDER, Counts, Where
from bot.dashboard.suppression import Cell, cell, rate_cell
from bot.store.db import get_session, run_in_transaction
from bot.store.models import (
    AggregateCommuneMonthly,
    AggregateMonthly,
    Answer,
    Assessment,
    Hamlet,
    OfficialListEntry,
    Review,
    User,
    utcnow,
)
from bot.store.repository import VIETNAM_TZ

STATUS_VI: Final = {
    "poor": "Hộ nghèo",
    "near_poor": "Hộ cận nghèo",
    "average_living": "Hộ có mức sống trung bình",
    "not_poor": "Không thuộc diện nghèo, cận nghèo",
    "": "Không rõ",
    "unknown": "Không rõ",
}
STATUS_SHORT: Final = {"poor": "Nghèo", "near_poor": "Cận nghèo", "average_living": "Mức sống TB",
                       "not_poor": "Không nghèo", "": "Không rõ"}
CHANNEL_VI: Final = {
    "zalo_oa": "Zalo OA",
    "zalo_bot": "Zalo (bot)",
    "web": "Trang web",
    "api": "API",
    "console": "Dòng lệnh",
    "telegram": "Telegram",
    "messenger": "Messenger",
    "import": "Nhập từ tệp",
    "": "Không rõ",
}
PROVENANCE_VI: Final = {
    "self": "Người dân tự làm",
    "collaborator": "Cộng tác viên hỗ trợ",
    "imported": "Nhập từ hệ thống khác",
    "": "Không rõ",
}
REVIEW_VI: Final = {
    "queued": "Chờ rà soát",
    "recognised_poor": "Đã công nhận hộ nghèo",
    "recognised_near_poor": "Đã công nhận hộ cận nghèo",
    "not_recognised": "Không thuộc diện",
}
INDICATOR_SHORT: Final = {
    "employment": "Việc làm",
    "dependants": "Phụ thuộc",
    "nutrition": "Dinh dưỡng",
    "health_insurance": "BHYT",
    "adult_education": "Học vấn người lớn",
    "child_schooling": "Trẻ đi học",
    "housing_quality": "Chất lượng nhà",
    "housing_area": "Diện tích nhà",
    "water": "Nước sạch",
    "sanitation": "Nhà tiêu",
    "telecom": "Viễn thông",
    "information_devices": "Thiết bị thông tin",
    "waste": "Rác thải",
}
#: Heat-map colour buckets (CSS classes h0..h6) by deprivation rate.
HEAT_STEPS: Final = (0.02, 0.05, 0.10, 0.15, 0.25, 0.40)

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@bp.after_request
def _headers(response: Response) -> Response:
    # Household data: never cached; everything from this origin (inline SVG needs no exception).
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


# -- helpers ----------------------------------------------------------------------------------------------------


def _today() -> dt.date:
    return utcnow().astimezone(VIETNAM_TZ).date()


def _period() -> Period:
    return parse_period(request.args.get("period"), _today())


def _commune_or_404(code: str) -> Commune:
    commune = commune_by_code(code) if code.isdigit() else None
    if commune is None:
        abort(404)
    return commune


def _aggregate_access(scope: Scope, province_code: str) -> None:
    """Officials read the anonymous pages of their own province only."""
    if not scope.in_home_province(province_code):
        abort(403)


def _vnd(value: int | None) -> str:
    return "—" if value is None else f"{value:,}".replace(",", ".") + " đ"


def _heat(rate: Any) -> str:
    if rate.suppressed or rate.value is None:
        return "hx"
    return f"h{sum(rate.value >= step for step in HEAT_STEPS)}"


def _render(template: str, **context: Any) -> str:
    me = current_account()
    return render_template(
        template,
        me=me,
        STATUS_VI=STATUS_VI,
        STATUS_SHORT=STATUS_SHORT,
        CHANNEL_VI=CHANNEL_VI,
        PROVENANCE_VI=PROVENANCE_VI,
        REVIEW_VI=REVIEW_VI,
        INDICATOR_SHORT=INDICATOR_SHORT,
        vnd=_vnd,
        vn_time=lambda t: t.astimezone(VIETNAM_TZ).strftime("%d/%m/%Y %H:%M") if t else "—",
        **context,
    )


def _overview(session: Session, where: Where, unit: str | None, inside_total: bool) -> dict[str, Any]:
    """Counts, charts and tables shared by the province, commune and hamlet pages."""
    total, units = queries.status_by_unit(session, where, unit)
    queries.deprivations_by_unit(session, where, unit, total, units)
    months = queries.trend(session, where)
    channels, provenances = queries.mix(session, where)

    def c(n: int) -> Cell:
        return cell(n, inside_total)

    extra = sorted(s for s in total.status if s not in STATUS_ORDER and total.status[s])
    status_keys = [*STATUS_ORDER, *extra]
    next_keys = [s for s in status_keys if s in total.next_status] + (["" ] if total.next_status.get("") else [])

    month_list = where.period.months(min(months) if months else None, max(months) if months else None)
    columns = []
    for month in month_list:
        counts = months.get(month, Counter())
        columns.append((f"{month:%m/%y}", {s: c(n) for s, n in counts.items()}, c(sum(counts.values()))))

    main_standard = total.standards.most_common(1)[0][0] if total.standards else None
    next_standard = None
    if total.next_status and any(k for k in total.next_status if k):
        next_standard = "Chuẩn nghèo đa chiều giai đoạn 2027–2030"
    indicators = queries.indicator_names(main_standard) if main_standard else ()
    overall_deprivation = [
        (name, rate_cell(total.deprived[(main_standard, ind)], total.standards[main_standard], inside_total))
        for ind, name in indicators
    ] if main_standard else []

    return {
        "total": total,
        "units": units,
        "total_cell": c(total.total),
        "status_cells": [(s, c(total.status.get(s, 0))) for s in status_keys],
        "next_cells": [(s, c(total.next_status.get(s, 0))) for s in next_keys],
        "under_line_rate": rate_cell(total.under_line, total.total, inside_total),
        "next_under_line_rate": rate_cell(total.next_under_line, total.total, inside_total),
        "status_chart": charts.status_split(
            "Kết quả ước tính theo chuẩn",
            [
                ("Chuẩn hiện hành", {s: c(total.status.get(s, 0)) for s in status_keys}),
                *([("Chuẩn 2027–2030", {s: c(total.next_status.get(s, 0)) for s in status_keys})]
                  if next_standard else []),
            ],
            status_keys,
            STATUS_SHORT,
        ),
        "trend_chart": charts.stacked_columns(
            "Số lượt tự đánh giá theo tháng", columns, status_keys, STATUS_SHORT
        ) if columns else None,
        "trend_rows": columns,
        "channel_chart": charts.hbars(
            "Kênh sử dụng",
            [(CHANNEL_VI.get(k, k), c(n)) for k, n in channels.most_common()],
        ),
        "channel_rows": [(CHANNEL_VI.get(k, k), c(n)) for k, n in channels.most_common()],
        "provenance_chart": charts.hbars(
            "Ai cung cấp thông tin",
            [(PROVENANCE_VI.get(k, k), c(n)) for k, n in provenances.most_common()],
            colour="#5a4fa3",
        ),
        "provenance_rows": [(PROVENANCE_VI.get(k, k), c(n)) for k, n in provenances.most_common()],
        "main_standard": main_standard,
        "main_standard_name": queries.standard_names().get(main_standard or "", main_standard),
        "next_standard": next_standard,
        "indicators": indicators,
        "deprivation_chart": charts.hbars(
            "Tỷ lệ hộ thiếu hụt theo chỉ số",
            [(name, Cell(round(r.value * 100)) if r.value is not None and not r.suppressed else Cell(None, True))
             for name, r in overall_deprivation],
            colour="#8a3b12",
        ) if overall_deprivation else None,
        "deprivation_rows": overall_deprivation,
        "period": where.period,
        "periods": choices(_today()),
    }


def _unit_rows(units: dict[str, Counts], names: list[tuple[str, str]], main_standard: str | None,
               indicators: Any, inside: Any, link: Any) -> list[dict[str, Any]]:
    """Table and heat-map rows for the sub-units (communes of a province, hamlets of a commune)."""
    rows = []
    for key, label in names:
        counts = units.get(key, Counts())
        ok = inside(key)
        heat = []
        for ind, _name in indicators:
            standard = main_standard or ""
            rate = rate_cell(counts.deprived.get((standard, ind), 0), counts.standards.get(standard, 0), ok)
            heat.append((rate, _heat(rate)))
        rows.append(
            {
                "key": key,
                "label": label,
                "href": link(key),
                "inside": ok,
                "total": cell(counts.total, ok),
                "poor": cell(counts.status.get("poor", 0), ok),
                "near_poor": cell(counts.status.get("near_poor", 0), ok),
                "under_rate": rate_cell(counts.under_line, counts.total, ok),
                "next_under": cell(counts.next_under_line, ok),
                "next_under_rate": rate_cell(counts.next_under_line, counts.total, ok),
                "heat": heat,
                "has_data": counts.total > 0,
            }
        )
    return rows


# -- pages ------------------------------------------------------------------------------------------------------


@bp.get("/")
@require_roles("collaborator", "official", "admin")
def index() -> Any:
    """Send each account to its own area; admins choose a province."""
    me = current_account()
    assert me is not None
    scope = me.scope
    if me.role == "collaborator":
        return redirect(url_for("accounts.account"))
    if me.role == "official":
        if scope.province_code:
            return redirect(url_for("dashboard.province", province_code=scope.province_code))
        if scope.communes:
            return redirect(url_for("dashboard.commune", commune_code=min(scope.communes)))
        return Response(_render("dashboard/empty.html"), 200)
    session = read_session()
    counts: dict[str, int] = {
        code: int(total or 0)
        for code, total in session.execute(
            # The commune-level rollup: its indexes start with the province, so this reads no table rows.
            select(AggregateCommuneMonthly.province_code, func.sum(AggregateCommuneMonthly.count)).group_by(
                AggregateCommuneMonthly.province_code
            )
        )
    }
    provinces = sorted(
        ((code, province_name(code) or code, int(counts.get(code) or 0)) for code in counts if code),
        key=lambda p: (-p[2], p[1]),
    )
    return _render("dashboard/index.html", provinces=provinces)


@bp.get("/p/<province_code>")
@require_roles("official", "admin")
def province(province_code: str) -> Any:
    """A province: its communes side by side, with the heat map of deprivations."""
    name = province_name(province_code) if province_code.isdigit() else None
    if name is None:
        abort(404)
    scope = current_scope()
    _aggregate_access(scope, province_code)
    session = read_session()
    period = _period()
    inside_total = scope.covers_province(province_code)
    data = _overview(session, Where(period, province_code=province_code), "commune_code", inside_total)
    communes = sorted(iter_communes(province_code), key=lambda c: c.name)
    rows = _unit_rows(
        data["units"],
        [(c.code, c.name) for c in communes],
        data["main_standard"],
        data["indicators"],
        lambda code: scope.allows(code),
        lambda code: url_for("dashboard.commune", commune_code=code, period=period.key),
    )
    return _render(
        "dashboard/area.html",
        level="province",
        title=f"Tỉnh {name}" if not name.startswith(("Tỉnh", "Thành phố")) else name,
        crumbs=[],
        unit_label="Xã, phường",
        rows=rows,
        inside_total=inside_total,
        in_scope_lists=False,
        **data,
    )


def _hamlet_names(session: Session, commune_code: str) -> list[str]:
    """The commune's hamlets: its own list plus any name seen in the counts (in alphabetical order)."""
    names = set(session.execute(select(Hamlet.name).where(Hamlet.commune_code == commune_code)).scalars())
    names |= set(
        session.execute(
            select(AggregateMonthly.hamlet).where(AggregateMonthly.commune_code == commune_code).distinct()
        ).scalars()
    )
    return sorted(names - {""}, key=lambda n: (len(n), n))


@bp.get("/c/<commune_code>")
@require_roles("official", "admin")
def commune(commune_code: str) -> Any:
    """A commune: its hamlets side by side; inside the viewer's scope, the households to visit and review."""
    unit = _commune_or_404(commune_code)
    scope = current_scope()
    _aggregate_access(scope, unit.province_code)
    session = read_session()
    period = _period()
    inside = scope.allows(unit.code)
    data = _overview(session, Where(period, commune_code=unit.code), "hamlet", inside)
    hamlets = _hamlet_names(session, unit.code)
    if data["units"].get(""):
        hamlets.append("")
    rows = _unit_rows(
        data["units"],
        [(h, h or "Chưa rõ ấp") for h in hamlets],
        data["main_standard"],
        data["indicators"],
        lambda _h: inside,
        lambda h: url_for("dashboard.hamlet", commune_code=unit.code, hamlet=h, period=period.key) if h else None,
    )
    near: list[Any] = []
    more = False
    if inside:
        near, more = queries.near_line(session, scope, unit.code, limit=10)
    return _render(
        "dashboard/area.html",
        level="commune",
        title=unit.name,
        commune=unit,
        crumbs=[(unit.province_name, url_for("dashboard.province", province_code=unit.province_code,
                                             period=period.key))],
        unit_label="Ấp, khóm",
        rows=rows,
        inside_total=inside,
        in_scope_lists=inside,
        near=near,
        near_more=more,
        **data,
    )


@bp.get("/c/<commune_code>/h/<path:hamlet>")
@require_roles("official", "admin", "collaborator")
def hamlet(commune_code: str, hamlet: str) -> Any:
    """One hamlet: its counts; inside the viewer's scope, its households near the line."""
    unit = _commune_or_404(commune_code)
    scope = current_scope()
    if scope.role == "collaborator":
        if not scope.allows(unit.code, hamlet):
            abort(403)
    else:
        _aggregate_access(scope, unit.province_code)
    session = read_session()
    known = session.execute(
        select(
            exists().where(Hamlet.commune_code == unit.code, Hamlet.name == hamlet)
            | exists().where(AggregateMonthly.commune_code == unit.code, AggregateMonthly.hamlet == hamlet)
        )
    ).scalar_one()
    if not known:
        abort(404)
    period = _period()
    inside = scope.allows(unit.code, hamlet)
    data = _overview(session, Where(period, commune_code=unit.code, hamlet=hamlet), None, inside)
    near: list[Any] = []
    more = False
    if inside:
        near, more = queries.near_line(session, scope, unit.code, hamlet, limit=50)
    crumbs = [(unit.province_name, url_for("dashboard.province", province_code=unit.province_code,
                                           period=period.key))]
    if scope.role != "collaborator":
        crumbs.append((unit.name, url_for("dashboard.commune", commune_code=unit.code, period=period.key)))
    else:
        crumbs = [("Tài khoản", url_for("accounts.account"))]
    return _render(
        "dashboard/area.html",
        level="hamlet",
        title=f"{hamlet}, {unit.name}",
        commune=unit,
        hamlet_name=hamlet,
        crumbs=crumbs,
        unit_label=None,
        rows=[],
        inside_total=inside,
        in_scope_lists=inside,
        near=near,
        near_more=more,
        **data,
    )


@bp.get("/c/<commune_code>/near-line")
@require_roles("official", "admin", "collaborator")
def near_line(commune_code: str) -> Any:
    """Every shared household within 10 % of the income line (to prioritise visits), closest first."""
    unit = _commune_or_404(commune_code)
    scope = current_scope()
    if not scope.reaches(unit.code):
        abort(403)
    hamlet = request.args.get("hamlet") or None
    session = read_session()
    rows, more = queries.near_line(session, scope, unit.code, hamlet)
    return _render("dashboard/near_line.html", commune=unit, hamlet_name=hamlet, rows=rows, more=more,
                   share=queries.NEAR_LINE_SHARE)


@bp.get("/c/<commune_code>/reviews")
@require_roles("official", "admin")
def reviews(commune_code: str) -> Any:
    """The commune's review queue (shared assessments waiting), and the outcomes recorded."""
    unit = _commune_or_404(commune_code)
    scope = current_scope()
    if not scope.allows(unit.code):
        abort(403)
    show = request.args.get("show", "queued")
    statuses = ["queued"] if show != "decided" else [s for s in REVIEW_VI if s != "queued"]
    session = read_session()
    rows, more = queries.review_queue(session, scope, unit.code, statuses)
    return _render("dashboard/reviews.html", commune=unit, rows=rows, more=more, show=show)


def _list_years(session: Session, commune_code: str) -> list[int]:
    return list(
        session.execute(
            select(OfficialListEntry.year)
            .where(OfficialListEntry.commune_code == commune_code)
            .distinct()
            .order_by(OfficialListEntry.year.desc())
        ).scalars()
    )


@bp.route("/c/<commune_code>/official-list", methods=["GET", "POST"])
@require_roles("official", "admin")
def official_list(commune_code: str) -> Any:
    """Upload the commune's official list (CSV) and compare it with the households' self-assessments."""
    unit = _commune_or_404(commune_code)
    scope = current_scope()
    if not scope.allows(unit.code):
        abort(403)
    me = current_account()
    assert me is not None
    upload: dict[str, Any] | None = None
    if request.method == "POST":
        if me.role != "official":
            abort(403)  # admins manage accounts; the list is the commune's own act
        upload = _upload_list(unit, me.id)
    session = read_session()
    years = _list_years(session, unit.code)
    year = request.args.get("year", type=int) or (upload or {}).get("year") or (years[0] if years else None)
    comparison = None
    entries: list[Any] = []
    if year is not None:
        entries = list(
            session.execute(
                select(OfficialListEntry).where(
                    OfficialListEntry.commune_code == unit.code, OfficialListEntry.year == year
                )
            ).scalars()
        )
        assessed = session.execute(
            scope.restrict(
                select(
                    Assessment.id, Assessment.identity_id, Assessment.household_head, Assessment.household_code,
                    Assessment.hamlet, Assessment.status, Assessment.created_at,
                    Assessment.income_per_capita_vnd, Assessment.income_line_vnd,
                ).where(
                    Assessment.commune_code == unit.code,
                    Assessment.shared.is_(True),
                    Assessment.erased_at.is_(None),
                )
            ).order_by(Assessment.created_at.desc(), Assessment.id.desc())
        ).all()
        comparison = compare(entries, assessed)
    audit("view_official_list", "commune", unit.code, detail={"year": year})
    status = 200 if upload is None or upload.get("ok") else 400
    return Response(
        _render("dashboard/official_list.html", commune=unit, years=years, year=year, entries=entries,
                comparison=comparison, upload=upload),
        status,
    )


def _upload_list(unit: Commune, user_id: int) -> dict[str, Any]:
    """Replace the commune's list for the year(s) in the uploaded CSV."""
    file = request.files.get("file")
    if file is None or not file.filename:
        return {"ok": False, "errors": [(0, "Chưa chọn tệp CSV.")]}
    parsed = parse_csv(file.read())
    if parsed.errors or not parsed.rows:
        return {"ok": False, "errors": parsed.errors or [(0, "Tệp không có dòng nào.")]}
    years = sorted({r.year for r in parsed.rows})
    session = get_session()
    if session.in_transaction():
        session.rollback()
    now = utcnow()

    def work(s: Session) -> None:
        s.execute(
            delete(OfficialListEntry).where(
                OfficialListEntry.commune_code == unit.code, OfficialListEntry.year.in_(years)
            )
        )
        s.execute(
            insert(OfficialListEntry),
            [
                {"commune_code": unit.code, "hamlet": r.hamlet, "household_head": r.household_head,
                 "household_code": r.household_code, "status": r.status, "year": r.year,
                 "uploaded_by": user_id, "uploaded_at": now}
                for r in parsed.rows
            ],
        )
        audit("upload_official_list", "commune", unit.code,
              detail={"years": years, "rows": len(parsed.rows)}, session=s)

    run_in_transaction(session, work)
    return {"ok": True, "rows": len(parsed.rows), "years": years, "year": years[-1], "errors": []}


# -- one household ----------------------------------------------------------------------------------------------


def _household_or_404(session: Session, assessment_id: int, scope: Scope) -> Assessment:
    """The shared, unerased assessment if the viewer's scope holds it; 404 otherwise (existence not revealed)."""
    row = session.get(Assessment, assessment_id)
    if row is None or not row.shared or row.erased_at is not None or not scope.allows(row.commune_code, row.hamlet):
        abort(404)
    return row


def _full_name(session: Session, user_id: int | None) -> str | None:
    user = session.get(User, user_id) if user_id is not None else None
    return user.full_name if user is not None else None


def _answers(session: Session, conversation_id: int | None) -> list[Any]:
    if conversation_id is None:
        return []
    return list(
        session.execute(
            select(Answer.question_id, Answer.value, Answer.raw, Answer.provenance, Answer.collaborator_name,
                   Answer.created_at)
            .where(Answer.conversation_id == conversation_id)
            .order_by(Answer.id)
        ).all()
    )


@bp.get("/household/<int:assessment_id>")
@require_roles("official", "admin", "collaborator")
def household(assessment_id: int) -> Any:
    """The decision record of one shared assessment: answers with provenance, standard, result, explanation."""
    scope = current_scope()
    session = get_session()
    if session.in_transaction():
        session.rollback()

    def work(s: Session) -> dict[str, Any]:
        row = _household_or_404(s, assessment_id, scope)
        review = s.execute(select(Review).where(Review.assessment_id == row.id)).scalar_one_or_none()
        decided_by = _full_name(s, review.decided_by if review is not None else None)
        collaborator = _full_name(s, row.collaborator_user_id)
        answers = _answers(s, row.conversation_id)
        audit("view_household", "assessment", str(row.id), session=s)
        return {"row": row, "review": review, "decided_by": decided_by, "answers": answers,
                "collaborator": collaborator}

    data = run_in_transaction(session, work)
    row = data["row"]
    result = row.result or {}
    unit = commune_by_code(row.commune_code or "")
    return _render(
        "dashboard/household.html",
        commune=unit,
        result=result,
        can_decide=scope.role == "official",
        outcomes=handoff.OUTCOMES,
        saved=request.args.get("saved"),
        notice=request.args.get("notice"),
        **data,
    )


@bp.post("/household/<int:assessment_id>/review")
@require_roles("official")
def review_decide(assessment_id: int) -> Any:
    """Record the review outcome and tell the household through its channel."""
    scope = current_scope()
    me = current_account()
    assert me is not None
    status = request.form.get("status", "")
    note = request.form.get("note")
    send_note = request.form.get("send_note") == "1"
    session = get_session()
    if session.in_transaction():
        session.rollback()

    def work(s: Session) -> handoff.Outcome:
        _household_or_404(s, assessment_id, scope)
        if status not in handoff.OUTCOMES:
            abort(400)
        outcome = handoff.record_outcome(
            s, assessment_id, status, note=note, send_note=send_note, official_id=me.id, now=utcnow()
        )
        audit("record_review", "assessment", str(assessment_id),
              detail={"status": status, "notified": outcome.notified}, session=s)
        return outcome

    outcome = run_in_transaction(session, work)
    return redirect(
        url_for("dashboard.household", assessment_id=assessment_id, saved=1,
                notice=None if outcome.notified else outcome.reason_not_notified)
    )


@bp.get("/household/<int:assessment_id>/mau-01")
@require_roles("official", "admin", "collaborator")
def form_01(assessment_id: int) -> Any:
    """Giấy đề nghị rà soát hộ nghèo, hộ cận nghèo (Mẫu số 01), pre-filled, for printing."""
    scope = current_scope()
    session = get_session()
    if session.in_transaction():
        session.rollback()

    def work(s: Session) -> Assessment:
        row = _household_or_404(s, assessment_id, scope)
        audit("print_form_01", "assessment", str(row.id), session=s)
        return row

    row = run_in_transaction(session, work)
    result = row.result or {}
    unit = commune_by_code(row.commune_code or "")
    today = _today()
    requested = row.status if row.status in ("poor", "near_poor") else None
    return _render("dashboard/form_01.html", row=row, result=result, commune=unit, today=today,
                   requested=requested, household_size=result.get("household_size")
                   or (row.input or {}).get("household_size"),
                   deprivation_names=_deprivation_names(result))


def _deprivation_names(result: dict[str, Any]) -> list[str]:
    names = {i.get("id"): i.get("name_vi") for i in result.get("indicators") or []}
    return [names.get(d) or d for d in result.get("deprivations") or []]

