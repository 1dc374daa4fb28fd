"""`attn serve`'s page in a real headless Chromium: an uploaded WAV, a recording from the fake
microphone, a typed text; markup in names and texts stays text."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from serving import TOKEN, clips_fixture, server_fixture, text_model_fixture, text_server_fixture  # noqa: F401 (fixtures)

from helpers import tone, write_wav


def chromium() -> tuple[str, str]:
    """Chromium and its driver; skips without them, except in CI (CI=1/true) or with ATTN_REQUIRE_BROWSER=1."""
    exe, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if exe and driver:
        return exe, driver
    if os.environ.get("CI", "").lower() in ("1", "true") or os.environ.get("ATTN_REQUIRE_BROWSER") == "1":
        pytest.fail("no Chromium or chromedriver (CI installs them: apt-get install chromium chromium-driver)")
    pytest.skip("no Chromium or chromedriver on this machine (apt-get install chromium chromium-driver)")


def open_browser(tmp_path: Path):
    """Headless Chromium through Debian's chromedriver (Selenium is given both paths: it never
    looks for a driver of its own)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe, driver_path = chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
                 # a microphone for MediaRecorder: Chromium's fake device (a beep), no permission prompt
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
    return driver


def test_the_page_classifies_an_uploaded_wav_in_chromium(server, clips, tmp_path):
    from io import BytesIO

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # A file name that is also markup: the page must show it as text, never run it.
    name = "<img src=x onerror=document.title=1> & co.wav"
    wav = write_wav(tmp_path / name, tone(440, 0.5, 8000), 8000)
    _, api = server.upload([(name, wav.read_bytes())], "?top_k=5")
    driver = open_browser(tmp_path)
    try:
        driver.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "bad" in (d.find_element(By.ID, "status").get_attribute("class") or ""))  # no token yet
        driver.find_element(By.CSS_SELECTOR, "details summary").click()
        token = driver.find_element(By.ID, "token")
        token.send_keys(TOKEN)
        driver.find_element(By.TAG_NAME, "h1").click()  # leaving the field sends its change event
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#facts dd")) >= 4)
        driver.find_element(By.ID, "file").send_keys(str(wav))
        wait.until(lambda d: d.find_element(By.ID, "label").text)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heat .cell"))
        assert driver.find_element(By.ID, "label").text == api["records"][0]["label"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == len(api["records"][0]["top_k"])
        assert driver.find_element(By.ID, "input-name").text == f"input: {name}"
        assert not driver.find_elements(By.CSS_SELECTOR, "#result img") and driver.title == "attn serve"
        labels = driver.find_element(By.ID, "facts").text
        assert all(lab in labels for lab in ("chirp", "noise_burst", "sine"))
        pixels = np.asarray(Image.open(BytesIO(driver.get_screenshot_as_png())).convert("L"), dtype=np.float64)
        assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # a blank page has std ~0
        record = driver.find_element(By.ID, "record")  # record, stop: the browser's WAV of it is classified
        record.click()
        wait.until(lambda d: d.find_element(By.ID, "record").text == "Stop")
        time.sleep(1.0)
        record.click()
        wait.until(lambda d: d.find_element(By.ID, "input-name").text == "input: recording.wav")
        assert driver.find_element(By.ID, "label").text in ("chirp", "noise_burst", "sine")
    finally:
        driver.quit()


def test_the_page_classifies_a_typed_text_in_chromium(text_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    text = "Where is the <b>castle</b> ?"  # markup typed into the page stays text
    _, api = text_server.request("POST", "/explain", json.dumps({"texts": [text]}).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    driver = open_browser(tmp_path)
    try:
        driver.get(f"http://127.0.0.1:{text_server.port}/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "text").is_displayed())  # a text model: the text box, no drop zone
        assert not driver.find_element(By.ID, "drop").is_displayed()
        driver.find_element(By.ID, "text").send_keys(text)
        driver.find_element(By.CSS_SELECTOR, "#text-in button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heat .tok"))
        assert driver.find_element(By.ID, "label").text == api["records"][0]["label"]
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#heat .tok")]
        assert shown == api["records"][0]["tokens"] and not driver.find_elements(By.CSS_SELECTOR, "#result b")
        # a multi-label model's record (labels and every label's score, no label or score): the page
        # showed an empty label and one unnamed bar reading NaN
        record = {"input": "x", "labels": ["joy", "grief"], "scores": {"anger": 0.1, "joy": 0.9, "grief": 0.6}}
        driver.execute_script("showRecord(arguments[0]);", record)
        assert driver.find_element(By.ID, "label").text == "joy, grief"
        bars = [(e.find_element(By.CSS_SELECTOR, ".name").text, e.find_element(By.CSS_SELECTOR, ".score").text)
                for e in driver.find_elements(By.CSS_SELECTOR, "#bars .bar")]  # fmt: skip
        assert bars == [("joy", "0.900"), ("grief", "0.600"), ("anger", "0.100")]
    finally:
        driver.quit()
