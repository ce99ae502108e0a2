"""The state store, one suite for both databases: each test that takes ``store`` or ``backend`` runs
against a real SQLite file in ``tmp_path`` and against the real PostgreSQL server (a schema of its own,
``tests.pg``): schema, round-trips, outbox, transactions. What only one database has (SQLite's file
format and released versions, PostgreSQL's migration lock) is tested on that one."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.domain.events import Event, EventKind
from connector.domain.reconcile import Tracked, reconcile
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase, Problem, State
from connector.errors import StateError
from connector.servicenow.query import Cursor
from connector.store.api import MessageRef, NotRouted, StateStore
from connector.store.codec import event_from_dict, event_to_dict, window_from_dict, window_to_dict
from connector.store.pg_schema import PG_MIGRATIONS
from connector.store.postgres import PostgresStore
from connector.store.schema import MIGRATIONS
from connector.store.sqlite import Store
from tests import pg

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
TABLES = {"meta", "windows", "cursors", "events", "deliveries", "messages", "problems", "silences"}


def window(sys_id: str = "a1b2c3", **kw: object) -> MaintenanceWindow:
    base: dict[str, object] = {
        "source": "servicenow",
        "sys_id": sys_id,
        "number": f"CHG{sys_id}",
        "title": "DB 패치",
        "state": State.SCHEDULED,
        "planned_start": T0,
        "planned_end": T0 + timedelta(hours=2),
    }
    base.update(kw)
    return MaintenanceWindow(**base)  # type: ignore[arg-type]


#: Every field set, with the text a real ticket can carry.
RICH = window(
    title="야간 DB 패치 🛠️👩‍💻 & <!channel> <@U123>",
    description="설명\n두 번째 줄\t탭 \x00 NUL, \u200b zero-width, ' \" \\ " + "가" * 5000,
    planned_start=datetime(2026, 11, 26, 17, 0, 0, 123456, tzinfo=UTC),
    planned_end=datetime(2026, 11, 26, 19, 30, tzinfo=UTC),
    actual_start=None,
    actual_end=None,
    cis=("db01.예제", "lb01 🧱", "web-01"),
    assignment_group="DBA팀",
    assigned_to="김철수",
    type="normal",
    risk="3 - Moderate",
    priority="2",
    close_code="",
    url="https://acme.service-now.com/change_request.do?sys_id=a1b2c3",
    raw_state="-2",
    updated_on=datetime(2026, 11, 20, 1, 2, 3, tzinfo=UTC),
    extra=(("u_site", "서울"), ("u_note", "")),
)


def event(kind: EventKind, w: MaintenanceWindow = RICH, at: datetime = T0, **kw: object) -> Event:
    return Event(kind, at, w, Phase.SCHEDULED, **kw)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@dataclass
class Backend:
    name: str
    #: a new store on this test's state (the same database each time)
    open: Callable[[], StateStore]
    #: a query through a connection of its own: what is committed
    raw: Callable[[str], list[tuple[object, ...]]]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", lambda: Store(db_path), lambda sql: raw(db_path, sql))
        return
    with pg.fresh_schema() as (url, schema):
        yield Backend(
            "postgresql",
            lambda: PostgresStore(url, schema=schema),
            lambda sql: pg.raw(url, schema, sql),
        )


@pytest.fixture
def store(backend: Backend) -> Iterator[StateStore]:
    s = backend.open()
    yield s
    s.close()


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read through a second connection: what is committed, not what the store's connection sees."""
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# -- schema ------------------------------------------------------------------------------------------


