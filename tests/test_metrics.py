"""What an operator graphs and alerts on: ``/metrics`` as the daemon serves it, read with Prometheus's
own parsers (text and OpenMetrics), and the histograms the pipeline feeds.

The wiring tests build the connector exactly as ``run`` does (``build_connector``) and scrape its
listener over loopback; the histogram tests drive the real pipeline against both simulators with
the time injected (``tests/drill``), so the latencies are exact.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from connector.config import Settings
from connector.domain.events import Event, EventKind
from connector.domain.moments import news_at
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.wiring import Connector, build_connector
from tests.drill.drill import CHANNEL, Drill
from tests.drill.drill import T0 as DRILL_T0

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str, *, openmetrics: bool = False) -> Samples:
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in parse(text) for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    """Two sources, Alertmanager and the listener on an ephemeral port, as ``run`` builds them (no
    request is sent anywhere: the scrape reads only the registry and the state database)."""
    settings = Settings.model_validate(
        {
            "servicenow": {"name": "acme", "url": "https://acme.example", "username": "u", "password": "p"},
            "sources": [
                {"name": "globex", "url": "https://globex.example", "username": "u", "password": "p"}
            ],
            "slack": {"token": "xoxb-1", "channel": "C0ACME"},
            "alertmanager": {"url": "http://127.0.0.1:9"},
            "state": {"path": tmp_path / "state.db"},
            "health": {"enabled": True, "listen": "127.0.0.1:0"},
        }
    )
    app = build_connector(settings)
    assert app.health is not None
    app.health.start()
    yield app
    app.close()


def scrape(app: Connector, accept: str | None = None) -> tuple[str, str]:
    assert app.health is not None
    request = urllib.request.Request(f"http://127.0.0.1:{app.health.port}/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()


def test_every_error_series_exists_at_zero_before_the_first_error(connector: Connector) -> None:
    """``rate()`` of a series that appears with its first error misses that error, and an alert
    on ``absent()`` cannot tell "no errors" from "not scraped": every one starts at 0."""
    _, body = scrape(connector)
    samples = samples_of(body)
    for source in ("acme", "globex"):
        for kind in ("auth", "unavailable", "bad_response"):
            assert value(samples, "itsm_connector_poll_errors_total", source=source, kind=kind) == 0
        for result in ("ok", "error"):
            assert value(samples, "itsm_connector_polls_total", source=source, result=result) == 0
        assert value(samples, "itsm_connector_poll_duration_seconds_count", source=source) == 0
    for sink in ("slack", "alertmanager"):
        assert value(samples, "itsm_connector_deliveries_total", sink=sink, result="error") == 0
    assert value(samples, "itsm_connector_deliveries_total", sink="slack", result="posted") == 0


def test_no_created_series_and_the_standard_process_series(connector: Connector) -> None:
    _, body = scrape(connector)
    names = {name for name, _ in samples_of(body)}
    assert not [n for n in names if n.endswith("_created")]
    for expected in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
    ):
        assert expected in names


def test_openmetrics_when_the_scraper_asks_for_it(connector: Connector) -> None:
    """Prometheus asks for OpenMetrics first; a plain client gets the classic text format."""
    ctype, body = scrape(connector, "application/openmetrics-text; version=1.0.0, text/plain;q=0.5")
    assert ctype.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")
    samples = samples_of(body, openmetrics=True)
    assert value(samples, "itsm_connector_poll_errors_total", source="acme", kind="auth") == 0
    assert not [name for name, _ in samples if name.endswith("_created")]

    ctype, body = scrape(connector)
    assert ctype.startswith("text/plain")
    assert "# EOF" not in body


# -- the histograms, fed by the real pipeline -----------------------------------------------------


def sample(d: Drill, name: str, **labels: str) -> float:
    got = d.app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_poll_and_slack_request_durations_are_observed(tmp_path: Path) -> None:
    with Drill(tmp_path) as d:
        d.create()
        d.poll()
        d.drain()
        assert sample(d, "itsm_connector_poll_duration_seconds_count", source=d.source) == 1
        assert sample(d, "itsm_connector_poll_duration_seconds_sum", source=d.source) > 0
        posts = sample(d, "itsm_connector_slack_request_duration_seconds_count", method="chat.postMessage")
        assert posts == len(d.parents()) >= 1
        le = sample(
            d, "itsm_connector_slack_request_duration_seconds_bucket", method="chat.postMessage", le="+Inf"
        )
        assert le == posts


def test_ticket_update_to_slack_latency_per_source_and_channel(tmp_path: Path) -> None:
    """The promise L1 cares about: a ticket changed (its ``sys_updated_on``) → Slack shows it. The
    clock is the drill's fake one, so the latency is exact: created at T0, polled 31 s later."""
    name = "itsm_connector_ticket_to_slack_seconds"
    with Drill(tmp_path) as d:
        sys_id = d.create(start_in=timedelta(minutes=10))  # sys_updated_on = now (the simulator's clock)
        d.time.advance(30)
        d.poll()  # +1 s
        d.drain()
        labels = {"source": d.source, "channel": CHANNEL}
        assert sample(d, f"{name}_count", **labels) == 1  # announced, by the parent message itself
        assert sample(d, f"{name}_sum", **labels) == 31
        assert sample(d, f"{name}_bucket", le="30.0", **labels) == 0
        assert sample(d, f"{name}_bucket", le="60.0", **labels) == 1

        d.time.advance(60)
        d.reschedule(sys_id, 1)  # updated now
        d.time.advance(14)
        d.poll()  # +1 s: rescheduled, 15 s after the update
        d.drain()
        assert sample(d, f"{name}_count", **labels) == 2
        assert sample(d, f"{name}_sum", **labels) == 31 + 15

        # time alone starts it: counted from the planned start, not from the ticket's last update
        planned_start = DRILL_T0 + timedelta(minutes=10 + 60)
        d.time.advance((planned_start - d.time.now).total_seconds() + 4)
        d.poll()  # +1 s
        d.drain()
        assert d.thread_kinds()[0][d.numbers[sys_id]][-1] == "started"
        assert sample(d, f"{name}_count", **labels) == 3
        assert sample(d, f"{name}_sum", **labels) == 31 + 15 + 5


