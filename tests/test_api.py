"""The stateless HTTP API: real legal values on the happy path, structured errors on every bad input."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient

import assessment
from assessment.schema import HOUSEHOLD_SCHEMA

#: Any Vietnamese letter with a diacritic; a message without one is not Vietnamese.
VIETNAMESE = re.compile(r"[À-ỹđĐ]")

ON = "2026-06-01"  # 2026: the Decree 07 standard extended by Decree 351 (1.5M rural line)


def household(**changes: Any) -> dict[str, Any]:
    """A rural household of 4, income exactly at the line, deprived on 3 indicators."""
    base: dict[str, Any] = {
        "area": "rural",
        "household_size": 4,
        "monthly_income_vnd": 6_000_000,
        "housing": "simple",  # nhà đơn sơ: housing quality
        "toilet": "none",  # no hygienic latrine
        "internet": False,  # no member uses the internet
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def assert_vietnamese_problems(body: dict[str, Any], fields: set[str]) -> None:
    """The body is a structured error whose problems name ``fields``, in Vietnamese."""
    error = body["error"]
    assert error["code"]
    assert VIETNAMESE.search(error["message_vi"]), error["message_vi"]
    assert error["problems"], body
    for problem in error["problems"]:
        assert set(problem) == {"code", "field", "message_vi"}
        assert VIETNAMESE.search(problem["message_vi"]), problem
    assert {p["field"] for p in error["problems"]} == fields, error["problems"]


# --------------------------------------------------------------------------- happy path


def test_household_at_the_line_with_three_deprivations_is_poor(client: FlaskClient) -> None:
    response = client.post(f"/api/v1/assessments?on={ON}", json=household())
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["status"] == "poor"
    assert result["income_per_capita_vnd"] == 1_500_000
    assert result["income_line_vnd"] == 1_500_000
    assert result["income_gap_vnd"] == 0
    assert result["deprivation_count"] == 3
    assert len(result["deprivations"]) == 3
    assert result["deprivation_threshold"] == 3
    assert result["area"] == "rural"
    assert result["on"] == ON
    assert result["standard"]["valid_from"] <= ON
    assert VIETNAMESE.search(result["summary_vi"])
    # Vietnamese is sent as UTF-8, not as \u escapes.
    assert "\\u" not in response.get_data(as_text=True)
    assert response.mimetype == "application/json"


def test_one_dong_per_person_above_the_line_is_average_living(client: FlaskClient) -> None:
    response = client.post(f"/api/v1/assessments?on={ON}", json=household(monthly_income_vnd=6_000_004))
    assert response.status_code == 200
    result = response.get_json()
    assert result["income_per_capita_vnd"] == 1_500_001
    assert result["status"] == "average_living"
    assert result["income_gap_vnd"] == -1


def test_date_in_body_wins_over_query(client: FlaskClient) -> None:
    # 2027 brings the Decree 351 line (2.2M rural): the same household is judged differently.
    response = client.post("/api/v1/assessments?on=2031-01-01", json=household(on=ON))
    assert response.status_code == 200
    assert response.get_json()["on"] == ON


def test_example_household_matches_the_published_schema() -> None:
    # What the tests send is what the schema served to clients allows.
    jsonschema.validate(household(on=ON), HOUSEHOLD_SCHEMA)


# --------------------------------------------------------------------------- bad input

BAD_INPUTS: list[tuple[str, dict[str, Any], str, set[str]]] = [
    # (case id, household, query string, fields named by the problems)
    ("missing household_size", household(household_size=...), "", {"household_size"}),
    ("household_size zero", household(household_size=0), "", {"household_size"}),
    ("household_size negative", household(household_size=-1), "", {"household_size"}),
    ("household_size not a number", household(household_size="abc"), "", {"household_size"}),
    (
        "both income fields",
        household(monthly_income_per_capita_vnd=1_500_000),
        "",
        {"monthly_income_vnd"},
    ),
    ("neither income field", household(monthly_income_vnd=...), "", {"monthly_income_vnd"}),
    ("unknown housing type", household(housing="castle"), "", {"housing"}),
    ("unknown key", household(pets=2), "", {"pets"}),
    ("unknown commune code", household(area=..., commune_code="99999"), "", {"commune_code"}),
    ("date outside every period", household(), "?on=2031-01-01", {"on"}),
    ("date outside every period, in body", household(on="2031-01-01"), "", {"on"}),
    ("impossible date", household(), "?on=2026-13-01", {"on"}),
    ("impossible date, in body", household(on="2026-13-01"), "", {"on"}),
]


@pytest.mark.parametrize(
    ("data", "query", "fields"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_household_is_422_with_vietnamese_problems(
    client: FlaskClient, data: dict[str, Any], query: str, fields: set[str]
) -> None:
    response = client.post(f"/api/v1/assessments{query or '?on=' + ON}", json=data)
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["error"]["code"] == "invalid_input"
    assert_vietnamese_problems(body, fields)


BAD_BODIES: list[tuple[str, bytes, str, int]] = [
    # (case id, raw body, content type, expected status)
    ("not JSON", b"household_size=4", "application/json", 400),
    ("truncated JSON", b'{"household_size": 4', "application/json", 400),
    ("JSON array", b"[1, 2, 3]", "application/json", 400),
    ("JSON string", b'"a household"', "application/json", 400),
    ("empty body", b"", "application/json", 400),
    ("NaN is not JSON", b'{"household_size": NaN}', "application/json", 400),
    ("not UTF-8", b'{"housing": "\xff"}', "application/json", 400),
    ("deeply nested", b"[" * 200_000 + b"]" * 200_000, "application/json", 400),
    ("form post", b"household_size=4", "application/x-www-form-urlencoded", 400),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_unusable_body_is_400_on_field_body(
    client: FlaskClient, raw: bytes, content_type: str, status: int
) -> None:
    response = client.post("/api/v1/assessments", data=raw, content_type=content_type)
    assert response.status_code == status
    assert_vietnamese_problems(response.get_json(), {"body"})


def test_ten_megabyte_body_is_413_without_being_read(client: FlaskClient) -> None:
    big = b'{"note": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = client.post("/api/v1/assessments", data=big, content_type="application/json")
    assert response.status_code == 413
    body = response.get_json()
    assert body["error"]["code"] == "body_too_large"
    assert_vietnamese_problems(body, {"body"})


def test_json_body_without_content_type_is_accepted(client: FlaskClient) -> None:
    # curl -d '{...}' sends application/x-www-form-urlencoded; the body is still JSON.
    response = client.post(
        f"/api/v1/assessments?on={ON}",
        data=json.dumps(household()),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "poor"


def test_unexpected_error_is_json_500_without_traceback(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(assessment, "assess", broken)
    with caplog.at_level(logging.ERROR):
        response = client.post(f"/api/v1/assessments?on={ON}", json=household())
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error"
    assert VIETNAMESE.search(body["error"]["message_vi"])
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text
    # ...but operators see it, with the traceback, in the log.
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records)


def test_unknown_api_path_is_json_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.get("/api/v1/assessments")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


# --------------------------------------------------------------------------- batch


def test_batch_reports_each_item_alone(client: FlaskClient) -> None:
    households = [
        household(),
        household(household_size=0),
        "not a household",
        household(monthly_income_vnd=6_000_004, on="2026-07-01"),
    ]
    response = client.post(f"/api/v1/assessments/batch?on={ON}", json={"households": households})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["count"], body["ok"], body["failed"]) == (4, 2, 2)
    first, second, third, fourth = body["results"]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert first["ok"] and first["result"]["status"] == "poor"
    assert not second["ok"]
    assert {p["field"] for p in second["error"]["problems"]} == {"household_size"}
    assert not third["ok"] and third["error"]["problems"][0]["field"] == "households[2]"
    assert fourth["result"]["status"] == "average_living"
    assert fourth["result"]["on"] == "2026-07-01"  # the item's own date wins


def test_batch_of_a_thousand_is_accepted(client: FlaskClient) -> None:
    response = client.post(
        f"/api/v1/assessments/batch?on={ON}", json={"households": [household()] * 1000}
    )
    assert response.status_code == 200
    assert response.get_json()["ok"] == 1000


def test_batch_may_exceed_the_single_household_limit(client: FlaskClient) -> None:
    # ~2 MB: over MAX_CONTENT_LENGTH (1 MiB) but under BATCH_MAX_CONTENT_LENGTH (8 MiB).
    households = [household(note="x" * 2000) for _ in range(1000)]
    response = client.post(f"/api/v1/assessments/batch?on={ON}", json={"households": households})
    assert response.status_code == 200
    assert response.get_json()["failed"] == 1000  # "note" is not a field, item by item


def test_batch_over_its_own_limit_is_413(client: FlaskClient) -> None:
    households = [household(note="x" * 10_000) for _ in range(1000)]
    response = client.post("/api/v1/assessments/batch", json={"households": households})
    assert response.status_code == 413
    assert "8.388.608" in response.get_json()["error"]["message_vi"]  # the batch limit, not 1 MiB
    assert_vietnamese_problems(response.get_json(), {"body"})


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"households": [household()] * 1001}, {"households"}),
        ({}, {"households"}),
        ({"households": {"a": 1}}, {"households"}),
        ({"households": [], "extra": 1}, {"extra"}),
    ],
    ids=["too many", "missing list", "not a list", "unknown key"],
)
def test_bad_batch_is_422(client: FlaskClient, body: dict[str, Any], fields: set[str]) -> None:
    response = client.post("/api/v1/assessments/batch", json=body)
    assert response.status_code == 422
    assert_vietnamese_problems(response.get_json(), fields)


# --------------------------------------------------------------------------- documents


def test_standards_catalog(client: FlaskClient) -> None:
    response = client.get("/api/v1/standards")
    assert response.status_code == 200
    catalog = response.get_json()
    assert catalog == json.loads(json.dumps(assessment.standards_catalog()))  # tuples → lists
    assert isinstance(catalog, list) and len(catalog) >= 2


def test_household_schema_is_served_as_json_schema(client: FlaskClient) -> None:
    response = client.get("/api/v1/schema/household.json")
    assert response.status_code == 200
    assert response.mimetype == "application/schema+json"
    assert response.get_json(force=True) == HOUSEHOLD_SCHEMA
    jsonschema.Draft202012Validator.check_schema(response.get_json(force=True))
