"""``/metrics``: who may read it, what a scrape holds, and the Grafana dashboard's queries
against what the coordinator exports."""

import ipaddress
import json
import re

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from config.metrics_view import Levels
from core import metrics
from tests.conftest import BASE_DIR

TOKEN = "metrics-token-" + "x" * 30


@pytest.fixture
def metrics_token(settings) -> str:
    """A METRICS_TOKEN configured, and no allowed network."""
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    return TOKEN


def test_nobody_reads_metrics_when_neither_a_token_nor_a_network_is_set(client, settings, db):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("header", ["", "Bearer wrong", f"Token {TOKEN}", f"Bearer {TOKEN}x"])
def test_a_wrong_or_missing_token_is_refused(client, metrics_token, header, db):
    response = client.get("/metrics", HTTP_AUTHORIZATION=header)

    assert response.status_code == 403
    assert b"archipelago_" not in response.content


def test_the_token_opens_the_metrics_in_prometheus_text(client, metrics_token, db):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"archipelago_jobs", "archipelago_islands_online"} <= names


def test_an_address_in_an_allowed_network_reads_them_without_a_token(client, settings, db):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]

    assert client.get("/metrics").status_code == 200
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics").status_code == 403


def test_only_get_is_answered(client, metrics_token, db):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")

    assert response.status_code == 405


def test_a_routes_label_is_its_url_pattern_not_its_ids():
    assert metrics.route_of("/api/v1/jobs") == "/api/v1/jobs"
    one = metrics.route_of("/api/v1/jobs/6a1e4b1c-1111-4c3e-9d7a-2b8f1e0c5a77")
    other = metrics.route_of("/api/v1/jobs/0b9d2c3e-2222-4f1a-8e6b-3c7a2d1f4b88")
    assert one == other
    assert "6a1e" not in one
    assert metrics.route_of("/no/such/page") == "unmatched"


def exported() -> set[str]:
    """Every series name the coordinator exports (what a query may name)."""
    names = set(Levels.NAMES)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= {value._name + suffix for suffix in suffixes[value._type]}
    return names


def test_every_metric_the_grafana_dashboard_queries_is_exported():
    path = BASE_DIR / "deploy" / "grafana" / "dashboards" / "archipelago.json"
    dashboard = json.loads(path.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\barchipelago_[a-z_]+", target["expr"])
    }

    assert len(queried) >= 15
    assert queried - exported() == set()
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {"prometheus"}


def test_the_cluster_profile_provisions_prometheus_on_metrics_and_grafana_with_the_dashboard():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]
    prometheus = yaml.safe_load((BASE_DIR / "deploy/prometheus/prometheus.yml").read_text())
    provider = yaml.safe_load(
        (BASE_DIR / "deploy/grafana/provisioning/dashboards/archipelago.yml").read_text()
    )["providers"][0]

    [job] = prometheus["scrape_configs"]
    assert (job["metrics_path"], job["static_configs"][0]["targets"]) == ("/metrics", ["web:8000"])
    assert job["authorization"]["credentials_file"] in compose["prometheus"]["command"][0]
    assert "web" in compose["web"]["environment"]["ALLOWED_HOSTS"]
    mounts = dict(volume.split(":")[:2] for volume in compose["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert compose["prometheus"]["profiles"] == compose["grafana"]["profiles"] == ["cluster"]
