"""The web app in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium).

tests/browser_setup.sh installs the browser; CI runs it before the tests. Selenium Manager is
kept offline: the driver path is given explicitly and SE_OFFLINE=true, so nothing is downloaded.
Screenshots at phone and desktop widths go to $DIGEST_TEST_ARTIFACTS (default tests/artifacts/).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from test_web import ANA, DATE, LiveServer, record_issue

from digest.compose.personalise import sign_token
from digest.readers.addresses import address_key
from digest.state.ledger import Ledger
from digest.web import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("DIGEST_TEST_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")
PHONE = (390, 844)
DESKTOP = (1280, 900)


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: run `bash tests/browser_setup.sh` (as root) to install "
                    "Debian's chromium and chromium-driver; CI runs it before the tests", pytrace=False)


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="digest-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
                     f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture()
def settings(sample_settings, tmp_path):
    configured = dataclasses.replace(sample_settings, state_db=tmp_path / "state" / "digest.sqlite3")
    Ledger(configured.state_db).close()
    return configured


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def shoot(driver, name: str) -> list[Path]:
    """Screenshots of the current page at phone and desktop widths; their paths."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, (width, height) in (("phone", PHONE), ("desktop", DESKTOP)):
        # The CSS viewport, as a phone has it (set_window_size would include the window frame).
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": label == "phone"})
        path = ARTIFACTS / f"{name}-{label}.png"
        path.unlink(missing_ok=True)
        assert driver.save_screenshot(str(path)), path
        assert driver.execute_script("return document.documentElement.clientWidth") == width
        # Fluid layout: nothing wider than the viewport, so no sideways scrolling on a phone.
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways at {width}px"
        paths.append(path)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    for path, (width, height) in zip(paths, (PHONE, DESKTOP)):
        assert path.stat().st_size > 5000, f"{path} is suspiciously small"
        assert png_size(path) == (width, height), path
    return paths


def test_unsubscribe_page_click_leave_all_then_archive(browser, settings):
    from selenium.webdriver.common.by import By

    record_issue(settings, "am", DATE, [ANA])
    token = sign_token(settings.signing_keys, ANA, "am")
    with LiveServer(create_app(settings)) as server:
        browser.get(f"{server.url}/u/{token}")
        heading = browser.find_element(By.TAG_NAME, "h1")
        assert "Northline AM" in heading.text and heading.is_displayed()
        body = browser.find_element(By.TAG_NAME, "body").text
        assert ANA in body and "Northline AM" in body
        leave_edition = browser.find_element(By.XPATH, "//button[normalize-space()='Leave Northline AM']")
        leave_all = browser.find_element(By.XPATH, "//button[normalize-space()='Leave all editions']")
        assert leave_edition.is_displayed() and leave_all.is_displayed()
        assert leave_all.size["height"] >= 44 and leave_edition.size["height"] >= 44  # tap targets
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        shoot(browser, "unsubscribe")
        with closing(Ledger(settings.state_db)) as ledger:  # opening the page changed nothing
            assert ledger.db.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0] == 0

        leave_all.click()
        _wait_for_heading(browser, "You're unsubscribed")
        assert "no longer receive any Northline News newsletters" in browser.find_element(By.TAG_NAME, "body").text
        assert browser.current_url == f"{server.url}/u/{token}"  # no redirect
        assert browser.get_cookies() == []
        shoot(browser, "unsubscribed")
        with closing(Ledger(settings.state_db)) as ledger:
            rows = ledger.db.execute("SELECT key, edition, reason FROM suppressions").fetchall()
            assert rows == [(address_key(ANA), "*", "unsubscribed")]
            assert ledger.is_suppressed(address_key(ANA), "pm")

        browser.get(f"{server.url}/i/am")
        link = browser.find_element(By.LINK_TEXT, "Tuesday, December 1, 2026")
        shoot(browser, "archive-list")
        link.click()
        _wait(browser, lambda d: d.current_url == f"{server.url}/i/am/{DATE.isoformat()}"
              and d.execute_script("return document.readyState") == "complete")
        from digest.compose.planning import choose_stories
        from digest.sources.stories import load_folder
        lead = choose_stories(settings.edition("am"), DATE, load_folder(settings.paths.stories).stories, words_per_minute=settings.newsroom.words_per_minute).stories[0]
        # The headline element itself (not <title>, not a hidden preheader), visible on the page.
        matches = browser.find_elements(By.XPATH, f"//body//*[normalize-space()={_xpath_string(lead.headline)}]")
        assert any(m.is_displayed() and m.size["height"] > 0 for m in matches), lead.headline
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "Good morning." in text and ANA not in text
        shoot(browser, "archive-issue")

        browser.get(f"{server.url}/u/not-a-valid-token")
        assert browser.find_element(By.TAG_NAME, "h1").text == "This link is not valid"
    assert not any("Refused to" in entry.get("message", "") for entry in _console(browser)), "CSP blocked something"


def _wait(driver, condition, seconds: float = 15.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)


def _wait_for_heading(driver, text: str) -> None:
    """Until the page that a click loads is there (a click does not wait for the navigation)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def arrived(d) -> bool:
        try:
            return (d.execute_script("return document.readyState") == "complete"
                    and any(h.text == text for h in d.find_elements(By.TAG_NAME, "h1")))
        except StaleElementReferenceException:
            return False

    _wait(driver, arrived)


def _xpath_string(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"


def _console(driver) -> list[dict]:
    try:
        return driver.get_log("browser")
    except Exception:  # not every driver keeps a console log
        return []


def test_archive_page_has_a_public_footer(browser, settings):
    """The archive page is nobody's copy: no 'you're receiving this', no unsubscribe, no 'view in browser'."""
    from selenium.webdriver.common.by import By

    record_issue(settings, "am", DATE, [ANA])
    with LiveServer(create_app(settings)) as server:
        browser.get(f"{server.url}/i/am/{DATE.isoformat()}")
        _wait(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        foot = browser.find_element(By.CSS_SELECTOR, "td.foot")
        foot.location_once_scrolled_into_view
        assert foot.is_displayed()
        text = foot.text
        assert "Northline AM is a newsletter from Northline News." in text
        assert "410 Lake Street, Suite 300, Minneapolis, MN 55401, USA" in text
        body = browser.find_element(By.TAG_NAME, "body").text
        for reader_part in ("You're receiving this", "subscribed to", "Unsubscribe", "View in browser"):
            assert reader_part not in body, reader_part
        links = {a.text: a.get_attribute("href") for a in foot.find_elements(By.TAG_NAME, "a")}
        assert links == {"Past issues of Northline AM": f"{settings.base_url}/i/am",
                         "Northline News": f"https://{settings.newsroom.domain}/",
                         "Sign up for Northline AM": settings.newsroom.signup_url}
        assert all(a.get_attribute("href") not in ("", "#") and not a.get_attribute("href").endswith("#")
                   for a in browser.find_elements(By.TAG_NAME, "a"))
        assert "Good morning." in body and ANA not in body
        shoot(browser, "archive-footer")
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "archive-footer-bottom.png"))
    assert not any("Refused to" in entry.get("message", "") for entry in _console(browser)), "CSP blocked something"
