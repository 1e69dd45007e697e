"""The legal core as a library: purity, strict loading, bad input, explanations and the lean path."""
from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
import yaml

import assessment
from assessment import InputError, StandardDataError, assess, classify, parse_household
from assessment.standards import load_standard_file, parse_standard

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"flask", "sqlalchemy", "requests", "rasa_sdk", "redis", "rq", "psycopg", "werkzeug", "socket", "urllib", "http"}
STANDARD_FILE = ROOT / "assessment" / "data" / "standards" / "2022_decree_07.yaml"

RURAL_POOR = {
    "area": "rural",
    "household_size": 4,
    "monthly_income_vnd": 5_000_000,
    "housing": "simple",
    "water_source": "surface_water",
    "toilet": "fish_pond",
    "internet": True,
    "information_devices": ["tv"],
}


def test_the_legal_core_imports_no_io_library() -> None:
    for path in (ROOT / "assessment").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_no_legal_number_is_a_literal_in_the_rules() -> None:
    # The lines, thresholds and age bounds live in YAML; the rule code must not repeat them.
    for name in ("rules.py", "engine.py"):
        source = (ROOT / "assessment" / name).read_text(encoding="utf-8")
        for literal in ("1500000", "1_500_000", "2000000", "2_000_000", "2200000", "2800000", "2250000"):
            assert literal not in source, f"{name} hard-codes {literal}"


# --- Loader strictness: every error names the file ---------------------------------------------------------------


def _raw() -> dict:
    return yaml.safe_load(STANDARD_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["parameters"]["income_line.rural"]["values"].update({"2023-02-30": {"value": 1, "reference": "x", "confidence": "confirmed"}}), "not a date"),
        (lambda r: r["parameters"]["income_line.rural"]["values"][dt.date(2022, 1, 1)].pop("reference"), "'reference' is missing"),
        (lambda r: r["parameters"]["income_line.rural"]["values"][dt.date(2022, 1, 1)].update(confidence="likely"), "confidence"),
        (lambda r: r["parameters"].update({"income_line.suburban": r["parameters"]["income_line.rural"]}), "unknown parameter"),
        (lambda r: r.update(colour="blue"), "unknown key"),
        (lambda r: r["indicators"][0].update(id="happiness"), "unknown indicator"),
        (lambda r: r["parameters"].pop("deprivation_threshold"), "missing parameter"),
        (lambda r: r["parameters"]["income_line.rural"]["values"].update({dt.date(2031, 1, 1): {"value": 1, "reference": "x", "confidence": "confirmed"}}), "outside the period"),
        (lambda r: r["parameters"]["income_line.rural"]["values"][dt.date(2022, 1, 1)].update(extra=1), "unknown key"),
    ],
    ids=["bad date", "no reference", "bad confidence", "unknown parameter", "unknown top key", "unknown indicator", "missing parameter", "date outside period", "unknown value key"],
)
def test_a_malformed_standard_file_is_rejected_naming_the_file(mutate, message: str) -> None:
    raw = _raw()
    mutate(raw)
    with pytest.raises(StandardDataError, match=message) as info:
        parse_standard(raw, "broken.yaml")
    assert "broken.yaml" in str(info.value)


def test_invalid_yaml_is_rejected_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(StandardDataError, match="bad.yaml"):
        load_standard_file(bad)


def test_the_packaged_standards_cover_2022_to_2030_without_gaps() -> None:
    periods = assessment.default_standards()
    assert [s.id for s in periods] == ["decree07_2022", "decree351_2027"]
    assert periods[0].valid_to + dt.timedelta(days=1) == periods[1].valid_from
    assert [i.id for i in periods[1].indicators].count("waste") == 1
    assert "information_devices" not in [i.id for i in periods[1].indicators]
    assert len(periods[0].indicators) == len(periods[1].indicators) == 12


# --- Bad input: a structured error naming the field, never a silent default ---------------------------------------

