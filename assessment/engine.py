"""Classify a household under the standard in force and explain the result.

The combination rule is Decree 07/2021/NĐ-CP Art. 3.2 (same structure in Decree 351/2025/NĐ-CP), see
shared/reference/poverty-standard.md §1.1 and §7:

* per-capita income at or below the line ("từ … trở xuống") and at least 3 deprivations → poor;
* at or below the line and fewer than 3 (0 included) → near-poor;
* above the line and at or below the average-living ceiling ("trên … đến …") → average living standard;
* otherwise (or when the ceiling is not published, as for 2027–2030) → not poor.
Income above the line is never poor, whatever the deprivations. The rule is stated once, as
`rules.STATUS_RULE`, and compiled into both the general and the bulk path.
"""
from __future__ import annotations

import datetime as dt
from itertools import compress
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from .errors import InputError, Problem
from .geo import Commune, commune_by_code
from .household import Household, parse_date, parse_household
from .policies import PolicyCatalog, PolicyFacts, PolicyMatch, default_catalog
from .rules import SHAPE_MISS, Classification, CompiledStandard, compile_standard
from .standards import Standard, default_standards, next_standard, standard_for
from .vocab import AREA_VI, DEVICE_VI, HOUSING_VI, STATUS_VI, TOILET_VI, WASTE_VI, WATER_VI, vnd

UNANSWERED_VI = "Chưa được hỏi; tạm tính là không thiếu hụt."
DISCLAIMER_VI = (
    "Đây là kết quả ước tính sơ bộ, không phải kết quả chính thức. Chỉ Ủy ban nhân dân xã/phường công nhận hộ nghèo, "
    "hộ cận nghèo sau khi rà soát (Quyết định 24/2021/QĐ-TTg). Để được rà soát, hộ nộp Giấy đề nghị (Mẫu số 01) "
    "tại UBND xã/phường: rà soát định kỳ từ 01/9 đến 14/12 hằng năm; rà soát thường xuyên hằng tháng từ ngày 15."
)

# Compiled standards by reference date: the bulk path sees few distinct dates, so this stays small; it is
# cleared if a caller feeds an unbounded variety of dates.
_COMPILED_BY_DATE: dict[dt.date, CompiledStandard] = {}
_COMPILED_BY_EPOCH: dict[tuple[str, dt.date], CompiledStandard] = {}
_CACHE_LIMIT = 20_000
_LAST_FAST: dict[dt.date, Any] = {}
#: Indicator ids of each standard, to read a decisions tuple back into ids.
_IDS_BY_STANDARD: dict[str, tuple[str, ...]] = {}
_DATE = dt.date


def compiled_for(on: dt.date) -> CompiledStandard:
    """Return the compiled standard in force on `on`, or raise InputError when no period covers it."""
    cs = _COMPILED_BY_DATE.get(on)
    if cs is not None:
        return cs
    standard = standard_for(on)
    if standard is None:
        periods = ", ".join(f"{s.valid_from:%d/%m/%Y}–{s.valid_to:%d/%m/%Y}" for s in default_standards())
        raise InputError(
            [Problem("date_out_of_range", "on", f"Ngày {on:%d/%m/%Y} nằm ngoài các giai đoạn có chuẩn nghèo ({periods}).")]
        )
    key = (standard.id, standard.epoch(on))
    cs = _COMPILED_BY_EPOCH.get(key)
    if cs is None:
        cs = _COMPILED_BY_EPOCH[key] = compile_standard(standard, on)
        _IDS_BY_STANDARD[standard.id] = cs.indicator_ids
    if len(_COMPILED_BY_DATE) >= _CACHE_LIMIT:
        _COMPILED_BY_DATE.clear()
    _COMPILED_BY_DATE[on] = cs
    return cs


