"""Views of the stateless API: thin transport around the ``assessment`` core.

Each view only turns the HTTP request into arguments for the core and the
core's answer into JSON. Errors are raised, never rendered here:
:class:`assessment.InputError` and :class:`bot.errors.ApiError` become JSON
responses in :mod:`bot.errors`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from flask import current_app, request
from flask.typing import ResponseReturnValue

import assessment
from assessment import InputError, Problem
from bot import offices
from bot.api import bp
from bot.api.openapi import openapi_document
from bot.errors import ApiError, input_error_body

#: Largest number of households accepted by the batch endpoint.
MAX_BATCH: Final = 1000

#: Keys accepted at the top level of a batch request.
BATCH_KEYS: Final = frozenset({"households", "on"})


def _reject_constant(name: str) -> Any:
    """Refuse ``NaN`` / ``Infinity``, which Python's json accepts but JSON does not."""
    raise ValueError(f"invalid JSON constant {name}")


def _json_object_body() -> dict[str, Any]:
    """Decode the request body as a JSON object.

    The content type is not checked: people trying the API with curl often
    forget the header, and the body alone says whether it is JSON.

    Returns:
        The decoded object.

    Raises:
        ApiError: 400 when the body is empty, not JSON, or not an object.
        werkzeug.exceptions.RequestEntityTooLarge: before reading a body
            larger than the request's ``max_content_length``.
    """
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise ApiError(
            400,
            "invalid_body",
            "Chưa có nội dung. Hãy gửi thông tin hộ gia đình dạng JSON.",
            [Problem("required", "body", "Nội dung yêu cầu đang trống.")],
        )
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8; RecursionError very deep nesting.
        raise ApiError(
            400,
            "invalid_body",
            "Nội dung gửi lên không phải JSON hợp lệ.",
            [Problem("invalid_json", "body", "Nội dung không đọc được dưới dạng JSON.")],
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "invalid_body",
            "Nội dung phải là một đối tượng JSON, dạng {\"household_size\": 4, ...}.",
            [Problem("invalid_type", "body", "Nội dung phải là một đối tượng JSON ({...}).")],
        )
    return data


def _split_on(data: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Separate the reference date from the household: body ``on`` wins over ``?on=``."""
    if "on" in data:
        data = dict(data)
        return data, data.pop("on")
    return data, request.args.get("on") or None


@bp.post("/assessments")
def create_assessment() -> dict[str, Any]:
    """Assess one household (quick form) and return the full result."""
    household, on = _split_on(_json_object_body())
    return offices.assess(household, on=on).to_dict()


@bp.post("/assessments/batch")
def create_assessments_batch() -> dict[str, Any]:
    """Assess up to :data:`MAX_BATCH` households; each item succeeds or fails alone."""
    # Batches legitimately exceed the single-household limit.
    request.max_content_length = current_app.config["BATCH_MAX_CONTENT_LENGTH"]
    body = _json_object_body()
    problems = [
        Problem("unknown_field", key, f"Trường “{key}” không được hỗ trợ.")
        for key in body
        if key not in BATCH_KEYS
    ]
    households = body.get("households")
    if not isinstance(households, list):
        problems.append(
            Problem("required", "households", "Cần danh sách hộ gia đình “households”: [...].")
        )
    elif len(households) > MAX_BATCH:
        problems.append(
            Problem(
                "out_of_range",
                "households",
                f"Mỗi lần gửi tối đa {MAX_BATCH:,} hộ; đã gửi {len(households):,} hộ.".replace(
                    ",", "."
                ),
            )
        )
    if problems:
        raise InputError(problems)
    assert isinstance(households, list)  # narrowed above, for type checkers
    default_on = body["on"] if "on" in body else (request.args.get("on") or None)

    results: list[dict[str, Any]] = []
    for index, item in enumerate(households):
        results.append(_assess_item(index, item, default_on))
    failed = sum(1 for r in results if not r["ok"])
    return {"count": len(results), "ok": len(results) - failed, "failed": failed, "results": results}


def _assess_item(index: int, item: Any, default_on: Any) -> dict[str, Any]:
    """Assess one batch item, turning its failure into a per-item error."""
    if not isinstance(item, dict):
        problem = Problem(
            "invalid_type", f"households[{index}]", "Mỗi hộ phải là một đối tượng JSON ({...})."
        )
        return {"index": index, "ok": False, **input_error_body(InputError([problem]))}
    household, on = item, default_on
    if "on" in item:  # the item's own date wins over the batch's
        household = dict(item)
        on = household.pop("on")
    try:
        result = offices.assess(household, on=on).to_dict()
    except InputError as exc:
        return {"index": index, "ok": False, **input_error_body(exc)}
    except Exception:
        # A bug in the core must not cost the client the other 999 results;
        # it is logged with its traceback and reported as an internal error.
        current_app.logger.exception("Batch item %d failed unexpectedly", index)
        return {
            "index": index,
            "ok": False,
            "error": {
                "code": "internal_error",
                "message_vi": "Hệ thống gặp lỗi ngoài ý muốn với hộ này.",
                "problems": [],
            },
        }
    return {"index": index, "ok": True, "result": result}


@bp.get("/standards")
def list_standards() -> ResponseReturnValue:
    """Return the poverty standards: periods, income lines, indicators, citations."""
    return current_app.json.response(assessment.standards_catalog())


@bp.get("/schema/household.json")
def household_schema() -> ResponseReturnValue:
    """Return the JSON Schema of the household quick form."""
    from assessment.schema import HOUSEHOLD_SCHEMA

    response = current_app.json.response(HOUSEHOLD_SCHEMA)
    response.mimetype = "application/schema+json"
    return response


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    """Return the hand-written OpenAPI 3.1 description of this API."""
    return openapi_document()
