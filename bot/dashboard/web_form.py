"""The collaborators' web form (issue D): enter one household's quick form in a browser instead of a chat.

``GET/POST /dashboard/c/<commune_code>/new``, for collaborators of the commune (their own hamlets when they are
narrowed to some), officials whose scope holds the commune, and admins. The page is server-rendered and works
without JavaScript on a phone.

The form only turns text into the household document (money through ``bot.parsing.money`` so "1tr5" works,
counts through ``bot.parsing.numbers``); every rule about the household itself is the legal core's
(:func:`assessment.parse_household`), whose problems are shown next to the field each one names. A valid form is
assessed with the deployment's office names (:func:`bot.offices.assess`) and stored through
:func:`bot.store.repository.record_assessment` the way the importer stores rows that did not come from a chat:
no identity, no conversation, provenance ``collaborator``, channel ``web_form``, shared (the household gave its
details to the collaborator for the commune's review), so it is queued for review and counted in the aggregates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from flask import abort, redirect, request, url_for
from sqlalchemy.orm import Session

from assessment import InputError, parse_household
from assessment.geo import Commune
from assessment.household import (
    DEVICES,
    FLAG_FIELDS,
    HOUSING,
    TOILETS,
    WASTE,
    WATER_SOURCES,
)
from assessment.schema import HOUSEHOLD_SCHEMA
from assessment.vocab import DEVICE_VI, HOUSING_VI, TOILET_VI, WASTE_VI, WATER_VI
from bot import offices
from bot.accounts.scope import Scope
from bot.accounts.security import (
    audit,
    current_account,
    current_scope,
    read_session,
    require_roles,
)
from bot.dashboard import bp
from bot.dashboard.views import _commune_or_404, _render, _today
from bot.parsing.money import parse_money
from bot.parsing.numbers import parse_int, parse_number
from bot.store import repository
from bot.store.db import get_session, run_in_transaction
from bot.store.models import Provenance, utcnow

__all__ = ["CHANNEL", "may_enter", "new_assessment"]

#: ``assessments.channel`` of households entered through this form.
CHANNEL: Final = "web_form"

#: Vietnamese mobile numbers: 10 digits starting 03/05/07/08/09, or the same after +84 / 84.
PHONE_RE: Final = re.compile(r"(?:\+?84|0)[35789]\d{8}")

#: The five "at least one member …" questions, worded as the schema titles them.
FLAG_LABELS: Final = {name: HOUSEHOLD_SCHEMA["properties"][name]["title"] for name in FLAG_FIELDS}

#: Answers of the choice questions, in the order the core lists them, with their Vietnamese labels.
CHOICES: Final = {
    "housing": [(v, HOUSING_VI[v]) for v in HOUSING],
    "water_source": [(v, WATER_VI[v]) for v in WATER_SOURCES],
    "toilet": [(v, TOILET_VI[v]) for v in TOILETS],
    "waste": [(v, WASTE_VI[v]) for v in WASTE],
}
DEVICE_CHOICES: Final = [(v, DEVICE_VI[v]) for v in DEVICES]
#: The checkbox meaning "none of these devices" (unticked boxes alone mean "not answered").
NO_DEVICE: Final = "none"

#: Core fields that the form shows under another name.
_FIELD_OF: Final = {
    "monthly_income_vnd": "income",
    "monthly_income_per_capita_vnd": "income",
    "members": "household_size",
}

#: Core messages that speak of JSON field names; the form says the same in its own words.
_FORM_MESSAGES: Final = {
    ("exactly_one_of", "income"): "Chọn một cách tính thu nhập (cả hộ mỗi tháng hoặc bình quân mỗi người mỗi tháng) "
    "và ghi số tiền.",
}


def may_enter(scope: Scope, commune_code: str) -> bool:
    """Whether the account may enter households of the commune.

    Collaborators: any part of the commune in their scope (the hamlet is then checked on submit); officials: the
    commune in their scope; admins: everywhere.
    """
    if scope.role == "collaborator":
        return scope.reaches(commune_code)
    return scope.role in ("official", "admin") and scope.allows(commune_code)


def _hamlet_choices(session: Session, scope: Scope, commune_code: str) -> list[str]:
    """Hamlets offered in the select: a narrowed collaborator's own, else the commune's list (may be empty)."""
    narrowed = scope.hamlets.get(commune_code) if scope.role == "collaborator" else None
    if narrowed:
        return sorted(narrowed)
    return repository.hamlet_names(session, commune_code)


def _text(form: Mapping[str, Any], name: str, limit: int) -> str:
    return str(form.get(name) or "").strip()[:limit]


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


def read_form(
    form: Any, commune: Commune, hamlets: list[str], scope: Scope
) -> tuple[dict[str, Any], dict[str, str], dict[str, str | None]]:
    """Turn the posted form into (household document, errors by form field, household details).

    Errors found here are about reading the text (an amount that is not money, a phone number); the rest is
    left to the core, which sees every field that could be read.
    """
    errors: dict[str, str] = {}
    data: dict[str, Any] = {"commune_code": commune.code}

    # -- who: not part of the assessment, stored beside it ------------------------------------------------
    head = _text(form, "household_head", 128)
    if not head:
        errors["household_head"] = "Cần ghi họ và tên chủ hộ."
    phone_raw = _text(form, "phone", 40)
    phone = re.sub(r"[\s.\-()]", "", phone_raw)
    if phone and not PHONE_RE.fullmatch(phone):
        errors["phone"] = "Số điện thoại chưa đúng: ghi số di động 10 số, ví dụ 0912 345 678."
    hamlet = _text(form, "hamlet", 128)
    if hamlets and hamlet and hamlet not in hamlets:
        errors["hamlet"] = "Chọn thôn, ấp trong danh sách."
    elif not scope.allows(commune.code, hamlet or None):
        # A collaborator narrowed to some hamlets enters households of those hamlets only.
        errors["hamlet"] = "Chọn một thôn, ấp trong phạm vi phụ trách của bạn."
    details = {
        "household_head": head or None,
        "phone": phone or None,
        "household_code": _text(form, "household_code", 64) or None,
        "hamlet": hamlet or None,
    }

    # -- the quick form ---------------------------------------------------------------------------------
    size_text = _text(form, "household_size", 20)
    if size_text:
        size = parse_int(size_text)
        if size is None:
            errors["household_size"] = "Số người trong hộ phải là một số nguyên, ví dụ 4."
        else:
            data["household_size"] = size

    basis = form.getlist("income_basis") if hasattr(form, "getlist") else [form.get("income_basis")]
    basis = [b for b in basis if b]
    income_text = _text(form, "income", 60)
    amount: int | None = None
    if income_text:
        money = parse_money(income_text)
        if money is None:
            errors["income"] = f"Không đọc được số tiền “{income_text}”. Ghi ví dụ: 1tr5, 1.500.000 hoặc 1,5 triệu."
        else:
            # The questions ask per month; a yearly figure ("18 triệu một năm") is spread over twelve months.
            amount = round(money.amount / 12) if money.period == "year" else money.amount
    if amount is not None:
        # Unknown or repeated choices are passed on as given: the core names the problem (exactly one of the two).
        for choice in basis or [None]:
            if choice == "per_capita":
                data["monthly_income_per_capita_vnd"] = amount
            elif choice == "total":
                data["monthly_income_vnd"] = amount

    dependants_text = _text(form, "dependants", 20)
    if dependants_text:
        dependants = parse_int(dependants_text)
        if dependants is None:
            errors["dependants"] = "Số người phụ thuộc phải là một số nguyên (có thể là 0)."
        else:
            data["dependants"] = dependants

    for name in (*FLAG_FIELDS, "internet"):
        answer = _yes_no(_text(form, name, 8))
        if answer is not None:
            data[name] = answer

    for name in CHOICES:
        value = _text(form, name, 40)
        if value:
            # An unknown value goes to the core, which answers unknown_value in Vietnamese.
            data[name] = value

    area_text = _text(form, "floor_area_m2", 20)
    if area_text:
        area = parse_number(area_text.lower().replace("m2", "").replace("m²", "").strip())
        if area is None:
            errors["floor_area_m2"] = "Diện tích nhà phải là một số (m²), ví dụ 36 hoặc 42,5."
        else:
            data["floor_area_m2"] = area

    devices = [d for d in (form.getlist("information_devices") if hasattr(form, "getlist") else []) if d]
    if NO_DEVICE in devices and len(devices) > 1:
        errors["information_devices"] = "Đã chọn “không có thiết bị nào” cùng với một thiết bị; chọn lại."
    elif devices:
        data["information_devices"] = [d for d in devices if d != NO_DEVICE]

    data["on"] = _text(form, "on", 20) or _today().isoformat()
    return data, errors, details


def _core_problems(exc: InputError, errors: dict[str, str]) -> list[str]:
    """Put the core's problems next to the fields they name; return those no field of the form shows."""
    general: list[str] = []
    for problem in exc.problems:
        base = re.split(r"[.\[]", problem.field, maxsplit=1)[0]
        field = _FIELD_OF.get(base, base)
        if field not in FORM_FIELDS:
            general.append(problem.message_vi)
            continue
        # A reading error of the form says more than the core's view of the same (missing) field.
        errors.setdefault(field, _FORM_MESSAGES.get((problem.code, field), problem.message_vi))
    return general


