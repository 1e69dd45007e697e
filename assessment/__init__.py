"""Tự rà soát legal core: Vietnam's multidimensional poverty standard as rules-as-code.

Pure: no network, no database, no web framework. Law lives in dated data files under `assessment/data/`, each value
with its legal reference and a confidence; the code reads them by name and reference date.
"""
from __future__ import annotations

from typing import Any

from .engine import AssessmentResult, Classification, IndicatorResult, assess, classify, compiled_for
from .errors import AssessmentError, InputError, Problem, StandardDataError
from .household import Household, Member, parse_date, parse_household
from .standards import Standard, default_standards, standard_for

__all__ = [
    "AssessmentError",
    "AssessmentResult",
    "Classification",
    "Household",
    "IndicatorResult",
    "InputError",
    "Member",
    "Problem",
    "Standard",
    "StandardDataError",
    "assess",
    "classify",
    "compiled_for",
    "default_standards",
    "parse_date",
    "parse_household",
    "standard_for",
    "standards_catalog",
]


def standards_catalog() -> list[dict[str, Any]]:
    """Return every legal period with its lines, parameters, indicators and citations (GET /api/v1/standards)."""
    return [s.to_dict() for s in default_standards()]