# -- when the news was: pure --------------------------------------------------------------------

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)


def window(updated: timedelta) -> MaintenanceWindow:
    return MaintenanceWindow(
        source="acme",
        sys_id="s1",
        number="CHG1",
        title="t",
        state=State.SCHEDULED,
        planned_start=T0,
        planned_end=T0 + timedelta(hours=2),
        updated_on=T0 + updated,
    )


@pytest.mark.parametrize(
    ("kind", "updated", "produced", "expected"),
    [
        pytest.param(EventKind.ANNOUNCED, -timedelta(hours=1), -timedelta(minutes=59), -timedelta(hours=1)),
        pytest.param(
            EventKind.STARTED, -timedelta(hours=1), timedelta(seconds=5), timedelta(0), id="by-time"
        ),
        pytest.param(
            EventKind.STARTED, timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=1), id="by-edit"
        ),
        pytest.param(
            EventKind.STARTED, -timedelta(hours=2), -timedelta(hours=1), -timedelta(hours=2), id="early-start"
        ),
        pytest.param(EventKind.OVERRAN, -timedelta(hours=1), timedelta(hours=3), timedelta(hours=2)),
        pytest.param(EventKind.ENDED, -timedelta(hours=1), timedelta(hours=2), timedelta(hours=2)),
        pytest.param(EventKind.REMINDER, -timedelta(days=1), -timedelta(minutes=30), -timedelta(minutes=30)),
        pytest.param(EventKind.WITHDRAWN, -timedelta(days=1), timedelta(0), timedelta(0)),
        pytest.param(
            EventKind.CANCELLED, timedelta(seconds=9), timedelta(seconds=3), timedelta(seconds=3), id="skew"
        ),
    ],
)
def test_news_at(kind: EventKind, updated: timedelta, produced: timedelta, expected: timedelta) -> None:
    e = Event(kind, T0 + produced, window(updated), Phase.SCHEDULED)
    assert news_at(e) == T0 + expected
