"""Views of the HTTP chat channel: the JSON chat API and the web chat page.

``POST /api/v1/chat`` takes ``{"user", "text" | "payload" | "event", "message_id"?}``
(``"event": "follow"`` says "the person opened the chat": a new person is
greeted, a returning one is shown where they left off) and answers
``{"messages": [{"text", "choices": [{"label", "payload"}]}], "question_id",
"done", "assessment"?}``. The view only validates the request
and turns it into an ``Inbound``; everything else is :mod:`bot.pipeline`.
Problems with the request become JSON errors in :mod:`bot.errors` (400 for a
body that is not a JSON object, 422 naming the field otherwise).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any, Final

from flask import Response, current_app, render_template, request
from sqlalchemy.exc import OperationalError

from assessment import Problem
from bot.chat import bp
from bot.errors import ApiError
from bot.pipeline import PipelineResult, get_engine, process_inbound
from bot.store import get_session

#: Channel name of both the web page and custom front-ends using the API.
CHANNEL: Final = "web"

#: Longest accepted ``user`` / ``message_id`` (characters).
MAX_USER: Final = 128
MAX_MESSAGE_ID: Final = 128

#: Longest accepted button payload; payloads are short codes chosen by the engine.
MAX_PAYLOAD: Final = 256

#: Values of ``event`` and the engine ``Inbound.kind`` each one becomes.
EVENTS: Final = {"follow": "follow"}

#: The engine's global "start over" command, sent by the page's "Làm lại" button.
RESTART_PAYLOAD: Final = "cmd:restart"

#: Key under ``app.extensions`` that replaces the conversation engine (tests).
ENGINE_KEY: Final = "bot.chat.engine"

STATIC_DIR: Final = Path(__file__).resolve().parents[1] / "static" / "chat"

_INVALID: Final = "Yêu cầu chưa hợp lệ. Xem danh sách lỗi chi tiết."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _body() -> dict[str, Any]:
    """Decode the body as a JSON object (whatever the Content-Type says)."""
    raw = request.get_data(cache=False)
    try:
        data = json.loads(raw, parse_constant=_reject_constant) if raw.strip() else None
    except (ValueError, RecursionError):
        data = None
        problem = Problem("invalid_json", "body", "Nội dung không đọc được dưới dạng JSON.")
    else:
        problem = Problem(
            "invalid_type",
            "body",
            'Nội dung phải là một đối tượng JSON, dạng {"user": ..., "text": ...}.',
        )
    if not isinstance(data, dict):
        raise ApiError(
            400, "invalid_body", "Nội dung gửi lên không phải đối tượng JSON hợp lệ.", [problem]
        )
    return data


def _string(
    data: dict[str, Any],
    field: str,
    *,
    limit: int | None,
    required: bool,
    allow_empty: bool = False,
) -> str | None:
    """Validate one optional/required string field; return it or None.

    Raises:
        ApiError: 422 naming ``field`` when it is missing, not a string, blank or too long.
    """
    value = data.get(field)
    if value is None:
        if required:
            raise _invalid(Problem("required", field, f"Thiếu trường {field}."))
        return None
    if not isinstance(value, str):
        raise _invalid(Problem("invalid_type", field, f"Trường {field} phải là chuỗi ký tự."))
    if not allow_empty and not value.strip():
        raise _invalid(Problem("required", field, f"Trường {field} đang trống."))
    if limit is not None and len(value) > limit:
        raise _invalid(Problem("too_long", field, f"Trường {field} dài quá {limit} ký tự."))
    return value


def _invalid(problem: Problem) -> ApiError:
    return ApiError(422, "invalid_input", _INVALID, [problem])


def _engine() -> Any:
    return current_app.extensions.get(ENGINE_KEY) or get_engine()


def _result_json(result: PipelineResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": result.messages,
        "question_id": result.question_id,
        "done": result.done,
    }
    if result.assessment is not None:
        body["assessment"] = result.assessment
    return body


@bp.post("/api/v1/chat")
def chat() -> Response:
    """Take one message from a person and return the bot's replies."""
    from bot.conversation import Inbound

    data = _body()
    user = _string(data, "user", limit=MAX_USER, required=True)
    message_id = _string(data, "message_id", limit=MAX_MESSAGE_ID, required=False)
    given = [name for name in ("text", "payload", "event") if data.get(name) is not None]
    if len(given) != 1:
        field = given[-1] if given else "text"
        raise _invalid(
            Problem(
                "exactly_one_of", field, "Gửi đúng một trong các trường: text, payload hoặc event."
            )
        )
    if given == ["text"]:
        # No length limit here: the engine answers an over-long text with a short hint.
        text = _string(data, "text", limit=None, required=True, allow_empty=True)
        inbound = Inbound(text=text, kind="text")
    elif given == ["payload"]:
        payload = _string(data, "payload", limit=MAX_PAYLOAD, required=True)
        inbound = Inbound(payload=payload, kind="payload")
    else:
        event = _string(data, "event", limit=32, required=True)
        if event not in EVENTS:
            raise _invalid(
                Problem("unknown_value", "event", f"event chỉ nhận: {', '.join(sorted(EVENTS))}.")
            )
        inbound = Inbound(kind=EVENTS[event])
    assert user is not None

    try:
        result = process_inbound(
            get_session(),
            CHANNEL,
            user,
            message_id,
            inbound,
            engine=_engine(),
            synchronous=True,  # the reply is this response
            store_address=False,  # nothing to push to later
        )
    except OperationalError as exc:
        # Still locked after every retry: tell the client to retry, don't 500.
        current_app.logger.warning("chat: database busy: %s", exc)
        raise ApiError(503, "busy", "Hệ thống đang bận, vui lòng gửi lại sau ít giây.") from None
    response = current_app.json.response(_result_json(result))
    response.headers["Cache-Control"] = "no-store"  # personal data: never cache
    return response


@cache
def _asset_version() -> str:
    """Fingerprint of the chat page's JS and CSS, so browsers refetch them after a deploy."""
    digest = hashlib.sha256()
    for name in ("chat.js", "chat.css"):
        digest.update((STATIC_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


@bp.get("/")
def page() -> Response:
    """The web chat page."""
    response = Response(
        render_template(
            "chat/index.html",
            asset_version=_asset_version(),
            restart_payload=RESTART_PAYLOAD,
        )
    )
    # Everything is served from here: no inline script, no CDN, no framing.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
