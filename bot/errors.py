"""JSON error handling at the HTTP edge.

This is the one place where exceptions become HTTP status codes (the rasa-sdk
``endpoint.py`` habit): the assessment core raises :class:`assessment.InputError`
and knows nothing about HTTP; views raise :class:`ApiError` for problems with
the request itself. Every error under ``/api/`` is answered with

    {"error": {"code": "...", "message_vi": "...", "problems": [{code, field, message_vi}, ...]}}

and never with a traceback. Paths outside ``/api/`` keep Flask's default pages
so the web blueprints can render their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from assessment import InputError, Problem

#: Requests under this prefix get JSON errors.
API_PREFIX: Final = "/api/"

#: Vietnamese messages for the HTTP errors clients can trigger.
HTTP_MESSAGES_VI: Final[dict[int, tuple[str, str]]] = {
    400: ("bad_request", "Yêu cầu không hợp lệ."),
    404: ("not_found", "Không tìm thấy địa chỉ này."),
    405: ("method_not_allowed", "Địa chỉ này không hỗ trợ phương thức HTTP đã dùng."),
    413: ("body_too_large", "Nội dung gửi lên quá lớn."),
    415: ("unsupported_media_type", "Định dạng nội dung không được hỗ trợ."),
    429: ("too_many_requests", "Quá nhiều yêu cầu, vui lòng thử lại sau."),
    500: ("internal_error", "Hệ thống gặp lỗi ngoài ý muốn. Vui lòng thử lại sau."),
}

INPUT_ERROR_MESSAGE_VI: Final = "Thông tin hộ gia đình chưa hợp lệ. Xem danh sách lỗi chi tiết."


class ApiError(Exception):
    """A problem with the HTTP request itself (not with the household data).

    Args:
        status: HTTP status code to answer with.
        code: Stable machine-readable error code.
        message_vi: Vietnamese explanation for people.
        problems: Field-level details, if any.
    """

    def __init__(
        self, status: int, code: str, message_vi: str, problems: Sequence[Problem] = ()
    ) -> None:
        super().__init__(message_vi)
        self.status = status
        self.code = code
        self.message_vi = message_vi
        self.problems = list(problems)


def error_body(code: str, message_vi: str, problems: Sequence[Problem] = ()) -> dict[str, Any]:
    """Build the JSON error document shared by every endpoint (and batch items).

    Args:
        code: Stable machine-readable error code.
        message_vi: Vietnamese explanation.
        problems: Field-level details.

    Returns:
        ``{"error": {"code", "message_vi", "problems"}}``.
    """
    return {
        "error": {
            "code": code,
            "message_vi": message_vi,
            "problems": [p.to_dict() for p in problems],
        }
    }


def input_error_body(exc: InputError) -> dict[str, Any]:
    """Render an :class:`InputError` as the standard error document."""
    return error_body("invalid_input", INPUT_ERROR_MESSAGE_VI, exc.problems)


def _is_api_request() -> bool:
    return request.path.startswith(API_PREFIX)


def _json_error(status: int, body: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(body), status


def _handle_api_error(exc: ApiError) -> tuple[Response, int]:
    return _json_error(exc.status, error_body(exc.code, exc.message_vi, exc.problems))


def _handle_input_error(exc: InputError) -> tuple[Response, int]:
    if not _is_api_request():
        # Pages outside the API handle InputError themselves; reaching here is a bug.
        raise exc
    return _json_error(422, input_error_body(exc))


def _handle_http_exception(exc: HTTPException) -> HTTPException | tuple[Response, int]:
    if not _is_api_request():
        return exc  # Flask renders its default page
    status = exc.code or 500
    if status >= 500:
        return _handle_unexpected(exc)
    code, message_vi = HTTP_MESSAGES_VI.get(status, ("http_error", "Yêu cầu không thành công."))
    problems: list[Problem] = []
    if status == 413:
        limit = request.max_content_length  # this request's limit (batches have a larger one)
        if limit:
            message_vi = f"Nội dung gửi lên quá lớn (tối đa {limit:,} byte).".replace(",", ".")
        problems.append(Problem("too_large", "body", message_vi))
    response, status = _json_error(status, error_body(code, message_vi, problems))
    allowed = getattr(exc, "valid_methods", None)
    if status == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)  # as RFC 9110 requires for 405
    return response, status


def _handle_unexpected(exc: Exception) -> tuple[Response, int]:
    if not _is_api_request():
        # Let Flask's own handling run (debugger in development, plain 500 page otherwise).
        raise exc
    # Logged with the traceback for operators; the client only gets a generic message.
    current_app.logger.error(
        "Unhandled error on %s %s", request.method, request.path, exc_info=exc
    )
    code, message_vi = HTTP_MESSAGES_VI[500]
    return _json_error(500, error_body(code, message_vi))


def init_app(app: Flask) -> None:
    """Register the JSON error handlers on ``app``."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(InputError, _handle_input_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
