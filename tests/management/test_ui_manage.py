"""Managing the broker from the web UI, driven in headless Chromium as a person does it: the
forms that create, update and delete queues, exchanges, bindings, users, vhosts, permissions,
policies and operator policies; the queue list's features and rates; the connection, channel
and consumer views with a forced close; definitions export and import; the charts' history
from the broker.

Each test checks what the UI did through the management API or a pika client, not only what the
page shows. Uses the browser fixture and helpers of test_ui.py; screenshots go to
test-artifacts/ui/ as manage-*.png.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pika
import pytest
from management_api import Api, eventually, q
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_ui import WAIT, _log_in, _shot, _text_becomes, browser  # noqa: F401 (a fixture)


def _api(broker) -> Api:
    if not broker.is_warren:
        pytest.skip("the UI under test is Warren's own")
    if broker.management_port is None:
        pytest.skip("the broker under test has no management port (set WARREN_TEST_HTTP_PORT)")
    return Api(broker.host, broker.management_port)


def _start(driver, broker) -> None:
    """Open the UI logged out (the browser is shared by this module's tests) and log in."""
    base = f"http://127.0.0.1:{broker.management_port}/"
    driver.get(base)
    driver.execute_script("sessionStorage.clear()")
    _log_in(driver, base)
    _text_becomes(driver, "whoami", "guest")


def _go(driver, page: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#nav a[data-page={page}]").click()


def _open_section(driver, form_id: str) -> WebElement:
    """Open the collapsed "Add a new ..." card holding `form_id` and return the form."""
    form = WebDriverWait(driver, WAIT).until(
        EC.presence_of_element_located((By.ID, form_id)))
    details = form.find_element(By.XPATH, "./ancestor::details")
    if not details.get_attribute("open"):
        _click(driver, details.find_element(By.TAG_NAME, "summary"))
    return form


def _click(driver, target: str | tuple[str, str] | WebElement) -> None:
    """Click an element (an id, a locator or the element) after scrolling it to the middle of
    the window, clear of the toast in the corner; a located element that a list refresh
    replaced meanwhile is found again."""
    if isinstance(target, WebElement):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
        target.click()
        return
    locator = (By.ID, target) if isinstance(target, str) else target

    def clicked(d) -> bool:
        element = d.find_element(*locator)
        d.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        return True
    WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        clicked, f"could not click {locator}")


def _type(driver, element_id: str, text: str) -> None:
    box = WebDriverWait(driver, WAIT).until(EC.visibility_of_element_located((By.ID, element_id)))
    box.clear()
    box.send_keys(text)


def _set_argument(form: WebElement, hint_key: str, value: str) -> None:
    """Click the hint that adds `hint_key`, then type its value into the row it filled."""
    form.find_element(By.CSS_SELECTOR, f"a.hint-link[data-arg='{hint_key}']").click()
    for row in form.find_elements(By.CSS_SELECTOR, ".arg-row"):
        if row.find_element(By.CSS_SELECTOR, ".arg-key").get_attribute("value") == hint_key:
            row.find_element(By.CSS_SELECTOR, ".arg-value").send_keys(value)
            return
    raise AssertionError(f"no argument row for {hint_key}")


def _answer_confirm(driver, accept: bool = True) -> str:
    alert = WebDriverWait(driver, WAIT).until(EC.alert_is_present())
    text = alert.text
    if accept:
        alert.accept()
    else:
        alert.dismiss()
    return text


def _select_vhost(driver, element_id: str, vhost: str) -> None:
    select = WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((By.ID, element_id)))
    WebDriverWait(driver, WAIT).until(
        lambda d: vhost in [o.get_attribute("value") for o in Select(select).options])
    Select(select).select_by_value(vhost)


def _features(driver, row_name: str) -> list[tuple[str, str]]:
    """The queue list's feature abbreviations of a row with their tooltips, read in one go."""
    return [tuple(pair) for pair in driver.execute_script("""
        const row = [...document.querySelectorAll('#main tbody tr')]
            .find(tr => tr.dataset.name === arguments[0]);
        return [...row.querySelectorAll('.features abbr')].map(a => [a.textContent, a.title]);
        """, row_name)]


def _no_console_errors(driver) -> None:
    """No script error in the page (a refused API call, shown in the toast, is no error)."""
    errors = [entry for entry in driver.get_log("browser")
              if entry["level"] == "SEVERE" and entry.get("source") != "network"]
    assert errors == [], errors


