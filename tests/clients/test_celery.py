"""A real Celery application against the broker: a worker subprocess (`celery -A celery_tasks
worker --pool=solo -E`) consumes the tasks of celery_tasks.py, results come back over the rpc://
backend (a reply queue per client). Covered: delay/get, chain and group, retries with a
countdown, ETA tasks held unacked by the worker while it raises its prefetch with basic.qos,
revoke, remote control (inspect/ping over the pidbox fanout exchange and its expiring reply
queues), task events, and acks_late tasks redelivered to a new worker after a SIGKILL.

Runs against the session's broker, so WARREN_TEST_AMQP_PORT=5673 runs it against RabbitMQ 3.10.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import celery_tasks
import pytest
from brokers import stop_process
from celery import Celery, chain, group
from celery.exceptions import TaskRevokedError

HERE = Path(__file__).resolve().parent
TIMEOUT = 20.0
COUNTDOWN = 6  # seconds: see test_many_countdown_tasks_and_immediate_tasks


class Worker:
    """A `celery worker` subprocess with its own node name and log file."""

    def __init__(self, url: str, queue: str, log_path: Path, extra: list[str]) -> None:
        self.name = f"w{uuid.uuid4().hex[:8]}@warren-tests"
        self.log_path = log_path
        env = {**os.environ, "WARREN_CELERY_BROKER_URL": url, "WARREN_CELERY_QUEUE": queue,
               "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool=solo",
                 "-n", self.name, "-Q", queue, "--loglevel=INFO", *extra],
                cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Until the worker answers a ping addressed to it (its pidbox queue is consumed)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited:\n{self.log()[-3000:]}"
            if celery_tasks.app.control.ping(destination=[self.name], timeout=0.5):
                return
        raise AssertionError(f"worker not ready in {TIMEOUT} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process)  # SIGTERM: a warm shutdown


@pytest.fixture(scope="module")
def app(broker):
    """The application of celery_tasks, pointed at the session's broker and a fresh queue."""
    url = f"amqp://guest:guest@{broker.host}:{broker.port}//"
    queue = f"celery-tests-{uuid.uuid4().hex[:8]}"
    celery_tasks.app.conf.update(broker_url=url, task_default_queue=queue)
    yield celery_tasks.app
    with celery_tasks.app.connection_for_write() as connection, contextlib.suppress(Exception):
        connection.default_channel.queue_delete(queue)
    # Close the connections app.close() leaves open (rpc:// result consumer, remote control):
    # a connection nobody reads holds up the broker's shutdown until its close-ok grace ends.
    with contextlib.suppress(AttributeError):  # no result consumer started
        celery_tasks.app.backend.result_consumer.stop()
    celery_tasks.app.control.mailbox.producer_pool.force_close_all()
    celery_tasks.app.pool.force_close_all()
    celery_tasks.app.close()


@contextlib.contextmanager
def running_worker(app, log_path: Path, queue: str | None = None,
                   extra: list[str] | None = None, wait_ready: bool = True) -> Iterator[Worker]:
    worker = Worker(app.conf.broker_url, queue or app.conf.task_default_queue, log_path,
                    extra or [])
    try:
        if wait_ready:
            worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def worker(app, tmp_path_factory) -> Iterator[Worker]:
    """One worker (with task events, -E) for the module's tests."""
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    with running_worker(app, log_path, extra=["-E"]) as running:
        yield running
        assert running.process.poll() is None, running.log()[-3000:]


def ready_count(app, queue: str) -> int:
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count


# -- tasks and results --------------------------------------------------------------------------


def test_delay_and_get(worker):
    result = celery_tasks.add.delay(2, 3)
    assert result.get(timeout=TIMEOUT) == 5
    assert result.status == "SUCCESS"


def test_many_results_come_back_to_one_client(worker):
    results = [celery_tasks.add.delay(i, i) for i in range(20)]
    assert [r.get(timeout=TIMEOUT) for r in results] == [2 * i for i in range(20)]


def test_chain_and_group(worker):
    workflow = chain(celery_tasks.add.s(1, 2), celery_tasks.mul.s(10), celery_tasks.add.s(5))
    assert workflow.apply_async().get(timeout=TIMEOUT) == 35
    assert group(celery_tasks.add.s(i, i) for i in range(5))().get(timeout=TIMEOUT) == [
        0, 2, 4, 6, 8]


def test_retry_with_countdown(worker):
    result = celery_tasks.flaky.delay(2)
    assert result.get(timeout=TIMEOUT) == {"retries": 2}