class IndicatorResult(NamedTuple):
    """One indicator of the result: whether the household is deprived, why, and on what legal basis.

    Immutable, so equal results are shared between households (see `_indicator_results`).
    """

    id: str
    name_vi: str
    dimension: str
    deprived: bool
    answered: bool
    reason_vi: str
    reference: str
    provisional: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form."""
        return {
            "id": self.id,
            "name_vi": self.name_vi,
            "dimension": self.dimension,
            "deprived": self.deprived,
            "answered": self.answered,
            "reason_vi": self.reason_vi,
            "reference": self.reference,
            "provisional": self.provisional,
        }


@dataclass(slots=True, eq=False)
class AssessmentResult:
    """Everything the bot, the API and the dashboard show about one household (issue A, "Output").

    Treat it as immutable. It is not a frozen dataclass only because frozen construction costs a setattr call per
    field, which is measurable on the bulk path (bench/assess_throughput.py).
    """

    status: str
    standard: Standard
    on: dt.date
    area: str
    commune: Commune | None
    household_size: int
    income_per_capita_vnd: float
    income_line_vnd: int
    average_living_max_vnd: int | None
    deprivation_threshold: int
    indicators: tuple[IndicatorResult, ...]
    policies: tuple[PolicyMatch, ...]
    provisional_values: tuple[str, ...]
    what_would_change: tuple[str, ...]
    summary_vi: str
    next_standard: AssessmentResult | None = field(default=None)

    @property
    def status_vi(self) -> str:
        """Vietnamese name of the status."""
        return STATUS_VI[self.status]

    @property
    def deprivations(self) -> tuple[str, ...]:
        """Ids of the indicators on which the household is deprived."""
        return tuple(i.id for i in self.indicators if i.deprived)

    @property
    def unanswered(self) -> tuple[str, ...]:
        """Ids of the indicators that were not asked."""
        return tuple(i.id for i in self.indicators if not i.answered)

    @property
    def provisional(self) -> bool:
        """True when any value behind this result is not confirmed from the official text."""
        return bool(self.provisional_values)

    @property
    def income_gap_vnd(self) -> float:
        """Line minus per-capita income: positive when the household is under the line."""
        return self.income_line_vnd - self.income_per_capita_vnd

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready output of the contract."""
        out: dict[str, Any] = {
            "status": self.status,
            "status_vi": self.status_vi,
            "standard": {
                "id": self.standard.id,
                "name_vi": self.standard.name_vi,
                "valid_from": self.standard.valid_from.isoformat(),
                "valid_to": self.standard.valid_to.isoformat(),
                "reference": self.standard.reference,
            },
            "on": self.on.isoformat(),
            "area": self.area,
            "commune": None
            if self.commune is None
            else {
                "code": self.commune.code,
                "name": self.commune.name,
                "province_code": self.commune.province_code,
                "province": self.commune.province_name,
            },
            "household_size": self.household_size,
            "income_per_capita_vnd": _money(self.income_per_capita_vnd),
            "income_line_vnd": self.income_line_vnd,
            "income_gap_vnd": _money(self.income_gap_vnd),
            "average_living_max_vnd": self.average_living_max_vnd,
            "deprivation_count": len(self.deprivations),
            "deprivation_threshold": self.deprivation_threshold,
            "deprivations": list(self.deprivations),
            "indicators": [i.to_dict() for i in self.indicators],
            "unanswered": list(self.unanswered),
            "policies": [p.to_dict() for p in self.policies],
            "provisional": self.provisional,
            "provisional_values": list(self.provisional_values),
            "what_would_change": list(self.what_would_change),
            "summary_vi": self.summary_vi,
            "disclaimer_vi": DISCLAIMER_VI,
        }
        if self.next_standard is not None:
            out["next_standard"] = self.next_standard.to_dict()
        return out


def _money(value: float) -> int | float:
    """Whole đồng where the division is exact, else rounded to 2 decimals (a per-capita share)."""
    return int(value) if float(value).is_integer() else round(value, 2)


def _household(data: Mapping[str, Any] | Household, validated: bool) -> Household:
    return data if validated else parse_household(data)  # type: ignore[return-value]


def _reference_date(h: Household, on: dt.date | str | None) -> dt.date:
    if on is not None:
        return on if type(on) is dt.date else parse_date(on)
    return h.get("on") or dt.date.today()


def _area_and_commune(h: Household) -> tuple[str, Commune | None]:
    code = h.get("commune_code")
    commune = None
    if code is not None:
        commune = commune_by_code(code)
        if commune is None:
            raise InputError([Problem("unknown_commune", "commune_code", f"Không tìm thấy xã/phường có mã {code}.")])
    # An explicit area wins: for merged units the commune's type may not match the area the review applies (§6.3).
    area = h.get("area") or commune.area  # type: ignore[union-attr]
    return area, commune


