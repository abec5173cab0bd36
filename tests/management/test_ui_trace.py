"""The UI's Trace page (management/ui/trace.js), driven in headless Chromium as a person uses
it: start a trace of a vhost filtered by queue, see the messages a pika client publishes,
consumes and rejects appear, open one message's journey (published, delivered, dead-lettered
with its reason, delivered again from the dead-letter queue with its x-death), stop. Uses the
browser fixture and helpers of test_ui.py; screenshots go to test-artifacts/ui/ as there."""

from __future__ import annotations

import pika
import pytest
from management_api import Api
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_ui import WAIT, _log_in, _shot, _text_becomes, browser  # noqa: F401 (a fixture)


def test_trace_page_follows_a_message_into_its_dead_letter_queue(broker, browser, unique):  # noqa: F811
    if not broker.is_warren:
        pytest.skip("the Trace page is Warren's own")
    tag = unique[-6:]  # short names, for a readable screenshot
    work, dead, dlx, other = (f"{name}-{tag}" for name in ("orders", "orders-dead", "dlx",
                                                           "audit"))
    params = pika.ConnectionParameters(host=broker.host, port=broker.port)
    driver, wait = browser, WebDriverWait(browser, WAIT)
    api = Api(broker.host, broker.management_port)
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.exchange_declare(dlx, "fanout", auto_delete=True)
        channel.queue_declare(dead, auto_delete=True)
        channel.queue_bind(dead, dlx)
        channel.queue_declare(work, arguments={"x-dead-letter-exchange": dlx})
        channel.queue_declare(other, auto_delete=True)
        try:
            _log_in(driver, f"http://127.0.0.1:{broker.management_port}/")
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR,
                                                         "#nav a[data-page=trace]"))).click()
            Select(wait.until(EC.visibility_of_element_located((By.ID, "trace-vhost")))
                   ).select_by_value("/")
            driver.find_element(By.ID, "trace-queue").send_keys(work)
            driver.find_element(By.ID, "trace-start").click()
            _text_becomes(driver, "trace-status", "Tracing vhost /")
            assert api.get("/api/vhosts/%2F").json()["tracing"] is True

            channel.confirm_delivery()
            channel.basic_publish("", other, b"not traced: another queue")
            channel.basic_publish("", work, b"order 17",
                                  pika.BasicProperties(message_id=f"order-17-{tag}"))
            method, _, _ = channel.basic_get(work)
            channel.basic_reject(method.delivery_tag, requeue=False)
            assert channel.basic_get(dead, auto_ack=True)[2] == b"order 17"

            rows = (By.CSS_SELECTOR, "#trace-events tbody tr[data-journey]")
            wait.until(lambda d: len(d.find_elements(*rows)) == 4)
            assert [row.get_attribute("data-event") for row in driver.find_elements(*rows)] == [
                "delivered", "dead_lettered", "delivered", "published"]  # newest first
            assert "not traced" not in driver.find_element(By.ID, "trace-events").text
            _shot(driver, "trace-01-events")

            driver.find_elements(*rows)[-1].click()
            steps = (By.CSS_SELECTOR, "#trace-journey ol.journey li")
            wait.until(lambda d: len(d.find_elements(*steps)) == 4)
            texts = [step.text for step in driver.find_elements(*steps)]
            assert f'message "order-17-{tag}"' in driver.find_element(By.ID, "trace-journey").text
            assert f'Published to exchange "(AMQP default)" with routing key "{work}"' in texts[0]
            assert f'routed to "{work}"' in texts[0]
            assert f'Delivered from queue "{work}" to 127.0.0.1:' in texts[1]
            assert (f'Left queue "{work}": rejected without requeue → dead-lettered to '
                    f'exchange "{dlx}"') in texts[2]
            assert texts[2].endswith(f'→ "{dead}"')
            assert f'Delivered from queue "{dead}"' in texts[3]
            assert f'x-death: rejected in "{work}" (count 1)' in texts[3]
            _shot(driver, "trace-02-journey")

            driver.find_element(By.ID, "trace-stop").click()
            _text_becomes(driver, "trace-status", "Not tracing.")
            WebDriverWait(driver, WAIT).until(
                lambda _: api.get("/api/vhosts/%2F").json()["tracing"] is False)
            assert api.get("/api/trace-sessions").json() == []
            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert errors == [], errors
        except Exception:
            _shot(driver, "failure-trace")
            raise
        finally:
            channel.queue_delete(work)
