"""Shared pieces of the real-browser tests: the app served in a thread, and a phone-sized headless Chromium."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from bot.store import get_store

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT = 20  # seconds for one page or reply; generous for a loaded 2-core CI machine

#: Marks for a browser test module: skipped, with the reason, where Chromium or ChromeDriver are missing.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
    ),
]


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 at a random free port, in a thread; yield its base URL."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        get_store(app).engine.dispose()


@contextlib.contextmanager
def phone_chromium(webdriver: Any, profile: Path, width: int, height: int) -> Iterator[Any]:
    """Headless Chromium with a throwaway profile and a phone's viewport of `width` × `height` CSS pixels."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        # Without these Chromium keeps trying hosts this closed network refuses.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--lang=vi",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(TIMEOUT)
    # Headless windows are at least 500 px wide: emulate the phone's viewport instead.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        yield driver
    finally:
        driver.quit()
