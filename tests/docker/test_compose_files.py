"""The Compose stack's files, checked without Docker: docker/compose.yaml, the Prometheus scrape
configuration, Grafana's provisioning and the Warren dashboard. Every metric a dashboard query
uses must be in a real Warren's /metrics or /metrics/per-object scrape, the one its `job` label
points at (and must survive that job's metric_relabel_configs).

PyYAML is not a dependency, so the YAML files are read with simple line patterns: enough for the
files shipped here, which keep to plain block mappings and lists.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
import pytest
from brokers import REPO_ROOT, BrokerProcess
from prometheus_client.parser import text_string_to_metric_families

DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE = DOCKER_DIR / "compose.yaml"
PROMETHEUS_CONFIG = DOCKER_DIR / "prometheus" / "prometheus.yml"
DATASOURCES = DOCKER_DIR / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DOCKER_DIR / "grafana" / "provisioning" / "dashboards" / "warren.yml"
DASHBOARD = DOCKER_DIR / "grafana" / "dashboards" / "warren.json"

# PromQL words that look like metric names but are not
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless", "inf", "nan", "atan2"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<matchers>\{[^}]*\})
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-z]*)
  | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<other>\S)
""", re.VERBOSE)
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$")


@dataclass(frozen=True)
class Selector:
    """One metric name in a PromQL expression and its label matchers."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...] = ()

    def label(self, name: str) -> str | None:
        """The value an equality matcher on `name` asks for, if there is one."""
        return next((value for label, op, value in self.matchers if label == name and op == "="),
                    None)


def selectors(expr: str) -> list[Selector]:
    """The metric selectors of a PromQL expression (functions, keywords, label lists skipped)."""
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr)]
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "matchers":  # a selector without a name: {__name__="..."} is not used here
            raise AssertionError(f"selector without a metric name in {expr!r}")
        if kind != "name":
            i += 1
            continue
        if text in LABEL_LIST_KEYWORDS and following[1] == "(":
            i += 2  # skip the label list up to its closing parenthesis
            while i < len(tokens) and tokens[i][1] != ")":
                i += 1
            i += 1
            continue
        if following[1] == "(" or text in PROMQL_KEYWORDS or following[1] in ("by", "without"):
            # a function, an operator word, or an aggregation written `sum by (...) (...)`
            i += 1
            continue
        matchers: tuple[tuple[str, str, str], ...] = ()
        if following[0] == "matchers":
            matchers = tuple(MATCHER.findall(following[1]))
            i += 1
        found.append(Selector(text, matchers))
        i += 1
    return found


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard_panels(dashboard)
            for target in panel.get("targets", []) if target.get("expr")]


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(selector, label) of each label_values(...) query variable."""
    result = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: not a label_values query: {query!r}"
        result.append((match["selector"], match["label"]))
    return result


@dataclass
class ScrapeJob:
    """One scrape_configs entry of prometheus.yml, as far as the dashboard needs it."""

    name: str
    metrics_path: str = "/metrics"
    targets: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)  # regexes of `action: keep` on __name__


def scrape_jobs() -> dict[str, ScrapeJob]:
    """The jobs of docker/prometheus/prometheus.yml, read line by line."""
    jobs: dict[str, ScrapeJob] = {}
    job: ScrapeJob | None = None
    regex: str | None = None
    for line in PROMETHEUS_CONFIG.read_text().splitlines():
        line = line.split(" #")[0].rstrip()
        if match := re.match(r"\s*- job_name:\s*(\S+)", line):
            job = jobs.setdefault(match[1].strip("\"'"), ScrapeJob(match[1].strip("\"'")))
        elif job is None:
            continue
        elif match := re.match(r"\s*metrics_path:\s*(\S+)", line):
            job.metrics_path = match[1].strip("\"'")
        elif match := re.match(r"\s*-?\s*targets:\s*\[(.*)\]", line):
            job.targets += [t.strip().strip("\"'") for t in match[1].split(",") if t.strip()]
        elif match := re.match(r"\s*regex:\s*(\S+)", line):
            regex = match[1].strip("\"'")
        elif re.match(r"\s*action:\s*keep\b", line) and regex is not None:
            job.keep.append(regex)
            regex = None
    return jobs