def test_migrates_from_zero(db_path: Path) -> None:
    assert not db_path.exists()

    Store(db_path).close()

    assert raw(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    names = {n for (n,) in raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert names >= TABLES


def test_migrates_an_existing_empty_database(db_path: Path) -> None:
    sqlite3.connect(db_path).close()  # a v0 file, e.g. created by hand
    Store(db_path).close()
    assert raw(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


def test_refuses_a_newer_schema(db_path: Path) -> None:
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.close()
    with pytest.raises(StateError, match="newer than this program"):
        Store(db_path)


def test_reopen_keeps_store_id_and_data(backend: Backend, tmp_path: Path) -> None:
    first = backend.open()
    sid = first.store_id
    first.save_tracked(Tracked(RICH, Phase.SCHEDULED))
    first.close()

    again = backend.open()
    other = Store(tmp_path / "other.db")
    try:
        assert again.store_id == sid
        assert len(sid) == 12 and int(sid, 16) >= 0
        assert other.store_id != sid
        assert again.get_tracked(RICH.key) == Tracked(RICH, Phase.SCHEDULED)
        if backend.name == "sqlite":  # not migrated twice
            assert backend.raw("PRAGMA user_version") == [(len(MIGRATIONS),)]
        else:
            assert backend.raw("SELECT version FROM schema_version ORDER BY 1") == [
                (n,) for n in range(1, len(PG_MIGRATIONS) + 1)
            ]
    finally:
        again.close()
        other.close()


def test_postgresql_migrates_from_zero_the_same_tables_and_columns_as_sqlite(
    db_path: Path, tmp_path: Path
) -> None:
    """One schema on both: version n on PostgreSQL makes the change version n makes on SQLite."""
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)
    Store(db_path).close()
    with pg.fresh_schema() as (url, schema):
        PostgresStore(url, schema=schema).close()
        pg_columns = pg.raw(
            url,
            schema,
            f"SELECT table_name, column_name FROM information_schema.columns WHERE table_schema='{schema}' "
            "AND table_name <> 'schema_version'",
        )
    tables = "SELECT name FROM sqlite_master WHERE type='table' AND name<>'sqlite_sequence'"
    sqlite_columns = [
        (t, c)
        for (t,) in raw(db_path, tables)
        for (_, c, *_) in raw(db_path, f"PRAGMA table_info({t})")
    ]
    assert sorted(pg_columns) == sorted(sqlite_columns)


def test_postgresql_replicas_starting_together_migrate_once() -> None:
    """The migration runner takes an advisory lock: four stores opened at once on an empty schema
    apply each version once and agree on one store id."""
    import threading

    with pg.fresh_schema() as (url, schema):
        stores: list[StateStore] = []
        errors: list[BaseException] = []

        def open_one() -> None:
            try:
                stores.append(PostgresStore(url, schema=schema))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        try:
            assert errors == []
            assert len({s.store_id for s in stores}) == 1
            sql = "SELECT version, COUNT(*) FROM schema_version GROUP BY 1 ORDER BY 1"
            applied = pg.raw(url, schema, sql)
            assert applied == [(n, 1) for n in range(1, len(PG_MIGRATIONS) + 1)]
        finally:
            for s in stores:
                s.close()


def test_postgresql_refuses_a_newer_schema() -> None:
    with pg.fresh_schema() as (url, schema):
        PostgresStore(url, schema=schema).close()
        pg.admin(url, f"INSERT INTO {schema}.schema_version(version) VALUES ({len(PG_MIGRATIONS) + 1})")
        with pytest.raises(StateError, match="newer than this program"):
            PostgresStore(url, schema=schema)


def test_postgresql_location_never_shows_the_password() -> None:
    url = pg.dsn()
    assert pg.split(url)[1]  # the test DSN has one
    with pg.fresh_schema() as (url, schema):
        s = PostgresStore(url, schema=schema)
        try:
            assert s.location == pg.split(url)[0]
            assert pg.split(url)[1] not in s.location
        finally:
            s.close()


#: Schema v1 exactly as first committed (dd91f07): a state.db in the field may be at this version.
SCHEMA_V1_AS_RELEASED = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE windows (
    source TEXT NOT NULL, sys_id TEXT NOT NULL, number TEXT NOT NULL, phase TEXT NOT NULL,
    window TEXT NOT NULL, PRIMARY KEY (source, sys_id));
CREATE TABLE cursors (
    source TEXT NOT NULL, name TEXT NOT NULL, updated_on TEXT NOT NULL, sys_id TEXT NOT NULL,
    PRIMARY KEY (source, name));
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, sys_id TEXT NOT NULL,
    kind TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE deliveries (
    event_id INTEGER NOT NULL REFERENCES events(id), target TEXT NOT NULL, state TEXT NOT NULL,
    ts TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (event_id, target));
CREATE INDEX deliveries_open ON deliveries (target, state, event_id);
CREATE TABLE messages (
    source TEXT NOT NULL, sys_id TEXT NOT NULL, target TEXT NOT NULL, ts TEXT, state TEXT NOT NULL,
    rendered TEXT, PRIMARY KEY (source, sys_id, target));
CREATE TABLE problems (
    source TEXT NOT NULL, sys_id TEXT NOT NULL, number TEXT NOT NULL, problems TEXT NOT NULL,
    first_seen TEXT NOT NULL, PRIMARY KEY (source, sys_id));
CREATE TABLE silences (
    source TEXT NOT NULL, sys_id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (source, sys_id));
PRAGMA user_version = 1;
"""


def test_a_v1_database_as_released_is_migrated(db_path: Path) -> None:
    con = sqlite3.connect(db_path)
    con.executescript(SCHEMA_V1_AS_RELEASED)
    con.execute("INSERT INTO meta VALUES ('store_id', 'feedc0ffee00')")
    for w, phase in ((window("s1"), "scheduled"), (window("s2", state=State.NEW), "pending")):
        con.execute("INSERT INTO windows VALUES (?,?,?,?,?)",
                    (*w.key, w.number, phase, json.dumps(window_to_dict(w))))
    con.commit()
    con.close()

    store = Store(db_path)
    try:
        assert store.store_id == "feedc0ffee00"
        announced, draft = store.get_tracked(("servicenow", "s1")), store.get_tracked(("servicenow", "s2"))
        assert announced is not None and draft is not None
        # A row announced before the upgrade is still announced (its next tick starts it) ...
        assert [e.kind for e in reconcile(announced, window("s1"), T0)[1]] == [EventKind.STARTED]
        # ... and a draft is still unannounced.
        assert [e.kind for e in reconcile(draft, window("s2"), T0 - timedelta(hours=1))[1]] == [
            EventKind.ANNOUNCED
        ]
    finally:
        store.close()


# -- windows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "w",
    [
        pytest.param(RICH, id="korean-emoji-every-field"),
        pytest.param(window(planned_start=None, planned_end=None, updated_on=None), id="no-dates"),
        pytest.param(window(state=State.CLOSED, actual_start=T0, actual_end=T0 + timedelta(hours=3),
                            close_code="successful", cis=()), id="closed-no-cis"),
    ],
)
def test_codec_round_trips_a_window_exactly(w: MaintenanceWindow) -> None:
    back = window_from_dict(json.loads(json.dumps(window_to_dict(w))))

    assert back == w
    assert type(back.cis) is tuple and type(back.extra) is tuple
    assert all(type(kv) is tuple for kv in back.extra)
    assert back.state is w.state
    for name in ("planned_start", "planned_end", "actual_start", "actual_end", "updated_on"):
        value = getattr(back, name)
        assert value is None or value.utcoffset() == timedelta(0), name


def test_codec_round_trips_an_event_with_previous() -> None:
    e = Event(EventKind.RESCHEDULED, T0, RICH, Phase.SCHEDULED, previous=window(cis=("old",)))
    back = event_from_dict(json.loads(json.dumps(event_to_dict(e))))
    assert back == e
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event(EventKind.ANNOUNCED))))).previous is None


def test_save_and_get_tracked_round_trip(store: StateStore, backend: Backend) -> None:
    store.save_tracked(Tracked(RICH, Phase.SCHEDULED))
    assert store.get_tracked(RICH.key) == Tracked(RICH, Phase.SCHEDULED)
    assert store.get_tracked(("servicenow", "unknown")) is None
    assert store.get_tracked(("other-source", RICH.sys_id)) is None

    edited = window(title="다시 🔁", planned_start=None)
    store.save_tracked(Tracked(edited, Phase.IN_PROGRESS))  # upsert
    assert store.get_tracked(edited.key) == Tracked(edited, Phase.IN_PROGRESS)
    assert backend.raw("SELECT number, phase FROM windows") == [(edited.number, "in_progress")]


def test_a_window_never_announced_stays_quiet_after_a_restart(backend: Backend) -> None:
    """Whatever reconcile records for a window first seen already over must survive the store."""
    ended_on_arrival, events = reconcile(None, window(), T0 + timedelta(hours=3))
    assert events == [] and ended_on_arrival is not None
    store = backend.open()
    store.save_tracked(ended_on_arrival)
    store.close()

    store = backend.open()
    try:
        reloaded = store.get_tracked(ended_on_arrival.window.key)
        assert reloaded == ended_on_arrival
        assert store.tracked() == [ended_on_arrival]
        _, events = reconcile(reloaded, window(state=State.CLOSED), T0 + timedelta(hours=4))
        assert events == []  # no "completed" reply for a window that has no message
    finally:
        store.close()


def test_tracked_lists_open_windows_per_source(store: StateStore) -> None:
    rows = {
        "open": Tracked(window("s1"), Phase.SCHEDULED),
        "ended": Tracked(window("s2"), Phase.ENDED),
        "done": Tracked(window("s3", state=State.CLOSED), Phase.COMPLETED),
        "gone": Tracked(window("s4"), Phase.WITHDRAWN),
        "elsewhere": Tracked(window("s5", source="flow"), Phase.IN_PROGRESS),
    }
    for t in rows.values():
        store.save_tracked(t)

    def ids(ts: list[Tracked]) -> set[str]:
        return {t.window.sys_id for t in ts}

    assert ids(store.tracked()) == {"s1", "s2", "s3", "s4", "s5"}
    assert ids(store.tracked(open_only=True)) == {"s1", "s2", "s5"}
    assert ids(store.tracked(open_only=True, source="servicenow")) == {"s1", "s2"}
    assert store.tracked(source="flow") == [rows["elsewhere"]]


def test_phase_counts_are_counted_by_the_database(store: StateStore) -> None:
    for sys_id, phase in [("s1", Phase.SCHEDULED), ("s2", Phase.SCHEDULED), ("s3", Phase.COMPLETED)]:
        store.save_tracked(Tracked(window(sys_id), phase))
    assert store.phase_counts() == {"scheduled": 2, "completed": 1}


# -- cursor ------------------------------------------------------------------------------------------


def test_cursor_round_trip(store: StateStore) -> None:
    assert store.cursor("servicenow") is None
    c = Cursor(datetime(2026, 11, 20, 1, 2, 3, tzinfo=UTC), "9f8e7d")
    kst = timezone(timedelta(hours=9))
    ci = Cursor(datetime(2026, 11, 20, 10, 0, 0, tzinfo=kst), "")

    store.set_cursor("servicenow", c)
    store.set_cursor("servicenow", ci, "task_ci")
    store.set_cursor("servicenow", None)  # nothing fetched: the cursor stays

    got = store.cursor("servicenow")
    assert got == c
    assert got is not None and got.updated_on.utcoffset() == timedelta(0)
    assert store.cursor("servicenow", "task_ci") == Cursor(datetime(2026, 11, 20, 1, 0, tzinfo=UTC), "")
    assert store.cursor("flow") is None

    later = Cursor(c.updated_on + timedelta(seconds=1), "000")
    store.set_cursor("servicenow", later)
    assert store.cursor("servicenow") == later


# -- outbox ------------------------------------------------------------------------------------------


def enqueue_three(store: StateStore) -> list[Event]:
    a, b = window("a"), window("b")
    events = [event(EventKind.ANNOUNCED, a), event(EventKind.ANNOUNCED, b), event(EventKind.STARTED, a)]
    with store.transaction():
        store.enqueue(events[:2], ["slack", "alertmanager"], T0)
        store.enqueue(events[2:], ["slack", "alertmanager"], T0 + timedelta(seconds=30))
    return events


def test_enqueue_then_open_deliveries_in_event_order(store: StateStore) -> None:
    events = enqueue_three(store)

    for target in ("slack", "alertmanager"):
        open_ = store.open_deliveries(target)
        assert [d.event for d in open_] == events
        assert [d.target for d in open_] == [target] * 3
        assert [d.state for d in open_] == ["pending"] * 3
        assert [d.attempts for d in open_] == [0, 0, 0]
        assert [d.key for d in open_] == [e.key for e in events]
        ids = [d.event_id for d in open_]
        assert ids == sorted(ids) and len(set(ids)) == 3
    assert store.open_deliveries("slack", limit=2) == store.open_deliveries("slack")[:2]
    assert store.open_deliveries("nobody") == []


def test_mark_inflight_done_failed_and_count_attempts(store: StateStore, backend: Backend) -> None:
    enqueue_three(store)
    first, second, third = store.open_deliveries("slack")
    now = T0 + timedelta(minutes=1)

    store.mark_delivery(first.event_id, "slack", "inflight", now)
    store.mark_delivery(first.event_id, "slack", "pending", now, error="timeout")  # definite failure
    store.mark_delivery(first.event_id, "slack", "inflight", now)
    store.mark_delivery(second.event_id, "slack", "inflight", now)
    store.mark_delivery(second.event_id, "slack", "failed", now, error="msg_too_long")
    store.mark_delivery(third.event_id, "slack", "inflight", now)
    store.mark_delivery(third.event_id, "slack", "done", now, ts="1700000000.000100")

    (still_open,) = store.open_deliveries("slack")
    assert (still_open.event_id, still_open.state, still_open.attempts) == (first.event_id, "inflight", 2)
    assert store.delivered("slack") == [(third.event, "1700000000.000100")]
    failed = backend.raw(f"SELECT state, attempts, last_error FROM deliveries "
                             f"WHERE target='slack' AND event_id={second.event_id}")
    assert failed == [("failed", 1, "msg_too_long")]
    # The other target is untouched.
    assert [d.state for d in store.open_deliveries("alertmanager")] == ["pending"] * 3


def test_skipped_deliveries_are_not_open(store: StateStore) -> None:
    store.enqueue([event(EventKind.ANNOUNCED)], ["slack"], T0, state="skipped")
    assert store.open_deliveries("slack") == []
    assert store.outbox_stats(T0) == (0, 0.0)


def test_outbox_stats_depth_and_age(store: StateStore) -> None:
    assert store.outbox_stats(T0) == (0, 0.0)
    enqueue_three(store)  # 3 events x 2 targets; the oldest at T0

    assert store.outbox_stats(T0 + timedelta(seconds=90)) == (6, 90.0)
    assert store.outbox_stats(T0 - timedelta(seconds=5)) == (6, 0.0)  # a clock behind: never negative

    first, second, _ = store.open_deliveries("slack")
    for target in ("slack", "alertmanager"):
        store.mark_delivery(first.event_id, target, "done", T0, ts="1.0")
        store.mark_delivery(second.event_id, target, "inflight", T0)
    assert store.outbox_stats(T0 + timedelta(seconds=90)) == (4, 90.0)  # inflight counts as undelivered
    for target in ("slack", "alertmanager"):
        store.mark_delivery(second.event_id, target, "done", T0, ts="2.0")
    assert store.outbox_stats(T0 + timedelta(seconds=90)) == (2, 60.0)


# -- messages ----------------------------------------------------------------------------------------


def test_message_inflight_then_posted(store: StateStore) -> None:
    key, slack, other = RICH.key, Target.slack("C1"), Target.slack("C2")
    store.set_targets(key, [slack])
    assert store.message(key, slack) is None

    store.set_message(key, slack, ts=None, state="inflight")
    assert store.message(key, slack) == MessageRef(None, "inflight", None)

    store.set_message(key, slack, ts="1700000000.000100", state="posted", rendered="fp-1")
    store.set_message(key, slack, ts="1700000000.000100", state="posted", rendered=None)  # keeps fp-1
    got = store.message(key, slack)
    assert got is not None
    assert (got.ts, got.state, got.rendered) == ("1700000000.000100", "posted", "fp-1")
    assert store.message(key, other) is None
    assert store.messages(slack) == {key: got}


def test_a_message_is_recorded_only_in_a_target_the_window_is_routed_to(store: StateStore) -> None:
    """The store's own guard against a leak between customers: whatever a caller asks, a message can
    be sent or posted only where the window's stored route decision sends it."""
    key, acme, netops = RICH.key, Target.slack("C0ACME"), Target.slack("C0NETOPS")
    with pytest.raises(NotRouted):  # never routed anywhere
        store.set_message(key, acme, ts=None, state="inflight")
    store.set_targets(key, [acme])
    store.set_message(key, acme, ts="1.1", state="posted")
    for state in ("inflight", "posted"):
        with pytest.raises(NotRouted, match="not routed to slack:C0NETOPS"):
            store.set_message(key, netops, ts="1.2", state=state)
    assert store.message(key, netops) is None
    store.set_targets(key, [netops])  # rerouted: the old channel's message may be forgotten, not posted
    store.set_message(key, acme, ts=None, state="pending")
    assert store.routed_among(netops, [key, ("x", "y")]) == {key}
    assert store.routed_among(acme, [key]) == set()


# -- problems ----------------------------------------------------------------------------------------


def test_problems_are_recorded_once_and_cleared(store: StateStore) -> None:
    p1 = Problem("CHG1", "planned_end", "missing on a scheduled change")
    p2 = Problem("CHG1", "planned_start", "missing on a scheduled change")
    later = T0 + timedelta(hours=1)

    assert store.set_problems("servicenow", "s1", "CHG1", [p1], T0) is True
    assert store.set_problems("servicenow", "s1", "CHG1", [p1], later) is False
    assert store.set_problems("servicenow", "s1", "CHG1", [p1, p2], later) is True
    assert store.set_problems("servicenow", "s1", "CHG1", [p2, p1], later) is False  # same set, other order

    (row,) = store.problems()
    assert (row.source, row.sys_id, row.number) == ("servicenow", "s1", "CHG1")
    assert row.problems == sorted([str(p1), str(p2)])
    assert row.first_seen == T0  # when it was first rejected, not last

    assert store.clear_problem("servicenow", "s1") is True
    assert store.clear_problem("servicenow", "s1") is False
    assert store.problems() == []
    assert store.set_problems("servicenow", "s1", "CHG1", [p1], later) is True  # rejected again: logged again


# -- transactions ------------------------------------------------------------------------------------


def write_a_cycle(store: StateStore) -> None:
    store.save_tracked(Tracked(RICH, Phase.SCHEDULED))
    store.enqueue([event(EventKind.ANNOUNCED)], ["slack"], T0)
    store.set_cursor("servicenow", Cursor(T0, "a1b2c3"))


@pytest.mark.parametrize("exc", [ValueError, KeyboardInterrupt], ids=["error", "interrupt"])
def test_rollback_on_exception_leaves_nothing(
    store: StateStore, exc: type[BaseException], backend: Backend
) -> None:
    with pytest.raises(exc), store.transaction():
        write_a_cycle(store)
        raise exc("crash in the middle of a cycle")

    assert store.get_tracked(RICH.key) is None
    assert store.open_deliveries("slack") == []
    assert store.cursor("servicenow") is None
    for table in ("windows", "events", "deliveries", "cursors"):
        assert backend.raw(f"SELECT COUNT(*) FROM {table}") == [(0,)], table

    with store.transaction():  # the store is usable afterwards
        write_a_cycle(store)
    assert backend.raw("SELECT COUNT(*) FROM events") == [(1,)]


def test_nested_transaction_joins_the_outer_one(store: StateStore, backend: Backend) -> None:
    with store.transaction():
        with store.transaction():
            write_a_cycle(store)
        # The inner block ended, but nothing is committed until the outer one ends.
        assert backend.raw("SELECT COUNT(*) FROM windows") == [(0,)]
        assert store.get_tracked(RICH.key) is not None  # visible to the store's own connection
    assert backend.raw("SELECT COUNT(*) FROM windows") == [(1,)]


def test_outer_failure_rolls_back_a_finished_inner_transaction(store: StateStore, backend: Backend) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            write_a_cycle(store)
        raise RuntimeError("the outer step failed")

    assert store.get_tracked(RICH.key) is None
    assert store.cursor("servicenow") is None
    assert backend.raw("SELECT COUNT(*) FROM events") == [(0,)]


# -- silences ----------------------------------------------------------------------------------------


def test_silences_round_trip(store: StateStore) -> None:
    key = RICH.key
    assert store.silences(key) == []
    data = [{"id": "5d1f", "matchers": [{"name": "instance", "value": "db01.예제", "isRegex": False}],
             "endsAt": "2026-11-26T19:30:00Z"}]

    store.set_silences(key, data)
    assert store.silences(key) == data

    store.set_silences(key, [])
    assert store.silences(key) == []


def test_windows_saved_in_a_transaction_are_written_together_seen_by_its_reads_and_rolled_back(
    store: StateStore
, backend: Backend) -> None:
    a, b = Tracked(window("w1"), Phase.SCHEDULED), Tracked(window("w2"), Phase.SCHEDULED)
    with store.transaction():
        store.save_tracked(a)
        store.save_tracked(b)
        # not yet written, even as seen from inside the transaction: one write for the page, at its end ...
        assert store._exec("SELECT COUNT(*) FROM windows").fetchall() == [(0,)]  # type: ignore[attr-defined]
        assert store.get_tracked(a.window.key) == a  # ... or before a read of windows
    assert backend.raw("SELECT COUNT(*) FROM windows") == [(2,)]
    with pytest.raises(RuntimeError), store.transaction():
        store.save_tracked(Tracked(window("w3"), Phase.SCHEDULED))
        raise RuntimeError("a failed page")
    with store.transaction():
        pass  # nothing left over from the failed one is written by the next
    assert sorted(t.window.sys_id for t in store.tracked()) == ["w1", "w2"]


def test_retention_and_the_boards_read_on_both_databases(store: StateStore) -> None:
    """``prune`` and ``windows_between`` (retention and the board) run on either database."""
    long_ago = T0 - timedelta(days=400)
    old = window("old", state=State.CLOSED, planned_start=long_ago, planned_end=long_ago, updated_on=long_ago)
    with store.transaction():
        store.save_tracked(Tracked(old, Phase.COMPLETED, announced=True))
        store.enqueue([event(EventKind.COMPLETED, old, at=long_ago)], ["slack:C1"], long_ago, state="skipped")
        store.set_targets(old.key, [Target.slack("C1")])
        store.save_tracked(Tracked(window("now"), Phase.SCHEDULED, announced=True))
        store.set_targets(("servicenow", "now"), [Target.slack("C1")])
        store.mark_reminded(Target.slack("C1"), old.key, long_ago, long_ago)

    board = store.windows_between(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert [(w.tracked.window.sys_id, w.targets) for w in board] == [("now", [Target.slack("C1")])]
    assert store.prune(T0 - timedelta(days=90), limit=10) == 1
    assert [t.window.sys_id for t in store.tracked()] == ["now"]
    assert store.event_counts() == {}
    assert not store.reminded(Target.slack("C1"), old.key, long_ago)
    assert store.prune(T0 - timedelta(days=90), limit=10, source="servicenow") == 0
