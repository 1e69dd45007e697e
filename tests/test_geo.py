"""Tests for assessment.geo: commune lookup by statistics code."""

from __future__ import annotations

import pytest

from assessment.geo import Commune, commune_by_code, iter_communes, iter_provinces, province_name


def test_xa_is_rural() -> None:
    c = commune_by_code("29971")
    assert c == Commune("29971", "Xã Thường Phước", "xã", "82", "Đồng Tháp", "rural")
    assert c.short_name == "Thường Phước"


def test_phuong_is_urban() -> None:
    c = commune_by_code("29978")
    assert c is not None
    assert (c.name, c.division_type, c.area) == ("Phường Thường Lạc", "phường", "urban")


def test_dac_khu_is_rural() -> None:
    dac_khu = [c for c in iter_communes() if c.division_type == "đặc khu"]
    assert len(dac_khu) == 13
    assert all(c.area == "rural" for c in dac_khu)
    assert any(c.name == "Đặc khu Phú Quốc" for c in dac_khu)


@pytest.mark.parametrize("code", ["29971", 29971, " 29971 ", "029971"])
def test_code_forms(code: str | int) -> None:
    c = commune_by_code(code)
    assert c is not None and c.code == "29971"


def test_leading_zeros() -> None:
    c = commune_by_code("00004")
    assert c is not None
    assert (c.code, c.name, c.province_code) == ("00004", "Phường Ba Đình", "01")
    assert commune_by_code(4) == c


@pytest.mark.parametrize("code", ["99999", 0, -29971, "", "abc", "29971a", "2997 1", True, None, 29971.0])
def test_unknown(code: object) -> None:
    assert commune_by_code(code) is None  # type: ignore[arg-type]


def test_counts() -> None:
    communes = list(iter_communes())
    assert len(communes) == 3321
    assert len({c.code for c in communes}) == 3321
    assert all(len(c.code) == 5 and c.code.isdigit() for c in communes)
    assert {c.division_type for c in communes} == {"xã", "phường", "đặc khu"}
    assert all(c.area == ("urban" if c.division_type == "phường" else "rural") for c in communes)


def test_dong_thap() -> None:
    communes = list(iter_communes("82"))
    assert len(communes) == 102
    assert sum(c.division_type == "phường" for c in communes) == 20
    assert list(iter_communes(82)) == communes
    assert list(iter_communes("nope")) == []


def test_provinces() -> None:
    provinces = dict(iter_provinces())
    assert len(provinces) == 34
    assert provinces["82"] == "Đồng Tháp"
    assert province_name("01") == "Thành phố Hà Nội"
    assert province_name(3) is None


def test_hong_ngu_codes() -> None:
    names = {code: commune_by_code(code).name for code in ("29971", "29983", "29992", "29978", "29955", "29954")}  # type: ignore[union-attr]
    assert names == {
        "29971": "Xã Thường Phước",
        "29983": "Xã Long Khánh",
        "29992": "Xã Long Phú Thuận",
        "29978": "Phường Thường Lạc",
        "29955": "Phường Hồng Ngự",
        "29954": "Phường An Bình",
    }


def test_lookup_is_fast() -> None:
    import time

    commune_by_code("29971")
    start = time.perf_counter()
    for _ in range(100_000):
        commune_by_code("29971")
    assert time.perf_counter() - start < 1.0  # ~0.5 µs each; generous for slow CI