@dataclass
class Scrape:
    """Sample names and their label names from one metrics endpoint."""

    labels: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, text: str) -> Scrape:
        scrape = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scrape.labels.setdefault(sample.name, set()).update(sample.labels)
        return scrape


# ---- the files on their own ------------------------------------------------------------------


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = list(dashboard_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    datasource_uid = re.search(r"^\s*uid:\s*(\S+)", DATASOURCES.read_text(), re.M)
    assert datasource_uid, "the provisioned datasource needs a fixed uid"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == datasource_uid[1], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource_uid[1], panel["title"]
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval",
                                                                    "__interval", "__range"}
            assert used <= variables, f"{panel['title']!r} uses undefined variables {used}"


def test_dashboard_shows_what_operators_need() -> None:
    dashboard = load_dashboard()
    metrics = {s.metric for expr in dashboard_exprs(dashboard) for s in selectors(expr)}
    assert {
        "rabbitmq_global_messages_received_total",  # published
        "rabbitmq_global_messages_delivered_total",
        "rabbitmq_global_messages_acknowledged_total",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_consumers",
        "rabbitmq_connections",
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_disk_space_available_bytes",
    } <= metrics
    dlq_panels = [panel for panel in dashboard_panels(dashboard)
                  if any("$dlq" in target.get("expr", "") for target in panel.get("targets", []))]
    assert dlq_panels, "a panel of dead-letter queue depth selected by the dlq variable"
    dlq = next(v for v in dashboard["templating"]["list"] if v["name"] == "dlq")
    pattern = re.compile(dlq["query"])  # RE2 and Python agree on this simple pattern
    assert pattern.fullmatch("orders.dlq") and pattern.fullmatch("orders-dead-letter")
    assert not pattern.fullmatch("orders")


def test_selectors_extraction() -> None:
    expr = ('sum by (queue) (rate(rabbitmq_a_total{job="warren", queue=~"$q"}[$__rate_interval]))'
            ' / on (queue) group_left rabbitmq_b + 2 * rabbitmq_c offset 5m')
    assert selectors(expr) == [
        Selector("rabbitmq_a_total", (("job", "=", "warren"), ("queue", "=~", "$q"))),
        Selector("rabbitmq_b"), Selector("rabbitmq_c"),
    ]


def test_prometheus_scrapes_both_endpoints() -> None:
    jobs = scrape_jobs()
    paths = {job.metrics_path for job in jobs.values()}
    assert {"/metrics", "/metrics/per-object"} <= paths
    for job in jobs.values():
        assert job.targets == ["warren:15672"], job


def test_compose_file() -> None:
    text = COMPOSE.read_text()
    services = re.findall(r"^  ([\w-]+):\s*$", text.split("\nvolumes:")[0].split("services:")[1],
                          re.M)
    assert {"warren", "prometheus", "grafana"} <= set(services)
    images = dict(re.findall(r"^    image:\s*(\S+?):(\S+)\s*$", text, re.M))
    assert images.get("prom/prometheus", "latest") not in ("latest", ""), "pin prometheus"
    assert images.get("grafana/grafana", "latest") not in ("latest", ""), "pin grafana"
    assert re.search(r"dockerfile:\s*docker/Dockerfile", text)
    declared = re.findall(r"^  ([\w-]+):\s*$", text.split("\nvolumes:")[1], re.M)
    assert {"warren-data", "prometheus-data", "grafana-data"} <= set(declared)
    assert "warren-data:/var/lib/warren" in text
    assert "prometheus-data:/prometheus" in text
    assert "grafana-data:/var/lib/grafana" in text
    for port in ("5672:5672", "15672:15672", "9090:9090", "3000:3000"):
        assert port in text
    # every bind-mounted file or directory exists, relative to docker/
    for source in re.findall(r"^\s*- (\./[^:\s]+):", text, re.M):
        assert (DOCKER_DIR / source).exists(), source
    assert "/etc/grafana/dashboards" in DASHBOARD_PROVIDERS.read_text()
    assert "./grafana/dashboards:/etc/grafana/dashboards" in text


# ---- the dashboard against a real Warren ----------------------------------------------------