#: Every field of the form, in page order (the error summary links to them in this order).
FORM_FIELDS: Final = (
    "hamlet", "household_head", "phone", "household_code", "on", "household_size", "income",
    "dependants", *FLAG_FIELDS, "housing", "floor_area_m2", "water_source", "toilet", "internet",
    "information_devices", "waste",
)

FIELD_LABELS: Final = {
    "hamlet": "Thôn, ấp",
    "household_head": "Họ và tên chủ hộ",
    "phone": "Số điện thoại",
    "household_code": "Mã hộ",
    "on": "Ngày tính",
    "household_size": "Số người trong hộ",
    "income": "Thu nhập",
    "dependants": "Số người phụ thuộc",
    **FLAG_LABELS,
    "housing": "Loại nhà ở",
    "floor_area_m2": "Diện tích nhà ở",
    "water_source": "Nguồn nước sinh hoạt",
    "toilet": "Nhà tiêu",
    "internet": "Internet",
    "information_devices": "Thiết bị thông tin",
    "waste": "Rác thải sinh hoạt",
}


def _page(commune: Commune, hamlets: list[str], values: Mapping[str, Any], devices: list[str],
          errors: Mapping[str, str], general: list[str], status: int) -> Any:
    from flask import Response

    body = _render(
        "dashboard/web_form.html",
        commune=commune,
        hamlets=hamlets,
        values=values,
        devices=devices,
        errors=errors,
        general=general,
        summary=[(f, FIELD_LABELS.get(f, f), errors[f]) for f in FORM_FIELDS if f in errors],
        flag_labels=FLAG_LABELS,
        choices=CHOICES,
        device_choices=DEVICE_CHOICES,
        no_device=NO_DEVICE,
        labels=FIELD_LABELS,
    )
    return Response(body, status)