BAD_INPUTS = [
    ({"area": "rural", "monthly_income_vnd": 1}, "household_size", "required"),
    ({**RURAL_POOR, "household_size": 0}, "household_size", "out_of_range"),
    ({**RURAL_POOR, "household_size": -3}, "household_size", "out_of_range"),
    ({**RURAL_POOR, "household_size": "bốn"}, "household_size", "invalid_type"),
    ({**RURAL_POOR, "household_size": True}, "household_size", "invalid_type"),
    ({**RURAL_POOR, "monthly_income_vnd": -1}, "monthly_income_vnd", "out_of_range"),
    ({**RURAL_POOR, "monthly_income_per_capita_vnd": 1}, "monthly_income_vnd", "exactly_one_of"),
    ({"area": "rural", "household_size": 2}, "monthly_income_vnd", "exactly_one_of"),
    ({**RURAL_POOR, "housing": "castle"}, "housing", "unknown_value"),
    ({**RURAL_POOR, "information_devices": ["tv", "fax"]}, "information_devices", "unknown_value"),
    ({**RURAL_POOR, "information_devices": "tv"}, "information_devices", "invalid_type"),
    ({**RURAL_POOR, "favourite_colour": "red"}, "favourite_colour", "unknown_field"),
    ({**RURAL_POOR, "floor_area_m2": 0}, "floor_area_m2", "out_of_range"),
    ({**RURAL_POOR, "dependants": 5}, "dependants", "inconsistent"),
    ({**RURAL_POOR, "internet": "yes"}, "internet", "invalid_type"),
    ({**RURAL_POOR, "on": "2026-13-01"}, "on", "invalid_date"),
    ({**RURAL_POOR, "on": "2031-01-01"}, "on", "date_out_of_range"),
    ({**RURAL_POOR, "on": "2021-12-31"}, "on", "date_out_of_range"),
    ({k: v for k, v in RURAL_POOR.items() if k != "area"}, "area", "required"),
    ({**RURAL_POOR, "commune_code": "99999"}, "commune_code", "unknown_commune"),
    ({**RURAL_POOR, "commune_code": "abc"}, "commune_code", "invalid_type"),
    ({**RURAL_POOR, "members": [{"age": 200}, {"age": 3}, {"age": 30}, {"age": 31}]}, "members[0].age", "out_of_range"),
    ({**RURAL_POOR, "members": [{"sex": "male"}]}, "members[0].age", "required"),
    ({**RURAL_POOR, "members": [{"age": 30}]}, "household_size", "inconsistent"),
    ({**RURAL_POOR, "monthly_income_vnd": float("nan")}, "monthly_income_vnd", "invalid_type"),
]


@pytest.mark.parametrize(("data", "field", "code"), BAD_INPUTS, ids=[f"{f}:{c}:{i}" for i, (_, f, c) in enumerate(BAD_INPUTS)])
def test_bad_input_gets_a_structured_vietnamese_error_naming_the_field(data: dict, field: str, code: str) -> None:
    with pytest.raises(InputError) as info:
        assess(data)
    problems = {(p.field, p.code) for p in info.value.problems}
    assert (field, code) in problems
    assert all(p.message_vi for p in info.value.problems)


def test_a_non_object_input_is_rejected() -> None:
    with pytest.raises(InputError) as info:
        parse_household(["not", "an", "object"])  # type: ignore[arg-type]
    assert info.value.problems[0].field == "body"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InputError) as info:
        assess({"household_size": 0, "housing": "castle", "x": 1})
    fields = {p.field for p in info.value.problems}
    assert {"household_size", "housing", "x", "monthly_income_vnd", "area"} <= fields


# --- Area from the commune code (2025 two-level list) --------------------------------------------------------------


def test_a_xa_is_rural_and_a_phuong_is_urban() -> None:
    base = {k: v for k, v in RURAL_POOR.items() if k != "area"}
    assert assess({**base, "commune_code": "29971"}, on="2026-01-10").area == "rural"
    assert assess({**base, "commune_code": "29978"}, on="2026-01-10").area == "urban"


def test_an_explicit_area_wins_over_the_commune_type() -> None:
    # Merged units mix former urban and rural parts (reference §6.3): a human can set the area the review applies.
    result = assess({**RURAL_POOR, "commune_code": "29978", "area": "rural"}, on="2026-01-10")
    assert result.area == "rural" and result.commune is not None and result.commune.name == "Phường Thường Lạc"


# --- Explanation --------------------------------------------------------------------------------------------------


