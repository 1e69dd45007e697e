"""The officials' dashboard in a real browser (headless Debian Chromium via Selenium), on a phone-sized screen.

A commune official logs in, drills down province → commune → hamlet, opens a household near the income line,
and opens the printable Giấy đề nghị (Mẫu số 01). The app runs without TESTING, so the session cookie is
Secure (browsers accept it on http://127.0.0.1) and CSRF is checked as in production. Screenshots go to
``artifacts/`` (gitignored). Skipped where Chromium, ChromeDriver or Selenium are missing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bot import create_app
from bot.store.testing import temporary_database
from tests.browser_support import ARTIFACTS, BROWSER_MARKS, TIMEOUT, phone_chromium, serve
from tests.dashboard_support import (
    COMMUNE_A,
    COMMUNE_B,
    HAMLET_X,
    HAMLET_Y,
    PASSWORD,
    PROVINCE,
    add_assessment,
    add_hamlets,
    add_user,
)


pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait



@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The app with a commune official and some households, served on 127.0.0.1 in a thread."""
    with temporary_database(tmp_path) as url:
        app: Flask = create_app({"SECRET_KEY": "browser-test", "DATABASE_URL": url})
        assert app.config["SESSION_COOKIE_SECURE"] is True
        add_hamlets(app, COMMUNE_A, [HAMLET_X, HAMLET_Y])
        add_user(app, "can_bo_xa", "official", scopes=[(COMMUNE_A, None)])
        now = dt.datetime.now(dt.UTC)
        statuses = ["poor", "near_poor", "average_living", "not_poor", "not_poor", "near_poor", "not_poor"]
        for i, status in enumerate(statuses * 2):
            add_assessment(app, COMMUNE_A, status, hamlet=HAMLET_X if i % 3 else HAMLET_Y,
                           user_ref=f"z{i}", head=f"Hộ thử {i}", income=1_300_000 + 60_000 * i,
                           deprivations=["water", "sanitation", "telecom"][: i % 4],
                           now=now - dt.timedelta(days=20 * i))
        add_assessment(app, COMMUNE_A, "near_poor", hamlet=HAMLET_X, user_ref="near", head="Trần Thị Sát Chuẩn",
                       income=1_480_000, now=now)
        for i in range(3):
            add_assessment(app, COMMUNE_B, "poor", hamlet="Ấp Long Bình", user_ref=f"b{i}", now=now)
        with serve(app) as base_url:
            yield base_url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with phone_chromium(webdriver, tmp_path / "chromium-profile", 390, 844) as driver:
        yield driver


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # The top of the page, two phone screens tall.
    driver.execute_script("window.scrollTo(0, 0)")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 1600, "deviceScaleFactor": 1, "mobile": True})
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})


def no_sideways_scroll(driver: Any) -> None:
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= driver.execute_script("return window.innerWidth")


def tap(driver: Any, element: Any) -> None:
    """Scroll the element into view and tap it (a DOM click: device emulation can offset pointer clicks)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    assert element.is_displayed()
    driver.execute_script("arguments[0].click()", element)


def click_link(driver: Any, text: str) -> None:
    tap(driver, WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_element(By.PARTIAL_LINK_TEXT, text)))


def test_official_drills_down_opens_a_household_and_prints_the_form(server: str, browser: Any) -> None:
    browser.get(server + "/dashboard/")
    assert "/login" in browser.current_url  # not logged in: sent to log in first
    browser.find_element(By.ID, "username").send_keys("can_bo_xa")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: f"/dashboard/c/{COMMUNE_A}" in d.current_url)

    # Up to the province, where the neighbouring commune's 3 households show as "<5".
    click_link(browser, "Đồng Tháp")
    WebDriverWait(browser, TIMEOUT).until(lambda d: f"/dashboard/p/{PROVINCE}" in d.current_url)
    units = browser.find_element(By.ID, "units")
    row_b = units.find_element(By.CSS_SELECTOR, f'tr[data-unit="{COMMUNE_B}"]')
    assert "<5" in row_b.text
    row_a = units.find_element(By.CSS_SELECTOR, f'tr[data-unit="{COMMUNE_A}"]')
    assert "15" in row_a.text and "phụ trách" in row_a.text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert browser.find_element(By.ID, "heatmap")
    no_sideways_scroll(browser)
    shot(browser, "dashboard_province.png")

    # Down to the commune, then the hamlet.
    tap(browser, row_a.find_element(By.TAG_NAME, "a"))
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_element(By.ID, "page-title").text == "Xã Thường Phước")
    assert browser.find_element(By.ID, "kpi-total").text == "15"
    no_sideways_scroll(browser)
    shot(browser, "dashboard_commune.png")
    units = browser.find_element(By.ID, "units")
    tap(browser, units.find_element(By.PARTIAL_LINK_TEXT, HAMLET_X))
    WebDriverWait(browser, TIMEOUT).until(lambda d: HAMLET_X in d.find_element(By.ID, "page-title").text)
    no_sideways_scroll(browser)
    shot(browser, "dashboard_hamlet.png")

    # The household closest to the line, then its Mẫu số 01.
    click_link(browser, "Trần Thị Sát Chuẩn")
    WebDriverWait(browser, TIMEOUT).until(lambda d: "/dashboard/household/" in d.current_url)
    assert "Trần Thị Sát Chuẩn" in browser.find_element(By.TAG_NAME, "h1").text
    assert "Chờ rà soát" in browser.find_element(By.ID, "review-status").text
    shot(browser, "dashboard_household.png")
    tap(browser, browser.find_element(By.ID, "print-form"))
    WebDriverWait(browser, TIMEOUT).until(lambda d: "/mau-01" in d.current_url)
    sheet = browser.find_element(By.ID, "form-01")
    assert "GIẤY ĐỀ NGHỊ" in sheet.text and "Chủ tịch Ủy ban nhân dân Xã Thường Phước" in sheet.text
    assert "Trần Thị Sát Chuẩn" in sheet.text
    # The print stylesheet hides the toolbar; the print button is wired (no inline script under the CSP).
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    assert not browser.find_element(By.CSS_SELECTOR, ".toolbar").is_displayed()
    assert sheet.is_displayed()
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    browser.execute_script("window.print = function () { window.__printed = true; };")
    browser.find_element(By.ID, "print").click()
    assert browser.execute_script("return window.__printed === true")
    shot(browser, "dashboard_form_01.png")
    pdf = browser.execute_cdp_cmd("Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True})
    import base64

    (ARTIFACTS / "dashboard_form_01.pdf").write_bytes(base64.b64decode(pdf["data"]))
