"""The web chat page in a real browser (headless Debian Chromium via Selenium).

A first-time visitor on a 360 px wide phone screen opens ``/`` and completes an
assessment by tapping buttons and typing, without any instructions; the result
must be readable. Skipped (with the reason) where Chromium, ChromeDriver or
Selenium are not installed: ``apt-get install chromium chromium-driver``.
A screenshot of the result is saved in ``artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bot import create_app
from bot.store.testing import temporary_database
from tests.browser_support import ARTIFACTS, BROWSER_MARKS, TIMEOUT, phone_chromium, serve


pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402



@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The app served on 127.0.0.1 at a random free port, in a thread."""
    with temporary_database(tmp_path) as url:
        app: Flask = create_app({"SECRET_KEY": "browser-test", "DATABASE_URL": url})
        with serve(app) as base_url:
            yield base_url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium with a phone-sized window and a throwaway profile."""
    with phone_chromium(webdriver, tmp_path / "chromium-profile", 360, 740) as driver:
        yield driver


class Visitor:
    """What a person does on the page: tap a button, type and press Enter, read replies."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def bot_messages(self) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#log li.msg.bot")

    def wait_for_reply(self, before: int) -> None:
        WebDriverWait(self.driver, TIMEOUT).until(
            lambda d: len(self.bot_messages()) > before
            and not d.find_element(By.ID, "typing").is_displayed()
        )

    def tap(self, label_start: str) -> None:
        before = len(self.bot_messages())
        buttons = [
            b
            for b in self.driver.find_elements(By.CSS_SELECTOR, "button.choice")
            if b.is_enabled() and b.text.startswith(label_start)
        ]
        assert buttons, f"no live button {label_start!r}"
        buttons[0].click()
        self.wait_for_reply(before)

    def type(self, text: str, *, enter: bool = True) -> None:
        before = len(self.bot_messages())
        box = self.driver.find_element(By.ID, "text")
        box.click()
        box.send_keys(text)
        if enter:
            box.send_keys(Keys.ENTER)
        else:
            self.driver.find_element(By.ID, "send").click()
        self.wait_for_reply(before)

    def last_text(self) -> str:
        return str(self.bot_messages()[-1].text)


def test_first_time_visitor_completes_an_assessment(server: str, browser: Any) -> None:
    browser.get(server + "/")
    me = Visitor(browser)
    me.wait_for_reply(0)  # greeted without typing anything
    assert "Xin chào" in browser.find_element(By.ID, "log").text

    # Keyboard users land on the first button of the question just asked.
    focused = browser.switch_to.active_element
    assert focused.tag_name == "button" and "choice" in (focused.get_attribute("class") or "")

    me.tap("Chỉ xem thử")
    me.type("thuong phuoc 1")
    me.tap("Đúng")
    me.type("4", enter=False)  # the send button works as well as Enter
    me.tap("Không có")  # children under 16
    me.type("0")
    me.type("8 triệu")
    me.tap("Không có")  # hardships
    me.tap("Bán kiên cố")
    me.type("45")
    me.tap("Giếng khoan")
    me.tap("Tự hoại")
    me.type("1,4,6")
    me.tap("Được thu gom")
    me.tap("Đúng")  # "Đúng, xem kết quả"

    result = browser.find_element(By.CSS_SELECTOR, "#log li.msg.result")
    assert "KẾT QUẢ SƠ BỘ" in result.text
    # Line breaks of the result are kept (pre-wrap), so it reads as paragraphs.
    assert result.value_of_css_property("white-space") == "pre-wrap"
    assert result.text.count("\n") >= 3

    # Fits a 360 px screen: nothing scrolls sideways.
    width = browser.execute_script("return document.documentElement.scrollWidth")
    viewport = browser.execute_script("return window.innerWidth")
    assert viewport == 360 and width <= viewport

    # The page showed the result from its first line, not its last.
    top = browser.execute_script(
        "return arguments[0].getBoundingClientRect().top - "
        "document.getElementById('log-wrap').getBoundingClientRect().top",
        result,
    )
    assert 0 <= top <= 40
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web_chat_result.png"))

    # Reloading keeps the same person and shows the conversation so far.
    user = browser.execute_script("return localStorage.getItem('tusoat.user')")
    shown = len(me.bot_messages())
    browser.refresh()
    WebDriverWait(browser, TIMEOUT).until(lambda d: len(me.bot_messages()) >= shown)
    assert browser.execute_script("return localStorage.getItem('tusoat.user')") == user
    assert "KẾT QUẢ SƠ BỘ" in browser.find_element(By.ID, "log").text


def test_page_is_accessible_in_the_basics(server: str, browser: Any) -> None:
    browser.get(server + "/")
    me = Visitor(browser)
    me.wait_for_reply(0)
    log = browser.find_element(By.ID, "log")
    assert log.get_attribute("aria-live") == "polite"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=text]")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "vi"
    # A new visitor in another tab/profile is a different person.
    user = browser.execute_script("return localStorage.getItem('tusoat.user')")
    assert user and user.startswith("web-")
    # Shift+Enter makes a new line instead of sending.
    box = browser.find_element(By.ID, "text")
    box.send_keys("a")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("b")
    assert box.get_attribute("value") == "a\nb"
    assert not browser.find_elements(By.CSS_SELECTOR, "#log li.msg.user")  # nothing sent