def test_a_poor_household_is_told_its_gap_its_deprivations_and_what_would_change() -> None:
    result = assess(RURAL_POOR, on="2026-11-29")
    out = result.to_dict()
    assert out["status"] == "poor"
    assert out["income_per_capita_vnd"] == 1_250_000 and out["income_gap_vnd"] == 250_000
    assert out["deprivations"] == ["housing_quality", "water", "sanitation"]
    assert any("250.000 đồng" in s for s in out["what_would_change"])
    assert any("khắc phục được 1 thiếu hụt" in s for s in out["what_would_change"])
    deprived = [i for i in out["indicators"] if i["deprived"]]
    assert all(i["reason_vi"] and i["reference"].startswith("Nghị định 07/2021/NĐ-CP") for i in deprived)
    assert "UBND" in out["disclaimer_vi"] and "Mẫu số 01" in out["disclaimer_vi"]
    assert out["provisional"] is True and "indicator:water" in out["provisional_values"]


def test_a_near_poor_household_with_two_deprivations_is_told_one_more_makes_it_poor() -> None:
    result = assess({**RURAL_POOR, "toilet": "septic"}, on="2026-11-29")
    assert result.status == "near_poor"
    assert any("thêm 1 chỉ số nữa" in s for s in result.what_would_change)


def test_in_2026_the_result_under_the_2027_standard_is_given_too() -> None:
    result = assess({**RURAL_POOR, "monthly_income_vnd": 8_400_000}, on="2026-11-29")
    assert result.status == "average_living"
    assert result.next_standard is not None
    assert result.next_standard.status == "poor"
    assert result.next_standard.income_line_vnd == 2_200_000
    assert "waste" in result.next_standard.unanswered


def test_the_2027_result_says_the_average_living_band_is_not_published() -> None:
    result = assess({**RURAL_POOR, "monthly_income_vnd": 20_000_000}, on="2027-03-01")
    assert result.status == "not_poor" and result.average_living_max_vnd is None
    assert any("chưa được công bố" in s for s in result.what_would_change)
    assert "average_living_max.rural" in result.provisional_values


def test_unanswered_indicators_that_could_change_the_status_are_named() -> None:
    result = assess({"area": "rural", "household_size": 3, "monthly_income_vnd": 0, "housing": "simple"}, on="2026-05-01")
    assert result.status == "near_poor"
    assert any("chưa được hỏi" in s for s in result.what_would_change)


def test_policies_follow_the_status() -> None:
    poor = {p["id"] for p in assess(RURAL_POOR, on="2026-05-01").to_dict()["policies"]}
    rich = {p["id"] for p in assess({**RURAL_POOR, "monthly_income_vnd": 40_000_000}, on="2026-05-01").to_dict()["policies"]}
    assert "health_insurance_poor" in poor and "health_insurance_poor" not in rich


# --- The lean path agrees with the full path ----------------------------------------------------------------------


@pytest.mark.parametrize("income", [0, 5_999_999, 6_000_000, 6_000_004, 9_000_000, 9_000_004, 50_000_000])
def test_classify_agrees_with_assess(income: int) -> None:
    data = {**RURAL_POOR, "monthly_income_vnd": income}
    fast = classify(data, on="2026-06-01")
    full = assess(data, on="2026-06-01")
    assert (fast.status, fast.deprivations, fast.income_line_vnd) == (full.status, full.deprivations, full.income_line_vnd)


def test_the_date_defaults_to_today_and_can_come_from_the_input() -> None:
    assert assess(RURAL_POOR).on == dt.date.today()
    assert assess({**RURAL_POOR, "on": "2027-02-01"}).standard.id == "decree351_2027"
    assert assess({**RURAL_POOR, "on": "2027-02-01"}, on="2026-02-01").standard.id == "decree07_2022"


def test_standards_catalog_lists_citations_and_confidence() -> None:
    catalog = assessment.standards_catalog()
    line = catalog[0]["parameters"]["income_line.rural"]["values"][0]
    assert line == {"from": "2022-01-01", "value": 1500000, "reference": line["reference"], "confidence": "confirmed"}
    assert "Nghị định 07/2021" in line["reference"]
