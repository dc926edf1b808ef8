"""The demo page in a real browser: headless Chromium, driven by Selenium, uploads a photo and a broken file.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and ``selenium`` (the [dev] extra);
skips, saying which is missing, where they are not installed. The browser may only reach 127.0.0.1, every wait is
bounded, and the server process is stopped at the end.

``EDGEDETECT_SCREENSHOT=docs/serve.png python -m pytest -q tests/test_serve_browser.py`` also saves a picture of
the page showing a result.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import REPO

WAIT_S = 60  # the longest any one step may take on a loaded 2-core CI machine
CAT = REPO / "imgs" / "real" / "cat.jpg"
pytestmark = pytest.mark.slow  # it drives Chromium


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
    chrome = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver", "/usr/lib/chromium/chromedriver")
    if not chrome or not driver_path:
        pytest.skip("needs a Chromium browser and its driver (Debian/Ubuntu: apt-get install chromium "
                    "chromium-driver, as .ci/run does); none found on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,1300",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--no-proxy-server"):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager is never asked to download anything.
    service = webdriver.ChromeService(executable_path=driver_path)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except Exception as e:  # a driver that does not match the browser, a browser that cannot start
        pytest.skip(f"Chromium could not be started by {driver_path} ({type(e).__name__}: {str(e).splitlines()[0]})")
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo_url(cli):
    """``edgedetect serve --port 0`` in its own process (the shipped model); its URL, read from its first line."""
    proc = cli.popen("serve", "--port", "0", "--threads", "1", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                     text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        try:
            first = lines.get(timeout=WAIT_S)
        except queue.Empty:
            pytest.fail(f"edgedetect serve printed no URL within {WAIT_S} s")
        match = re.search(r"http://127\.0\.0\.1:\d+/", first)
        assert match, f"edgedetect serve printed {first!r}, expected its URL"
        yield match.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _visible(driver, element_id: str, text: str | None = None):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    element = wait.until(ec.visibility_of_element_located((By.ID, element_id)))
    if text is not None:
        wait.until(ec.text_to_be_present_in_element((By.ID, element_id), text))
    return element


def test_page_shows_the_decision_for_a_photo_and_a_message_for_a_broken_file(browser, demo_url, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(demo_url)
    model_line = _visible(browser, "model-line", "cnn_pair32_int8.tflite").text
    assert "32x32 input" in model_line and "threshold 0.434" in model_line

    from edgedetect.predict import load_default_models, predict_files

    (expected,) = predict_files(load_default_models(threads=1), [str(CAT)])  # what `edgedetect predict` says
    browser.find_element(By.ID, "file").send_keys(str(CAT))
    _visible(browser, "result")
    assert browser.find_element(By.ID, "label").text == expected["label"]
    sign = "≥" if expected["label"] == "FAKE" else "<"
    assert browser.find_element(By.ID, "pfake").text == (f"p_fake {expected['p_fake']:.3f} {sign} threshold "
                                                         f"{expected['threshold']:.3f}")
    decided = browser.find_element(By.ID, "decided-by").text
    assert expected["model"] in decided and "int8" in decided
    picture = browser.find_element(By.ID, "picture")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture) >= 600
    assert not browser.find_element(By.ID, "error").is_displayed()
    shot = os.environ.get("EDGEDETECT_SCREENSHOT")
    if shot:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(900, height + 40)
        browser.save_screenshot(shot)

    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"this is not a JPEG, whatever its name says")
    browser.find_element(By.ID, "file").send_keys(str(broken))
    error = _visible(browser, "error", "holiday.jpg is not an image this demo can read")
    assert "Choose a JPEG, PNG" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
