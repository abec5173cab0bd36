"""The Celery application of tests/clients/test_celery.py, imported both by the test process and
by the worker subprocesses it starts (`celery -A celery_tasks worker`).

The broker URL and the default queue come from the environment, so a test run uses its own
queue even on a long-lived reference broker; the test process sets them on `app.conf` too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

app = Celery("celery_tasks")
app.conf.update(
    broker_url=os.environ.get("WARREN_CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    result_backend="rpc://",
    task_default_queue=os.environ.get("WARREN_CELERY_QUEUE", "celery"),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    task_send_sent_event=True,
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def finished_at(label: str) -> tuple[str, float]:
    """The label and when the worker ran the task (wall clock of the worker's machine)."""
    return label, time.time()


@app.task(bind=True, max_retries=5)
def flaky(self, failures: int) -> dict:
    """Fails `failures` times, retried each time with a short countdown, then succeeds."""
    if self.request.retries < failures:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries}"), countdown=0.3)
    return {"retries": self.request.retries}


@app.task(bind=True, acks_late=True)
def wait_for_file(self, started: str, release: str) -> dict:
    """Marks that it started (appending a line to `started`), then waits until `release` exists.
    With acks_late the message stays unacked until it returns, so a worker killed meanwhile
    leaves it to the broker to redeliver."""
    with open(started, "a") as marker:
        marker.write(f"{os.getpid()}\n")
    while not Path(release).exists():
        time.sleep(0.05)
    return {"redelivered": bool(self.request.delivery_info.get("redelivered")),
            "pid": os.getpid()}