@bp.route("/c/<commune_code>/new", methods=["GET", "POST"])
@require_roles("collaborator", "official", "admin")
def new_assessment(commune_code: str) -> Any:
    """The web form: show it, or check it with the core and store the household's self-assessment."""
    commune = _commune_or_404(commune_code)
    scope = current_scope()
    if not may_enter(scope, commune.code):
        abort(403)
    session = read_session()
    hamlets = _hamlet_choices(session, scope, commune.code)
    if request.method == "GET":
        values = {"on": _today().isoformat(), "hamlet": request.args.get("hamlet", "")}
        return _page(commune, hamlets, values, [], {}, [], 200)

    form = request.form
    values = {k: form.get(k, "") for k in form if k not in ("csrf_token", "information_devices")}
    devices = form.getlist("information_devices")
    data, errors, details = read_form(form, commune, hamlets, scope)
    general: list[str] = []
    household: Any = None
    try:
        household = parse_household(data)
    except InputError as exc:
        general = _core_problems(exc, errors)
    result: dict[str, Any] | None = None
    if household is not None and not errors:
        try:
            result = offices.assess(household).to_dict()
        except InputError as exc:  # e.g. a reference date with no standard in force
            general = _core_problems(exc, errors)
    if result is None or errors or general:
        # Never a 500 for a typing slip: the page comes back with what was typed and what to fix.
        return _page(commune, hamlets, values, devices, errors, general, 200)

    me = current_account()
    assert me is not None
    # The read transaction (DEFERRED on SQLite) ends here; the write queues for the lock like every writer.
    session = get_session()
    if session.in_transaction():
        session.rollback()
    now = utcnow()
    stored_input = {**data, "on": str(result.get("on") or data["on"])}

    def work(s: Session) -> int:
        assessment_id = repository.record_assessment(
            s,
            input=stored_input,
            result=result,
            now=now,
            provenance=Provenance.COLLABORATOR,
            shared=True,
            channel=CHANNEL,
            hamlet=details["hamlet"],
            household_head=details["household_head"],
            phone=details["phone"],
            household_code=details["household_code"],
            collaborator_user_id=me.id,
        )
        audit("create_assessment", "assessment", str(assessment_id),
              detail={"commune_code": commune.code, "channel": CHANNEL, "status": result.get("status")},
              session=s)
        return assessment_id

    assessment_id = run_in_transaction(session, work)
    return redirect(url_for("dashboard.household", assessment_id=assessment_id))


@bp.context_processor
def _form_link() -> dict[str, Any]:
    """Let the commune and hamlet pages show the "Thêm hộ (phiếu web)" button to those who may use it."""
    return {"may_enter_form": lambda commune_code: may_enter(current_scope(), commune_code)}
