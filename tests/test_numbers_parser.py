"""Table tests for bot.parsing.numbers: digits and Vietnamese number words."""

from __future__ import annotations

import pytest

from bot.parsing.numbers import parse_int, parse_number

INTS: list[tuple[str, int]] = [
    ("4", 4),
    ("04", 4),
    (" 7 ", 7),
    ("1.000", 1000),
    ("1,000", 1000),
    ("1.000.000", 1_000_000),
    ("bốn", 4),
    ("bon", 4),
    ("BỐN", 4),
    ("không", 0),
    ("một", 1),
    ("năm", 5),
    ("mười", 10),
    ("mười hai", 12),
    ("muoi hai", 12),
    ("mười lăm", 15),
    ("hai mươi", 20),
    ("hai mươi mốt", 21),
    ("hai muoi mot", 21),
    ("hai mươi tư", 24),
    ("hai mươi bốn", 24),
    ("hai mươi lăm", 25),
    ("hai lăm", 25),
    ("ba mươi", 30),
    ("hai chục", 20),
    ("một trăm", 100),
    ("một trăm linh năm", 105),
    ("mot tram linh nam", 105),
    ("một trăm lẻ tư", 104),
    ("một trăm hai", 120),
    ("một trăm hai mươi ba", 123),
    ("hai nghìn ba", 2300),
    ("một nghìn không trăm linh năm", 1005),
    ("4 người", 4),
    ("nhà có 4 người", 4),
    ("khoảng 5", 5),
    ("tầm 5 người", 5),
    ("5 năm", 5),
    ("mười năm", 10),
    ("1 triệu 2", 1_200_000),
]

FLOATS: list[tuple[str, float]] = [
    ("12,5", 12.5),
    ("12.5", 12.5),
    ("0.5", 0.5),
    ("0,500", 0.5),
    ("1.000,5", 1000.5),
    ("nửa", 0.5),
    ("1,5 triệu", 1_500_000.0),
    ("bốn", 4.0),
]

NONE: list[str] = [
    "",
    "abc",
    "😀",
    "-3",
    "tư",
    "bốn năm",
    "3 hoặc 4",
    "1.2.3",
    "triệu",
]


@pytest.mark.parametrize(("text", "expected"), INTS)
def test_parse_int(text: str, expected: int) -> None:
    assert parse_int(text) == expected
    assert parse_number(text) == float(expected)


@pytest.mark.parametrize(("text", "expected"), FLOATS)
def test_parse_number(text: str, expected: float) -> None:
    assert parse_number(text) == pytest.approx(expected)


def test_parse_int_rejects_fractions() -> None:
    assert parse_int("12,5") is None
    assert parse_int("nửa") is None


@pytest.mark.parametrize("text", NONE)
def test_garbage(text: str) -> None:
    assert parse_int(text) is None
    assert parse_number(text) is None


def test_non_string() -> None:
    assert parse_int(None) is None  # type: ignore[arg-type]


def test_table_is_large() -> None:
    assert len(INTS) + len(FLOATS) + len(NONE) >= 30
