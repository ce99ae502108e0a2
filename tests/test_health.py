from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.config import HealthSettings
from connector.health import HealthServer, HealthSnapshot, SourceHealth, evaluate_health
from connector.metrics import Metrics

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
SN = SourceHealth(poll_interval=60)


def snap(uptime: float = 0.0, slack_failing: str | None = None, **source: object) -> HealthSnapshot:
    """One source, "servicenow", ``uptime`` seconds after the start; ages in seconds."""
    return HealthSnapshot(T0, uptime, {"servicenow": replace(SN, **source)}, slack_failing)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("snapshot", "healthy", "reasons"),
    [
        pytest.param(snap(0), True, [], id="just-started"),
        pytest.param(snap(180), True, [], id="starting-boundary"),
        pytest.param(
            snap(181),
            False,
            ["servicenow: no successful poll since start 181s ago (limit 180s)"],
            id="never-polled-past-limit",
        ),
        pytest.param(
            snap(412, error="HTTP 401"),
            False,
            ["servicenow: no successful poll since start 412s ago (limit 180s): HTTP 401"],
            id="never-polled-with-error",
        ),
        pytest.param(snap(100, error="timeout"), True, [], id="starting-with-error-within-limit"),
        pytest.param(snap(1000, ok_age=0), True, [], id="polled-now"),
        pytest.param(snap(1180, ok_age=180), True, [], id="poll-age-boundary"),
        pytest.param(
            snap(1412, ok_age=412, error="HTTP 503"),
            False,
            ["servicenow: no successful poll for 412s (limit 180s): HTTP 503"],
            id="stale-with-error",
        ),
        pytest.param(
            snap(1181, ok_age=181),
            False,
            ["servicenow: no successful poll for 181s (limit 180s)"],
            id="stale-no-error",
        ),
        pytest.param(
            snap(1100, ok_age=100, error="HTTP 503"), True, [], id="recent-success-then-one-failure"
        ),
        pytest.param(
            snap(1000, ok_age=0, slack_failing="channel_not_found"),
            False,
            ["slack delivery failing: channel_not_found"],
            id="slack-failing",
        ),
        pytest.param(
            snap(600, ok_age=600, error="HTTP 503", slack_failing="x"),
            False,
            ["servicenow: no successful poll for 600s (limit 180s): HTTP 503", "slack delivery failing: x"],
            id="both-failing",
        ),
        pytest.param(
            snap(31, ok_age=31, poll_interval=10),
            False,
            ["servicenow: no successful poll for 31s (limit 30s)"],
            id="limit-follows-interval",
        ),
        pytest.param(snap(1000, ok_age=5, request_age=15, timeout=30), True, [], id="slow-request"),
        pytest.param(
            snap(1000, ok_age=5, request_age=16, timeout=30),
            False,
            ["servicenow: a request has waited 16s for an answer (timeout 30s)"],
            id="hung-request-before-its-timeout",
        ),
        pytest.param(
            snap(1000, ok_age=5, broken="internal error in tick: ValueError"),
            False,
            ["servicenow: internal error in tick: ValueError (retrying)"],
            id="crashed-job",
        ),
    ],
)
def test_evaluate_health(snapshot: HealthSnapshot, healthy: bool, reasons: list[str]) -> None:
    assert evaluate_health(snapshot) == (healthy, reasons)


def test_each_source_is_judged_by_its_own_interval() -> None:
    fast, slow = SourceHealth(poll_interval=10, ok_age=31), SourceHealth(poll_interval=60, ok_age=100)
    s = HealthSnapshot(T0, 1000, {"fast": fast, "slow": slow})
    assert evaluate_health(s) == (False, ["fast: no successful poll for 31s (limit 30s)"])


def test_evaluate_health_is_pure() -> None:
    s = snap(500, ok_age=500, slack_failing="x")
    assert evaluate_health(s) == evaluate_health(s)


# --- the HTTP listener -------------------------------------------------------------------------


class Holder:
    def __init__(self, snapshot: HealthSnapshot) -> None:
        self.snapshot = snapshot

    def __call__(self) -> HealthSnapshot:
        return self.snapshot


@pytest.fixture
def holder() -> Holder:
    return Holder(snap(60, ok_age=60, last_ok_at=T0))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(version="1.2.3")


@pytest.fixture
def server(holder: Holder, metrics: Metrics) -> Iterator[HealthServer]:
    def calendar() -> tuple[int, str, bytes]:
        return 200, "text/calendar; charset=utf-8", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"

    def broken() -> tuple[int, str, bytes]:
        raise RuntimeError("boom")

    srv = HealthServer(
        "127.0.0.1",
        0,
        holder,
        metrics.registry,
        extra_routes={"/calendar.ics": calendar, "/broken": broken},
    )
    srv.start()
    yield srv
    srv.stop()


def get(server: HealthServer, path: str) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


@pytest.mark.integration
def test_port_zero_gets_a_real_port(server: HealthServer) -> None:
    assert server.port > 0


