"""Tests for bot.parsing.communes: names, old names, typos and codes → communes."""

from __future__ import annotations

import time

import pytest
import yaml

from assessment.geo import commune_by_code
from bot.parsing.communes import ALIASES_PATH, resolve_commune


def best(text: str, **kwargs: object) -> tuple[str, str | None, bool]:
    matches = resolve_commune(text, **kwargs)  # type: ignore[arg-type]
    assert matches, text
    m = matches[0]
    return m.commune.code, m.matched_alias, m.exact


@pytest.mark.parametrize(
    "text",
    ["thuong phuoc", "Thường Phước", "THƯỜNG PHƯỚC", "xã Thường Phước", "xa thuong phuoc", "x. thuong phuoc",
     "  thuong   phuoc  ", "Thường Phước, Đồng Tháp", "thuong phuoc dong thap", "xã thường phước tỉnh đồng tháp"],
)
def test_current_name(text: str) -> None:
    matches = resolve_commune(text)
    assert matches[0].commune.code == "29971"
    assert matches[0].matched_alias is None
    assert matches[0].exact
    assert matches[0].score == 1.0


@pytest.mark.parametrize("text", ["Thường Phước 1", "thuong phuoc 1", "xã Thường Phước 1", "thuong phuoc 2"])
def test_old_name_thuong_phuoc(text: str) -> None:
    code, alias, exact = best(text)
    assert code == "29971"
    assert alias is not None and alias.startswith("Xã Thường Phước ")
    assert exact


@pytest.mark.parametrize(
    ("text", "code", "alias"),
    [
        ("thị trấn Thường Thới Tiền", "29971", "Thị trấn Thường Thới Tiền"),
        ("tt thuong thoi tien", "29971", "Thị trấn Thường Thới Tiền"),
        ("Long Khánh A", "29983", "Xã Long Khánh A"),
        ("long khanh b", "29983", "Xã Long Khánh B"),
        ("Phú Thuận A", "29992", "Xã Phú Thuận A"),
        ("phu thuan b", "29992", "Xã Phú Thuận B"),
        ("Thường Thới Hậu A", "29978", "Xã Thường Thới Hậu A"),
        ("xã Thường Lạc", "29978", "Xã Thường Lạc"),
        ("An Bình A", "29954", "Phường An Bình A"),
        ("p. an binh b", "29954", "Phường An Bình B"),
        ("Tân Hội, huyện Hồng Ngự", "29955", "Xã Tân Hội"),
        ("tân hội, tp hồng ngự, đồng tháp", "29955", "Xã Tân Hội"),
        ("Bình Thạnh, TP Hồng Ngự", "29955", "Xã Bình Thạnh"),
    ],
)
def test_old_names(text: str, code: str, alias: str) -> None:
    assert best(text)[:2] == (code, alias)


@pytest.mark.parametrize(
    ("text", "code", "alias"),
    [
        ("xã Long Thuận", "29992", "Xã Long Thuận"),
        ("An Lạc", "29978", "Phường An Lạc"),
        ("An Thạnh", "29955", "Phường An Thạnh"),
        ("An Lộc", "29954", "Phường An Lộc"),
        ("Tân Hội", "29955", "Xã Tân Hội"),
    ],
)
def test_old_names_that_exist_elsewhere(text: str, code: str, alias: str) -> None:
    # These names are also current units in other provinces; Đồng Tháp narrows.
    assert best(text, province_code="82")[:2] == (code, alias)


def test_current_name_outranks_old_name_in_same_province() -> None:
    # Đồng Tháp has a current Phường Long Thuận (ex-Tiền Giang) and an old xã
    # Long Thuận (ex-Hồng Ngự): both are offered, the current unit first.
    matches = resolve_commune("Long Thuận", province_code="82")
    assert [(m.commune.code, m.matched_alias) for m in matches[:2]] == [
        ("28297", None),
        ("29992", "Xã Long Thuận"),
    ]


def test_current_phuong_vs_old_xa() -> None:
    # Phường Thường Lạc absorbed xã Thường Lạc: the current name wins unless "xã" is said.
    assert best("thuong lac") == ("29978", None, True)
    assert best("phường Thường Lạc") == ("29978", None, True)


def test_typos() -> None:
    for text in ("tuong phuoc", "thuong phuc dong thap", "thường phuớc", "Long Phu Thuan", "long phu thuân"):
        assert best(text, province_code="82")[0] in ("29971", "29992"), text
    matches = resolve_commune("tuong phuoc")
    assert matches[0].commune.code == "29971"
    assert not matches[0].exact
    assert 0 < matches[0].score < 1


def test_codes() -> None:
    assert best("29971") == ("29971", None, True)
    assert best(" 00004 ") == ("00004", None, True)
    assert resolve_commune("99999") == []
    assert resolve_commune("29971", province_code="01") == []


def test_ambiguous_names_return_several_provinces() -> None:
    matches = resolve_commune("Tân Thành", limit=10)
    exact = [m for m in matches if m.exact and m.score >= 0.99]
    assert len({m.commune.province_code for m in exact}) >= 3
    narrowed = resolve_commune("Tân Thành", province_code="82")
    assert narrowed[0].commune.code == "29938"
    assert all(m.commune.province_code == "82" for m in narrowed)


def test_accents_break_ties() -> None:
    # "tan thanh" folds to Tân Thanh, Tân Thành and Tân Thạnh; typed accents decide.
    assert resolve_commune("Tân Thạnh", province_code="82")[0].commune.name == "Xã Tân Thạnh"
    assert resolve_commune("Tân Thành", province_code="82")[0].commune.name == "Xã Tân Thành"


def test_dac_khu() -> None:
    assert resolve_commune("đặc khu Phú Quốc")[0].commune.name == "Đặc khu Phú Quốc"
    assert resolve_commune("phu quoc")[0].commune.name == "Đặc khu Phú Quốc"


def test_names_with_digits_and_dashes() -> None:
    assert resolve_commune("phường 1 Bảo Lộc")[0].commune.name == "Phường 1 Bảo Lộc"
    assert resolve_commune("van mieu quoc tu giam")[0].commune.name == "Phường Văn Miếu - Quốc Tử Giám"


@pytest.mark.parametrize("text", ["", "   ", ",", "xã", "zzzz qqqq", "😀"])
def test_nothing(text: str) -> None:
    assert resolve_commune(text) == []


def test_limit() -> None:
    assert len(resolve_commune("an binh", limit=2)) == 2
    assert resolve_commune("an binh", limit=0) == []


def test_scores_sorted_and_bounded() -> None:
    matches = resolve_commune("thuong phuoc 1")
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)


def test_alias_file_codes_exist_and_have_sources() -> None:
    rows = yaml.safe_load(ALIASES_PATH.read_text(encoding="utf-8"))["aliases"]
    assert len(rows) >= 17
    for row in rows:
        assert commune_by_code(row["new_code"]) is not None, row
        assert row["source"] and row["old_district"] and row["old_province"], row


def test_fast() -> None:
    resolve_commune("warm up")
    queries = ["thuong phuoc 1", "tuong phuoc", "Văn Miếu Quốc Tử Giám", "an binh", "xa tan hoi, huyen hong ngu"]
    start = time.perf_counter()
    for _ in range(20):
        for q in queries:
            resolve_commune(q)
    per_call = (time.perf_counter() - start) / (20 * len(queries))
    assert per_call < 0.005
