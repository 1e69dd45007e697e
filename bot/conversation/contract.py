"""The household input fields the questionnaire may fill (issue A quick form), with their kinds.

This mirrors the contract the legal core validates (``assessment.parse_household``); the questionnaire loader
checks every ``fills`` against it so that a typo in the YAML fails at load, naming the question, instead of
being rejected by the core at the end of a conversation. ``tests/test_engine.py`` cross-checks this table
against the core's own field list once the core is importable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from assessment.household import AREAS, DEVICES, EDUCATION, HOUSING, SEXES, TOILETS, WASTE, WATER_SOURCES, WORK

__all__ = ["FIELD_SPECS", "HOUSEHOLD_DETAILS", "MEMBER_FIELD_SPECS", "FieldSpec"]

Kind = Literal["bool", "int", "number", "money", "enum", "enum_list", "code", "members"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One input field: its kind and, for enumerations, the allowed values."""

    kind: Kind
    values: frozenset[str] = frozenset()


# The vocabularies are the core's own (one definition: assessment.household).
_AREAS = frozenset(AREAS)
_HOUSING = frozenset(HOUSING)
_WATER = frozenset(WATER_SOURCES)
_TOILETS = frozenset(TOILETS)
_DEVICES = frozenset(DEVICES)
_WASTE = frozenset(WASTE)

_BOOL: Final = FieldSpec("bool")

#: Field name -> spec. ``on`` is not here: the engine sets it from its reference date, never from an answer.
FIELD_SPECS: Final[dict[str, FieldSpec]] = {
    "area": FieldSpec("enum", _AREAS),
    "commune_code": FieldSpec("code"),
    "household_size": FieldSpec("int"),
    "monthly_income_vnd": FieldSpec("money"),
    "monthly_income_per_capita_vnd": FieldSpec("money"),
    "dependants": FieldSpec("int"),
    "working_age_unemployed_or_no_contract": _BOOL,
    "child_under16_malnourished": _BOOL,
    "member_6plus_without_health_insurance": _BOOL,
    "member_16_30_lacking_education": _BOOL,
    "child_3_15_not_in_school": _BOOL,
    "housing": FieldSpec("enum", _HOUSING),
    "floor_area_m2": FieldSpec("number"),
    "water_source": FieldSpec("enum", _WATER),
    "toilet": FieldSpec("enum", _TOILETS),
    "internet": _BOOL,
    "information_devices": FieldSpec("enum_list", _DEVICES),
    "waste": FieldSpec("enum", _WASTE),
    # Policy facts: they select support policies and never change the status.
    "children_under_16": _BOOL,
    "pregnant_or_breastfeeding": _BOOL,
    "student": _BOOL,
    "newly_escaped": _BOOL,
    "farm_household": _BOOL,
    "social_allowance_member": _BOOL,
    # The detailed form: one entry per member (see MEMBER_FIELD_SPECS); the core derives the flags from it.
    "members": FieldSpec("members"),
}

_SEXES = frozenset(SEXES)
_EDUCATION = frozenset(EDUCATION)
_WORK = frozenset(WORK)

#: Fields of one ``members`` entry the roster questions may fill (``assessment.household.Member``).
MEMBER_FIELD_SPECS: Final[dict[str, FieldSpec]] = {
    "age": FieldSpec("int"),
    "sex": FieldSpec("enum", _SEXES),
    "health_insurance": _BOOL,
    "malnourished": _BOOL,
    "in_school": _BOOL,
    "studying": _BOOL,
    "education": FieldSpec("enum", _EDUCATION),
    "work": FieldSpec("enum", _WORK),
    "monthly_social_allowance": _BOOL,
    "disability": _BOOL,
    "pregnant_or_breastfeeding": _BOOL,
}

#: Personal details asked in share mode and collaborator mode. They are not part of the core's input: the engine
#: sends them beside it (``assessment`` event, ``household``) and the store keeps them only for shared results.
HOUSEHOLD_DETAILS: Final = ("hamlet", "household_head", "phone")