def _status(cs: CompiledStandard, area: str, h: Household, count: int) -> tuple[str, float, int]:
    """Status, per-capita income and line under the combination rule (`rules.STATUS_RULE`)."""
    return cs.status_of(area, h["household_size"], h.get("monthly_income_vnd"), h.get("monthly_income_per_capita_vnd"), count)


def classify(data: Mapping[str, Any] | Household, on: dt.date | str | None = None, *, validated: bool = False) -> Classification:
    """Return status and deprivation ids only: the lean path for bulk imports and dashboards."""
    day = on if on.__class__ is _DATE else None
    if day is not None and data.__class__ is dict and not validated:
        # The bulk path: one generated function per input shape validates and decides; the one used last for
        # this date is tried first (bulk input repeats one shape). None: the input needs the full validation.
        fast = _LAST_FAST.get(day)
        result = fast(data) if fast is not None else SHAPE_MISS
        if result is SHAPE_MISS:
            cs = _COMPILED_BY_DATE.get(day) or compiled_for(day)  # type: ignore[arg-type]
            fast = cs.classifier_for(tuple(data))
            result = fast(data) if fast is not None else None
            if fast is not None:
                if len(_LAST_FAST) >= _CACHE_LIMIT:
                    _LAST_FAST.clear()
                _LAST_FAST[day] = fast  # type: ignore[index]
        if result is not None:
            return result  # type: ignore[no-any-return]
    h = data if validated else parse_household(data)
    day = day or _reference_date(h, on)
    cs = _COMPILED_BY_DATE.get(day) or compiled_for(day)  # type: ignore[arg-type]
    area = h.get("area")
    if area is None or "commune_code" in h:
        area, _ = _area_and_commune(h)
    if "members" in h:
        h = cs.prepare(h)
    deprived = tuple(compress(cs.indicator_ids, cs.decide_all(h)))
    status, pci, line = _status(cs, area, h, len(deprived))
    return Classification(status, deprived, pci, line, cs.standard.id, area)


def _reason_args(cs: CompiledStandard, h: Household) -> dict[str, Any]:
    """Facts the reason templates quote; only what the household answered is filled in."""
    size = h["household_size"]
    args: dict[str, Any] = {}
    count = h.get("dependants")
    if count is not None:
        args["share_pct"] = f"{count}/{size} ({count / size * 100:.0f}%)"
    area = h.get("floor_area_m2")
    if area is not None:
        args["area_pp"] = f"{area / size:.1f}".replace(".", ",")
    elif h.get("housing") == "none":
        args["area_pp"] = "0"
    if "housing" in h:
        args["housing_vi"] = HOUSING_VI[h["housing"]]
    if "water_source" in h:
        args["water_vi"] = WATER_VI[h["water_source"]]
    if "toilet" in h:
        args["toilet_vi"] = TOILET_VI[h["toilet"]]
    if "waste" in h:
        args["waste_vi"] = WASTE_VI[h["waste"]]
    if "information_devices" in h:
        args["devices_vi"] = ", ".join(DEVICE_VI[d] for d in h["information_devices"]) or "không có phương tiện nào"
    return args


# The legal bounds each indicator's reason quotes, by placeholder.
_REASON_PARAMS: dict[str, dict[str, str]] = {
    "dependants": {"max_share": "dependants.max_share"},
    "nutrition": {"age_below": "nutrition.child_age_below"},
    "health_insurance": {"min_age": "health_insurance.min_age"},
    "adult_education": {
        "min_age": "adult_education.min_age",
        "max_age": "adult_education.max_age",
        "upper_from": "adult_education.upper_secondary_from_age",
    },
    "child_schooling": {"min_age": "child_schooling.min_age", "age_below": "child_schooling.age_below"},
    "housing_area": {"min_m2": "housing_area.min_m2_per_person"},
    "information_devices": {"accepted": "information_devices.accepted"},
}
_STATIC_ARGS: dict[tuple[str, dt.date], dict[str, dict[str, Any]]] = {}


def _static_args(cs: CompiledStandard) -> dict[str, dict[str, Any]]:
    """Per indicator, the legal bounds its reason quotes, formatted once per compiled standard."""
    key = (cs.standard.id, cs.epoch)
    cached = _STATIC_ARGS.get(key)
    if cached is None:
        cached = {}
        for iid in cs.indicator_ids:
            args = {k: cs.params[name] for k, name in _REASON_PARAMS.get(iid, {}).items()}
            if "max_share" in args:
                args["max_pct"] = f"{args.pop('max_share') * 100:g}%"
            if "accepted" in args:
                args["accepted_vi"] = ", ".join(DEVICE_VI[d] for d in args.pop("accepted"))
            cached[iid] = args
        _STATIC_ARGS[key] = cached
    return cached


