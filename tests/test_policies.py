"""Tests of the support-policy catalogue (assessment/policies.py, assessment/data/policies.yaml, offices.yaml).

One test per legal sentence, named as the sentence. Sources: poverty-standard.md §4.5, §5, §5.1, §5.2 and the 2022
district plan of huyện Hồng Ngự (seed 000_bd7cc34f72fe53ae), sections II and V.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from assessment.policies import (
    FACTS,
    INDICATORS,
    STATUSES,
    PolicyCatalog,
    PolicyDataError,
    PolicyFacts,
    PolicyMatch,
    default_catalog,
    load_catalog,
)

ON = date(2026, 3, 1)  # the bot's first year: Decree 07 standard still applies (Decree 351/2025)
IN_2024 = date(2024, 6, 1)

# Every fact answered "no": a test switches on only what its sentence needs.
ALL_NO: dict[str, bool] = {"newly_escaped": False, **{name: False for name in FACTS}}


def facts(status: str = "poor", area: str = "rural", deprivations: tuple[str, ...] = (), **known: Any) -> PolicyFacts:
    return PolicyFacts(status=status, area=area, deprivations=frozenset(deprivations), **known)


def answered(
    status: str = "poor", area: str = "rural", deprivations: tuple[str, ...] = (), **known: Any
) -> PolicyFacts:
    """Facts where every question was answered; ``known`` overrides the "no" answers."""
    return facts(status, area, deprivations, **{**ALL_NO, **known})


def matched(f: PolicyFacts, on: date = ON) -> dict[str, PolicyMatch]:
    return {m.policy.id: m for m in default_catalog().match(f, on)}


# ------------------------------------------------------------------------------------------- health insurance


def test_a_poor_household_gets_full_health_insurance_premium_support() -> None:
    m = matched(answered("poor"))["health_insurance_poor"]
    assert not m.conditional
    assert "100%" in m.policy.benefit_vi


def test_a_near_poor_household_gets_at_least_70_percent_health_insurance_support() -> None:
    result = matched(answered("near_poor"))
    assert "70%" in result["health_insurance_near_poor"].policy.benefit_vi
    assert "health_insurance_poor" not in result


def test_an_average_living_farm_household_gets_partial_health_insurance_support() -> None:
    m = matched(answered("average_living", farm_household=True))["health_insurance_average_living_farm"]
    assert not m.conditional
    assert m.to_dict()["provisional"]  # the percentage under Decree 188/2025 is [U]


def test_an_average_living_household_that_does_not_farm_gets_no_farm_health_insurance_support() -> None:
    assert "health_insurance_average_living_farm" not in matched(answered("average_living", farm_household=False))


def test_a_household_above_the_line_gets_no_poor_or_near_poor_health_insurance_support() -> None:
    result = matched(answered("not_poor"))
    assert not {"health_insurance_poor", "health_insurance_near_poor", "health_insurance_average_living_farm"} & set(
        result
    )


def test_students_of_households_above_the_line_get_at_least_half_their_health_insurance_paid() -> None:
    assert "health_insurance_student" in matched(answered("not_poor", student=True))
    assert "health_insurance_student" not in matched(answered("poor", student=True))  # poor already get 100 %


# ------------------------------------------------------------------------------------------- VBSP loans


def test_a_poor_household_can_borrow_from_the_social_policy_bank() -> None:
    m = matched(answered("poor"))["vbsp_loan_poor"]
    assert m.policy.office == "nhcsxh"
    assert "78/2002" in m.policy.reference


def test_a_near_poor_household_gets_the_near_poor_loan_not_the_poor_loan() -> None:
    result = matched(answered("near_poor"))
    assert "vbsp_loan_near_poor" in result
    assert "vbsp_loan_poor" not in result


@pytest.mark.parametrize("status", ["average_living", "not_poor"])
def test_a_household_above_the_line_gets_no_poor_household_loan(status: str) -> None:
    result = matched(answered(status, newly_escaped=False))
    assert not {"vbsp_loan_poor", "vbsp_loan_near_poor", "vbsp_loan_newly_escaped"} & set(result)


@pytest.mark.parametrize("status", ["average_living", "not_poor"])
def test_newly_escaped_household_qualifies_for_vbsp_loans_within_three_years(status: str) -> None:
    m = matched(answered(status, newly_escaped=True))["vbsp_loan_newly_escaped"]
    assert not m.conditional
    assert "28/2015" in m.policy.reference
    assert "3 năm" in m.policy.condition_vi


def test_a_household_still_below_the_line_is_not_offered_the_newly_escaped_loan() -> None:
    # Decision 28/2015: "newly escaped" means income is now above the near-poor standard.
    for status in ("poor", "near_poor"):
        assert "vbsp_loan_newly_escaped" not in matched(answered(status, newly_escaped=True))


def test_unknown_newly_escaped_answer_makes_the_newly_escaped_loan_conditional() -> None:
    m = matched(facts("not_poor"))["vbsp_loan_newly_escaped"]
    assert m.conditional
    assert m.condition_vi == m.policy.condition_vi


def test_a_student_from_a_poor_or_near_poor_household_qualifies_for_a_student_loan() -> None:
    assert "vbsp_student_loan" in matched(answered("poor", student=True))
    assert "vbsp_student_loan" in matched(answered("near_poor", student=True))
    assert "vbsp_student_loan" not in matched(answered("poor", student=False))
    assert "vbsp_student_loan" not in matched(answered("not_poor", student=True))


# ------------------------------------------------------------------------------------------- water & sanitation


@pytest.mark.parametrize("status", STATUSES)
def test_rural_household_without_clean_water_qualifies_for_water_loan_whatever_its_status(status: str) -> None:
    m = matched(answered(status, deprivations=("water",)))["clean_water_sanitation_loan"]
    assert not m.conditional
    assert "10/2024" in m.policy.reference


def test_rural_household_without_a_hygienic_latrine_qualifies_for_the_sanitation_loan() -> None:
    assert "clean_water_sanitation_loan" in matched(answered("not_poor", deprivations=("sanitation",)))


def test_urban_household_gets_no_rural_water_loan() -> None:
    assert "clean_water_sanitation_loan" not in matched(answered("poor", area="urban", deprivations=("water",)))


def test_rural_household_with_clean_water_and_a_latrine_gets_no_water_loan() -> None:
    assert "clean_water_sanitation_loan" not in matched(answered("poor", deprivations=("housing_quality",)))


def test_water_loan_is_not_offered_before_decision_10_2024_took_effect() -> None:
    f = answered("poor", deprivations=("water",))
    assert "clean_water_sanitation_loan" not in matched(f, on=date(2024, 9, 1))
    assert "clean_water_sanitation_loan" in matched(f, on=date(2024, 9, 2))


def test_unanswered_water_question_makes_the_water_loan_conditional() -> None:
    f = PolicyFacts(status="not_poor", area="rural", deprivations=frozenset(), unanswered=frozenset({"water"}))
    assert matched(f)["clean_water_sanitation_loan"].conditional


# ------------------------------------------------------------------------------------------- education


def test_public_school_pupils_are_tuition_free_from_school_year_2025_2026_whatever_the_status() -> None:
    assert "public_school_tuition_free" in matched(answered("not_poor", children_under_16=True))
    assert "public_school_tuition_free" not in matched(answered("not_poor", children_under_16=True), on=IN_2024)


def test_ethnic_minority_students_of_poor_or_near_poor_households_are_exempt_from_tuition() -> None:
    result = matched(answered("near_poor", ethnic_minority=True, student=True))
    assert "tuition_exemption_ethnic_minority_student" in result
    assert "tuition_exemption_ethnic_minority_student" not in matched(answered("near_poor", student=True))


def test_study_cost_support_is_provisional_because_its_amount_is_unconfirmed() -> None:
    m = matched(answered("poor", children_under_16=True))["study_cost_support"]
    assert m.to_dict()["provisional"]


# ------------------------------------------------------------------------------------------- electricity, legal aid


def test_electricity_support_goes_to_poor_households_not_near_poor() -> None:
    assert "electricity_support_poor" in matched(answered("poor"))
    assert "electricity_support_poor" not in matched(answered("near_poor"))
    assert "electricity_support_social_policy" not in matched(answered("near_poor"))


def test_a_household_with_a_social_allowance_member_gets_electricity_support_if_it_uses_at_most_50_kwh() -> None:
    m = matched(answered("not_poor", social_allowance_member=True))["electricity_support_social_policy"]
    assert m.conditional  # the 50 kWh/month use is never asked
    assert "50" in m.condition_vi


def test_members_of_poor_households_get_free_legal_aid() -> None:
    m = matched(answered("poor"))["legal_aid_poor"]
    assert not m.conditional
    assert m.policy.office == "tro_giup_phap_ly"


def test_near_poor_members_get_free_legal_aid_only_in_some_cases() -> None:
    m = matched(answered("near_poor"))["legal_aid_near_poor"]
    assert m.conditional
    assert m.to_dict()["provisional"]


# ------------------------------------------------------------------------------------------- jobs, nutrition, NTP


def test_vocational_training_needs_a_working_age_member() -> None:
    assert "vocational_training" in matched(answered("poor", working_age_member=True))
    assert "vocational_training" not in matched(answered("poor", working_age_member=False))


def test_nutrition_support_requires_a_child_under_16_or_pregnant_woman() -> None:
    assert "ntp_project_3_2_nutrition" not in matched(answered("poor"))
    assert "ntp_project_3_2_nutrition" in matched(answered("poor", children_under_16=True))
    assert "ntp_project_3_2_nutrition" in matched(answered("poor", pregnant_or_breastfeeding=True))


def test_nutrition_support_covers_newly_escaped_households_but_not_others_above_the_line() -> None:
    newly_escaped = answered("average_living", newly_escaped=True, children_under_16=True)
    assert "ntp_project_3_2_nutrition" in matched(newly_escaped)
    assert "ntp_project_3_2_nutrition" not in matched(answered("not_poor", children_under_16=True))


def test_job_fairs_of_project_4_are_open_to_every_worker() -> None:
    m = matched(answered("not_poor", working_age_member=True))["ntp_project_4_3_sustainable_jobs"]
    assert "phiên giao dịch việc làm" in m.policy.benefit_vi


def test_housing_support_is_only_conditional_because_it_runs_only_in_poor_districts() -> None:
    m = matched(answered("poor", deprivations=("housing_quality",)))["ntp_project_5_housing"]
    assert m.conditional
    assert "huyện nghèo" in m.condition_vi
    assert "ntp_project_5_housing" not in matched(answered("poor"))


def test_project_7_is_never_listed_to_households() -> None:
    catalog = default_catalog()
    for status in STATUSES:
        for area in ("rural", "urban"):
            for f in (facts(status, area, tuple(INDICATORS)), answered(status, area, newly_escaped=True)):
                for on in (date(2022, 6, 1), ON, date(2030, 6, 1)):
                    assert "ntp_project_7_capacity_monitoring" not in {m.policy.id for m in catalog.match(f, on)}


def test_programme_projects_are_run_by_the_offices_the_district_plan_names() -> None:
    # Kế hoạch 2022 huyện Hồng Ngự, section V.1, V.3, V.4, V.5.
    expected = {
        "ntp_project_2_livelihood": "phong_ldtbxh",
        "ntp_project_3_1_agricultural_production": "phong_nnptnt",
        "ntp_project_3_2_nutrition": "phong_yte",
        "ntp_project_4_3_sustainable_jobs": "phong_ldtbxh",
        "ntp_project_6_1_information": "phong_vhtt",
        "ntp_project_6_2_communication": "phong_ldtbxh",
        "ntp_project_7_capacity_monitoring": "phong_ldtbxh",
    }
    catalog = default_catalog()
    assert {pid: catalog.get(pid).office for pid in expected} == expected


def test_programme_2021_2025_items_stay_visible_in_2026_with_a_previous_period_note() -> None:
    f = answered("poor", working_age_member=True)
    in_2025 = matched(f, on=date(2025, 6, 1))["ntp_project_2_livelihood"].to_dict()
    in_2026 = matched(f, on=ON)["ntp_project_2_livelihood"].to_dict()
    assert not in_2025["provisional"] and in_2025["note_vi"] is None
    assert in_2026["provisional"]
    assert "giai đoạn trước, có thể thay đổi" in in_2026["note_vi"]


def test_programme_2021_2025_items_are_not_listed_after_2030_nor_before_decision_90() -> None:
    f = answered("poor", working_age_member=True)
    assert "ntp_project_2_livelihood" not in matched(f, on=date(2031, 1, 1))
    assert "ntp_project_2_livelihood" not in matched(f, on=date(2022, 1, 17))


# ------------------------------------------------------------------------------------------- matcher mechanics


def test_unknown_fact_makes_policy_conditional() -> None:
    m = matched(facts("poor"))["vocational_training"]  # working_age_member not asked
    assert m.conditional
    assert m.condition_vi and m.to_dict()["condition_vi"] == m.policy.condition_vi


def test_a_fact_answered_no_excludes_the_policy() -> None:
    assert "vbsp_student_loan" not in matched(facts("poor", student=False))


def test_a_fully_matched_policy_has_no_condition() -> None:
    m = matched(answered("poor"))["vbsp_loan_poor"]
    assert not m.conditional and m.condition_vi is None and m.to_dict()["condition_vi"] is None


def test_matches_follow_the_data_order() -> None:
    catalog = default_catalog()
    order = [p.id for p in catalog.policies]
    found = [m.policy.id for m in catalog.match(facts("poor", deprivations=tuple(INDICATORS)), ON)]
    assert found == sorted(found, key=order.index)


def test_match_to_dict_has_the_contract_keys() -> None:
    d = matched(answered("poor"))["vbsp_loan_poor"].to_dict()
    assert set(d) == {
        "id", "name_vi", "benefit_vi", "office_id", "office_vi", "reference", "provisional", "condition_vi", "note_vi",
    }  # fmt: skip
    d["id"] = "changed"  # callers may mutate their copy
    assert matched(answered("poor"))["vbsp_loan_poor"].to_dict()["id"] == "vbsp_loan_poor"


def test_renamed_office_shows_in_match() -> None:
    base = default_catalog()
    renamed = base.with_offices({"phong_ldtbxh": "Phòng Văn hóa - Xã hội xã Thường Phước"})
    f = answered("poor", working_age_member=True)
    m = {x.policy.id: x for x in renamed.match(f, ON)}["ntp_project_2_livelihood"]
    assert m.office_vi == "Phòng Văn hóa - Xã hội xã Thường Phước"
    assert m.to_dict()["office_id"] == "phong_ldtbxh"
    # The packaged catalogue is unchanged.
    assert {x.policy.id: x for x in base.match(f, ON)}["ntp_project_2_livelihood"].office_vi == (
        "Phòng Lao động - Thương binh và Xã hội"
    )


def test_renaming_an_unknown_office_is_an_error() -> None:
    with pytest.raises(PolicyDataError, match="no_such_office"):
        default_catalog().with_offices({"no_such_office": "X"})


def test_an_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError):
        default_catalog().match(facts("rich"), ON)


def test_default_catalog_is_loaded_once() -> None:
    assert default_catalog() is default_catalog()


def test_match_is_fast_enough_for_every_assessment() -> None:
    # Goal: >= 30,000 assessments/s, so matching must take a few microseconds. The bound here is loose on purpose
    # (shared 2-core machine); it only catches an accidental slow path.
    catalog, f = default_catalog(), answered("poor", deprivations=("water", "housing_quality"), children_under_16=True)
    catalog.match(f, ON)
    start = time.perf_counter()
    for _ in range(2000):
        catalog.match(f, ON)
    assert (time.perf_counter() - start) / 2000 < 100e-6


# ------------------------------------------------------------------------------------------- data checks


def test_every_policy_has_a_reference_an_office_and_a_confidence() -> None:
    catalog = default_catalog()
    for policy in catalog.policies:
        assert policy.reference.strip(), policy.id
        assert policy.office in catalog.offices, policy.id
        assert policy.confidence in {"confirmed", "provisional"}, policy.id


def test_every_condition_is_one_sentence() -> None:
    for policy in default_catalog().policies:
        text = policy.condition_vi
        assert text.endswith(".") and ". " not in text, policy.id


def test_every_lapsed_programme_item_says_it_is_from_the_previous_period() -> None:
    for policy in default_catalog().policies:
        if policy.show_until is not None:
            assert "giai đoạn trước, có thể thay đổi" in (policy.note_after_valid_to_vi or ""), policy.id


def test_offices_of_the_abolished_district_level_are_provisional() -> None:
    for office in default_catalog().offices.values():
        if office.level == "huyen_cu":
            assert office.provisional, office.id


# ------------------------------------------------------------------------------------------- loader errors

VALID_OFFICES: dict[str, Any] = {
    "offices": {
        "ubnd_xa": {"name_vi": "UBND xã", "level": "xa", "reference": "Kế hoạch V.12", "confidence": "confirmed"},
    }
}
VALID_POLICY: dict[str, Any] = {
    "id": "loan",
    "name_vi": "Vay vốn",
    "benefit_vi": "Được vay.",
    "eligibility": {"statuses": ["poor"]},
    "condition_vi": "Hộ nghèo.",
    "reference": "Nghị định 78/2002/NĐ-CP",
    "office": "ubnd_xa",
    "confidence": "confirmed",
    "valid_from": None,
    "valid_to": None,
}


def write(tmp_path: Path, policies: Any = None, offices: Any = None) -> tuple[Path, Path]:
    """Write policy / office files; a str is written as is, anything else is dumped as YAML."""
    paths = []
    for name, data in (("policies.yaml", policies), ("offices.yaml", offices)):
        if data is None:
            data = {"policies": [dict(VALID_POLICY)]} if name == "policies.yaml" else VALID_OFFICES
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def with_policy(**changes: Any) -> dict[str, Any]:
    policy = {**VALID_POLICY, **changes}
    return {"policies": [{k: v for k, v in policy.items() if v is not ...}]}


def with_eligibility(**changes: Any) -> dict[str, Any]:
    return with_policy(eligibility={**VALID_POLICY["eligibility"], **changes})


def test_a_valid_minimal_catalogue_loads(tmp_path: Path) -> None:
    catalog = load_catalog(*write(tmp_path))
    assert isinstance(catalog, PolicyCatalog)
    assert [m.policy.id for m in catalog.match(answered("poor"), ON)] == ["loan"]


POLICY_ERRORS = {
    "unknown key": (with_policy(amount_vnd=100), "amount_vnd"),
    "missing reference": (with_policy(reference=...), "reference"),
    "empty reference": (with_policy(reference="  "), "reference"),
    "missing valid_to": (with_policy(valid_to=...), "valid_to"),
    "unknown office": (with_policy(office="phong_khong_co"), "phong_khong_co"),
    "unknown status": (with_eligibility(statuses=["rich"]), "rich"),
    "unknown fact": (with_eligibility(facts_all=["has_car"]), "has_car"),
    "unknown indicator": (with_eligibility(deprivations_any=["electricity"]), "electricity"),
    "unknown eligibility key": (with_eligibility(income_max=1), "income_max"),
    "no route": (with_eligibility(statuses=[]), "no route"),
    "bad area": (with_eligibility(area="city"), "area"),
    "bad confidence": (with_policy(confidence="maybe"), "confidence"),
    "impossible date": (with_policy(valid_from="2025-13-01"), "valid_from"),
    "non-ISO date": (with_policy(valid_to="31/12/2025"), "valid_to"),
    "dates out of order": (with_policy(valid_from="2025-01-01", valid_to="2024-01-01"), "valid_from"),
    "show_until without note": (with_policy(valid_to="2025-12-31", show_until="2030-12-31"), "note_after_valid_to_vi"),
    "show_until without valid_to": (
        with_policy(show_until="2030-12-31", note_after_valid_to_vi="Chính sách giai đoạn trước."),
        "valid_to",
    ),
    "missing eligibility": (with_policy(eligibility=...), "eligibility"),
    "household_facing not a bool": (with_policy(household_facing="no"), "household_facing"),
    "bad id": (with_policy(id="Vay Vốn"), "id"),
}


@pytest.mark.parametrize("case", list(POLICY_ERRORS), ids=list(POLICY_ERRORS))
def test_a_bad_policy_entry_is_rejected_naming_the_file_and_the_entry(tmp_path: Path, case: str) -> None:
    data, fragment = POLICY_ERRORS[case]
    policies_path, offices_path = write(tmp_path, policies=data)
    with pytest.raises(PolicyDataError) as info:
        load_catalog(policies_path, offices_path)
    message = str(info.value)
    assert str(policies_path) in message
    entry_id = data["policies"][0]["id"]
    assert f"'{entry_id}'" in message
    assert fragment in message


def test_a_duplicate_policy_id_is_rejected(tmp_path: Path) -> None:
    policies_path, offices_path = write(tmp_path, policies={"policies": [VALID_POLICY, VALID_POLICY]})
    with pytest.raises(PolicyDataError, match=r"policies\.yaml: policy 'loan': duplicate id"):
        load_catalog(policies_path, offices_path)


def test_an_impossible_unquoted_date_is_rejected_naming_the_entry(tmp_path: Path) -> None:
    text = yaml.safe_dump({"policies": [VALID_POLICY]}, allow_unicode=True).replace(
        "valid_from: null", "valid_from: 2025-02-30"
    )
    policies_path, offices_path = write(tmp_path, policies=text)
    with pytest.raises(PolicyDataError, match=r"policies\.yaml: policy 'loan': 'valid_from'"):
        load_catalog(policies_path, offices_path)


def test_an_officials_only_policy_may_omit_eligibility(tmp_path: Path) -> None:
    catalog = load_catalog(*write(tmp_path, policies=with_policy(eligibility=..., household_facing=False)))
    assert catalog.match(answered("poor"), ON) == []


OFFICE_ERRORS = {
    "unknown office key": ({"offices": {"ubnd_xa": {**VALID_OFFICES["offices"]["ubnd_xa"], "phone": "1"}}}, "phone"),
    "bad level": ({"offices": {"ubnd_xa": {**VALID_OFFICES["offices"]["ubnd_xa"], "level": "huyen"}}}, "level"),
    "missing name": (
        {"offices": {"ubnd_xa": {k: v for k, v in VALID_OFFICES["offices"]["ubnd_xa"].items() if k != "name_vi"}}},
        "name_vi",
    ),
    "missing reference": (
        {"offices": {"ubnd_xa": {k: v for k, v in VALID_OFFICES["offices"]["ubnd_xa"].items() if k != "reference"}}},
        "reference",
    ),
}


@pytest.mark.parametrize("case", list(OFFICE_ERRORS), ids=list(OFFICE_ERRORS))
def test_a_bad_office_entry_is_rejected_naming_the_file_and_the_office(tmp_path: Path, case: str) -> None:
    data, fragment = OFFICE_ERRORS[case]
    policies_path, offices_path = write(tmp_path, offices=data)
    with pytest.raises(PolicyDataError) as info:
        load_catalog(policies_path, offices_path)
    message = str(info.value)
    assert str(offices_path) in message and "office 'ubnd_xa'" in message and fragment in message


def test_a_duplicate_yaml_key_is_rejected(tmp_path: Path) -> None:
    text = yaml.safe_dump(VALID_OFFICES, allow_unicode=True)
    text += "  ubnd_xa:\n    name_vi: Lần hai\n    level: xa\n    reference: x\n    confidence: confirmed\n"
    policies_path, offices_path = write(tmp_path, offices=text)
    with pytest.raises(PolicyDataError, match=r"(?s)offices\.yaml: .*duplicate key 'ubnd_xa'.*line 7"):
        load_catalog(policies_path, offices_path)


def test_invalid_yaml_is_rejected_naming_the_file(tmp_path: Path) -> None:
    policies_path, offices_path = write(tmp_path, policies="policies: [ {id: loan\n")
    with pytest.raises(PolicyDataError, match=r"policies\.yaml: invalid YAML"):
        load_catalog(policies_path, offices_path)


def test_a_missing_file_is_rejected_naming_the_file(tmp_path: Path) -> None:
    policies_path, _ = write(tmp_path)
    with pytest.raises(PolicyDataError, match=r"nowhere\.yaml"):
        load_catalog(policies_path, tmp_path / "nowhere.yaml")


def test_a_file_without_its_top_level_key_is_rejected(tmp_path: Path) -> None:
    policies_path, offices_path = write(tmp_path, policies={"policy": [VALID_POLICY]})
    with pytest.raises(PolicyDataError, match=r"policies\.yaml: .*'policies'"):
        load_catalog(policies_path, offices_path)