def test_eta_task_is_held_unacked_while_later_tasks_run(app, worker):
    """With prefetch 1 (solo pool, multiplier 1), the worker holds a countdown task unacked and
    raises its prefetch by basic.qos so that the next task still reaches it: a task sent after
    the countdown task finishes first, while the countdown task is reserved (not ready) in the
    broker."""
    queue = app.conf.task_default_queue
    later = celery_tasks.finished_at.apply_async(("eta",), countdown=3)
    sent_at = time.time()
    inspector = app.control.inspect(destination=[worker.name], timeout=2)
    deadline = time.monotonic() + TIMEOUT
    while not (inspector.scheduled() or {}).get(worker.name):
        assert time.monotonic() < deadline, "the worker did not schedule the countdown task"
    assert ready_count(app, queue) == 0  # delivered, held unacked by the worker

    now = celery_tasks.finished_at.delay("now")
    assert now.get(timeout=TIMEOUT)[0] == "now"
    label, eta_done = later.get(timeout=TIMEOUT)
    assert label == "eta"
    assert eta_done >= sent_at + 2.5  # not run before its countdown (minus clock slack)
    assert now.result[1] < eta_done


def test_revoke_before_eta(app, worker):
    result = celery_tasks.add.apply_async((1, 1), countdown=2)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    # The worker keeps working afterwards.
    assert celery_tasks.add.delay(1, 1).get(timeout=TIMEOUT) == 2


def test_many_countdown_tasks_and_immediate_tasks(worker):
    """Each held countdown task raises the worker's prefetch by one (basic.qos), each one run
    lowers it again; the immediate tasks sent meanwhile all run first.

    The countdown leaves the worker seconds, not the instant it needs when idle: under CPU load
    Celery's worker (kombu's hub) can sit in its poll until its next timer, which is at most
    2 s away (the -E event heartbeat, or the countdown itself), with a delivery it has already
    read and a basic.qos it has not yet sent (the read that drains it reschedules itself with
    call_soon, which does not wake the poll). Seen against RabbitMQ 3.10.8 as against Warren,
    with every task run: the order then is the worker's, not the broker's."""
    later = [celery_tasks.finished_at.apply_async((f"eta{i}",), countdown=COUNTDOWN)
             for i in range(5)]
    now = [celery_tasks.finished_at.delay(f"now{i}") for i in range(5)]
    now_done = [r.get(timeout=TIMEOUT) for r in now]
    later_done = [r.get(timeout=TIMEOUT) for r in later]
    assert [label for label, _ in now_done] == [f"now{i}" for i in range(5)]
    assert [label for label, _ in later_done] == [f"eta{i}" for i in range(5)]
    assert max(t for _, t in now_done) < min(t for _, t in later_done)
    # Back to normal: one more task goes through.
    assert celery_tasks.add.delay(2, 2).get(timeout=TIMEOUT) == 4


def test_publishing_with_confirms(app, worker):
    """A client app with broker_transport_options confirm_publish (py-amqp waits for each
    basic.ack), sending by name as a client without the task code does."""
    client = Celery("confirming-client", broker=app.conf.broker_url, backend="rpc://")
    client.conf.update(task_default_queue=app.conf.task_default_queue,
                       broker_transport_options={"confirm_publish": True})
    try:
        result = client.send_task("celery_tasks.add", args=(20, 22))
        assert result.get(timeout=TIMEOUT) == 42
    finally:
        with contextlib.suppress(AttributeError):
            client.backend.result_consumer.stop()
        client.pool.force_close_all()
        client.close()


# -- remote control and events ------------------------------------------------------------------


def test_inspect_and_control_ping(app, worker):
    """Broadcast over the celery.pidbox fanout exchange, replies to a reply queue with x-expires
    declared by the client."""
    assert app.control.inspect(destination=[worker.name], timeout=2).ping() == {
        worker.name: {"ok": "pong"}}
    assert app.control.ping(destination=[worker.name], timeout=2) == [
        {worker.name: {"ok": "pong"}}]
    queues = app.control.inspect(destination=[worker.name], timeout=2).active_queues()
    assert [q["name"] for q in queues[worker.name]] == [app.conf.task_default_queue]
    stats = app.control.inspect(destination=[worker.name], timeout=2).stats()[worker.name]
    assert stats["broker"]["transport"] == "amqp"


