"""JSON Schema (draft 2020-12) of the household input, built from the same vocabularies the validator uses."""
from __future__ import annotations

from typing import Any

from .household import (
    AREAS,
    DEVICES,
    EDUCATION,
    FLAG_FIELDS,
    HOUSING,
    MAX_AGE,
    MAX_FLOOR_AREA,
    MAX_HOUSEHOLD_SIZE,
    MAX_MONTHLY_INCOME,
    POLICY_FACT_FIELDS,
    SEXES,
    TOILETS,
    WASTE,
    WATER_SOURCES,
    WORK,
)

SCHEMA_ID = "/api/v1/schema/household.json"

_FLAG_TITLES = {
    "working_age_unemployed_or_no_contract": "Có người trong độ tuổi lao động thất nghiệp hoặc làm công không có hợp đồng",
    "child_under16_malnourished": "Có trẻ dưới 16 tuổi suy dinh dưỡng",
    "member_6plus_without_health_insurance": "Có người từ đủ 6 tuổi không có thẻ BHYT còn hạn",
    "member_16_30_lacking_education": "Có người 16–30 tuổi không đi học và chưa có bằng cấp phù hợp",
    "child_3_15_not_in_school": "Có trẻ 3 đến dưới 16 tuổi không đi học",
}

MEMBER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["age"],
    "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": MAX_AGE, "description": "Tuổi tròn (completed years)"},
        "sex": {"enum": list(SEXES)},
        "health_insurance": {"type": "boolean"},
        "malnourished": {"type": "boolean"},
        "in_school": {"type": "boolean"},
        "studying": {"type": "boolean"},
        "education": {"enum": list(EDUCATION)},
        "work": {"enum": list(WORK)},
        "monthly_social_allowance": {"type": "boolean"},
        "disability": {"type": "boolean"},
        "pregnant_or_breastfeeding": {"type": "boolean"},
    },
}

HOUSEHOLD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "Hộ gia đình (household input, quick form with optional member roster)",
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["household_size"]}, {"required": ["members"]}],
    "oneOf": [{"required": ["monthly_income_vnd"]}, {"required": ["monthly_income_per_capita_vnd"]}],
    "properties": {
        "on": {"type": "string", "format": "date", "description": "Reference date; default today"},
        "area": {"enum": list(AREAS)},
        "commune_code": {"type": "string", "pattern": "^[0-9]{1,5}$", "description": "2025 commune/ward code"},
        "household_size": {"type": "integer", "minimum": 1, "maximum": MAX_HOUSEHOLD_SIZE},
        "monthly_income_vnd": {"type": "number", "minimum": 0, "maximum": MAX_MONTHLY_INCOME},
        "monthly_income_per_capita_vnd": {"type": "number", "minimum": 0, "maximum": MAX_MONTHLY_INCOME},
        "dependants": {"type": "integer", "minimum": 0, "maximum": MAX_HOUSEHOLD_SIZE},
        **{name: {"type": "boolean", "title": title} for name, title in _FLAG_TITLES.items()},
        "housing": {"enum": list(HOUSING)},
        "floor_area_m2": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_FLOOR_AREA},
        "water_source": {"enum": list(WATER_SOURCES)},
        "toilet": {"enum": list(TOILETS)},
        "internet": {"type": "boolean"},
        "information_devices": {"type": "array", "items": {"enum": list(DEVICES)}, "uniqueItems": True},
        "waste": {"enum": list(WASTE)},
        "members": {"type": "array", "minItems": 1, "maxItems": MAX_HOUSEHOLD_SIZE, "items": MEMBER_SCHEMA},
        **{name: {"type": "boolean"} for name in POLICY_FACT_FIELDS},
    },
}

assert set(_FLAG_TITLES) == set(FLAG_FIELDS)
