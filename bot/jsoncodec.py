"""Compact UTF-8 JSON for stored documents and API responses, with orjson where it can.

Every chat message serialises the conversation state, the inbound message, the reply
document and the response body; the standard library's encoder was several percent of a
worker's CPU per message. orjson writes the same JSON (compact separators, Vietnamese
kept as UTF-8, key order kept) several times faster, and reads it several times faster
(each message reads the conversation state back). Where the two differ, the standard
library decides: a value orjson refuses (an integer wider than 64 bits, a type it does
not know) is written by :mod:`json`, and text orjson might read differently (a long run of
digits: an integer it would round to a float) or refuses (``NaN``, a lone surrogate) is
read by :mod:`json`, so no input that worked before fails or changes now.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson
from flask.json.provider import DefaultJSONProvider

__all__ = ["JSONProvider", "dumps", "loads"]

_OPTIONS = orjson.OPT_NON_STR_KEYS

#: 19 digits in a row: possibly an integer outside what orjson reads exactly (-2**63 .. 2**64 - 1).
_LONG_DIGITS: Final = re.compile(r"[0-9]{19}")
_LONG_DIGITS_BYTES: Final = re.compile(rb"[0-9]{19}")


def dumps(value: Any) -> str:
    """Serialise ``value`` as compact JSON text (UTF-8 characters unescaped)."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Parse JSON text written by :func:`dumps` (or by anything else), exactly as :func:`json.loads` would.

    orjson, unless the text has a run of 19 digits: orjson reads an integer wider than 64 bits as an
    approximate float, without an error, and a stored value must come back exact. Whatever orjson refuses
    goes to the standard library too (which accepts ``NaN`` and lone surrogates).
    """
    if _LONG_DIGITS.search(text) if isinstance(text, str) else _LONG_DIGITS_BYTES.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, encoding with :func:`dumps` when the app's settings are ours.

    Flask's own encoder is used whenever a setting asks for something :func:`dumps` does
    not do (ASCII escaping, sorted keys, indentation in debug mode), and for values
    orjson does not know (dates, dataclasses, ...), which :func:`dumps` hands back to it.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs or self.ensure_ascii or self.sort_keys:
            return super().dumps(obj, **kwargs)
        try:
            return orjson.dumps(obj, option=_OPTIONS).decode()
        except TypeError:
            return super().dumps(obj)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(*args, **kwargs)  # indented for people reading it
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(f"{self.dumps(obj)}\n", mimetype=self.mimetype)