def test_ui_dead_letter_queue_from_form_to_delete(broker, browser, unique):  # noqa: F811
    """The issue's walk: a queue with a dead-letter exchange made through the form, bound
    from an exchange made through the form, a publish on the exchange page, the depth seen,
    the message got, the queue deleted after a confirmation."""
    api = _api(broker)
    tag = unique[-8:]
    queue, exchange, dlx = f"orders-{tag}", f"shop-{tag}", f"dlx-{tag}"
    driver, wait = browser, WebDriverWait(browser, WAIT)
    try:
        _start(driver, broker)

        # a durable classic queue with x-dead-letter-exchange and x-message-ttl, via the hints
        _go(driver, "queues")
        form = _open_section(driver, "add-queue-form")
        _select_vhost(driver, "queue-vhost", "/")
        _type(driver, "queue-name-input", queue)
        _set_argument(form, "x-dead-letter-exchange", dlx)
        _set_argument(form, "x-message-ttl", "600000")
        _shot(driver, "manage-01-add-queue-form")
        _click(driver, "add-queue")
        created = eventually(lambda: api.get(f"/api/queues/%2F/{q(queue)}"),
                             lambda r: r.status == 200, timeout=WAIT).json()
        assert created["durable"] is True and created["auto_delete"] is False
        assert created["arguments"] == {"x-dead-letter-exchange": dlx, "x-message-ttl": 600000}

        # the list shows it with RabbitMQ's feature abbreviations and their tooltips
        _type(driver, "queue-filter", queue)
        wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f"tr[data-name='{queue}']")))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#main tbody tr")) == 1)
        assert _features(driver, queue) == [
            ("D", "durable: true"), ("TTL", "x-message-ttl: 600000"),
            ("DLX", f"x-dead-letter-exchange: {dlx}")]
        _shot(driver, "manage-02-queue-listed")

        # a direct exchange through the exchange form
        _go(driver, "exchanges")
        _open_section(driver, "add-exchange-form")
        _select_vhost(driver, "exchange-vhost", "/")
        _type(driver, "exchange-name-input", exchange)
        Select(driver.find_element(By.ID, "exchange-type")).select_by_value("direct")
        _click(driver, "add-exchange")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR,
                                                   f"tr[data-name='{exchange}'] a")))
        assert api.ok_json(f"/api/exchanges/%2F/{q(exchange)}")["type"] == "direct"

        # on the exchange page: bind it to the queue with a routing key
        _click(driver, (By.CSS_SELECTOR, f"tr[data-name='{exchange}'] a"))
        _type(driver, "bind-destination", queue)
        _type(driver, "bind-routing-key", "new-order")
        _click(driver, "bind-submit")
        _text_becomes(driver, "main", "new-order")
        bindings = api.ok_json(f"/api/exchanges/%2F/{q(exchange)}/bindings/source")
        assert [(b["destination"], b["routing_key"]) for b in bindings] == [(queue, "new-order")]

        # publish on the exchange page
        _type(driver, "xpublish-routing-key", "new-order")
        _type(driver, "xpublish-payload", "order 42")
        _click(driver, "xpublish-submit")
        _text_becomes(driver, "toast", "Message published.")
        _shot(driver, "manage-03-exchange-bound-published")

        # the queue page (through the binding's link): depth 1, get it, depth 0
        _click(driver, (By.LINK_TEXT, queue))
        _text_becomes(driver, "queue-name", queue)
        _text_becomes(driver, "q-ready", "1")
        Select(driver.find_element(By.ID, "get-ackmode")).select_by_value("ack_requeue_false")
        _click(driver, "get-submit")
        _text_becomes(driver, "get-results", "order 42")
        _text_becomes(driver, "q-ready", "0")
        _shot(driver, "manage-04-queue-got")

        # purge asks first too
        _type(driver, "publish-payload", "to be purged")
        _click(driver, "publish-submit")
        _text_becomes(driver, "q-ready", "1")
        _click(driver, "purge")
        assert _answer_confirm(driver, accept=False) == f"Purge all messages from {queue}?"
        assert api.ok_json(f"/api/queues/%2F/{q(queue)}")["messages"] == 1
        _click(driver, "purge")
        _answer_confirm(driver)
        _text_becomes(driver, "q-ready", "0")

        # delete asks first: cancelling keeps the queue, accepting deletes it
        _click(driver, "delete-queue")
        assert _answer_confirm(driver, accept=False) == f"Delete queue {queue}?"
        assert api.get(f"/api/queues/%2F/{q(queue)}").status == 200
        _click(driver, "delete-queue")
        _answer_confirm(driver)
        wait.until(lambda d: d.current_url.endswith("#/queues"))
        assert api.get(f"/api/queues/%2F/{q(queue)}").status == 404
        _shot(driver, "manage-05-queue-deleted")
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-dead-letter")
        raise
    finally:
        api.delete(f"/api/queues/%2F/{q(queue)}")
        api.delete(f"/api/exchanges/%2F/{q(exchange)}")


def _row(driver, table_id: str, *texts: str) -> WebElement:
    """The row of table `table_id` whose cells include every one of `texts` (waits for it)."""
    def find(d):
        for row in d.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr"):
            cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
            if all(text in cells for text in texts):
                return row
        return False
    return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(find, f"no row with {texts} in #{table_id}")


def _row_gone(driver, table_id: str, *texts: str) -> None:
    def gone(d):
        for row in d.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr"):
            cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
            if all(text in cells for text in texts):
                return False
        return True
    WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)
                  ).until(gone, f"a row with {texts} is still in #{table_id}")


