"""Prometheus scrapes every worker of docker-compose.yml, Grafana is provisioned with
the dashboard, and every metric the dashboard queries is one a worker exposes."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import yaml
from prometheus_client import CollectorRegistry

from cloud_worker.metrics import CloudMetrics
from edge_worker.metrics import EdgeMetrics
from tests.unit.composefile import (
    DEPLOY,
    compose_services,
    container_path,
    flag_value,
    hybridfleet_services,
)

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hybridfleet.json"

# Metrics the dashboard may show before a worker exposes them: add a name here while
# its metric is being written, and remove it once EdgeMetrics or CloudMetrics has it.
# (hybridfleet_edge_drift_agreement and hybridfleet_edge_site_backlog were here; both
# are exposed now.)
PENDING_METRICS: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------- prometheus


def test_prometheus_scrapes_every_worker_metrics_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped: dict[str, dict[str, str]] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                scraped[target] = static.get("labels", {})
    expected: dict[str, dict[str, str]] = {}
    for name, (role, service) in hybridfleet_services().items():
        if role == "camera":
            continue
        env = service["environment"]
        labels = {"worker": env[f"HYBRIDFLEET_{role.upper()}_WORKER_ID"]}
        if role == "edge":
            labels["site"] = env["HYBRIDFLEET_EDGE_SITE"]
        expected[f"{name}:{flag_value(service['command'], '--metrics-port')}"] = labels
    assert scraped == expected


def test_grafana_is_provisioned_with_the_dashboard_and_datasource() -> None:
    grafana = compose_services()["grafana"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert container_path(grafana, provisioning) == "/etc/grafana/provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "hybridfleet.yml").read_text())
    dashboards_dir = container_path(grafana, DASHBOARD.parent)
    assert [p["options"]["path"] for p in providers["providers"]] == [dashboards_dir]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    assert urlsplit(sources["datasources"][0]["url"]).hostname in compose_services()
    dashboard = json.loads(DASHBOARD.read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert used <= uids


# ---------------------------------------------------------------------------- dashboard


def _exposed(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry exposes, also for labelled metrics not yet observed.

    prometheus_client names a counter ``x`` ``x_total`` on exposition, a histogram
    ``x_bucket``/``_sum``/``_count``, an info ``x_info``.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in suffixes[family.type]}
        # What is exposed now must be among them, or the mapping above is wrong.
        assert {s.name for s in family.samples} <= names, family.name
    return names


def _worker_metric_names() -> set[str]:
    return _exposed(EdgeMetrics().registry) | _exposed(CloudMetrics().registry)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    return queries


def test_every_metric_on_the_dashboard_is_exposed_by_a_worker() -> None:
    used = {
        name for query in _dashboard_queries() for name in re.findall(r"hybridfleet_\w+", query)
    }
    assert used, "the dashboard queries no hybridfleet metric"
    assert used - _worker_metric_names() - PENDING_METRICS == set()


def test_the_dashboard_has_a_panel_for_each_question() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    text = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard["panels"]}
    wanted = {
        "throughput": "rate(hybridfleet_edge_frames_received_total",
        "escalation share": "hybridfleet_edge_escalations_total",
        "latency percentiles": "histogram_quantile(0.99",
        "bytes saved": "hybridfleet_edge_escalated_bytes_total",
        "agreement": "hybridfleet_edge_drift_agreement",
        "model versions": "hybridfleet_edge_model_info",
        "backlog": "hybridfleet_edge_site_backlog",
        "shed": "hybridfleet_edge_shed_frames_total",
        "dead letters": "hybridfleet_cloud_dead_letters_total",
        "link up": "hybridfleet_edge_cloud_link_up",
    }
    missing = [q for q, expr in wanted.items() if not any(expr in e for e in text.values())]
    assert missing == []
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