# The household fields each reason quotes: an indicator's result is fully determined by its decision and these,
# so equal results are built once and shared (a bounded cache; the bulk path sees few distinct combinations).
_REASON_FIELDS: dict[str, tuple[str, ...]] = {
    "dependants": ("dependants", "household_size"),
    "housing_quality": ("housing",),
    "housing_area": ("floor_area_m2", "household_size", "housing"),
    "water": ("water_source",),
    "sanitation": ("toilet",),
    "information_devices": ("information_devices",),
    "waste": ("waste",),
}


def _indicator_result(cs: CompiledStandard, iid: str, decision: bool | None, h: Household) -> IndicatorResult:
    ind = cs.indicators[iid]
    provisional = bool(cs.indicator_provisional[iid])
    if decision is None:
        return IndicatorResult(iid, ind.name_vi, ind.dimension, False, False, UNANSWERED_VI, ind.reference, provisional)
    template = ind.deprived_vi if decision else ind.not_deprived_vi
    reason = template.format_map(_Blank(_reason_args(cs, h), **_static_args(cs)[iid]))
    return IndicatorResult(iid, ind.name_vi, ind.dimension, bool(decision), True, reason, ind.reference, provisional)


_PLANS: dict[tuple[str, dt.date], tuple[dict[tuple[Any, ...], IndicatorResult], tuple[tuple[str, Any], ...]]] = {}


def _indicator_results(
    cs: CompiledStandard, h: Household
) -> tuple[tuple[IndicatorResult, ...], tuple[bool | None, ...]]:
    """Each indicator's result (shared immutable objects) and the raw decisions (True / False / None)."""
    plan = _PLANS.get((cs.standard.id, cs.epoch))
    if plan is None or len(plan[0]) >= _CACHE_LIMIT:
        plan = _PLANS[(cs.standard.id, cs.epoch)] = ({}, tuple((i, _REASON_FIELDS.get(i)) for i in cs.indicator_ids))
    cache, fields_of = plan
    get = h.get
    out = []
    decisions = cs.decide_all(h)
    for (iid, fields), decision in zip(fields_of, decisions):
        if fields is None or decision is None:
            key: tuple[Any, ...] = (iid, decision)
        elif iid == "information_devices":
            key = (iid, decision, tuple(get("information_devices")))  # a list is not hashable
        else:
            key = (iid, decision, *[get(f) for f in fields])
        result = cache.get(key)
        if result is None:
            result = cache[key] = _indicator_result(cs, iid, decision, h)
        out.append(result)
    return tuple(out), decisions


class _Blank(dict):  # type: ignore[type-arg]
    """Format map that leaves a placeholder empty rather than failing when a fact was not given."""

    def __missing__(self, key: str) -> str:
        return "…"


