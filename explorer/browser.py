"""Headless Chromium driven by Selenium, for the explorer's tests and benchmark: Debian's chromium
and chromium-driver, named by path, so that Selenium Manager never runs (it would download a
browser and a driver).
"""
import base64
import importlib.util
import json
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1500, 1000)


def missing_browser():
    """Why no headless Chromium can be driven here, or None when it can."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -r requirements.txt)"
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        return (f"{' and '.join(missing)} missing: install Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver)")
    return None


def headless_chromium(window=WINDOW):
    """A headless Chromium that keeps its console messages and network events for reading."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={window[0]},{window[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def open_explorer(driver, page, timeout=60):
    """Open explorer.html from disk; return the milliseconds from navigation to its first view
    drawn, as the page measures it."""
    driver.get(Path(page).resolve().as_uri())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drawn = driver.execute_script("return document.body && document.body.dataset.firstDrawnMs")
        if drawn:
            return float(drawn)
        time.sleep(0.02)
    raise TimeoutError(f"{page} drew no view within {timeout} s")


def requested_urls(driver):
    """The URLs the browser requested since the last call (the performance log is read once)."""
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [event["params"]["request"]["url"] for event in events
            if event["method"] == "Network.requestWillBeSent"]


def console_errors(driver):
    """The console's errors since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def save_page_screenshot(driver, path):
    """A PNG of the whole page, below the window's bottom too (Chromium's DevTools protocol)."""
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    Path(path).write_bytes(base64.b64decode(shot["data"]))
