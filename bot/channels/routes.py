"""Webhooks of the push channels: ``POST /channels/<name>`` (and ``GET`` for Messenger's subscription check).

``<name>`` is an adapter name (``zalo_oa``, ``zalo_bot``, ``telegram``, ``messenger``); a channel that is not
configured answers 404. The view is the same for every channel and knows nothing about any of them: the
adapter verifies and parses, :mod:`bot.delivery` records and hands over. What each outcome answers:

======================================  ======  =================================================================
outcome                                 status  why
======================================  ======  =================================================================
forged (missing / wrong signature)      401     nothing is recorded or processed
authentic but older than the replay     200     dropped and logged: answering an error would make the provider
window (``StaleEventError``)                    retry a message we will never accept, then disable the webhook
body not parseable                      400     the provider sent something we cannot read
recorded (or already recorded)          200     the event is committed to the database before we answer
database failed or too slow             503     nothing acknowledged; the provider redelivers (``Retry-After``)
======================================  ======  =================================================================

Registering this blueprint also attaches the delivery machinery to the app (:func:`bot.delivery.init_app`):
adapters are built then, so a half-configured channel stops start-up with the names of the missing settings.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, cast

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState

from bot.channels.base import ParseError, SignatureError, StaleEventError
from bot.errors import error_body

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["bp"]

log = logging.getLogger(__name__)

bp = Blueprint("channels", __name__)


@bp.record_once
def _attach_delivery(state: BlueprintSetupState) -> None:
    from bot.delivery import init_app

    init_app(cast("Flask", state.app))


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _unknown(name: str) -> Response:
    return _json(404, error_body("unknown_channel", f"Kênh {name[:32]!r} chưa được cấu hình."))


@bp.post("/channels/<name>")
def webhook(name: str) -> Response:
    """Verify, parse, record, answer."""
    from bot.delivery import get_delivery

    started = time.perf_counter()
    delivery = get_delivery()
    adapter = delivery.adapters.get(name)
    if adapter is None:
        return _unknown(name)
    raw = request.get_data(cache=True)
    try:
        adapter.verify(cast(Any, request.headers), raw, request.args)
    except StaleEventError as exc:
        log.warning("%s webhook: stale event dropped: %s", name, exc)
        return _json(200, {"status": "ignored", "reason": "stale"})
    except SignatureError as exc:
        log.warning("%s webhook rejected from %s: %s", name, request.remote_addr, exc)
        return _json(401, error_body("bad_signature", "Chữ ký không hợp lệ."))
    try:
        events = adapter.parse(raw, cast(Any, request.headers))
    except ParseError as exc:
        log.warning("%s webhook: unreadable body: %s", name, exc)
        return _json(400, error_body("bad_body", "Nội dung không đọc được."))
    if not events:
        return _json(200, {"status": "ok", "recorded": 0})
    try:
        recorded = delivery.record(events)
    except Exception:
        log.exception("%s webhook: could not record %d event(s); answering 503", name, len(events))
        return _json(
            503,
            error_body("try_again", "Hệ thống đang bận, vui lòng gửi lại sau."),
            {"Retry-After": "5"},
        )
    delivery.announce(recorded)
    log.debug("%s webhook: %d new of %d in %.1f ms", name, len(recorded), len(events),
              (time.perf_counter() - started) * 1000)  # fmt: skip
    return _json(200, {"status": "ok", "recorded": len(recorded)})


@bp.get("/channels/<name>")
def handshake(name: str) -> Response:
    """Messenger's subscription check (``hub.mode``, ``hub.verify_token``, ``hub.challenge``)."""
    from bot.delivery import get_delivery

    adapter = get_delivery().adapters.get(name)
    if adapter is None:
        return _unknown(name)
    answer = getattr(adapter, "handshake", None)
    if answer is None:
        return _json(405, error_body("method_not_allowed", "Kênh này không dùng GET."))
    try:
        challenge = answer(request.args)
    except SignatureError as exc:
        log.warning("%s handshake rejected: %s", name, exc)
        return _json(403, error_body("bad_verify_token", "Mã xác minh không đúng."))
    return Response(str(challenge), 200, content_type="text/plain; charset=utf-8")
