"""The Prometheus alerting rules and the Grafana dashboard in ``contrib/`` ask only for series the
connector serves, with labels those series have; so does the series table of docs/operations.md.

The series come from a real scrape of the listener as ``run`` builds it (every histogram fed once,
so its label names show). With ``promtool`` installed (Debian package ``prometheus``; ``PROMTOOL=``
may name it), the rules are also checked by it and their unit tests run
(``contrib/prometheus/itsm-connector.rules.test.yml``: each alert fires when it should).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connector.config import Settings
from connector.wiring import build_connector

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "contrib" / "prometheus" / "itsm-connector.rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "itsm-connector.rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "itsm-connector.json"

#: labels Prometheus adds to every scraped series, and the histogram bucket label
TARGET_LABELS = {"job", "instance", "le"}
#: series Prometheus itself makes for a scrape target
SCRAPE_SERIES = {"up"}
SERIES_RE = re.compile(r"\b(?:itsm_connector_\w+|process_\w+|up)\b")
LABEL_LISTS_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHER_RE = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """Every series name the listener serves, with its label names."""
    tmp = tmp_path_factory.mktemp("contrib")
    settings = Settings.model_validate(
        {
            "servicenow": {
                "name": "acme",
                "url": "https://acme.example",
                "username": "u",
                "password": "p",
                "hook_secret": "0123456789abcdef",
            },
            "slack": {"token": "xoxb-1", "channel": "C0ACME"},
            "alertmanager": {"url": "http://127.0.0.1:9"},
            "state": {"path": tmp / "state.db"},
            "health": {"enabled": True, "listen": "127.0.0.1:0"},
            "hooks": {"enabled": True, "listen": "127.0.0.1:0"},  # its series (the listener is not started)
        }
    )
    app = build_connector(settings)
    assert app.health is not None
    # series with labels that appear with their first value: a success, an observation
    app.metrics.poll_succeeded("acme", 1, datetime.now(timezone.utc))
    app.metrics.shown("acme", "C0ACME", 12.0)
    app.metrics.slack_request("chat.postMessage", 0.2)
    app.metrics.event("announced")
    app.health.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{app.health.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        app.close()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            series.setdefault(s.name, set()).update(s.labels)
    yield series


def check_expr(expr: str, served: dict[str, set[str]], where: str) -> list[str]:
    """Problems of one PromQL expression: series not served, labels none of its series has."""
    code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values are not names
    names = set(SERIES_RE.findall(code))
    problems = [
        f"{where}: {n} is not a series the connector serves" for n in names - set(served) - SCRAPE_SERIES
    ]
    if not names:
        problems.append(f"{where}: names no series of the connector: {expr}")
    known = set(TARGET_LABELS).union(*(served.get(n, set()) for n in names))
    used = set(MATCHER_RE.findall(expr))
    for group in LABEL_LISTS_RE.findall(code):
        used.update(label.strip() for label in group.split(",") if label.strip())
    problems += [f"{where}: label {label!r} is on none of {sorted(names)}" for label in sorted(used - known)]
    return problems


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rules_cover_what_an_operator_must_hear_about() -> None:
    names = {r["alert"] for r in rules()}
    assert {
        "ItsmConnectorSourceFailing",
        "ItsmConnectorDeliveryBacklog",
        "ItsmConnectorPollStale",
        "ItsmConnectorLatencyAboveTarget",
    } <= names
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rules_ask_only_for_served_series_and_labels(served: dict[str, set[str]]) -> None:
    problems = [p for rule in rules() for p in check_expr(rule["expr"], served, rule["alert"])]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_wrong_name_and_a_wrong_label(served: dict[str, set[str]]) -> None:
    """Guards the two checks above."""
    assert check_expr('rate(itsm_connector_pols_total{result="ok"}[5m])', served, "x")
    assert check_expr("sum by (channel) (itsm_connector_deliveries_total)", served, "x")
    assert not check_expr('sum by (sink) (itsm_connector_deliveries_total{result="error"})', served, "x")


def dashboard_queries() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    queries = [(f"panel {p['title']!r}", t["expr"]) for p in doc["panels"] for t in p.get("targets", [])]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert match, query
            queries.append((f"variable {var['name']}", f"sum by ({match.group(2)}) ({match.group(1)})"))
    return queries


def test_dashboard_asks_only_for_served_series_and_labels(served: dict[str, set[str]]) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    problems = [p for where, expr in queries for p in check_expr(expr, served, where)]
    assert not problems, "\n".join(problems)
    graphed = {n for _, expr in queries for n in SERIES_RE.findall(expr)}
    assert "itsm_connector_ticket_to_slack_seconds_bucket" in graphed


def test_the_documented_series_are_served(served: dict[str, set[str]]) -> None:
    """docs/operations.md lists the series (without the ``itsm_connector_`` prefix) in a table."""
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text[text.index("| series | labels | what |") :].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert len(listed) >= 10
    missing = []
    for name in listed:
        full = f"itsm_connector_{name}"
        if not ({full, f"{full}_bucket"} & set(served)):
            missing.append(full)
    assert not missing


def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return path


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    tool = promtool()
    for args in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        result = subprocess.run(
            [tool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
