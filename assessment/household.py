"""The household input contract (issue A, "Input contract") and its strict validation.

`parse_household` turns untrusted JSON into a validated `Household` (a typed dict, cheap to build on the bulk
path) or raises `InputError` listing every problem with its field path and a Vietnamese message. Nothing is
defaulted silently: a field left out means "not asked", and the result lists it as unanswered.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Literal, Mapping, TypedDict

from .errors import InputError, Problem

Area = Literal["rural", "urban"]

AREAS = ("rural", "urban")
HOUSING = ("durable", "semi_durable", "less_durable", "simple", "none")
WATER_SOURCES = (
    "piped",
    "drilled_well",
    "protected_dug_well",
    "protected_spring",
    "rainwater",
    "bottled",
    "unprotected_well",
    "unprotected_spring",
    "surface_water",
    "other",
)
TOILETS = ("septic", "semi_septic", "pour_flush", "double_vault", "pit", "fish_pond", "none")
DEVICES = ("tv", "radio", "computer", "smartphone", "phone")
WASTE = ("collected", "self_treated", "dumped")
SEXES = ("male", "female")
EDUCATION = (
    "none",
    "primary",
    "lower_secondary",
    "upper_secondary",
    "vocational_elementary",
    "vocational_intermediate",
    "college",
    "university",
    "enterprise_trained",
)
WORK = (
    "wage_with_contract",
    "wage_without_contract",
    "self_employed",
    "family_farm",
    "unemployed",
    "not_in_labour_force",
)

#: The quick-form deprivation flags (issue A input contract), each "at least one member …".
FLAG_FIELDS = (
    "working_age_unemployed_or_no_contract",
    "child_under16_malnourished",
    "member_6plus_without_health_insurance",
    "member_16_30_lacking_education",
    "child_3_15_not_in_school",
)
#: Facts that only select support policies; they never change the status.
POLICY_FACT_FIELDS = (
    "children_under_16",
    "pregnant_or_breastfeeding",
    "working_age_member",
    "student",
    "newly_escaped",
    "farm_household",
    "ethnic_minority",
    "social_allowance_member",
    "disability_member",
)

#: Upper bounds that only catch typing mistakes (a household of 200, an income of a trillion đồng per month).
MAX_HOUSEHOLD_SIZE = 100
MAX_MONTHLY_INCOME = 10**12
MAX_FLOOR_AREA = 100_000
MAX_AGE = 130
MAX_MEMBERS = MAX_HOUSEHOLD_SIZE


class Member(TypedDict, total=False):
    """One member of the household in the detailed form; ages are completed years."""

    age: int
    sex: Literal["male", "female"]
    health_insurance: bool
    malnourished: bool
    in_school: bool
    studying: bool
    education: str
    work: str
    monthly_social_allowance: bool
    disability: bool
    pregnant_or_breastfeeding: bool


class Household(TypedDict, total=False):
    """A validated household (quick form, optionally with members). Absent key = not asked."""

    on: dt.date
    area: Area
    commune_code: str
    household_size: int
    monthly_income_vnd: float
    monthly_income_per_capita_vnd: float
    dependants: int
    working_age_unemployed_or_no_contract: bool
    child_under16_malnourished: bool
    member_6plus_without_health_insurance: bool
    member_16_30_lacking_education: bool
    child_3_15_not_in_school: bool
    housing: str
    floor_area_m2: float
    water_source: str
    toilet: str
    internet: bool
    information_devices: list[str] | tuple[str, ...]
    waste: str
    members: tuple[Member, ...]
    children_under_16: bool
    pregnant_or_breastfeeding: bool
    working_age_member: bool
    student: bool
    newly_escaped: bool
    farm_household: bool
    ethnic_minority: bool
    social_allowance_member: bool
    disability_member: bool


class _Bad(Exception):
    """Raised by a field checker; carries the code and Vietnamese message."""

    def __init__(self, code: str, message_vi: str) -> None:
        self.code = code
        self.message_vi = message_vi


def _bool(value: object) -> bool:
    if value is True or value is False:
        return value  # type: ignore[return-value]
    raise _Bad("invalid_type", "Cần trả lời có (true) hoặc không (false).")


def _int_between(low: int, high: int, what: str) -> Callable[[object], int]:
    def check(value: object) -> int:
        if type(value) is not int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _Bad("invalid_type", f"{what} phải là một số nguyên.")
        if not low <= value <= high:  # type: ignore[operator]
            raise _Bad("out_of_range", f"{what} phải từ {low} đến {high}.")
        return value  # type: ignore[return-value]

    return check


def _number_between(low: float, high: float, what: str, *, low_inclusive: bool = True) -> Callable[[object], float]:
    def check(value: object) -> float:
        if type(value) is not int and type(value) is not float:
            raise _Bad("invalid_type", f"{what} phải là một con số.")
        if value != value or value in (float("inf"), float("-inf")):  # NaN or infinity
            raise _Bad("invalid_type", f"{what} phải là một con số.")
        if value < low or (value == low and not low_inclusive) or value > high:  # type: ignore[operator]
            bound = f"lớn hơn {low:g}" if not low_inclusive else f"từ {low:g}"
            raise _Bad("out_of_range", f"{what} phải {bound} đến {high:,.0f}.".replace(",", "."))
        return value  # type: ignore[return-value]

    return check


def _enum(choices: tuple[str, ...], what: str) -> Callable[[object], str]:
    allowed = frozenset(choices)
    listing = ", ".join(choices)

    def check(value: object) -> str:
        if value in allowed:  # unhashable values fall through to the error below
            return value  # type: ignore[return-value]
        raise _Bad("unknown_value", f"{what} không hợp lệ; chọn một trong: {listing}.")

    def safe(value: object) -> str:
        try:
            return check(value)
        except TypeError:
            raise _Bad("unknown_value", f"{what} không hợp lệ; chọn một trong: {listing}.") from None

    return safe


def _devices(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise _Bad("invalid_type", "Phương tiện thông tin phải là một danh sách (để trống [] nếu không có).")
    allowed = frozenset(DEVICES)
    for item in value:
        if not isinstance(item, str) or item not in allowed:
            raise _Bad("unknown_value", f"Phương tiện {item!r} không hợp lệ; chọn trong: {', '.join(DEVICES)}.")
    return tuple(dict.fromkeys(value))


def _commune(value: object) -> str:
    if type(value) is int and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not value.strip().isdigit():
        raise _Bad("invalid_type", "Mã xã/phường phải là dãy số, ví dụ \"29971\".")
    return value.strip().zfill(5)


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _Bad("invalid_date", "Ngày phải theo dạng NĂM-THÁNG-NGÀY, ví dụ 2026-06-30.")


_MEMBER_CHECKS: dict[str, Callable[[object], object]] = {
    "age": _int_between(0, MAX_AGE, "Tuổi"),
    "sex": _enum(SEXES, "Giới tính"),
    "health_insurance": _bool,
    "malnourished": _bool,
    "in_school": _bool,
    "studying": _bool,
    "education": _enum(EDUCATION, "Trình độ học vấn"),
    "work": _enum(WORK, "Tình trạng việc làm"),
    "monthly_social_allowance": _bool,
    "disability": _bool,
    "pregnant_or_breastfeeding": _bool,
}


def _members(value: object) -> tuple[Member, ...]:
    # Problems inside members are reported with their own paths, so this checker never raises _Bad for them.
    if not isinstance(value, (list, tuple)):
        raise _Bad("invalid_type", "Danh sách thành viên phải là một mảng.")
    if not value:
        raise _Bad("out_of_range", "Danh sách thành viên không được rỗng.")
    if len(value) > MAX_MEMBERS:
        raise _Bad("out_of_range", f"Hộ có tối đa {MAX_MEMBERS} thành viên.")
    return tuple(value)  # validated item by item in _validate_members


_CHECKS: dict[str, Callable[[object], Any]] = {
    "on": _date,
    "area": _enum(AREAS, "Khu vực (rural = nông thôn, urban = thành thị)"),
    "commune_code": _commune,
    "household_size": _int_between(1, MAX_HOUSEHOLD_SIZE, "Số người trong hộ"),
    "monthly_income_vnd": _number_between(0, MAX_MONTHLY_INCOME, "Thu nhập của hộ mỗi tháng"),
    "monthly_income_per_capita_vnd": _number_between(0, MAX_MONTHLY_INCOME, "Thu nhập bình quân mỗi người mỗi tháng"),
    "dependants": _int_between(0, MAX_HOUSEHOLD_SIZE, "Số người phụ thuộc"),
    "housing": _enum(HOUSING, "Loại nhà"),
    "floor_area_m2": _number_between(0, MAX_FLOOR_AREA, "Diện tích nhà", low_inclusive=False),
    "water_source": _enum(WATER_SOURCES, "Nguồn nước"),
    "toilet": _enum(TOILETS, "Loại nhà tiêu"),
    "internet": _bool,
    "information_devices": _devices,
    "waste": _enum(WASTE, "Cách xử lý rác"),
    "members": _members,
    **{name: _bool for name in FLAG_FIELDS},
    **{name: _bool for name in POLICY_FACT_FIELDS},
}

FIELDS: tuple[str, ...] = tuple(_CHECKS)


def _validate_members(members: tuple[Any, ...], problems: list[Problem]) -> tuple[Member, ...]:
    out: list[Member] = []
    for i, raw in enumerate(members):
        path = f"members[{i}]"
        if not isinstance(raw, Mapping):
            problems.append(Problem("invalid_type", path, "Mỗi thành viên phải là một đối tượng {age, …}."))
            continue
        member: dict[str, Any] = {}
        for key, value in raw.items():
            check = _MEMBER_CHECKS.get(key)
            if check is None:
                problems.append(Problem("unknown_field", f"{path}.{key}", f"Trường '{key}' không được hỗ trợ."))
                continue
            try:
                member[key] = check(value)
            except _Bad as bad:
                problems.append(Problem(bad.code, f"{path}.{key}", bad.message_vi))
        if "age" not in raw:
            problems.append(Problem("required", f"{path}.age", "Cần cho biết tuổi (tuổi tròn) của thành viên."))
        out.append(member)  # type: ignore[arg-type]
    return tuple(out)


# Kinds for the fast check below: values that are valid as they stand need no copy and no conversion.
_BOOL, _ENUM, _INT, _NUMBER, _POSITIVE, _DEVICES = range(6)
_FAST: dict[str, tuple[int, Any]] = {
    "area": (_ENUM, frozenset(AREAS)),
    "household_size": (_INT, (1, MAX_HOUSEHOLD_SIZE)),
    "monthly_income_vnd": (_NUMBER, MAX_MONTHLY_INCOME),
    "monthly_income_per_capita_vnd": (_NUMBER, MAX_MONTHLY_INCOME),
    "dependants": (_INT, (0, MAX_HOUSEHOLD_SIZE)),
    "housing": (_ENUM, frozenset(HOUSING)),
    "floor_area_m2": (_POSITIVE, MAX_FLOOR_AREA),
    "water_source": (_ENUM, frozenset(WATER_SOURCES)),
    "toilet": (_ENUM, frozenset(TOILETS)),
    "internet": (_BOOL, None),
    "information_devices": (_DEVICES, frozenset(DEVICES)),
    "waste": (_ENUM, frozenset(WASTE)),
    **{name: (_BOOL, None) for name in FLAG_FIELDS},
    **{name: (_BOOL, None) for name in POLICY_FACT_FIELDS},
}


_SHAPES: dict[tuple[str, ...], Callable[[Mapping[str, Any]], bool] | None] = {}


def shape_check_source(keys: tuple[str, ...]) -> tuple[list[str], dict[str, Any]] | None:
    """Straight-line validation source for dicts with exactly these keys, or None if a key needs the full path.

    Bulk input repeats one shape (a CSV has the same columns on every row), so the check is generated once per
    shape and costs a few comparisons per field. The lines (indented for a `try:` block inside a function whose
    argument is `d`) bind each value to a local `v_<key>` and `return None` at the first doubt; any doubt goes to
    the full validation, the one place that explains problems. An unhashable value raises TypeError: the caller
    wraps the lines in `try/except TypeError`.
    """
    if "household_size" not in keys or "area" not in keys:
        return None
    if ("monthly_income_vnd" in keys) == ("monthly_income_per_capita_vnd" in keys):
        return None
    names: dict[str, Any] = {}
    lines: list[str] = []
    for key in keys:
        spec = _FAST.get(key)
        if spec is None:
            return None
        kind, arg = spec
        v = f"v_{key}"
        names[f"A_{key}"] = arg
        lines.append(f"    {v} = d[{key!r}]")
        if kind == _BOOL:
            lines.append(f"    if {v} is not True and {v} is not False: return None")
        elif kind == _ENUM:
            # Only strings are in the set; an unhashable value raises TypeError.
            lines.append(f"    if {v} not in A_{key}: return None")
        elif kind == _INT:
            lines.append(f"    if {v}.__class__ is not int or not {arg[0]} <= {v} <= {arg[1]}: return None")
        elif kind in (_NUMBER, _POSITIVE):
            low = "0 <" if kind == _POSITIVE else "0 <="
            # NaN fails the comparison and goes to the full path.
            lines.append(
                f"    if ({v}.__class__ is not int and {v}.__class__ is not float) or not {low} {v} <= {arg}: return None"
            )
        else:
            lines.append(f"    if {v}.__class__ is not list: return None")
            lines.append(f"    for y in {v}:")
            lines.append(f"        if y not in A_{key}: return None")
    if "dependants" in keys:
        lines.append("    if v_dependants > v_household_size: return None")
    return lines, names


def _shape_checker(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], bool] | None:
    """Compile `shape_check_source` into a predicate: True when the dict is valid as it stands."""
    source = shape_check_source(keys)
    if source is None:
        return None
    lines, names = source
    body = "\n".join(["def check(d):", "  try:", *lines, "  except TypeError:", "    return None", "  return True"])
    exec(compile(body, "<household shape check>", "exec"), names)  # noqa: S102 - our own source
    return names["check"]  # type: ignore[no-any-return]


def _already_valid(data: Mapping[str, Any]) -> bool:
    """True when `data` is a plain dict that is a valid quick form as it stands (the common bulk case)."""
    if data.__class__ is not dict:
        return False
    keys = tuple(data)
    try:
        check = _SHAPES[keys]
    except KeyError:
        if len(_SHAPES) > 1024:
            _SHAPES.clear()
        check = _SHAPES[keys] = _shape_checker(keys)
    return check is not None and check(data) is True


def parse_date(value: object, field: str = "on") -> dt.date:
    """Parse a reference date (ISO string or date) or raise InputError naming `field`."""
    try:
        return _date(value)
    except _Bad as bad:
        raise InputError([Problem(bad.code, field, bad.message_vi)]) from None


def parse_household(data: Mapping[str, Any]) -> Household:
    """Validate untrusted input against the household contract; raise InputError naming every bad field."""
    if _already_valid(data):
        return data  # type: ignore[return-value]
    if not isinstance(data, Mapping):
        raise InputError([Problem("invalid_type", "body", "Dữ liệu của hộ phải là một đối tượng JSON {…}.")])
    out: dict[str, Any] = {}
    problems: list[Problem] | None = None
    checks = _CHECKS
    for key, value in data.items():
        check = checks.get(key)
        if check is None:
            problems = problems or []
            problems.append(Problem("unknown_field", str(key), f"Trường '{key}' không được hỗ trợ."))
            continue
        if value is None:
            # JSON null means "not answered", like leaving the field out.
            continue
        try:
            out[key] = check(value)
        except _Bad as bad:
            problems = problems or []
            problems.append(Problem(bad.code, key, bad.message_vi))

    members = out.get("members")
    if members is not None:
        problems = problems or []
        out["members"] = _validate_members(members, problems)
        if data.get("household_size") is None:
            out["household_size"] = len(members)
        elif out.get("household_size") not in (None, len(members)):
            problems.append(
                Problem(
                    "inconsistent",
                    "household_size",
                    f"Số người trong hộ ({out['household_size']}) khác số thành viên đã kê ({len(members)}).",
                )
            )

    if "household_size" not in out and data.get("household_size") is None:
        problems = problems or []
        problems.append(Problem("required", "household_size", "Cần cho biết số người trong hộ."))
    has_total = "monthly_income_vnd" in data and data["monthly_income_vnd"] is not None
    has_pc = "monthly_income_per_capita_vnd" in data and data["monthly_income_per_capita_vnd"] is not None
    if has_total == has_pc:
        problems = problems or []
        problems.append(
            Problem(
                "exactly_one_of",
                "monthly_income_vnd",
                "Cần cho biết đúng một trong hai: thu nhập cả hộ mỗi tháng (monthly_income_vnd) "
                "hoặc thu nhập bình quân mỗi người (monthly_income_per_capita_vnd).",
            )
        )
    size = out.get("household_size")
    dependants = out.get("dependants")
    if size is not None and dependants is not None and dependants > size:
        problems = problems or []
        problems.append(
            Problem("inconsistent", "dependants", f"Số người phụ thuộc ({dependants}) nhiều hơn số người trong hộ ({size}).")
        )
    if data.get("area") is None and data.get("commune_code") is None:
        problems = problems or []
        problems.append(
            Problem("required", "area", "Cần cho biết khu vực (rural/urban) hoặc mã xã/phường (commune_code).")
        )
    if problems:
        raise InputError(problems)
    return out  # type: ignore[return-value]
