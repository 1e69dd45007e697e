"""Stored documents and API responses are the same JSON with orjson as with the standard library."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    "text",
    [
        '{"so": 9223372036854775807, "am": -9223372036854775808, "lon": 18446744073709551615}',
        '{"so": 18446744073709551616, "am": -9223372036854775809}',  # past 64 bits: exact all the same
        '[12345678901234567890123, "0912345678", 1.0000000000000002, 5e-324, -0.0]',
        '{"x": NaN, "y": -Infinity}',  # refused by orjson, read as the standard library reads it
        '"\\ud800 ma"',  # a lone surrogate, likewise
        '{"a": 1, "a": 2}',
    ],
)
def test_reading_gives_exactly_what_the_standard_library_gives(text: str) -> None:
    expected = json.loads(text)
    for raw in (text, text.encode()):
        got = loads(raw)
        assert repr(got) == repr(expected)  # repr: NaN != NaN, and -0.0 == 0.0


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@given(_JSON_VALUES)
def test_any_document_reads_back_as_the_standard_library_reads_it(value: object) -> None:
    text = dumps(value)
    assert repr(loads(text)) == repr(json.loads(text)) == repr(json.loads(_stdlib(value))) == repr(value)


def test_text_that_is_not_json_fails_as_with_the_standard_library() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads("{nope")
    with pytest.raises(ValueError):
        loads("{nope")


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