def test_ui_admin_creates_and_deletes_users_vhosts_permissions_and_policies(
        broker, browser, unique):  # noqa: F811
    api = _api(broker)
    tag = unique[-8:]
    vhost, user, policy = f"ui-vhost-{tag}", f"ui-user-{tag}", f"ui-policy-{tag}"
    driver = browser
    try:
        _start(driver, broker)
        _go(driver, "admin")

        # a vhost with a description and tags
        _type(driver, "vhost-name", vhost)
        _type(driver, "vhost-description", "made in the browser")
        _type(driver, "vhost-tags", "ui, test")
        _click(driver, "add-vhost")
        _row(driver, "admin-vhosts-table", vhost, "made in the browser", "ui, test")
        shown = api.ok_json(f"/api/vhosts/{q(vhost)}")
        assert (shown["description"], shown["tags"]) == ("made in the browser", ["ui", "test"])

        # a user with a password and two tags picked from the hints; the password works
        _type(driver, "user-name", user)
        _type(driver, "user-password", "s3cret")
        form = driver.find_element(By.ID, "add-user-form")
        for name in ("monitoring", "policymaker"):
            _click(driver, form.find_element(By.CSS_SELECTOR, f"a[data-tag={name}]"))
        _click(driver, "add-user")
        _row(driver, "admin-users-table", user, "monitoring, policymaker")
        assert api.ok_json(f"/api/users/{q(user)}")["tags"] == ["monitoring", "policymaker"]
        assert Api(broker.host, broker.management_port, (user, "s3cret")).get(
            "/api/whoami").status == 200

        # permissions and topic permissions of that user in that vhost
        _type(driver, "permission-user", user)
        _select_vhost(driver, "permission-vhost", vhost)
        _type(driver, "permission-configure", "^cfg-")
        _click(driver, "set-permission")
        _row(driver, "admin-permissions-table", user, vhost, "^cfg-")
        assert api.ok_json(f"/api/permissions/{q(vhost)}/{q(user)}")["configure"] == "^cfg-"
        _type(driver, "topic-user", user)
        _select_vhost(driver, "topic-vhost", vhost)
        _type(driver, "topic-write", "^orders\\.")
        _click(driver, "set-topic-permission")
        _row(driver, "admin-topic-permissions-table", user, vhost, "amq.topic", "^orders\\.")
        assert api.ok_json(f"/api/topic-permissions/{q(vhost)}/{q(user)}") == [
            {"user": user, "vhost": vhost, "exchange": "amq.topic", "write": "^orders\\.",
             "read": ".*"}]

        # a policy whose definition is typed through the hints
        _select_vhost(driver, "policy-vhost", vhost)
        _type(driver, "policy-name", policy)
        _type(driver, "policy-pattern", "^dl\\.")
        Select(driver.find_element(By.ID, "policy-apply-to")).select_by_value("queues")
        _type(driver, "policy-priority", "3")
        form = driver.find_element(By.ID, "add-policy-form")
        _set_argument(form, "max-length", "10")
        _set_argument(form, "dead-letter-exchange", "dead")
        _click(driver, "add-policy")
        _row(driver, "admin-policies-table", vhost, policy, "^dl\\.", "queues")
        shown = api.ok_json(f"/api/policies/{q(vhost)}/{q(policy)}")
        assert (shown["definition"], shown["priority"], shown["apply-to"]) == (
            {"max-length": 10, "dead-letter-exchange": "dead"}, 3, "queues")
        _shot(driver, "manage-06-admin-created")

        # every delete asks; a cancelled one deletes nothing
        _row_button(driver, "admin-users-table", (user,), "delete-user")
        assert _answer_confirm(driver, accept=False) == f"Delete user {user}?"
        assert api.get(f"/api/users/{q(user)}").status == 200
        for table, texts, button, path in (
                ("admin-policies-table", (policy,), "delete-policy",
                 f"/api/policies/{q(vhost)}/{q(policy)}"),
                ("admin-topic-permissions-table", (user, vhost), "clear-topic-permission",
                 f"/api/topic-permissions/{q(vhost)}/{q(user)}"),
                ("admin-permissions-table", (user, vhost), "clear-permission",
                 f"/api/permissions/{q(vhost)}/{q(user)}"),
                ("admin-users-table", (user,), "delete-user", f"/api/users/{q(user)}"),
                ("admin-vhosts-table", (vhost,), "delete-vhost", f"/api/vhosts/{q(vhost)}")):
            _row_button(driver, table, texts, button)
            _answer_confirm(driver)
            _row_gone(driver, table, *texts)
            assert api.get(path).status == 404, path
        _shot(driver, "manage-07-admin-deleted")
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-admin")
        raise
    finally:
        api.delete(f"/api/users/{q(user)}")
        api.delete(f"/api/vhosts/{q(vhost)}")


def _row_button(driver, table_id: str, texts: tuple[str, ...], button: str) -> None:
    """Click the button of class `button` in the row of `table_id` holding every one of
    `texts`."""
    _click(driver, _row(driver, table_id, *texts).find_element(By.CSS_SELECTOR,
                                                               f"button.{button}"))


def _logs_in(broker, user: str, password: str) -> bool:
    return Api(broker.host, broker.management_port, (user, password)).get(
        "/api/whoami").status == 200


