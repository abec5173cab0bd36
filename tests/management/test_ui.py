"""The management web UI at `/`, driven in headless Chromium through selenium.

Needs Debian's chromium and chromedriver (`apt-get install chromium chromium-driver`) and the
selenium package (in the `test` extra); skipped with the reason when any of them is missing.
Screenshots of each step are written to test-artifacts/ui/.

    /work/venv/bin/pytest tests/management/test_ui.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install 'selenium>=4')")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
WAIT = 10  # seconds for any one thing to appear in the page


def _executable(env: str, *names: str) -> str | None:
    explicit = os.environ.get(env)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in names:
        found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/bin:/usr/lib/chromium")
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium = _executable("WARREN_CHROMIUM", "chromium", "chromium-browser")
    chromedriver = _executable("WARREN_CHROMEDRIVER", "chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("chromium and chromedriver are needed for the browser test "
                    "(apt-get install chromium chromium-driver, or set WARREN_CHROMIUM and "
                    "WARREN_CHROMEDRIVER)")
    profile = tempfile.mkdtemp(prefix="warren-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=chromedriver))
    except Exception as exc:  # a broken or mismatched chromium install
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"could not start headless chromium: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _text_becomes(driver: webdriver.Chrome, element_id: str, text: str) -> None:
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.ID, element_id), text),
        f"#{element_id} never showed {text!r}")


def test_ui_login_queues_publish_and_get(broker, browser, unique):
    if broker.management_port is None:
        pytest.skip("the broker under test has no management port (set WARREN_TEST_HTTP_PORT)")
    queue = f"ui-{unique}"
    params = pika.ConnectionParameters(host=broker.host, port=broker.port,
                                       credentials=pika.PlainCredentials("guest", "guest"))
    with pika.BlockingConnection(params) as connection:
        connection.channel().queue_declare(queue)
    driver, wait = browser, WebDriverWait(browser, WAIT)
    base = f"http://127.0.0.1:{broker.management_port}/"
    try:
        # log in
        driver.get(base)
        wait.until(EC.visibility_of_element_located((By.ID, "login-form")))
        driver.find_element(By.ID, "login-username").send_keys("guest")
        driver.find_element(By.ID, "login-password").send_keys("guest")
        _shot(driver, "01-login")
        driver.find_element(By.ID, "login-submit").click()

        # overview: counters filled from /api/overview, charts drawn
        wait.until(EC.visibility_of_element_located((By.ID, "chart-rates")))
        _text_becomes(driver, "whoami", "guest")
        wait.until(lambda d: d.find_element(By.ID, "ov-queues").text not in ("", "–"))
        assert int(driver.find_element(By.ID, "ov-queues").text.replace(",", "")) >= 1
        _shot(driver, "02-overview")

        # queues: the pika-declared queue is listed, found through the filter box
        driver.find_element(By.CSS_SELECTOR, "#nav a[data-page=queues]").click()
        search = wait.until(EC.visibility_of_element_located((By.ID, "queue-filter")))
        search.clear()
        search.send_keys(queue)
        row = (By.CSS_SELECTOR, f"tr[data-name='{queue}']")
        wait.until(EC.presence_of_element_located(row))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#main tbody tr")) == 1)
        # the list re-renders every 5 s: a row found before a refresh is gone after it
        fresh = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
        cells = fresh.until(lambda d: [td.text for td in d.find_element(*row).find_elements(
            By.TAG_NAME, "td")])
        assert cells[:3] == [queue, "/", "classic"]
        assert cells[5:8] == ["0", "0", "0"]  # ready, unacked, consumers
        _shot(driver, "03-queues")

        # the queue page: publish from the UI, ready goes to 1
        fresh.until(lambda d: d.find_element(*row).find_element(By.TAG_NAME, "a").click()
                    or True)
        _text_becomes(driver, "queue-name", queue)
        _text_becomes(driver, "q-ready", "0")
        driver.find_element(By.ID, "publish-payload").send_keys("hello from the browser")
        driver.find_element(By.ID, "publish-submit").click()
        _text_becomes(driver, "q-ready", "1")
        _shot(driver, "04-queue-published")

        # get it back, acking it: the payload is shown and the queue is empty again
        Select(driver.find_element(By.ID, "get-ackmode")).select_by_value("ack_requeue_false")
        driver.find_element(By.ID, "get-submit").click()
        _text_becomes(driver, "get-results", "hello from the browser")
        _text_becomes(driver, "q-ready", "0")
        _shot(driver, "05-queue-get")

        # the other pages render their tables
        for page, expected in (("exchanges", "amq.direct"), ("connections", "Connections"),
                               ("channels", "Channels"), ("admin", "guest")):
            driver.find_element(By.CSS_SELECTOR, f"#nav a[data-page={page}]").click()
            _text_becomes(driver, "main", expected)
        _shot(driver, "06-admin")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == [], errors
    except Exception:
        _shot(driver, "failure")
        raise
    finally:
        with pika.BlockingConnection(params) as connection:
            connection.channel().queue_delete(queue)


def _log_in(driver: webdriver.Chrome, base: str) -> None:
    driver.get(base)
    WebDriverWait(driver, WAIT).until(EC.visibility_of_element_located((By.ID, "login-form")))
    driver.find_element(By.ID, "login-username").send_keys("guest")
    driver.find_element(By.ID, "login-password").send_keys("guest")
    driver.find_element(By.ID, "login-submit").click()


def test_ui_shows_a_resource_alarm(warren_factory, browser):
    broker = warren_factory(extra_args=["--disk-free-limit", str(10**18)])  # always in alarm
    driver, wait = browser, WebDriverWait(browser, WAIT)
    try:
        _log_in(driver, f"http://127.0.0.1:{broker.management_port}/")
        _text_becomes(driver, "alarm-banner", "Publishers are blocked: disk alarm:")
        assert "free, limit 909494.7 TiB." in driver.find_element(By.ID, "alarm-banner").text
        assert driver.find_element(By.ID, "alarm-banner").is_displayed()
        wait.until(lambda d: "alarm" in d.find_element(By.ID, "ov-disk").get_attribute("class"))
        assert "alarm" not in driver.find_element(By.ID, "ov-memory").get_attribute("class")
        assert " / " in driver.find_element(By.ID, "ov-memory").text
        _shot(driver, "07-disk-alarm")
        driver.find_element(By.ID, "logout").click()
        wait.until(EC.visibility_of_element_located((By.ID, "login-form")))
        assert not driver.find_element(By.ID, "alarm-banner").is_displayed()
    except Exception:
        _shot(driver, "failure-alarm")
        raise
