"""The deprivation rules, compiled once per standard and parameter epoch.

Each indicator has one decision function built from the legal parameters in force (closures over plain values,
so the bulk path does no look-ups), and one function that gathers the facts its Vietnamese reason quotes. A
decision returns True (deprived), False (not deprived) or None (not asked: the indicator is listed as unanswered
and counts as not deprived).

Where a household gives the detailed member roster instead of a quick flag, the flag is derived from the members
with the age bounds of the standard in force ("ages as completed years; bounds exactly as the reference says").
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .household import Household, Member
from .errors import StandardDataError
from .standards import IndicatorDef, Standard

Param = Callable[[str], Any]

#: Parameters each indicator reads, besides the common ones; the loader refuses a standard that lacks one.
INDICATOR_PARAMETERS: dict[str, tuple[str, ...]] = {
    "employment": (
        "employment.working_age_min",
        "employment.retirement_age_months.male",
        "employment.retirement_age_months.female",
    ),
    "dependants": ("dependants.max_share", "dependants.child_age_below"),
    "nutrition": ("nutrition.child_age_below",),
    "health_insurance": ("health_insurance.min_age",),
    "adult_education": (
        "adult_education.min_age",
        "adult_education.max_age",
        "adult_education.upper_secondary_from_age",
    ),
    "child_schooling": ("child_schooling.min_age", "child_schooling.age_below"),
    "housing_quality": ("housing_quality.deprived_grades",),
    "housing_area": ("housing_area.min_m2_per_person",),
    "water": ("water.safe_sources",),
    "sanitation": ("sanitation.hygienic_toilets",),
    "telecom": (),
    "information_devices": ("information_devices.accepted",),
    "waste": ("waste.deprived_methods",),
}
COMMON_PARAMETERS = (
    "income_line.rural",
    "income_line.urban",
    "average_living_max.rural",
    "average_living_max.urban",
    "deprivation_threshold",
)

#: Education levels that satisfy each age group of the adult-education indicator.
_LOWER_SECONDARY_OR_MORE = frozenset(
    {
        "lower_secondary",
        "upper_secondary",
        "vocational_elementary",
        "vocational_intermediate",
        "college",
        "university",
        "enterprise_trained",
    }
)
_UPPER_SECONDARY_OR_VOCATIONAL = _LOWER_SECONDARY_OR_MORE - {"lower_secondary"}


def required_parameters(indicator_ids: Iterable[str]) -> set[str]:
    """Return every parameter a standard with these indicators must define."""
    needed = set(COMMON_PARAMETERS)
    for iid in indicator_ids:
        needed.update(INDICATOR_PARAMETERS[iid])
    return needed


#: One expression per indicator over the quick form `h`, evaluating to True (deprived), False or None (not asked).
#: `{name}` placeholders are legal parameters, bound as constants when a standard is compiled. These strings are
#: the single statement of each rule: the member roster is first reduced to the same quick fields (`derive_quick`).
QUICK_RULES: dict[str, str] = {
    # Decree 07 Phụ lục, employment: a working-age member unemployed or in wage work without a labour contract.
    "employment": 'h.get("working_age_unemployed_or_no_contract")',
    # Dependants above 50 % of members ("trên 50%": exactly half is not deprived); compared without division.
    "dependants": 'None if (d := h.get("dependants")) is None else d > {dependants.max_share} * h["household_size"]',
    # A child under 16 stunted or underweight.
    "nutrition": 'h.get("child_under16_malnourished")',
    # A member aged 6 or over without a valid health insurance card.
    "health_insurance": 'h.get("member_6plus_without_health_insurance")',
    # A member aged 16–30 neither studying nor holding the qualification due for the age.
    "adult_education": 'h.get("member_16_30_lacking_education")',
    # A child aged 3 to under 16 not attending school.
    "child_schooling": 'h.get("child_3_15_not_in_school")',
    # Living in a less-durable or simple house (or none).
    "housing_quality": 'None if (v := h.get("housing")) is None else v in {housing_quality.deprived_grades}',
    # Under 8 m² of floor per person (strictly less); a household without a dwelling has no floor area at all.
    "housing_area": '(True if h.get("housing") == "none" else None) if (a := h.get("floor_area_m2")) is None '
    'else a < {housing_area.min_m2_per_person} * h["household_size"]',
    # Not using a safe water source.
    "water": 'None if (v := h.get("water_source")) is None else v not in {water.safe_sources}',
    # Not using a hygienic latrine.
    "sanitation": 'None if (v := h.get("toilet")) is None else v not in {sanitation.hygienic_toilets}',
    # Nobody uses internet services (read as internet only: provisional).
    "telecom": 'None if (v := h.get("internet")) is None else not v',
    # None of the listed information devices.
    "information_devices": 'None if (v := h.get("information_devices")) is None '
    'else {information_devices.accepted}.isdisjoint(v)',
    # Decree 351/2025: household waste dumped into the environment.
    "waste": 'None if (v := h.get("waste")) is None else v in {waste.deprived_methods}',
}

_PLACEHOLDER = re.compile(r"\{([a-z0-9_.]+)\}")


def _member_flags(p: Param) -> Callable[[tuple[Member, ...]], dict[str, Any]]:
    """Build the reduction of a member roster to the quick fields, with the age bounds of the standard in force.

    Ages are completed years. Working age runs from 15 to the retirement age of the Labour Code 2019 Art. 169
    (in months); without a sex the later (male) age is used, so a member who may still be of working age counts.
    """
    start = p("employment.working_age_min")
    retire = {"male": p("employment.retirement_age_months.male"), "female": p("employment.retirement_age_months.female")}
    latest = max(retire.values())
    dependant_below = p("dependants.child_age_below")
    nutrition_below = p("nutrition.child_age_below")
    insurance_from = p("health_insurance.min_age")
    edu_low, edu_high = p("adult_education.min_age"), p("adult_education.max_age")
    upper_from = p("adult_education.upper_secondary_from_age")
    school_low, school_below = p("child_schooling.min_age"), p("child_schooling.age_below")

    def lacking_education(m: Member) -> bool:
        age = m["age"]
        if not edu_low <= age <= edu_high or m.get("studying") is True or "education" not in m:
            return False
        needed = _UPPER_SECONDARY_OR_VOCATIONAL if age >= upper_from else _LOWER_SECONDARY_OR_MORE
        return m["education"] not in needed

    def flags(members: tuple[Member, ...]) -> dict[str, Any]:
        return {
            "working_age_unemployed_or_no_contract": any(
                start <= m["age"] and m["age"] * 12 < retire.get(m.get("sex", ""), latest)
                and m.get("work") in ("unemployed", "wage_without_contract")
                for m in members
            ),
            "dependants": sum(
                1 for m in members if m["age"] < dependant_below or m.get("monthly_social_allowance") is True
            ),
            "child_under16_malnourished": any(
                m["age"] < nutrition_below and m.get("malnourished") is True for m in members
            ),
            "member_6plus_without_health_insurance": any(
                m["age"] >= insurance_from and m.get("health_insurance") is False for m in members
            ),
            "member_16_30_lacking_education": any(lacking_education(m) for m in members),
            "child_3_15_not_in_school": any(
                school_low <= m["age"] < school_below and m.get("in_school") is False for m in members
            ),
        }

    return flags


def _compile_rules(indicator_ids: tuple[str, ...], p: Param) -> Callable[[Household], tuple[bool | None, ...]]:
    """Generate one function evaluating every indicator of a standard at once (the bulk path's inner loop)."""
    namespace: dict[str, Any] = {}

    def bind(match: re.Match[str]) -> str:
        value = p(match.group(1))
        name = "P_" + match.group(1).replace(".", "_")
        namespace[name] = frozenset(value) if isinstance(value, tuple) else value
        return name

    body = ",\n        ".join(_PLACEHOLDER.sub(bind, QUICK_RULES[i]).replace("h.get(", "g(") for i in indicator_ids)
    source = f"def decide_all(h):\n    g = h.get\n    return (\n        {body},\n    )\n"
    if _PLACEHOLDER.search(source):
        raise StandardDataError(f"unbound parameter in rules: {_PLACEHOLDER.search(source).group(0)}")
    exec(compile(source, f"<rules {'/'.join(indicator_ids)}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["decide_all"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CompiledStandard:
    """A standard with every parameter resolved for one epoch and every rule built, ready for the bulk path."""

    standard: Standard
    epoch: dt.date
    lines: Mapping[str, int]
    average_living_max: Mapping[str, int | None]
    threshold: int
    indicator_ids: tuple[str, ...]
    decide_all: Callable[[Household], tuple[bool | None, ...]]
    member_flags: Callable[[tuple[Member, ...]], dict[str, Any]]
    indicators: Mapping[str, IndicatorDef]
    params: Mapping[str, Any]
    provisional_parameters: tuple[str, ...]
    parameter_references: Mapping[str, str]
    indicator_provisional: Mapping[str, tuple[str, ...]]

    def prepare(self, h: Household) -> Household:
        """Reduce a member roster to the quick fields; an explicitly given quick field wins over the roster."""
        members = h.get("members")
        if members is None:
            return h
        derived = self.member_flags(members)
        derived.update(h)
        return derived  # type: ignore[return-value]


def compile_standard(standard: Standard, on: dt.date) -> CompiledStandard:
    """Resolve the parameters in force on `on` and build each indicator's decision function."""
    used: dict[str, Any] = {}
    provisional: list[str] = []
    references: dict[str, str] = {}

    def p(name: str) -> Any:
        dated = standard.value(name, on)
        if name not in used:
            used[name] = dated.value
            references[name] = dated.reference
            if dated.provisional:
                provisional.append(name)
        return dated.value

    lines = {"rural": p("income_line.rural"), "urban": p("income_line.urban")}
    band = {"rural": p("average_living_max.rural"), "urban": p("average_living_max.urban")}
    threshold = p("deprivation_threshold")
    ids = tuple(ind.id for ind in standard.indicators)
    decide_all = _compile_rules(ids, p)
    member_flags = _member_flags(p)
    return CompiledStandard(
        standard=standard,
        epoch=standard.epoch(on),
        lines=lines,
        average_living_max=band,
        threshold=threshold,
        indicator_ids=ids,
        decide_all=decide_all,
        member_flags=member_flags,
        indicators={ind.id: ind for ind in standard.indicators},
        params=dict(used),
        provisional_parameters=tuple(provisional),
        parameter_references=references,
        # Names of the provisional values behind each indicator (its own wording and its parameters).
        indicator_provisional={
            ind.id: tuple(n for n in INDICATOR_PARAMETERS[ind.id] if n in provisional)
            + ((f"indicator:{ind.id}",) if ind.provisional else ())
            for ind in standard.indicators
        },
    )
