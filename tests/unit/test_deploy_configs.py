"""deploy/: the Grafana dashboard parses and queries only metrics the engine exports, and
the Prometheus config scrapes /metrics with the admin key from a file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from clickrec.observability.metrics import create_metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# The samples each kind of family exposes, by suffix of its # TYPE name (a counter's
# already ends in _total in this text format).
SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
METRIC = re.compile(r"\b(?:clickrec|process|python)_[a-zA-Z0-9_]+")


def exported_names() -> set[str]:
    """Every sample name the registry of one server process can expose, from its text."""
    text = generate_latest(create_metrics().registry).decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.update(name + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def targets(node: Any) -> list[str]:
    """Every PromQL expression in a Grafana dashboard (panels, rows, variables)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(targets(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(targets(value))
    return found


def test_grafana_queries_use_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "clickrec.json").read_text())
    exprs = targets(dashboard)
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(exprs) >= 15 and len(used) >= 12
    unknown = used - exported_names()
    assert not unknown, f"the dashboard queries metrics the engine does not export: {unknown}"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("events", "latency p50", "latency p99", "lag", "dead letters", "model age"):
        assert topic in titles
    for topic in ("freshness", "click-through", "memory"):
        assert topic in titles


def test_grafana_panels_do_not_overlap() -> None:
    panels = json.loads((DEPLOY / "grafana" / "clickrec.json").read_text())["panels"]
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    assert len({p["id"] for p in panels}) == len(panels)


def test_a_typo_in_a_query_would_be_caught() -> None:
    assert "clickrec_events_accepted_total" in exported_names()
    assert "clickrec_event_accepted_total" not in exported_names()
    assert "clickrec_request_seconds_bucket" in exported_names()
    assert "process_resident_memory_bytes" in exported_names()


def test_prometheus_scrapes_metrics_with_the_key_from_a_file() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "clickrec"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"].startswith("/")
    assert "credentials" not in job["authorization"]  # never the key itself in the config
    assert job["static_configs"][0]["targets"]