def test_task_events(app, worker):
    """The worker runs with -E: a receiver bound to the celeryev topic exchange sees the task's
    received/started/succeeded events."""
    seen: list[dict] = []
    ready = threading.Event()
    done = threading.Event()
    task_id = uuid.uuid4().hex

    def on_event(event: dict) -> None:
        if event.get("uuid") == task_id:
            seen.append(event)
            if event["type"] == "task-succeeded":
                done.set()

    def capture() -> None:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={"*": on_event})
            with receiver.consumer_context(wakeup=False) as (consuming, _channel, _consumers):
                ready.set()
                while not done.is_set():
                    with contextlib.suppress(TimeoutError):
                        consuming.drain_events(timeout=0.2)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    try:
        assert ready.wait(TIMEOUT)
        assert celery_tasks.add.apply_async((3, 4), task_id=task_id).get(timeout=TIMEOUT) == 7
        assert done.wait(TIMEOUT), f"events seen: {[e['type'] for e in seen]}"
    finally:
        done.set()
        thread.join(TIMEOUT)
    types = [event["type"] for event in seen]
    assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= set(types)
    succeeded = next(event for event in seen if event["type"] == "task-succeeded")
    assert succeeded["hostname"] == worker.name
    assert succeeded["result"] == "7"


def test_add_and_cancel_consumer(app, worker):
    """Remote control that changes what the worker consumes: add_consumer declares and consumes
    a new queue, cancel_consumer sends basic.cancel for it."""
    queue = f"{app.conf.task_default_queue}-extra"
    inspector = app.control.inspect(destination=[worker.name], timeout=2)

    def consumed() -> list[str]:
        return [q["name"] for q in (inspector.active_queues() or {}).get(worker.name, [])]

    reply = app.control.add_consumer(queue, destination=[worker.name], reply=True, timeout=2)
    assert reply == [{worker.name: {"ok": f"add consumer {queue}"}}]
    deadline = time.monotonic() + TIMEOUT
    while queue not in consumed():
        assert time.monotonic() < deadline, "the worker did not start consuming"
    assert celery_tasks.add.apply_async((5, 5), queue=queue).get(timeout=TIMEOUT) == 10

    reply = app.control.cancel_consumer(queue, destination=[worker.name], reply=True, timeout=2)
    assert reply == [{worker.name: {"ok": f"no longer consuming from {queue}"}}]
    while queue in consumed():
        assert time.monotonic() < deadline, "the worker did not stop consuming"
    with app.connection_for_write() as connection:
        ok = connection.default_channel.queue_declare(queue, passive=True)
        assert ok.consumer_count == 0
        connection.default_channel.queue_delete(queue)


def test_threads_pool_worker(app, tmp_path):
    """A second kind of worker: a thread pool with four threads (prefetch 4) on its own
    queue, running a group whose tasks overlap."""
    queue = f"{app.conf.task_default_queue}-threads"
    with running_worker(app, tmp_path / "threads.log", queue=queue,
                        extra=["--pool=threads", "--concurrency=4"]):
        results = group(celery_tasks.mul.s(i, 3).set(queue=queue) for i in range(12))()
        assert results.get(timeout=TIMEOUT) == [3 * i for i in range(12)]
        later = celery_tasks.add.apply_async((1, 2), countdown=1, queue=queue)
        assert later.get(timeout=TIMEOUT) == 3
    with app.connection_for_write() as connection:
        connection.default_channel.queue_delete(queue)


# -- acks_late and a worker that dies -----------------------------------------------------------


def test_acks_late_task_is_redelivered_to_a_new_worker_after_sigkill(app, tmp_path):
    """The solo worker runs the task in its main process, so it answers nothing while the task
    waits: it is killed mid-task, and the unacked message goes back to the queue for the next
    worker, marked redelivered."""
    queue = f"{app.conf.task_default_queue}-late"
    started, release = tmp_path / "started", tmp_path / "release"

    with running_worker(app, tmp_path / "first.log", queue=queue) as first:
        result = celery_tasks.wait_for_file.apply_async((str(started), str(release)),
                                                        queue=queue)
        deadline = time.monotonic() + TIMEOUT
        while not started.exists():
            assert time.monotonic() < deadline, f"task not started:\n{first.log()[-3000:]}"
            time.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()

    release.touch()
    with running_worker(app, tmp_path / "second.log", queue=queue, wait_ready=False) as second:
        outcome = result.get(timeout=TIMEOUT)
        assert outcome == {"redelivered": True, "pid": second.process.pid}, second.log()[-3000:]
    assert len(started.read_text().split()) == 2
    with app.connection_for_write() as connection:
        connection.default_channel.queue_delete(queue)
