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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from .household import Household, Member, shape_check_source
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


#: The combination rule (Decree 07/2021/NĐ-CP Art. 3.2; same structure in Decree 351/2025/NĐ-CP), stated once and
#: compiled into both the general path (`CompiledStandard.status_of`) and the per-shape bulk classifiers. Inputs:
#: area, size, total (household income or None), pci (per-capita income, or None when total is given), count
#: (deprivations). "Từ … trở xuống" is ≤; totals are compared with line × size, so 1 đồng above the line is never
#: rounded away. Above the line is never poor; the average-living band is "trên … đến …", absent when unpublished.
STATUS_RULE = """\
line = LINE_RURAL if area == "rural" else LINE_URBAN
if total is not None:
    pci = total / size
    below = total <= line * size
else:
    below = pci <= line
if below:
    status = "poor" if count >= THRESHOLD else "near_poor"
else:
    band = BAND_RURAL if area == "rural" else BAND_URBAN
    if band is not None and (total <= band * size if total is not None else pci <= band):
        status = "average_living"
    else:
        status = "not_poor"
"""


class Classification(NamedTuple):
    """The lean result of `classify`: status and deprivation ids, for bulk work (a tuple: cheap to build)."""

    status: str
    deprivations: tuple[str, ...]
    income_per_capita_vnd: float
    income_line_vnd: int
    standard_id: str
    area: str


def _indent(source: str, spaces: int) -> list[str]:
    return [" " * spaces + line for line in source.splitlines()]


def _status_constants(cs: "CompiledStandard") -> dict[str, Any]:
    return {
        "LINE_RURAL": cs.lines["rural"],
        "LINE_URBAN": cs.lines["urban"],
        "BAND_RURAL": cs.average_living_max["rural"],
        "BAND_URBAN": cs.average_living_max["urban"],
        "THRESHOLD": cs.threshold,
    }


def _compile_status(cs: "CompiledStandard") -> Callable[..., tuple[str, float, int]]:
    names = _status_constants(cs)
    body = "\n".join(["def status_of(area, size, total, pci, count):", *_indent(STATUS_RULE, 4), "    return status, pci, line"])
    exec(compile(body, "<status rule>", "exec"), names)  # noqa: S102 - our own source
    return names["status_of"]  # type: ignore[no-any-return]


#: Returned by a shape classifier given a dict of another shape (as opposed to None: this shape, needs validation).
SHAPE_MISS: Any = object()

_FIELD_READ = re.compile(r'h\.get\("([a-z0-9_]+)"\)|h\["([a-z0-9_]+)"\]')


def _compile_shape_classifier(
    cs: "CompiledStandard", keys: tuple[str, ...]
) -> Callable[[Mapping[str, Any]], Any] | None:
    source = shape_check_source(keys)
    if source is None:
        return None
    lines, names = source
    present = set(keys)

    def local(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return f"v_{name}" if name in present else "None"

    exprs = [_PLACEHOLDER.sub(lambda m: f"P_{m.group(1).replace('.', '_')}", QUICK_RULES[i]) for i in cs.indicator_ids]
    exprs = [_FIELD_READ.sub(local, e) for e in exprs]
    names.update(cs.bound_parameters)
    names.update(_status_constants(cs))
    names["IDS"] = cs.indicator_ids
    names["SID"] = cs.standard.id
    names["Classification"] = Classification
    names["new"] = tuple.__new__
    total = "v_monthly_income_vnd" if "monthly_income_vnd" in present else "None"
    pci = "v_monthly_income_per_capita_vnd" if "monthly_income_per_capita_vnd" in present else "None"
    names["MISS"] = SHAPE_MISS
    body = "\n".join(
        [
            "def classify_shape(d):",
            # Same size and every key present means exactly this shape (the order does not matter).
            f"  if len(d) != {len(keys)}: return MISS",
            "  try:",
            *lines,
            "  except TypeError:",
            "    return None",
            "  except KeyError:",
            "    return MISS",
            # Deprived ids in the law's order; a tuple grown by concatenation beats compress() for 12 items.
            "  deprived = ()",
            *[f"  if {e}: deprived += ({iid!r},)" for iid, e in zip(cs.indicator_ids, exprs)],
            f"  area, size, total, pci, count = v_area, v_household_size, {total}, {pci}, len(deprived)",
            *_indent(STATUS_RULE, 2),
            # tuple.__new__ skips the NamedTuple's Python-level __new__.
            "  return new(Classification, (status, deprived, pci, line, SID, area))",
        ]
    )
    exec(compile(body, "<shape classifier>", "exec"), names)  # noqa: S102 - our own source
    return names["classify_shape"]  # type: ignore[no-any-return]


def _compile_rules(
    indicator_ids: tuple[str, ...], p: Param, namespace: dict[str, Any]
) -> Callable[[Household], tuple[bool | None, ...]]:
    """Generate one function evaluating every indicator of a standard at once (the bulk path's inner loop).

    `namespace` receives the bound parameter constants (P_<name>), reused by the per-shape classifiers.
    """

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
    bound_parameters: Mapping[str, Any]
    decide_all: Callable[[Household], tuple[bool | None, ...]]
    member_flags: Callable[[tuple[Member, ...]], dict[str, Any]]
    indicators: Mapping[str, IndicatorDef]
    params: Mapping[str, Any]
    provisional_parameters: tuple[str, ...]
    parameter_references: Mapping[str, str]
    indicator_provisional: Mapping[str, tuple[str, ...]]

    #: The classifier of the last shape seen: bulk input repeats one shape, so this skips the shape lookup.
    last_classifier: list[Callable[[Mapping[str, Any]], Any]] = field(
        default_factory=list, compare=False, repr=False
    )
    #: The compiled `STATUS_RULE` (built on first use).
    last_status: list[Callable[..., tuple[str, float, int]]] = field(default_factory=list, compare=False, repr=False)
    #: Generated classifiers per input shape (see `classifier_for`); not part of equality.
    _shapes: dict[tuple[str, ...], Callable[[Mapping[str, Any]], Any] | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def classifier_for(self, keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any] | None:
        """Return the bulk path for dicts with exactly these keys: validate and decide in one generated function.

        The function returns the deprived indicator ids, or None when the input needs the full validation. The
        rules are the same `QUICK_RULES` expressions, with each field read once into a local.
        """
        try:
            fn = self._shapes[keys]
        except KeyError:
            pass
        else:
            if fn is not None:
                self.last_classifier[:] = [fn]
            return fn
        if len(self._shapes) > 1024:
            self._shapes.clear()
        fn = self._shapes[keys] = _compile_shape_classifier(self, keys)
        if fn is not None:
            self.last_classifier[:] = [fn]
        return fn

    def status_of(self, area: str, size: int, total: float | None, pci: float | None, count: int) -> tuple[str, float, int]:
        """Apply `STATUS_RULE`: return (status, per-capita income, line)."""
        if not self.last_status:
            self.last_status.append(_compile_status(self))
        return self.last_status[0](area, size, total, pci, count)  # type: ignore[no-any-return]

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
    bound: dict[str, Any] = {}
    decide_all = _compile_rules(ids, p, bound)
    member_flags = _member_flags(p)
    return CompiledStandard(
        standard=standard,
        epoch=standard.epoch(on),
        lines=lines,
        average_living_max=band,
        threshold=threshold,
        indicator_ids=ids,
        decide_all=decide_all,
        bound_parameters={k: v for k, v in bound.items() if k.startswith("P_")},
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
