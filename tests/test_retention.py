"""Retention: windows nothing more is expected of (finished, or never announced and long past) are
deleted ``state.retention`` after they settled, with everything kept about them, in small batches; the
calendar reads only the windows it can show. Real SQLite files; the daemon's refresh with a fake clock.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import connector.store.queries as sqlite_module  # the queries (and their decoding) of both stores
from connector.config import StateSettings
from connector.domain.events import Event, EventKind
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.errors import ConfigError
from connector.store.codec import window_to_dict
from connector.store.schema import MIGRATIONS
from connector.store.sqlite import Store

UTC = timezone.utc
NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=90)
TARGET = Target.slack("C0MAINT01")


def window(sys_id: str, end: datetime, **kw: object) -> MaintenanceWindow:
    base: dict[str, object] = {
        "source": "servicenow",
        "sys_id": sys_id,
        "number": f"CHG{sys_id}",
        "title": "DB 패치",
        "state": State.CLOSED,
        "planned_start": end - timedelta(hours=2),
        "planned_end": end,
        "updated_on": end,
    }
    base.update(kw)
    return MaintenanceWindow(**base)  # type: ignore[arg-type]


def told(store: Store, w: MaintenanceWindow, phase: Phase, at: datetime, *, delivered: bool = True) -> None:
    """A window as the connector leaves it: its row, events and deliveries, message, targets, silence,
    and a reminder mark."""
    with store.transaction():
        store.save_tracked(Tracked(w, phase, announced=True))
        store.enqueue([Event(EventKind.ANNOUNCED, at, w, Phase.SCHEDULED)], [TARGET], at)
        store.enqueue([Event(EventKind.COMPLETED, at, w, phase)], [TARGET], at)
        if delivered:
            for d in store.open_deliveries(TARGET):
                if d.key == w.key:
                    store.mark_delivery(d.event_id, TARGET, "done", at, ts="1.0")
        store.set_targets(w.key, [TARGET])
        store.set_message(w.key, TARGET, ts="1.0", state="posted", rendered="abc")
        store.set_silences(w.key, [{"id": "s1", "state": "expired"}])
        assert w.planned_start is not None
        store.mark_reminded(TARGET, w.key, w.planned_start, at)


def rows(store: Store, sys_id: str) -> dict[str, int]:
    counts = {}
    for table in ("windows", "events", "messages", "targets", "silences"):
        counts[table] = store._q(f"SELECT COUNT(*) FROM {table} WHERE sys_id=?", (sys_id,))[0][0]
    counts["deliveries"] = store._q(
        "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id=d.event_id WHERE e.sys_id=?", (sys_id,)
    )[0][0]
    counts["meta"] = store._q("SELECT COUNT(*) FROM meta WHERE key LIKE ?", (f"%:{sys_id}:%",))[0][0]
    return counts


GONE = {"windows": 0, "events": 0, "messages": 0, "targets": 0, "silences": 0, "deliveries": 0, "meta": 0}


def test_prune_deletes_what_settled_before_the_cutoff_with_everything_about_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    old = NOW - RETENTION - timedelta(days=1)
    told(store, window("old", old), Phase.COMPLETED, old)
    told(store, window("cancelled", old, state=State.CANCELLED), Phase.CANCELLED, old)
    told(store, window("recent", NOW - timedelta(days=10)), Phase.COMPLETED, NOW - timedelta(days=10))
    # planned long ago, but closed (told) last week: its last change counts
    told(store, window("late", old), Phase.COMPLETED, NOW - timedelta(days=7))
    # edited last week, though it ended long ago
    told(store, window("edited", old, updated_on=NOW - timedelta(days=7)), Phase.COMPLETED, old)
    # still running past its planned end: not over
    told(store, window("overrun", old, state=State.IMPLEMENT), Phase.OVERRUN, old)
    # an event never delivered (Slack down for months) is kept
    told(store, window("undelivered", old), Phase.COMPLETED, old, delivered=False)
    with store.transaction():  # seen only as a draft, never announced, long past
        store.save_tracked(Tracked(window("draft", old, state=State.NEW), Phase.PENDING))

    assert store.prune(NOW - RETENTION, limit=100) == 3
    for gone in ("old", "cancelled", "draft"):
        assert rows(store, gone) == GONE, gone
    for kept in ("recent", "late", "edited", "overrun", "undelivered"):
        assert rows(store, kept)["windows"] == 1, kept
        assert rows(store, kept)["events"] == 2, kept
    assert store.prune(NOW - RETENTION, limit=100) == 0

    # an event id is never reused after its row is deleted (Slack metadata names events by id)
    before = store._q("SELECT MAX(id) FROM events")[0][0]
    told(store, window("new", NOW), Phase.COMPLETED, NOW)
    assert store._q("SELECT MIN(id) FROM events WHERE sys_id='new'")[0][0] > before
    store.close()


def test_prune_works_in_batches_each_its_own_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    old = NOW - RETENTION - timedelta(days=30)
    for i in range(7):
        told(store, window(f"w{i}", old + timedelta(hours=i)), Phase.COMPLETED, old)
    assert [store.prune(NOW - RETENTION, limit=3) for _ in range(4)] == [3, 3, 1, 0]
    assert rows(store, "w0")["windows"] == 0
    store.close()


def test_a_database_of_the_previous_schema_gets_its_settled_times(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for n, script in enumerate(MIGRATIONS[:4], start=1):
        db.executescript(script + f";PRAGMA user_version = {n}")
    old, recent = window("old", NOW - RETENTION * 2), window("recent", NOW)
    draft = window("draft", NOW - RETENTION * 2, state=State.NEW, planned_end=None, planned_start=None)
    for w, phase in ((old, "completed"), (recent, "completed"), (draft, "pending")):
        db.execute(
            "INSERT INTO windows(source, sys_id, number, phase, announced, window) VALUES (?,?,?,?,1,?)",
            (*w.key, w.number, phase, json.dumps(window_to_dict(w))),
        )
    db.commit()
    db.close()
    store = Store(path)
    assert store.prune(NOW - RETENTION, limit=100) == 2  # old, and the draft by its last update
    assert [t.window.sys_id for t in store.tracked()] == ["recent"]
    store.close()


def test_the_calendar_reads_only_the_windows_it_can_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.config import Settings
    from connector.wiring import build_connector

    settings = Settings.model_validate(
        {
            "servicenow": {"url": "http://127.0.0.1:9", "username": "u", "password": "p"},
            "slack": {"channel": "C0MAINT01", "token": "xoxb-simulator"},
            "state": {"path": str(tmp_path / "state.db")},
        }
    )
    app = build_connector(settings, clock=lambda: NOW)
    for i in range(40):  # finished weeks ago: no longer in the feed, whatever the retention
        ended = NOW - timedelta(days=20 + i)
        told(app.store, window(f"past{i}", ended), Phase.COMPLETED, ended)
    told(app.store, window("lastweek", NOW - timedelta(days=3)), Phase.COMPLETED, NOW - timedelta(days=3))
    upcoming = window("next", NOW + timedelta(days=2), state=State.SCHEDULED)
    with app.store.transaction():
        app.store.save_tracked(Tracked(upcoming, Phase.SCHEDULED, announced=True))

    decoded: list[str] = []
    tracked = sqlite_module._tracked

    def counting(*row: object) -> Tracked:
        t = tracked(*row)  # type: ignore[arg-type]
        decoded.append(t.window.sys_id)
        return t

    monkeypatch.setattr(sqlite_module, "_tracked", counting)
    feed = app.calendar.render(NOW).decode()
    assert "CHGlastweek" in feed and "CHGnext" in feed and "CHGpast0" not in feed
    assert sorted(decoded) == ["lastweek", "next"]
    app.close()


def test_the_daemon_prunes_one_batch_per_refresh_with_the_configured_retention(tmp_path: Path) -> None:
    from connector.config import Settings
    from connector.wiring import build_connector

    now = [NOW]
    settings = Settings.model_validate(
        {
            "servicenow": {"url": "http://127.0.0.1:9", "username": "u", "password": "p"},
            "slack": {"channel": "C0MAINT01", "token": "xoxb-simulator"},
            "state": {"path": str(tmp_path / "state.db"), "retention": "30d"},
        }
    )
    app = build_connector(settings, clock=lambda: now[0])
    for i in range(3):
        at = NOW - timedelta(days=31 + i)
        told(app.store, window(f"w{i}", at), Phase.COMPLETED, at)
    told(app.store, window("young", NOW - timedelta(days=29)), Phase.COMPLETED, NOW - timedelta(days=29))
    for worker in app.daemon.workers.values():
        worker.prune_batch = 2
    app.daemon.refresh()  # no open window: no request to ServiceNow, then one batch
    assert sorted(t.window.sys_id for t in app.store.tracked()) == ["w0", "young"]  # oldest first
    app.daemon.refresh()
    assert [t.window.sys_id for t in app.store.tracked()] == ["young"]
    now[0] = NOW + timedelta(days=2)
    app.daemon.refresh()
    assert app.store.tracked() == []
    app.close()


@pytest.mark.parametrize(
    ("value", "days"), [("90d", 90), ("26w", 182), ("2160h", 90), (90, 90), ("365d", 365)]
)
def test_retention_is_a_duration_in_days_weeks_or_hours(value: object, days: int) -> None:
    assert StateSettings.model_validate({"retention": value}).retention == timedelta(days=days)


def test_retention_defaults_to_90_days_and_refuses_nonsense(tmp_path: Path) -> None:
    from connector.config import load_settings

    assert StateSettings().retention == timedelta(days=90)
    path = tmp_path / "config.yaml"
    path.write_text(
        "servicenow: {url: 'https://x.service-now.com', username: u, password: p}\n"
        "slack: {channel: C1, token: xoxb-1}\nstate: {retention: 3d}\n"
    )
    with pytest.raises(ConfigError) as bad:
        load_settings(path)
    assert "state.retention" in str(bad.value) and "7d" in str(bad.value)