def test_ui_admin_updates_a_user_and_a_vhost(broker, browser, unique):  # noqa: F811
    """A user's "Edit": a new password typed twice (a mismatch is refused and changes
    nothing), tags from the hints, then "No password"; a vhost's "Edit": description and tags
    (its default queue type stays). Each is checked through the API and by logging in."""
    api = _api(broker)
    tag = unique[-8:]
    user, vhost = f"ui-edit-user-{tag}", f"ui-edit-vhost-{tag}"
    driver = browser
    assert api.put(f"/api/users/{q(user)}", {"password": "old-pw", "tags": "monitoring"}
                   ).status == 201
    assert api.put(f"/api/vhosts/{q(vhost)}", {"description": "before", "tags": ["a"]}
                   ).status == 201
    try:
        _start(driver, broker)
        _go(driver, "admin")

        _row(driver, "admin-users-table", user, "monitoring", "yes")
        _row_button(driver, "admin-users-table", (user,), "edit-user")
        form = driver.find_element(By.ID, "update-user-form")
        assert form.find_element(By.TAG_NAME, "h2").text == f"Update user {user}"
        assert driver.find_element(By.ID, "update-user-tags").get_attribute("value") == \
            "monitoring"
        _type(driver, "update-user-password", "new-pw")
        _type(driver, "update-user-password-confirm", "new-pw-typo")
        _click(driver, "update-user")
        _text_becomes(driver, "toast", "Passwords do not match.")
        assert _logs_in(broker, user, "old-pw")

        _type(driver, "update-user-password-confirm", "new-pw")
        _click(driver, form.find_element(By.CSS_SELECTOR, "a[data-tag=policymaker]"))
        _shot(driver, "manage-18-update-user")
        _click(driver, "update-user")
        _row(driver, "admin-users-table", user, "monitoring, policymaker", "yes")
        assert api.ok_json(f"/api/users/{q(user)}")["tags"] == ["monitoring", "policymaker"]
        assert _logs_in(broker, user, "new-pw") and not _logs_in(broker, user, "old-pw")
        assert not form.is_displayed()

        # "No password": the user can no longer log in with one (RabbitMQ's choice)
        _row_button(driver, "admin-users-table", (user,), "edit-user")
        Select(driver.find_element(By.ID, "update-user-has-password")).select_by_value("none")
        assert not driver.find_element(By.ID, "update-user-password").is_displayed()
        _click(driver, "update-user")
        _row(driver, "admin-users-table", user, "monitoring, policymaker", "no")
        assert api.ok_json(f"/api/users/{q(user)}")["password_hash"] == ""
        assert not _logs_in(broker, user, "new-pw")

        # the vhost: its form starts from what it has
        _row_button(driver, "admin-vhosts-table", (vhost,), "edit-vhost")
        assert driver.find_element(By.ID, "update-vhost-description").get_attribute(
            "value") == "before"
        # (an existing vhost's default queue type does not change: RabbitMQ 3.10.8 keeps it)
        assert not driver.find_elements(By.ID, "update-vhost-queue-type")
        _type(driver, "update-vhost-description", "after")
        _type(driver, "update-vhost-tags", "blue, green")
        _shot(driver, "manage-19-update-vhost")
        _click(driver, "update-vhost")
        _row(driver, "admin-vhosts-table", vhost, "after", "blue, green")
        shown = api.ok_json(f"/api/vhosts/{q(vhost)}")
        assert (shown["description"], shown["tags"], shown["default_queue_type"]) == (
            "after", ["blue", "green"], "undefined")
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-update")
        raise
    finally:
        api.delete(f"/api/users/{q(user)}")
        api.delete(f"/api/vhosts/{q(vhost)}")


