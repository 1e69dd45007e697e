"""Stored documents and API responses are the same JSON with orjson as with the standard library."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from bot.jsoncodec import JSONProvider, dumps, loads

DOCUMENT = {"xa": "Xã Thường Phước", "thu_nhap": 1_500_000, "ty_le": 0.25, "co": [True, False, None], "rong": {}}


def _stdlib(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_a_document_is_written_as_compact_utf8_json_like_the_standard_library() -> None:
    assert dumps(DOCUMENT) == _stdlib(DOCUMENT)
    assert loads(dumps(DOCUMENT)) == DOCUMENT


def test_integer_keys_become_strings_as_with_the_standard_library() -> None:
    assert dumps({1: "một"}) == _stdlib({1: "một"}) == '{"1":"một"}'


@pytest.mark.parametrize("value", [2**70, -(2**64), {"so": 10**30}])
def test_an_integer_wider_than_64_bits_is_written_and_read_back_by_the_standard_library(value: object) -> None:
    assert dumps(value) == _stdlib(value)
    assert loads(dumps(value)) == value


def test_the_flask_provider_answers_with_the_same_body_as_flasks_own() -> None:
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    with app.app_context():
        response = app.json.response(DOCUMENT)
    assert response.mimetype == "application/json"
    assert response.get_data(as_text=True) == _stdlib(DOCUMENT) + "\n"


def test_the_flask_provider_defers_to_flask_when_asked_for_sorted_or_ascii_output() -> None:
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.json.sort_keys = True  # type: ignore[attr-defined]
    app.json.ensure_ascii = True  # type: ignore[attr-defined]
    assert app.json.dumps({"b": "ả", "a": 1}) == '{"a": 1, "b": "\\u1ea3"}'
