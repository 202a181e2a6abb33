"""Open a page in headless Chromium (Debian's chromium + chromium-driver) through Selenium."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def load_page(url: str, screenshot: Path, size: tuple[int, int] = (1200, 900), script: str | None = None) -> dict:
    """Load ``url``; return console messages, image states, the page height and what ``script``
    (run after loading, before the console is read) returned; save a screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        raise RuntimeError("headless Chromium is missing: install Debian's chromium and chromium-driver "
                           "(make test does: apt-get install -y chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="erasekit-chromium-")
    for flag in FLAGS + (f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(url)
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]);")
        height = driver.execute_script("return document.body.scrollHeight;")
        scripted = driver.execute_script(script) if script else None
        driver.save_screenshot(str(screenshot))
        logs = driver.get_log("browser")
        title = driver.title
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {"images": images, "logs": logs, "height": height, "title": title, "script": scripted}