def test_ui_operator_policy_from_form_to_clear(broker, browser, unique):  # noqa: F811
    """An operator policy set on the Admin page caps a matching queue (its page names it and
    shows the merged definition); a key operator policies do not take is refused with the
    API's reason; "Clear" asks first and lifts the cap."""
    api = _api(broker)
    tag = unique[-8:]
    operator, queue = f"ui-cap-{tag}", f"capped-{tag}-q"
    driver = browser
    api.create_queue("/", queue)
    try:
        _start(driver, broker)
        _go(driver, "admin")

        # a key an operator policy does not take: the API's refusal, nothing set
        _select_vhost(driver, "operator-policy-vhost", "/")
        _type(driver, "operator-policy-name", operator)
        _type(driver, "operator-policy-pattern", f"^capped-{tag}-")
        form = driver.find_element(By.ID, "add-operator-policy-form")
        assert [a.get_attribute("data-arg") for a in form.find_elements(
            By.CSS_SELECTOR, "a.hint-link")] == [
            "max-length", "max-length-bytes", "message-ttl", "expires", "delivery-limit"]
        form.find_element(By.CSS_SELECTOR, ".arg-key").send_keys("overflow")
        form.find_element(By.CSS_SELECTOR, ".arg-value").send_keys("drop-head")
        _click(driver, "add-operator-policy")
        _text_becomes(driver, "toast", "are not recognised policy settings")
        assert api.get(f"/api/operator-policies/%2F/{q(operator)}").status == 404

        # max-length 1 through the hint, priority 2
        form.find_element(By.CSS_SELECTOR, ".arg-key").clear()
        form.find_element(By.CSS_SELECTOR, ".arg-value").clear()
        _set_argument(form, "max-length", "1")
        _type(driver, "operator-policy-priority", "2")
        _click(driver, "add-operator-policy")
        _row(driver, "admin-operator-policies-table", "/", operator, f"^capped-{tag}-",
             "queues", '{"max-length":1}', "2")
        assert api.ok_json(f"/api/operator-policies/%2F/{q(operator)}") == {
            "vhost": "/", "name": operator, "pattern": f"^capped-{tag}-", "apply-to": "queues",
            "definition": {"max-length": 1}, "priority": 2}
        _shot(driver, "manage-20-operator-policy")

        # the queue keeps one message of two and its page shows why
        for payload in ("first", "second"):
            assert api.publish("/", "amq.default", queue, payload)
        driver.get(f"http://127.0.0.1:{broker.management_port}/#/queues/%2F/{q(queue)}")
        _text_becomes(driver, "q-ready", "1")
        _text_becomes(driver, "queue-details", f"Operator policy\n{operator}")
        _text_becomes(driver, "queue-details", "Effective policy definition\nmax-length: 1")
        driver.execute_script("document.getElementById('queue-details')"
                              ".scrollIntoView({block: 'center'})")
        _shot(driver, "manage-21-queue-operator-policy")

        # the queue list names it in the features column, after the arguments
        _go(driver, "queues")
        _type(driver, "queue-filter", queue)
        WebDriverWait(driver, WAIT).until(  # the filter's answer, not an earlier page's
            lambda d: d.execute_script("return [...document.querySelectorAll("
                                       "'#main tbody tr')].map(tr => tr.dataset.name)")
            == [queue])
        assert _features(driver, queue)[-1] == (operator, f"Operator policy: {operator}")

        # "Clear" asks; cancelling keeps it, accepting lifts the cap
        _go(driver, "admin")
        _row_button(driver, "admin-operator-policies-table", (operator,),
                    "clear-operator-policy")
        assert _answer_confirm(driver, accept=False) == f"Clear operator policy {operator}?"
        assert api.get(f"/api/operator-policies/%2F/{q(operator)}").status == 200
        _row_button(driver, "admin-operator-policies-table", (operator,),
                    "clear-operator-policy")
        _answer_confirm(driver)
        _row_gone(driver, "admin-operator-policies-table", operator)
        assert api.get(f"/api/operator-policies/%2F/{q(operator)}").status == 404
        assert api.publish("/", "amq.default", queue, "third")
        assert api.ok_json(f"/api/queues/%2F/{q(queue)}")["messages"] == 2
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-operator-policy")
        raise
    finally:
        api.delete(f"/api/operator-policies/%2F/{q(operator)}")
        api.delete(f"/api/queues/%2F/{q(queue)}")


