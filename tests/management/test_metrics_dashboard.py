"""RabbitMQ's stock "RabbitMQ-Overview" Grafana dashboard works on Warren: a real Prometheus
(Debian's `prometheus` package, run here with its own config and data dir on free ports,
stopped by PID) scrapes a real Warren's /metrics every second, and each PromQL expression of
the dashboard's panels and template variables returns data.

The expressions are in rabbitmq_overview_queries.json, extracted unchanged from
rabbitmq/rabbitmq-server tag v3.10.8 (commit 5b67ea2bbd4c09e8ad2d5b2b67bf1b5feff29231),
deps/rabbitmq_prometheus/docker/grafana/dashboards/RabbitMQ-Overview.json. Grafana fills
`$rabbitmq_cluster` and `$namespace` from those variables; so does this test (`namespace` is
the label a Kubernetes scrape adds: the scrape config here adds it too). Skipped where the
`prometheus` binary is missing (.ci/run installs it when it can)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import stop_process
from client_helpers import opened
from metrics_kit import EXTERNAL

PROMETHEUS = shutil.which("prometheus")
QUERIES = json.loads((Path(__file__).parent / "rabbitmq_overview_queries.json")
                     .read_text())
NAMESPACE = "warren-test"

pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is not "
                       "installed (apt-get install prometheus)"),
    pytest.mark.skipif(EXTERNAL, reason="scrapes the Warren the tests start"),
]


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]


@pytest.fixture
def prometheus(broker, tmp_path, free_tcp_port) -> Iterator[Prometheus]:
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # (YAML is a superset of JSON)
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "warren", "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"127.0.0.1:{broker.management_port}"],
                                "labels": {"namespace": NAMESPACE}}],
        }],
    }))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{free_tcp_port}"],
        stdout=log, stderr=subprocess.STDOUT)
    server = Prometheus(free_tcp_port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{server.base}/-/ready", timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                assert time.monotonic() < deadline, "prometheus not ready in 20 s"
                time.sleep(0.2)
        yield server
    finally:
        stop_process(process)
        log.close()


def wait_for(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_overview_dashboard_queries_return_data(broker, prometheus, unique):
    def scraped_twice() -> None:  # rate() needs two samples
        series = prometheus.query("count_over_time(rabbitmq_identity_info[1m])")
        assert series and float(series[0]["value"][1]) >= 2, series

    with opened(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(unique)
        wait_for(scraped_twice)
        for _ in range(20):
            channel.basic_publish("", unique, b"dashboard")
        channel.basic_get(unique, auto_ack=True)
        time.sleep(2.5)  # two more scrapes see the traffic

        [namespace] = prometheus.get(
            "/api/v1/label/namespace/values", **{"match[]": "rabbitmq_identity_info"})
        ours = f'rabbitmq_identity_info{{namespace="{namespace}"}}'
        clusters = prometheus.get("/api/v1/label/rabbitmq_cluster/values", **{"match[]": ours})
        assert namespace == NAMESPACE and len(clusters) == 1

        def fill(expr: str) -> str:
            return expr.replace("$rabbitmq_cluster", clusters[0]).replace("$namespace",
                                                                        namespace)

        empty = [query["panel"] for query in QUERIES["queries"]
                 if not prometheus.query(fill(query["expr"]))]
        assert empty == [], f"dashboard panels without data: {empty}"
        by_panel = {query["panel"]: fill(query["expr"]) for query in QUERIES["queries"]}
        [incoming] = prometheus.query(by_panel["Incoming messages / s"])
        assert float(incoming["value"][1]) > 0
        [queues] = prometheus.query(by_panel["Queues"])
        assert float(queues["value"][1]) >= 1
        channel.queue_delete(unique)
