"""What two replicas on PostgreSQL say about themselves, in one process (``build_connector`` twice on
one schema of the real server): ``/healthz`` answers 200 for a healthy standby and names its role and
the leader, the metrics ``itsm_connector_leader`` and ``..._leadership_changes_total``, and ``status``
shows this host's role and who leads. No request leaves: nothing is started but the election rounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from prometheus_client import generate_latest

from connector.cli.status import collect, render
from connector.config import Settings
from connector.health import health_body
from connector.wiring import Connector, build_connector
from tests import pg


def settings(url: str, password: str | None, schema: str) -> Settings:
    return Settings.model_validate(
        {
            "servicenow": {"url": "https://acme.service-now.com", "username": "u", "password": "p"},
            "slack": {"token": "xoxb-views", "channel": "C0MAINT01"},
            "state": {"url": url, "password": password, "pg_schema": schema},
        }
    )


@pytest.fixture
def pair() -> Iterator[tuple[Connector, Connector, Settings]]:
    with pg.fresh_schema() as (dsn, schema):
        url, password = pg.split(dsn)
        s = settings(url, password, schema)
        a, b = build_connector(s, listen=False), build_connector(s, listen=False)
        try:
            yield a, b, s
        finally:
            a.close()
            b.close()


def metric(app: Connector, name: str) -> float:
    for line in generate_latest(app.metrics.registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


def test_the_standby_is_healthy_says_so_and_names_the_leader(pair: tuple[Connector, Connector, Any]) -> None:
    a, b, s = pair
    assert a.leadership is not None and b.leadership is not None
    assert metric(a, "itsm_connector_leader") == 0  # before any round: nobody leads
    assert a.leadership.step() and not b.leadership.step()

    code, body = health_body(b.view.health_snapshot())
    assert code == 200 and body["status"] == "ok"  # it has polled nothing, and need not
    assert body["role"] == "standby"
    assert body["leader"]["host"] == a.leadership.host and body["leader"]["pid"] == a.leadership.pid
    _, leader_body = health_body(a.view.health_snapshot())
    assert leader_body["role"] == "leader"
    assert b.view.status_line().startswith("standby; ")

    assert metric(a, "itsm_connector_leader") == 1 and metric(b, "itsm_connector_leader") == 0
    assert metric(a, "itsm_connector_leadership_changes_total") == 1
    assert metric(b, "itsm_connector_leadership_changes_total") == 0

    now = datetime.now(timezone.utc)
    report = collect(s, b.store, now, lambda: (code, body))
    text = render(report, now, "test")
    assert "replica    this host: standby" in text
    assert f"leader     {a.leadership.host} (pid {a.leadership.pid}) since " in text
    assert "password" not in text and (pg.split(pg.dsn())[1] or "") not in text


def test_a_standby_that_cannot_reach_the_state_database_is_not_healthy(
    pair: tuple[Connector, Connector, Any],
) -> None:
    _, b, _ = pair
    assert b.leadership is not None
    b.leadership._last_ok = None  # never answered
    b.leadership._error = "connection refused"
    code, body = health_body(b.view.health_snapshot())
    assert code == 503 and body["role"] == "standby"
    assert body["reasons"] == ["state database unreachable: connection refused"]


def test_state_migrate_copies_a_sqlite_state_into_postgresql(tmp_path: Any) -> None:
    """The command line copies every table, keeps the state's id and the events' ids, continues the
    id sequence after them, and refuses a destination that already holds a state."""
    import yaml

    from connector.cli.main import main
    from connector.domain.events import Event, EventKind
    from connector.domain.reconcile import Tracked
    from connector.domain.target import Target
    from connector.domain.window import Phase
    from connector.servicenow.query import Cursor
    from connector.store.postgres import PostgresStore
    from connector.store.sqlite import Store
    from tests.test_store import RICH, T0

    sqlite = Store(tmp_path / "state.db")
    with sqlite.transaction():
        sqlite.save_tracked(Tracked(RICH, Phase.SCHEDULED, announced=True))
        sqlite.set_targets(RICH.key, [Target.slack("C1")])
        sqlite.enqueue([Event(EventKind.ANNOUNCED, T0, RICH, Phase.SCHEDULED)] * 2, ["slack:C1"], T0)
        sqlite.set_cursor("servicenow", Cursor(T0, "a1b2c3"))
        sqlite.set_message(RICH.key, Target.slack("C1"), ts="1.1", state="posted", rendered="fp")
    sid, events = sqlite.store_id, sqlite.open_deliveries("slack:C1")
    sqlite.close()
    with pg.fresh_schema() as (dsn, schema):
        url, password = pg.split(dsn)
        (tmp_path / "pw").write_text(f"{password}\n")
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "servicenow": {"url": "https://acme.service-now.com", "username": "u"},
                    "slack": {"channel": "C1"},
                    "state": {"path": str(tmp_path / "state.db"), "password_file": str(tmp_path / "pw")},
                }
            )
        )
        argv = ["state", "migrate", "-c", str(config), "--to", url, "--schema", schema]
        assert main(argv) == 0
        pgs = PostgresStore(dsn, schema=schema)
        try:
            assert pgs.store_id == sid
            assert pgs.get_tracked(RICH.key) == Tracked(RICH, Phase.SCHEDULED, announced=True)
            assert pgs.cursor("servicenow") == Cursor(T0, "a1b2c3")
            assert pgs.open_deliveries("slack:C1") == events
            assert pgs.message(RICH.key, Target.slack("C1")) is not None
            with pgs.transaction():
                pgs.enqueue([Event(EventKind.STARTED, T0, RICH, Phase.IN_PROGRESS)], ["slack:C1"], T0)
            ids = [d.event_id for d in pgs.open_deliveries("slack:C1")]
            assert ids[-1] > max(d.event_id for d in events)  # never reuses an id
        finally:
            pgs.close()
        assert main(argv) == 1  # not into a state that holds one
