"""Late commits and same-second updates (issue 12): each poll reads again the last ``lookback``
seconds, in the same one request, and skips what it already applied by ``sys_mod_count`` (or by a
digest of the fields, for an ITSM without it).

The integration tests poll the ServiceNow simulator over loopback with a real ``ServiceNowSource``,
a real store and a fixed clock: an update that the cursor alone would miss is stamped on purpose with
a second already read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.config import Settings
from connector.domain.events import EventKind
from connector.domain.target import Target
from connector.servicenow.client import ServiceNowSource
from connector.servicenow.lookback import Seen, default_lookback, lookback_start, record_version
from connector.servicenow.mapping import FieldMap, SourceMapping
from connector.servicenow.query import Cursor, format_sn_datetime
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.store.sqlite import Store
from connector.sync import Syncer
from tests.support import Clock

UTC = timezone.utc
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
LOOKBACK = timedelta(seconds=60)
TARGET = Target.slack("C1")
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


# -- pure: where the read starts, what a version is, what is skipped ------------------------------------
@pytest.mark.parametrize(
    ("cursor", "lookback", "start"),
    [
        pytest.param(None, LOOKBACK, None, id="first-sync-reads-everything"),
        pytest.param(Cursor(T0, "b"), timedelta(0), Cursor(T0, "b"), id="no-lookback"),
        pytest.param(
            Cursor(T0 + timedelta(seconds=1), "b"),
            LOOKBACK,
            Cursor(T0 + timedelta(seconds=2) - LOOKBACK, ""),
            id="recent-cursor-starts-a-lookback-earlier",
        ),
        pytest.param(
            Cursor(T0 - timedelta(days=3), "b"),
            LOOKBACK,
            Cursor(T0 - timedelta(days=3), "b"),
            id="stale-cursor-is-earlier-already",
        ),
    ],
)
def test_lookback_start(cursor: Cursor | None, lookback: timedelta, start: Cursor | None) -> None:
    assert lookback_start(cursor, T0 + timedelta(seconds=2, microseconds=500), lookback) == start


def test_record_version_is_the_mod_count_or_a_digest_of_the_fields() -> None:
    assert record_version({"sys_id": "a", "sys_mod_count": "7"}, "sys_mod_count") == "m:7"
    assert record_version({"sys_id": "a", "sys_mod_count": {"value": "7"}}, "sys_mod_count") == "m:7"
    one = record_version({"sys_id": "a", "summary": "x"}, "sys_mod_count")
    assert one.startswith("d:")
    assert record_version({"summary": "x", "sys_id": "a"}, "sys_mod_count") == one  # order: irrelevant
    assert record_version({"sys_id": "a", "summary": "y"}, "sys_mod_count") != one


def test_seen_skips_only_the_version_applied_and_remembers_recent_records() -> None:
    stamp = format_sn_datetime(T0)
    old = format_sn_datetime(T0 - timedelta(hours=1))
    seen = Seen({"a": "m:1", "b": "m:1"}, floor=T0 - LOOKBACK)
    records = [
        {"sys_id": "a", "sys_updated_on": stamp, "sys_mod_count": "1"},  # applied: skipped
        {"sys_id": "b", "sys_updated_on": stamp, "sys_mod_count": "2"},  # updated since
        {"sys_id": "c", "sys_updated_on": old, "sys_mod_count": "0"},  # new, too old to be read again
        {"sys_id": "", "sys_updated_on": stamp},  # broken: normalize reports it
    ]
    fresh, remember = seen.sort(records)
    assert [r["sys_id"] for r in fresh] == ["b", "c", ""]
    assert remember == [("b", stamp, "m:2")]


# -- against the simulator -------------------------------------------------------------------------------

class World:
    def __init__(self, tmp_path: Path, *, page_size: int = 500, mapping: SourceMapping | None = None):
        self.clock = Clock(T0)
        self.sim = ServiceNowSimulator(clock=self.clock).start()
        self.source = ServiceNowSource(
            url=self.sim.url, username="admin", password="secret", page_size=page_size
        )
        self.store = Store(tmp_path / "state.db")
        self.syncer = Syncer(
            self.source,
            self.store,
            name="servicenow",
            base_url=self.sim.url,
            table="change_request",
            filter="",
            mapping=mapping or SourceMapping(),
            targets=[TARGET],
            first_run="announce",
            lookback=LOOKBACK,
        )

    def change(self, n: int, *, updated: datetime, **fields: str) -> str:
        start = T0 + timedelta(days=1)
        record = make_change(
            f"CHG{n:07d}",
            short_description=f"change {n}",
            start=start,
            end=start + timedelta(hours=2),
            sys_id=f"{n:032x}",
            sys_updated_on=format_sn_datetime(updated),
            **fields,
        )
        return self.sim.put_record("change_request", record)["sys_id"]

    def reschedule(self, sys_id: str, *, stamped: datetime, hours: int = 3) -> None:
        end = format_sn_datetime(T0 + timedelta(days=1, hours=hours))
        self.sim.update_record(
            "change_request", sys_id, end_date=end, sys_updated_on=format_sn_datetime(stamped)
        )

    def poll(self, at: timedelta) -> Counter[str]:
        """Poll at ``T0 + at``; the ServiceNow requests it made, by table."""
        self.clock.now = T0 + at
        self.sim.reset_requests()
        self.syncer.poll(self.clock.now)
        return Counter(e.path.rsplit("/", 1)[-1] for e in self.sim.requests)

    def events(self, sys_id: str) -> list[EventKind]:
        return [d.event.kind for d in self.store.open_deliveries(TARGET) if d.event.window.sys_id == sys_id]

    def close(self) -> None:
        self.source.close()
        self.store.close()
        self.sim.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


@pytest.mark.integration
def test_a_second_update_in_a_second_already_read_is_delivered(world: World) -> None:
    x = world.change(1, updated=T0)
    world.poll(timedelta(seconds=1))  # reads X at T0; the cursor is now (T0, X)
    assert world.events(x) == [EventKind.ANNOUNCED]
    assert world.store.cursor("servicenow") == Cursor(T0, x)

    world.reschedule(x, stamped=T0)  # the same second as the version read (committed just after)
    world.poll(timedelta(seconds=2))
    assert world.events(x) == [EventKind.ANNOUNCED, EventKind.RESCHEDULED]


@pytest.mark.integration
def test_a_late_commit_stamped_with_a_second_already_polled_is_delivered(world: World) -> None:
    y = world.change(1, updated=T0 - timedelta(seconds=30))
    x = world.change(2, updated=T0)
    world.poll(timedelta(seconds=1))
    assert world.store.cursor("servicenow") == Cursor(T0, x)

    world.reschedule(y, stamped=T0 - timedelta(seconds=1))  # a long transaction commits late
    z = world.change(0, updated=T0)  # a new one, in the cursor's second but sorted before X
    world.poll(timedelta(seconds=31))
    assert world.events(y) == [EventKind.ANNOUNCED, EventKind.RESCHEDULED]
    assert world.events(z) == [EventKind.ANNOUNCED]
    assert world.store.cursor("servicenow") == Cursor(T0, x)  # never moved back


@pytest.mark.integration
def test_an_idle_poll_is_still_one_change_request_with_the_lookback_in_it(world: World) -> None:
    world.change(1, updated=T0)
    world.poll(timedelta(seconds=1))
    world.poll(timedelta(seconds=2))  # the task_ci cursor is set: from here on, one question each

    requests = world.poll(timedelta(seconds=20))  # re-reads the ticket of T0: skipped
    assert requests == {"change_request": 1, "task_ci": 1}
    (query,) = [e.params["sysparm_query"] for e in world.sim.requests if e.path.endswith("change_request")]
    assert query.startswith(f"sys_updated_on>={format_sn_datetime(T0 + timedelta(seconds=20) - LOOKBACK)}")

    assert world.poll(timedelta(minutes=10)) == {"change_request": 1, "task_ci": 1}  # nothing recent


@pytest.mark.integration
def test_a_record_read_again_unchanged_makes_no_event_and_no_write(world: World) -> None:
    x = world.change(1, updated=T0)
    world.poll(timedelta(seconds=1))
    world.poll(timedelta(seconds=2))
    events = len(world.store.open_deliveries(TARGET))
    statements: list[str] = []
    world.store._db.set_trace_callback(statements.append)
    applied: list[str] = []
    apply = world.syncer.applier.apply
    world.syncer.applier.apply = (  # type: ignore[method-assign]
        lambda raw, *a, **kw: applied.append(str(raw.get("sys_id"))) or apply(raw, *a, **kw)
    )

    world.poll(timedelta(seconds=30))  # X is in the lookback, at the sys_mod_count applied

    world.store._db.set_trace_callback(None)
    assert applied == []
    assert len(world.store.open_deliveries(TARGET)) == events
    written = [s for s in statements if s.lstrip().upper().startswith(WRITES)]
    assert all("INTO cursors" in s for s in written), written  # the cursor only, as in any poll
    assert world.store.seen_since("servicenow", "") == {x: "m:0"}


@pytest.mark.integration
def test_the_lookback_pages_like_any_read_and_the_cursor_never_goes_back(tmp_path: Path) -> None:
    world = World(tmp_path, page_size=2)
    try:
        ids = [world.change(n, updated=T0 + timedelta(seconds=n)) for n in range(1, 6)]
        world.poll(timedelta(seconds=10))
        cursor = world.store.cursor("servicenow")
        assert cursor == Cursor(T0 + timedelta(seconds=5), ids[-1])

        world.reschedule(ids[0], stamped=T0 + timedelta(seconds=1))  # the oldest, late, same second
        requests = world.poll(timedelta(seconds=11))
        assert requests["change_request"] == 3  # five records again, two a page
        assert [k for i in ids for k in world.events(i)].count(EventKind.RESCHEDULED) == 1
        assert world.events(ids[0]) == [EventKind.ANNOUNCED, EventKind.RESCHEDULED]
        assert world.store.cursor("servicenow") == cursor
    finally:
        world.close()


@pytest.mark.integration
def test_without_sys_mod_count_records_are_compared_by_a_digest(tmp_path: Path) -> None:
    """A ServiceNow-style ITSM without ``sys_mod_count``: here a field the instance does not have,
    so the records come without it."""
    world = World(tmp_path, mapping=SourceMapping(fields=FieldMap(mod_count="u_no_such_field")))
    try:
        x = world.change(1, updated=T0)
        world.poll(timedelta(seconds=1))
        world.poll(timedelta(seconds=2))
        assert "u_no_such_field" not in str(world.sim.records("change_request"))

        world.reschedule(x, stamped=T0)
        world.poll(timedelta(seconds=3))
        assert world.events(x) == [EventKind.ANNOUNCED, EventKind.RESCHEDULED]
        world.poll(timedelta(seconds=4))  # read again, same digest: nothing
        assert world.events(x) == [EventKind.ANNOUNCED, EventKind.RESCHEDULED]
        (version,) = world.store.seen_since("servicenow", "").values()
        assert version.startswith("d:")
    finally:
        world.close()


def test_the_default_lookback_is_two_poll_intervals_or_a_minute() -> None:
    def settings(**sn: object) -> Settings:
        return Settings.model_validate(
            {
                "servicenow": {"url": "https://acme.service-now.com", "username": "u", **sn},
                "slack": {"channel": "C1"},
            }
        )

    assert settings().primary_source.lookback_seconds == 120
    assert settings(poll_interval=10).primary_source.lookback_seconds == 60
    assert settings(lookback=300).primary_source.lookback_seconds == 300
    assert settings(lookback=0).primary_source.lookback_seconds == 0
    assert default_lookback(45) == 90
