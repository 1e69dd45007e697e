"""The generated bulk path of `classify` must agree with the full path of `assess` on any input."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assessment import InputError, assess, classify
from assessment.household import DEVICES, FLAG_FIELDS, HOUSING, TOILETS, WASTE, WATER_SOURCES

DATES = st.sampled_from([dt.date(2022, 1, 1), dt.date(2026, 6, 1), dt.date(2026, 12, 31), dt.date(2027, 1, 1), dt.date(2028, 5, 5)])

# Valid values mixed with a few invalid ones, so both the fast path and its fall-back are exercised.
ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True), st.text(max_size=5), st.lists(st.integers(), max_size=2))


@st.composite
def households(draw: Any) -> dict[str, Any]:
    size = draw(st.integers(1, 12))
    h: dict[str, Any] = {"area": draw(st.sampled_from(["rural", "urban"])), "household_size": size}
    if draw(st.booleans()):
        h["monthly_income_vnd"] = draw(st.one_of(st.integers(0, 5_000_000 * size), st.floats(0, 5_000_000.0 * size)))
    else:
        h["monthly_income_per_capita_vnd"] = draw(st.integers(0, 4_000_000))
    optional = {
        "dependants": st.integers(0, size),
        "housing": st.sampled_from(HOUSING),
        "floor_area_m2": st.floats(0.5, 300),
        "water_source": st.sampled_from(WATER_SOURCES),
        "toilet": st.sampled_from(TOILETS),
        "internet": st.booleans(),
        "information_devices": st.lists(st.sampled_from(DEVICES), max_size=3, unique=True),
        "waste": st.sampled_from(WASTE),
        **{flag: st.booleans() for flag in FLAG_FIELDS},
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            h[key] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:  # now and then one invalid value
        h[draw(st.sampled_from(sorted(h)))] = draw(ANY_VALUE)
    return h


def _outcome(fn: Any, h: dict[str, Any], on: dt.date) -> Any:
    try:
        r = fn(h, on)
    except InputError as exc:
        return ("error", sorted((p.field, p.code) for p in exc.problems))
    return (r.status, tuple(r.deprivations), r.income_line_vnd)


@settings(max_examples=600, deadline=None)
@given(households(), DATES)
def test_classify_and_assess_agree(h: dict[str, Any], on: dt.date) -> None:
    fast = _outcome(classify, h, on)
    full = _outcome(assess, h, on)
    if fast[0] == "error" or full[0] == "error":
        assert fast[0] == full[0] == "error"
    else:
        assert fast == full


@pytest.mark.parametrize("bad", [{"household_size": True}, {"area": ["rural"]}, {"floor_area_m2": float("nan")}, {"dependants": 9}])
def test_the_bulk_path_sends_doubtful_input_to_full_validation(bad: dict[str, Any]) -> None:
    h = {"area": "rural", "household_size": 4, "monthly_income_vnd": 1, "dependants": 1, "floor_area_m2": 40, **bad}
    with pytest.raises(InputError):
        classify(h, dt.date(2026, 1, 1))