def test_ui_quorum_and_stream_queues_and_bindings_from_both_sides(
        broker, browser, unique):  # noqa: F811
    api = _api(broker)
    tag = unique[-8:]
    quorum, stream, exchange = f"qq-{tag}", f"stream-{tag}", f"fan-{tag}"
    driver, wait = browser, WebDriverWait(browser, WAIT)
    try:
        _start(driver, broker)
        _go(driver, "queues")
        form = _open_section(driver, "add-queue-form")

        # a bad argument value is refused with the reason and creates nothing: a number that is
        # no number in the browser, a string where the broker wants a number by the broker
        _select_vhost(driver, "queue-vhost", "/")
        _type(driver, "queue-name-input", quorum)
        _set_argument(form, "x-max-priority", "ten")
        _click(driver, "add-queue")
        _text_becomes(driver, "toast", "x-max-priority must be a number")
        Select(form.find_element(By.CSS_SELECTOR, ".arg-type")).select_by_value("string")
        _click(driver, "add-queue")
        _text_becomes(driver, "toast", f"Failed: invalid arg 'x-max-priority' for queue "
                      f"'{quorum}' in vhost '/'")
        assert api.get(f"/api/queues/%2F/{q(quorum)}").status == 404
        _shot(driver, "manage-08-bad-argument")
        form.find_element(By.CSS_SELECTOR, ".arg-key").clear()
        form.find_element(By.CSS_SELECTOR, ".arg-value").clear()

        # the type changes the hints: a quorum queue offers the delivery limit, a stream the
        # retention; neither offers durability or auto-delete (both are implied)
        for name, queue_type, hint, value in ((quorum, "quorum", "x-delivery-limit", "5"),
                                              (stream, "stream", "x-max-age", "1D")):
            Select(driver.find_element(By.ID, "queue-type")).select_by_value(queue_type)
            assert not driver.find_element(By.ID, "queue-durable").is_displayed()
            _select_vhost(driver, "queue-vhost", "/")
            _type(driver, "queue-name-input", name)
            _set_argument(form, hint, value)
            if queue_type == "quorum":
                assert not form.find_elements(By.CSS_SELECTOR, "a[data-arg=x-max-priority]")
                _shot(driver, "manage-09-add-quorum-queue")
            _click(driver, "add-queue")
            created = eventually(lambda n=name: api.get(f"/api/queues/%2F/{q(n)}"),
                                 lambda r: r.status == 200, timeout=WAIT).json()
            assert created["type"] == queue_type and created["durable"] is True
            assert created["arguments"][hint] == (int(value) if value.isdigit() else value)
        _type(driver, "queue-filter", tag)
        wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f"tr[data-name='{quorum}']")))
        cells = _cells(driver, quorum)
        assert (cells["TYPE"], cells["FEATURES"]) == ("quorum", "D DlL Args")  # x-queue-type

        # the queue page binds the queue from an exchange, with arguments, and unbinds it
        _click(driver, (By.CSS_SELECTOR, f"tr[data-name='{quorum}'] a"))
        _text_becomes(driver, "queue-name", quorum)
        # the source box suggests the vhost's exchanges
        wait.until(lambda d: d.find_elements(
            By.CSS_SELECTOR, "#bind-names-queue option[value='amq.headers']"))
        _type(driver, "bind-source", "amq.headers")
        form = driver.find_element(By.ID, "bind-form")
        form.find_element(By.CSS_SELECTOR, ".arg-key").send_keys("x-match")
        form.find_element(By.CSS_SELECTOR, ".arg-value").send_keys("any")
        _click(driver, "bind-submit")
        _text_becomes(driver, "main", '{"x-match":"any"}')
        bound = api.ok_json(f"/api/bindings/%2F/e/amq.headers/q/{q(quorum)}")
        assert [b["arguments"] for b in bound] == [{"x-match": "any"}]
        _shot(driver, "manage-10-queue-bound")
        _click(driver, (By.CSS_SELECTOR, "button.unbind"))
        assert _answer_confirm(driver) == f"Unbind {quorum} from amq.headers?"
        eventually(lambda: api.ok_json(f"/api/bindings/%2F/e/amq.headers/q/{q(quorum)}"),
                   lambda bindings: bindings == [], timeout=WAIT)

        # an internal fanout exchange with an alternate exchange, through the form: the list
        # shows its features as RabbitMQ's does
        _go(driver, "exchanges")
        form = _open_section(driver, "add-exchange-form")
        _select_vhost(driver, "exchange-vhost", "/")
        _type(driver, "exchange-name-input", exchange)
        Select(driver.find_element(By.ID, "exchange-type")).select_by_value("fanout")
        Select(driver.find_element(By.ID, "exchange-internal")).select_by_value("true")
        _set_argument(form, "alternate-exchange", "amq.fanout")
        _click(driver, "add-exchange")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR,
                                                   f"tr[data-name='{exchange}']")))
        made = api.ok_json(f"/api/exchanges/%2F/{q(exchange)}")
        assert (made["type"], made["durable"], made["auto_delete"], made["internal"],
                made["arguments"]) == ("fanout", True, False, True,
                                       {"alternate-exchange": "amq.fanout"})
        assert _features(driver, exchange) == [
            ("D", "durable: true"), ("I", "internal: true"),
            ("AE", "alternate-exchange: amq.fanout")]

        # it binds to another exchange from its page, unbinds, and is deleted
        _click(driver, (By.CSS_SELECTOR, f"tr[data-name='{exchange}'] a"))
        Select(wait.until(EC.visibility_of_element_located((By.ID, "bind-kind")))
               ).select_by_value("e")
        _type(driver, "bind-destination", "amq.fanout")
        _click(driver, "bind-submit")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "button.unbind")))
        assert [(b["destination"], b["destination_type"]) for b in api.ok_json(
            f"/api/exchanges/%2F/{q(exchange)}/bindings/source")] == [("amq.fanout", "exchange")]
        _click(driver, (By.CSS_SELECTOR, "button.unbind"))
        _answer_confirm(driver)
        eventually(lambda: api.ok_json(f"/api/exchanges/%2F/{q(exchange)}/bindings/source"),
                   lambda bindings: bindings == [], timeout=WAIT)
        _click(driver, "delete-exchange")
        assert _answer_confirm(driver) == f"Delete exchange {exchange}?"
        wait.until(lambda d: d.current_url.endswith("#/exchanges"))
        assert api.get(f"/api/exchanges/%2F/{q(exchange)}").status == 404
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-queue-types")
        raise
    finally:
        for name in (quorum, stream):
            api.delete(f"/api/queues/%2F/{q(name)}")
        api.delete(f"/api/exchanges/%2F/{q(exchange)}")


def _cells(driver, row_name: str) -> dict[str, str]:
    """The cells of a list row by column title, read in one go (the list refreshes itself)."""
    return driver.execute_script("""
        const titles = [...document.querySelectorAll('#main thead th')].map(th => th.innerText);
        const row = [...document.querySelectorAll('#main tbody tr')]
            .find(tr => tr.dataset.name === arguments[0]);
        const cells = row ? [...row.cells].map(td => td.innerText) : [];
        return Object.fromEntries(titles.map((title, i) => [title, cells[i]]));""", row_name)


def _traffic(broker, queue: str, stop: threading.Event) -> None:
    """Publish to `queue` and consume it with acks, about 20 messages a second, until `stop`."""
    params = pika.ConnectionParameters(host=broker.host, port=broker.port)
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.basic_consume(queue, lambda ch, method, props, body:
                              ch.basic_ack(method.delivery_tag))
        while not stop.is_set():
            channel.basic_publish("", queue, b"tick")
            connection.process_data_events(time_limit=0.05)
            stop.wait(0.05)