def _what_would_change(
    cs: CompiledStandard, status: str, pci: float, line: int, indicators: tuple[IndicatorResult, ...], area: str
) -> tuple[str, ...]:
    count = sum(1 for i in indicators if i.deprived)
    threshold = cs.threshold
    unanswered = [i for i in indicators if not i.answered]
    out: list[str] = []
    if status in ("poor", "near_poor"):
        gap = line - pci
        out.append(
            f"Thu nhập bình quân thấp hơn hoặc bằng chuẩn nghèo {vnd(line)}/người/tháng "
            f"(thấp hơn {vnd(gap)}). Nếu thu nhập bình quân tăng thêm hơn {vnd(gap)} mỗi người mỗi tháng, "
            "hộ sẽ không còn thuộc diện nghèo hay cận nghèo."
        )
        if status == "poor":
            fewer = count - threshold + 1
            out.append(
                f"Hộ thiếu hụt {count} chỉ số. Nếu khắc phục được {fewer} thiếu hụt (còn dưới {threshold}), "
                "hộ sẽ là hộ cận nghèo thay vì hộ nghèo."
            )
        else:
            more = threshold - count
            out.append(
                f"Hộ thiếu hụt {count} chỉ số. "
                + (
                    "Chỉ cần thiếu hụt thêm 1 chỉ số nữa là hộ thuộc diện hộ nghèo."
                    if more == 1
                    else f"Nếu thiếu hụt thêm {more} chỉ số (đủ {threshold}), hộ sẽ thuộc diện hộ nghèo."
                )
            )
            if unanswered and count + len(unanswered) >= threshold:
                names = ", ".join(i.name_vi.lower() for i in unanswered)
                out.append(f"Còn {len(unanswered)} chỉ số chưa được hỏi ({names}); nếu hộ thiếu hụt ở đó, kết quả có thể là hộ nghèo.")
    else:
        above = pci - line
        would_be = "hộ nghèo" if count >= threshold else "hộ cận nghèo"
        out.append(
            f"Thu nhập bình quân cao hơn chuẩn nghèo {vnd(above)}/người/tháng, nên hộ không thuộc diện nghèo "
            f"hay cận nghèo dù có {count} chỉ số thiếu hụt. Nếu thu nhập bình quân giảm xuống {vnd(line)} trở xuống, "
            f"hộ sẽ là {would_be}."
        )
        band = cs.average_living_max[area]
        if band is None:
            out.append(
                "Ngưỡng thu nhập của hộ có mức sống trung bình cho giai đoạn này chưa được công bố, "
                "nên chưa xác định được hộ có thuộc diện mức sống trung bình hay không."
            )
        elif status == "average_living":
            out.append(
                f"Thu nhập bình quân nằm trong khoảng mức sống trung bình (trên {vnd(line)} đến {vnd(band)}); "
                f"nếu tăng thêm hơn {vnd(band - pci)} mỗi người mỗi tháng, hộ sẽ vượt mức này."
            )
        else:
            out.append(f"Thu nhập bình quân cao hơn mức sống trung bình ({vnd(band)}/người/tháng).")
    return tuple(out)


def _policy_facts(
    h: Household, status: str, area: str, decisions: tuple[bool | None, ...], cs: CompiledStandard
) -> tuple[Any, ...]:
    """The facts that select support policies, as a hashable key (see `_policies`)."""
    children = h.get("children_under_16")
    working_age = h.get("working_age_member")
    pregnant = h.get("pregnant_or_breastfeeding")
    allowance = h.get("social_allowance_member")
    disability = h.get("disability_member")
    members = h.get("members")
    if members is not None:
        below = cs.params["dependants.child_age_below"]
        start = cs.params["employment.working_age_min"]
        if children is None:
            children = any(m["age"] < below for m in members)
        if working_age is None:
            # Any member from 15 up to 60 (the lowest retirement age in the period) is surely of working age.
            working_age = any(start <= m["age"] < 60 for m in members)
        if pregnant is None:
            pregnant = any(m.get("pregnant_or_breastfeeding") is True for m in members)
        if allowance is None:
            allowance = any(m.get("monthly_social_allowance") is True for m in members)
        if disability is None:
            disability = any(m.get("disability") is True for m in members)
    if children is None and h.get("child_under16_malnourished"):
        children = True  # a malnourished child under 16 is a child under 16
    return (
        status,
        area,
        # The decisions stand for the deprived and unanswered sets (same standard, same order); cheap to hash.
        (cs.standard.id, decisions),
        h.get("newly_escaped"),
        children,
        pregnant,
        working_age,
        # Only an explicit answer: a member "studying" may be a school pupil, not a student eligible for student loans.
        h.get("student"),
        h.get("farm_household"),
        h.get("ethnic_minority"),
        allowance,
        disability,
    )


_POLICIES: dict[tuple[Any, ...], tuple[PolicyMatch, ...]] = {}