@pytest.fixture(scope="module")
def scrapes(broker: BrokerProcess) -> Iterator[dict[str, Scrape]]:
    """/metrics and /metrics/per-object of a Warren holding a queue with a message."""
    if broker.management_port is None or not broker.is_warren:
        pytest.skip("needs Warren's own /metrics")
    queue = f"compose-files-{uuid.uuid4().hex}"
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    try:
        channel = connection.channel()
        channel.queue_declare(queue)
        channel.basic_publish("", queue, b"x")
        base = f"http://{broker.host}:{broker.management_port}"
        result = {}
        for path in ("/metrics", "/metrics/per-object"):
            with urllib.request.urlopen(base + path, timeout=10) as response:
                result[path] = Scrape.of(response.read().decode())
        yield result
        channel.queue_delete(queue)
    finally:
        connection.close()


def _check(selector: Selector, jobs: dict[str, ScrapeJob], scrapes: dict[str, Scrape],
           where: str) -> list[str]:
    """Problems with one selector: unknown job, missing metric, dropped by relabelling."""
    job_name = selector.label("job")
    if job_name is None:
        candidates = list(jobs.values())
    elif job_name in jobs:
        candidates = [jobs[job_name]]
    else:
        return [f"{where}: job {job_name!r} is not in prometheus.yml"]
    for job in candidates:
        if job.keep and not any(re.fullmatch(regex, selector.metric) for regex in job.keep):
            continue
        if selector.metric in scrapes[job.metrics_path].labels:
            return []
    return [f"{where}: {selector.metric} is not in the scrape of job(s) "
            f"{[job.name for job in candidates]}"]


def test_every_dashboard_metric_is_exposed(scrapes: dict[str, Scrape]) -> None:
    dashboard = load_dashboard()
    jobs = scrape_jobs()
    problems: list[str] = []
    checked = 0
    for expr in dashboard_exprs(dashboard):
        for selector in selectors(expr):
            problems += _check(selector, jobs, scrapes, expr)
            checked += 1
            for label, _, _ in selector.matchers:
                path = jobs[selector.label("job") or "warren"].metrics_path
                labels = scrapes[path].labels.get(selector.metric, set())
                if label != "job" and label not in labels:
                    problems.append(f"{expr}: {selector.metric} has no label {label!r}")
    for query, label in variable_queries(dashboard):
        (selector,) = selectors(query)
        problems += _check(selector, jobs, scrapes, query)
        path = jobs[selector.label("job") or "warren"].metrics_path
        if label not in scrapes[path].labels.get(selector.metric, set()):
            problems.append(f"{query}: no label {label!r}")
    assert checked >= 20
    assert not problems, "\n".join(problems)


# ---- the Compose files as Compose itself reads them (no daemon needed) -----------------------

COMPOSE_VARIANTS = {"docker-compose": ["docker-compose"], "docker compose": ["docker", "compose"]}
COMPOSE_FILE_SETS = [
    ["compose.yaml"], ["compose.cluster.yaml"],
    ["compose.yaml", "compose.local.yaml"], ["compose.cluster.yaml", "compose.local.yaml"],
]


def compose_version(command: list[str]) -> str | None:
    """`version --short` of a Compose command, or None when it is not installed."""
    try:
        result = subprocess.run([*command, "version", "--short"], capture_output=True,
                                text=True, timeout=60)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.mark.parametrize("variant", sorted(COMPOSE_VARIANTS))
@pytest.mark.parametrize("files", COMPOSE_FILE_SETS, ids="+".join)
def test_compose_accepts_the_files(variant: str, files: list[str]) -> None:
    """Debian's docker-compose 1.29 and Compose v2 both take every file (1.29 refuses a
    top-level `name:`); the project name comes from `-p`."""
    command = COMPOSE_VARIANTS[variant]
    version = compose_version(command)
    if version is None:
        pytest.skip(f"`{variant}` is not installed here")
    arguments = [argument for name in files for argument in ("-f", str(DOCKER_DIR / name))]
    result = subprocess.run([*command, "-p", "warren-config-check", *arguments, "config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{variant} {version}:\n{result.stderr}"
    assert "warren" in result.stdout and "prometheus" in result.stdout