def test_ui_queue_list_shows_features_and_rates(broker, browser, unique):  # noqa: F811
    _api(broker)
    tag = unique[-8:]
    busy, special, plain = f"busy-{tag}", f"special-{tag}", f"plain-{tag}"
    driver, wait = browser, WebDriverWait(browser, WAIT)
    params = pika.ConnectionParameters(host=broker.host, port=broker.port)
    stop = threading.Event()
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.queue_declare(busy, auto_delete=True)
        channel.queue_declare(special, exclusive=True, arguments={
            "x-max-priority": 5, "x-single-active-consumer": True, "x-max-length": 10,
            "x-custom": "yes", "x-stream-offset-spec": ["first", 1]})
        channel.queue_declare(plain, auto_delete=True, arguments={
            "x-single-active-consumer": False, "x-custom": {"a": 1}})
        publisher = threading.Thread(target=_traffic, args=(broker, busy, stop))
        publisher.start()
        try:
            _start(driver, broker)
            _go(driver, "queues")
            _type(driver, "queue-filter", tag)
            wait.until(EC.presence_of_element_located(
                (By.CSS_SELECTOR, f"tr[data-name='{special}']")))
            # as RabbitMQ 3.10.8's list (tests/management/RABBITMQ_UI.md): the owner's "Excl"
            # link, then its abbreviations; unknown arguments folded into "Args"
            assert _features(driver, special) == [
                ("Excl", "Exclusive queue: click for owning connection"),
                ("Excl", "exclusive: true"), ("Lim", "x-max-length: 10"),
                ("Pri", "x-max-priority: 5"), ("SAC", "x-single-active-consumer: true"),
                ("Args", "x-custom: yes, x-stream-offset-spec: [first,1]")]
            assert _features(driver, plain) == [("AD", "auto-delete: true"), ("Args",
                                                "x-custom: (a: 1)")]
            assert _cells(driver, special)["TYPE"] == "classic"

            # the busy queue's publish, deliver and ack rates become non-zero in the list
            def all_moving(d):
                cells = _cells(d, busy)
                return all(cells[title] != "0.0/s" for title in ("PUBLISH", "DELIVER / GET",
                                                                  "ACK"))
            WebDriverWait(driver, 40, ignored_exceptions=(StaleElementReferenceException,)
                          ).until(all_moving, "the rates of a busy queue never moved")
            _shot(driver, "manage-11-queue-features-and-rates")
            _no_console_errors(driver)
        except Exception:
            _shot(driver, "manage-failure-features")
            raise
        finally:
            stop.set()
            publisher.join()


def test_ui_connection_channel_and_consumer_pages_and_force_close(
        broker, browser, unique):  # noqa: F811
    api = _api(broker)
    tag = unique[-8:]
    queue, app_name, consumer_tag = f"work-{tag}", f"ui-orders-app-{tag}", f"ui-consumer-{tag}"
    driver, wait = browser, WebDriverWait(browser, WAIT)
    params = pika.ConnectionParameters(host=broker.host, port=broker.port,
                                       client_properties={"connection_name": app_name})
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, auto_delete=True)
        for body in (b"one", b"two"):
            channel.basic_publish("", queue, body)
        channel.basic_qos(prefetch_count=7)
        channel.basic_consume(queue, lambda *args: None, consumer_tag=consumer_tag)
        eventually(lambda: api.ok_json(f"/api/queues/%2F/{q(queue)}"),
                   lambda x: x["messages_unacknowledged"] == 2)

        _start(driver, broker)
        _go(driver, "connections")
        _text_becomes(driver, "main", app_name)
        _click(driver, (By.XPATH, f"//tr[td[text()='{app_name}']]//a"))

        # the connection page: client properties, settings, its channel with mode and counts
        _text_becomes(driver, "client-properties", app_name)
        assert "capabilities" in driver.find_element(By.ID, "client-properties").text
        _text_becomes(driver, "connection-details", "guest")
        _row(driver, "main", "confirm", "7", "2", "1")
        _shot(driver, "manage-12-connection")

        # the channel page: prefetch, unacked, confirm mode and its consumer
        _click(driver, (By.XPATH, "//tr[td[text()='confirm']]//a"))
        _text_becomes(driver, "channel-details", "confirm")
        details = driver.find_element(By.ID, "channel-details").text
        assert "Prefetch count\n7" in details and "Unacked\n2" in details
        _text_becomes(driver, "main", consumer_tag)
        _shot(driver, "manage-13-channel")

        # the queue page lists the consumer
        _click(driver, (By.LINK_TEXT, queue))
        _text_becomes(driver, "queue-name", queue)
        consumer = _row(driver, "main", consumer_tag)
        assert "7" in [td.text for td in consumer.find_elements(By.TAG_NAME, "td")]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", consumer)
        _shot(driver, "manage-14-queue-consumers")

        # force close with a reason: the client is told why
        driver.back()
        driver.back()
        _text_becomes(driver, "client-properties", app_name)
        _type(driver, "close-reason", "maintenance window")
        _click(driver, "close-connection")
        assert _answer_confirm(driver).startswith("Close connection ")
        wait.until(lambda d: d.current_url.endswith("#/connections"))
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            for _ in range(100):
                connection.process_data_events(time_limit=0.1)
        assert (closed.value.reply_code, closed.value.reply_text) == (
            320, "CONNECTION_FORCED - maintenance window")
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-connection")
        raise
    finally:
        if connection.is_open:
            connection.close()
        api.delete(f"/api/queues/%2F/{q(queue)}")


def _downloaded(folder: Path, name: str) -> Path:
    path = folder / name
    deadline = time.monotonic() + WAIT
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{name} was not downloaded; {folder} has {list(folder.iterdir())}"
    return path