def _policies(catalog: PolicyCatalog, facts: tuple[Any, ...], on: dt.date) -> tuple[PolicyMatch, ...]:
    """Match the support policies; equal facts on the same day give the same (immutable) matches."""
    key = (id(catalog), on, *facts)
    found = _POLICIES.get(key)
    if found is None:
        if len(_POLICIES) >= _CACHE_LIMIT:
            _POLICIES.clear()
        (status, area, (_, decisions), newly_escaped, children, pregnant, working_age, student, farm,
         ethnic, allowance, disability) = facts
        ids = _IDS_BY_STANDARD[facts[2][0]]
        deprivations = frozenset(i for i, d in zip(ids, decisions) if d)
        unanswered = frozenset(i for i, d in zip(ids, decisions) if d is None)
        found = _POLICIES[key] = tuple(
            catalog.match(
                PolicyFacts(
                    status=status,
                    area=area,
                    deprivations=deprivations,
                    unanswered=unanswered,
                    newly_escaped=newly_escaped,
                    children_under_16=children,
                    pregnant_or_breastfeeding=pregnant,
                    working_age_member=working_age,
                    student=student,
                    farm_household=farm,
                    ethnic_minority=ethnic,
                    social_allowance_member=allowance,
                    disability_member=disability,
                ),
                on=on,
            )
        )
    return found


_PROVISIONAL: dict[tuple[Any, ...], tuple[str, ...]] = {}


def _provisional_values(
    cs: CompiledStandard, area: str, above_line: bool, indicators: tuple[IndicatorResult, ...], decisions: tuple[bool | None, ...]
) -> tuple[str, ...]:
    """Which unconfirmed values this result rests on: the line, the band where it decided, and each answered
    indicator's wording and thresholds."""
    key = (cs.standard.id, cs.epoch, area, above_line, decisions)
    found = _PROVISIONAL.get(key)
    if found is None:
        names = [n for n in (f"income_line.{area}",) if n in cs.provisional_parameters]
        if above_line and f"average_living_max.{area}" in cs.provisional_parameters:
            names.append(f"average_living_max.{area}")
        for i in indicators:
            if i.answered:
                names.extend(cs.indicator_provisional[i.id])
        found = _PROVISIONAL[key] = tuple(dict.fromkeys(names))
    return found


def _assess_under(
    cs: CompiledStandard,
    h: Household,
    on: dt.date,
    area: str,
    commune: Commune | None,
    catalog: PolicyCatalog,
    with_next: bool,
) -> AssessmentResult:
    indicators, decisions = _indicator_results(cs, h)
    count = sum(1 for i in indicators if i.deprived)
    status, pci, line = _status(cs, area, h, count)
    above_line = status not in ("poor", "near_poor")
    summary = (
        f"Ước tính sơ bộ: {STATUS_VI[status]} theo {cs.standard.name_vi}. Thu nhập bình quân "
        f"{vnd(pci)}/người/tháng, chuẩn nghèo khu vực {AREA_VI[area]} {vnd(line)}; thiếu hụt "
        f"{count}/{len(indicators)} chỉ số (hộ nghèo khi từ {cs.threshold} chỉ số trở lên)."
    )
    nxt: AssessmentResult | None = None
    if with_next and on.year == cs.standard.valid_to.year:
        following = next_standard(cs.standard)
        if following is not None:
            ncs = compiled_for(following.valid_from)
            # The roster is reduced again with the next period's age bounds.
            nxt = _assess_under(ncs, ncs.prepare(h), following.valid_from, area, commune, catalog, with_next=False)
    return AssessmentResult(
        status=status,
        standard=cs.standard,
        on=on,
        area=area,
        commune=commune,
        household_size=h["household_size"],
        income_per_capita_vnd=pci,
        income_line_vnd=line,
        average_living_max_vnd=cs.average_living_max[area],
        deprivation_threshold=cs.threshold,
        indicators=indicators,
        policies=_policies(catalog, _policy_facts(h, status, area, decisions, cs), on),
        provisional_values=_provisional_values(cs, area, above_line, indicators, decisions),
        what_would_change=_what_would_change(cs, status, pci, line, indicators, area),
        summary_vi=summary,
        next_standard=nxt,
    )


def assess(
    data: Mapping[str, Any] | Household,
    on: dt.date | str | None = None,
    *,
    validated: bool = False,
    catalog: PolicyCatalog | None = None,
) -> AssessmentResult:
    """Assess a household under the standard in force on `on` (default: the input's `on`, else today).

    `catalog` is the support-policy catalogue (default: the packaged one; a deployment passes one with its own
    office names, see `PolicyCatalog.with_offices`).

    Raises InputError for invalid input, an unknown commune or a date outside every period.
    """
    h = _household(data, validated)
    day = _reference_date(h, on)
    cs = compiled_for(day)
    area, commune = _area_and_commune(h)
    return _assess_under(cs, cs.prepare(h), day, area, commune, catalog or default_catalog(), with_next=True)
