"""Table tests for bot.parsing.money: Vietnamese money talk → đồng."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parsing.money import MoneyParse, format_vnd, parse_money

M = "month"
Y = "year"

# (text, amount, period, exact)
CASES: list[tuple[str, int, str | None, bool]] = [
    # shorthand with "tr"
    ("1tr5", 1_500_000, None, False),
    ("1tr2", 1_200_000, None, False),
    ("1TR5", 1_500_000, None, False),
    ("1 tr 250", 1_250_000, None, False),
    ("1tr250", 1_250_000, None, False),
    ("2tr", 2_000_000, None, False),
    ("1 tr", 1_000_000, None, False),
    ("12tr5", 12_500_000, None, False),
    # triệu with decimals
    ("1,5 triệu", 1_500_000, None, False),
    ("1.5 trieu", 1_500_000, None, False),
    ("1,5 TRIỆU", 1_500_000, None, False),
    ("1,25 triệu", 1_250_000, None, False),
    ("0,5 triệu", 500_000, None, False),
    ("2 triệu", 2_000_000, None, False),
    ("2trieu", 2_000_000, None, False),
    # plain written numbers: exact
    ("1.500.000đ", 1_500_000, None, True),
    ("1.500.000 đ", 1_500_000, None, True),
    ("1.500.000 vnđ", 1_500_000, None, True),
    ("1.500.000 VND", 1_500_000, None, True),
    ("1.500.000 đồng", 1_500_000, None, True),
    ("1,500,000", 1_500_000, None, True),
    ("1500000", 1_500_000, None, True),
    ("1 500 000", 1_500_000, None, True),
    ("1 500 000 dong", 1_500_000, None, True),
    ("1.500", 1_500, None, True),
    ("500", 500, None, True),
    ("0", 0, None, True),
    ("0đ", 0, None, True),
    ("0 đồng", 0, None, True),
    # thousands
    ("1500k", 1_500_000, None, False),
    ("1500 k", 1_500_000, None, False),
    ("1.500k", 1_500_000, None, False),
    ("800k", 800_000, None, False),
    ("1k5", 1_500, None, False),
    ("1500 nghìn", 1_500_000, None, False),
    ("1500 nghin", 1_500_000, None, False),
    ("1500 ngàn", 1_500_000, None, False),
    ("1500 ngan", 1_500_000, None, False),
    ("1500 ng", 1_500_000, None, False),
    ("hai trăm nghìn", 200_000, None, False),
    ("hai tram nghin", 200_000, None, False),
    ("hai trăm rưỡi nghìn", 250_000, None, False),
    ("hai tram ruoi nghin", 250_000, None, False),
    ("năm trăm nghìn", 500_000, None, False),
    # bare "trăm" in money talk means hundreds of thousands
    ("2 trăm", 200_000, None, False),
    ("hai trăm", 200_000, None, False),
    ("hai trăm rưỡi", 250_000, None, False),
    # words
    ("một triệu rưỡi", 1_500_000, None, False),
    ("mot trieu ruoi", 1_500_000, None, False),
    ("MỘT TRIỆU RƯỠI", 1_500_000, None, False),
    ("một triệu hai", 1_200_000, None, False),
    ("một triệu hai trăm nghìn", 1_200_000, None, False),
    ("một triệu hai trăm", 1_200_000, None, False),
    ("hai mươi lăm triệu", 25_000_000, None, False),
    ("mười hai triệu", 12_000_000, None, False),
    ("triệu tư", None, None, False),  # no base number: rejected below
    ("nửa triệu", 500_000, None, False),
    ("nua trieu", 500_000, None, False),
    ("12 triệu rưỡi", 12_500_000, None, False),
    # mixed digits and scales
    ("1 triệu 2", 1_200_000, None, False),
    ("1 triệu 25", 1_250_000, None, False),
    ("1 triệu 250", 1_250_000, None, False),
    ("1 triệu 250 nghìn", 1_250_000, None, False),
    ("1 triệu 250 ngàn đồng", 1_250_000, None, False),
    ("1 triệu 2 trăm", 1_200_000, None, False),
    ("1 triệu tư", 1_400_000, None, False),
    # slang
    ("3 củ", 3_000_000, None, False),
    ("3 cu", 3_000_000, None, False),
    ("3củ", 3_000_000, None, False),
    ("5 lít", 500_000, None, False),
    ("5 lit", 500_000, None, False),
    ("1 lít rưỡi", 150_000, None, False),
    # billions
    ("1.2 tỷ", 1_200_000_000, None, False),
    ("1,2 tỷ", 1_200_000_000, None, False),
    ("1 tỷ 2", 1_200_000_000, None, False),
    ("1 ty 2", 1_200_000_000, None, False),
    ("2 tỉ", 2_000_000_000, None, False),
    # periods
    ("50 triệu một năm", 50_000_000, Y, False),
    ("50 trieu mot nam", 50_000_000, Y, False),
    ("50 triệu/năm", 50_000_000, Y, False),
    ("50 triệu mỗi năm", 50_000_000, Y, False),
    ("cả năm được 40 triệu", 40_000_000, Y, False),
    ("2tr/tháng", 2_000_000, M, False),
    ("2tr/thang", 2_000_000, M, False),
    ("800k/thang", 800_000, M, False),
    ("800k / tháng", 800_000, M, False),
    ("mỗi tháng 3 triệu", 3_000_000, M, False),
    ("hàng tháng 3 triệu", 3_000_000, M, False),
    ("3 triệu 1 tháng", 3_000_000, M, False),
    ("năm trăm nghìn một tháng", 500_000, M, False),
    ("1500000/tháng", 1_500_000, M, True),
    ("1.500.000đ/tháng", 1_500_000, M, True),
    ("năm triệu mỗi năm", 5_000_000, Y, False),
    # estimates and ranges
    ("khoảng 3 triệu", 3_000_000, None, False),
    ("khoang 3 trieu", 3_000_000, None, False),
    ("tầm 3 triệu", 3_000_000, None, False),
    ("tam 3 trieu", 3_000_000, None, False),
    ("khoảng 1500000", 1_500_000, None, False),
    ("3-4 triệu", 3_500_000, None, False),
    ("3 - 4 triệu", 3_500_000, None, False),
    ("3 đến 4 triệu", 3_500_000, None, False),
    ("từ 3 tới 4 triệu", 3_500_000, None, False),
    ("500-700k", 600_000, None, False),
    ("1tr5-2tr/tháng", 1_750_000, M, False),
    # nothing
    ("không có", 0, None, False),
    ("khong co thu nhap", 0, None, False),
    ("không", 0, None, False),
    ("ko có", 0, None, False),
    ("chưa có thu nhập", 0, None, False),
    # sentences
    ("lương tôi 4 triệu", 4_000_000, None, False),
    ("thu nhập khoảng 6tr/tháng", 6_000_000, M, False),
]
CASES = [c for c in CASES if c[1] is not None]

REJECTED = [
    "",
    "   ",
    "abc",
    "😀",
    "-500000",
    "- 500000",
    "âm 5 triệu",
    "triệu",
    "trieu",
    "triệu tư",
    "không biết",
    "1,5",
    "1.2.3",
    "200k/ngày",
    "50k mỗi ngày",
    "3 triệu/tháng 36 triệu/năm",
    "2 người 3 triệu",
]


@pytest.mark.parametrize(("text", "amount", "period", "exact"), CASES)
def test_table(text: str, amount: int, period: str | None, exact: bool) -> None:
    got = parse_money(text)
    assert got is not None, text
    assert (got.amount, got.period, got.exact) == (amount, period, exact), text
    assert got.text_vi == format_vnd(amount)


def test_table_is_large() -> None:
    assert len(CASES) >= 80


@pytest.mark.parametrize("text", REJECTED)
def test_rejected(text: str) -> None:
    assert parse_money(text) is None


def test_result_shape() -> None:
    assert parse_money("1tr5") == MoneyParse(1_500_000, None, False, "1.500.000 đồng")


@pytest.mark.parametrize(
    ("amount", "text"),
    [(0, "0 đồng"), (500, "500 đồng"), (1_500, "1.500 đồng"), (1_500_000, "1.500.000 đồng"),
     (10_000_000_000, "10.000.000.000 đồng")],
)
def test_format_vnd(amount: int, text: str) -> None:
    assert format_vnd(amount) == text


def test_non_string_is_rejected() -> None:
    assert parse_money(None) is None  # type: ignore[arg-type]
    assert parse_money(1500) is None  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**10))
def test_round_trip(n: int) -> None:
    formatted = parse_money(format_vnd(n))
    plain = parse_money(str(n))
    assert formatted is not None and formatted.amount == n and formatted.exact
    assert plain is not None and plain.amount == n and plain.exact