def test_ui_definitions_export_and_import(broker, browser, unique, tmp_path):  # noqa: F811
    api = _api(broker)
    tag = unique[-8:]
    queue, file_name = f"kept-{tag}", f"warren-definitions-{tag}.json"
    driver, wait = browser, WebDriverWait(browser, WAIT)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(tmp_path)})
    api.create_queue("/", queue, durable=True, arguments={"x-max-length": 3})
    try:
        _start(driver, broker)

        # the suggested file name is RabbitMQ's (node name, date); export "/" under a chosen
        # name: the file holds the queue as the API exports it
        node = api.ok_json("/api/overview")["node"].replace("@", "_")
        wait.until(lambda d: d.find_element(By.ID, "export-filename").get_attribute(
            "value").startswith(f"{node}_"))
        _select_vhost(driver, "export-vhost", "/")
        _type(driver, "export-filename", file_name)
        _click(driver, "export-definitions")
        exported = json.loads(_downloaded(tmp_path, file_name).read_text())
        assert exported == api.ok_json("/api/definitions/%2F")
        [entry] = [x for x in exported["queues"] if x["name"] == queue]
        assert entry["arguments"] == {"x-max-length": 3}
        driver.execute_script("document.getElementById('export-form')"
                              ".scrollIntoView({block: 'center'})")
        _shot(driver, "manage-15-definitions")

        # the queue is deleted; importing the file's entry for it (as an operator would after
        # trimming the file) brings it back with its arguments
        api.delete(f"/api/queues/%2F/{q(queue)}")
        trimmed = tmp_path / "trimmed.json"
        trimmed.write_text(json.dumps({"queues": [entry]}))
        _select_vhost(driver, "import-vhost", "/")
        driver.find_element(By.ID, "import-file").send_keys(str(trimmed))
        _click(driver, "import-definitions")
        _text_becomes(driver, "toast", "Definitions imported.")
        restored = api.ok_json(f"/api/queues/%2F/{q(queue)}")
        assert (restored["durable"], restored["arguments"]) == (True, {"x-max-length": 3})

        # a file that is not JSON is refused with a reason and changes nothing
        broken = tmp_path / "broken.json"
        broken.write_text("{not json")
        driver.find_element(By.ID, "import-file").send_keys(str(broken))
        _click(driver, "import-definitions")
        _text_becomes(driver, "toast", "broken.json is not JSON")
        wait.until(lambda d: "error" in d.find_element(By.ID, "toast").get_attribute("class"))
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-definitions")
        raise
    finally:
        api.delete(f"/api/queues/%2F/{q(queue)}")


def test_ui_queue_chart_draws_the_brokers_history(broker, browser, unique):  # noqa: F811
    """The queue page's depth chart shows a depth the queue had before the page was opened:
    the samples come from the broker (`?lengths_age=&lengths_incr=`), not from the tab."""
    api = _api(broker)
    queue = f"charted-{unique[-8:]}"
    driver, wait = browser, WebDriverWait(browser, WAIT)
    exchange = f"charted-x-{unique[-8:]}"
    api.create_queue("/", queue, auto_delete=False)
    api.create_exchange("/", exchange, "fanout")
    assert api.post(f"/api/bindings/%2F/e/{q(exchange)}/q/{q(queue)}", {}).status == 201
    try:
        for n in range(5):
            api.publish("/", exchange, "", f"m{n}")
        path = f"/api/queues/%2F/{q(queue)}?lengths_age=600&lengths_incr=5"
        # two samples of 5: the depth is recorded for a past step, which the purge cannot
        # overwrite (the newest step's sample is the depth now)
        eventually(lambda: api.ok_json(path), lambda x: [
            s["sample"] for s in x["messages_details"]["samples"]].count(5) >= 2, timeout=30)
        api.delete(f"/api/queues/%2F/{q(queue)}/contents")
        eventually(lambda: api.ok_json(path), lambda x: x["messages"] == 0)

        _start(driver, broker)
        driver.get(f"http://127.0.0.1:{broker.management_port}/#/queues/%2F/{q(queue)}")
        _text_becomes(driver, "q-total", "0")
        canvas = wait.until(EC.presence_of_element_located((By.ID, "queue-chart-depth")))
        wait.until(lambda d: canvas.get_attribute("data-source") == "broker")
        assert int(canvas.get_attribute("data-points")) > 1
        assert float(canvas.get_attribute("data-max")) == 5
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        _shot(driver, "manage-16-queue-chart-history")

        # the exchange page charts the publishes it routed, from the broker's samples too
        driver.get(f"http://127.0.0.1:{broker.management_port}/#/exchanges/%2F/{q(exchange)}")
        canvas = wait.until(EC.presence_of_element_located((By.ID, "exchange-chart-rates")))
        wait.until(lambda d: canvas.get_attribute("data-source") == "broker")
        assert float(canvas.get_attribute("data-max")) > 0
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        _shot(driver, "manage-17-exchange-chart-history")
        _no_console_errors(driver)
    except Exception:
        _shot(driver, "manage-failure-chart")
        raise
    finally:
        api.delete(f"/api/queues/%2F/{q(queue)}")
        api.delete(f"/api/exchanges/%2F/{q(exchange)}")
