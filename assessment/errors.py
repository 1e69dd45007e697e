"""Errors of the legal core: bad household input and bad legal data files.

The core never speaks HTTP: the web edge turns `InputError` into a 422, the CLI into a row error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: a machine code, the JSON path of the field and a Vietnamese message."""

    code: str
    field: str
    message_vi: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON-ready form."""
        return {"code": self.code, "field": self.field, "message_vi": self.message_vi}


class AssessmentError(Exception):
    """Base class of every error the legal core raises on purpose."""


class InputError(AssessmentError, ValueError):
    """The household input is invalid; `problems` names every field at fault."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(f"{p.field}: {p.message_vi}" for p in self.problems))

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready form used by the API and the CLI."""
        return {
            "code": "invalid_input",
            "message_vi": "Thông tin của hộ chưa hợp lệ, vui lòng kiểm tra lại.",
            "problems": [p.to_dict() for p in self.problems],
        }


class StandardDataError(AssessmentError):
    """A legal data file is malformed; the message names the file and the key at fault."""