@pytest.mark.integration
def test_healthz_follows_the_snapshot(server: HealthServer, holder: Holder) -> None:
    status, ctype, body = get(server, "/healthz")
    assert (status, ctype) == (200, "application/json")
    doc = json.loads(body)
    assert doc["status"] == "ok"
    assert doc["last_poll_ok_at"] == "2024-05-01T12:00:00+00:00"

    holder.snapshot = replace(holder.snapshot, slack_failing="channel_not_found")
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body)["status"] == "failing"
    assert json.loads(body)["reasons"] == ["slack delivery failing: channel_not_found"]

    holder.snapshot = replace(holder.snapshot, slack_failing=None)
    status, _, body = get(server, "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


@pytest.mark.integration
def test_healthz_includes_per_source_detail(server: HealthServer, holder: Holder) -> None:
    holder.snapshot = snap(60, ok_age=60, last_ok_at=T0, error="HTTP 503", request_age=2.04, timeout=30)
    _, _, body = get(server, "/healthz")
    assert json.loads(body)["sources"] == {
        "servicenow": {
            "poll_interval": 60,
            "last_ok_at": "2024-05-01T12:00:00+00:00",
            "last_ok_age": 60,
            "last_error": "HTTP 503",
            "broken": None,
            "request_age": 2.0,
            "timeout": 30,
        }
    }
    assert json.loads(body)["last_poll_error"] == "servicenow: HTTP 503"


@pytest.mark.integration
def test_metrics_exposes_the_registry(server: HealthServer, metrics: Metrics) -> None:
    metrics.poll_succeeded("servicenow", 7, T0)
    metrics.watch_requests("servicenow", lambda: 4.5)
    metrics.poll_failed("servicenow", "timeout")
    metrics.event("announced")
    metrics.delivery("slack", "ok")
    metrics.set_outbox(2, 30.5)
    metrics.set_windows({"scheduled": 3, "in_progress": 1})
    metrics.set_problems(4)

    status, ctype, body = get(server, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("itsm_connector_polls_total", source="servicenow", result="ok") == 1
    assert value("itsm_connector_polls_total", source="servicenow", result="error") == 1
    assert value("itsm_connector_poll_errors_total", source="servicenow", kind="timeout") == 1
    assert value("itsm_connector_last_success_timestamp_seconds", source="servicenow") == T0.timestamp()
    assert value("itsm_connector_source_request_age_seconds", source="servicenow") == 4.5
    assert value("itsm_connector_tickets_fetched_total", source="servicenow") == 7
    assert value("itsm_connector_events_total", kind="announced") == 1
    assert value("itsm_connector_deliveries_total", sink="slack", result="ok") == 1
    assert value("itsm_connector_outbox_depth") == 2
    assert value("itsm_connector_outbox_oldest_age_seconds") == 30.5
    assert value("itsm_connector_windows", phase="scheduled") == 3
    assert value("itsm_connector_windows", phase="in_progress") == 1
    assert value("itsm_connector_windows", phase="cancelled") == 0
    assert value("itsm_connector_problem_tickets") == 4
    assert value("itsm_connector_build_info", version="1.2.3") == 1


@pytest.mark.integration
def test_extra_routes_404_and_500(server: HealthServer) -> None:
    assert get(server, "/calendar.ics") == (
        200,
        "text/calendar; charset=utf-8",
        b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    )
    assert get(server, "/healthz?verbose=1")[0] == 200
    assert get(server, "/nope")[0] == 404
    assert get(server, "/broken")[0] == 500


@pytest.mark.integration
def test_stop_releases_the_port(holder: Holder, metrics: Metrics) -> None:
    srv = HealthServer("127.0.0.1", 0, holder, metrics.registry)
    srv.start()
    port = srv.port
    srv.stop()
    again = HealthServer("127.0.0.1", port, holder, metrics.registry)
    again.start()
    try:
        assert again.port == port
    finally:
        again.stop()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.integration
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_an_ipv6_listen_address_binds_and_answers(holder: Holder, metrics: Metrics) -> None:
    """``health.listen: "[::1]:9464"`` validated but could not bind: the stdlib server is IPv4 unless told,
    so the daemon exited at start."""
    host, port = HealthSettings(listen="[::1]:0").address
    srv = HealthServer(host, port, holder, metrics.registry)
    srv.start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{srv.port}/healthz", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
    finally:
        srv.stop()


# --- Metrics on its own ------------------------------------------------------------------------


def test_each_metrics_has_its_own_registry() -> None:
    a, b = Metrics("1"), Metrics("1")
    a.event("announced")
    assert a.registry is not b.registry
    assert b.registry.get_sample_value("itsm_connector_events_total", {"kind": "announced"}) is None


def test_set_windows_zeroes_absent_phases() -> None:
    m = Metrics("1")
    m.set_windows({"scheduled": 2, "odd_phase": 1})
    m.set_windows({"ended": 5})
    get_value = m.registry.get_sample_value
    assert get_value("itsm_connector_windows", {"phase": "scheduled"}) == 0
    assert get_value("itsm_connector_windows", {"phase": "odd_phase"}) == 0
    assert get_value("itsm_connector_windows", {"phase": "ended"}) == 5


def test_empty_outbox_has_zero_age() -> None:
    m = Metrics("1")
    m.set_outbox(0, 99.0)
    assert m.registry.get_sample_value("itsm_connector_outbox_oldest_age_seconds") == 0
