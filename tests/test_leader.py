"""Leader election and fencing against the real PostgreSQL server (``tests.pg``), in one process:
two :class:`Leadership` objects are two replicas. Each test has a schema of its own.

The lease expires on the server's clock, so a test that lets one lapse waits (bounded, polling the
lease) for at most a lease of 1 s; a "paused" leader is one whose monotonic clock stands still: it
still believes it leads, which is exactly what a process stopped by SIGSTOP believes when it wakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from connector.domain.reconcile import Tracked
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.errors import NotLeader, StateUnavailable
from connector.leader import Leadership
from connector.servicenow.query import Cursor
from connector.store.postgres import PostgresStore
from tests import pg

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)


class Clock:
    """A monotonic clock that runs with real time until ``pause()``: then it stands still."""

    def __init__(self) -> None:
        self.frozen: float | None = None

    def __call__(self) -> float:
        return self.frozen if self.frozen is not None else time.monotonic()

    def pause(self) -> None:
        self.frozen = time.monotonic()


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    with pg.fresh_schema() as found:
        PostgresStore(found[0], schema=found[1]).close()  # the tables
        yield found


def replica(
    schema: tuple[str, str], lease: float = 1.0, clock: Callable[[], float] = time.monotonic, **kw: Any
) -> Leadership:
    url, name = schema
    return Leadership(
        lambda: psycopg.connect(url, autocommit=True, options=f"-c search_path={name}"),
        lease=lease,
        renew=lease / 3,
        monotonic=clock,
        **kw,
    )


def window(sys_id: str) -> MaintenanceWindow:
    return MaintenanceWindow(
        source="servicenow",
        sys_id=sys_id,
        number=f"CHG{sys_id}",
        title="DB patch",
        state=State.SCHEDULED,
        planned_start=T0,
        planned_end=T0 + timedelta(hours=2),
    )


def wait_until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_one_leader_the_other_waits_and_takes_over_with_a_new_token(schema: tuple[str, str]) -> None:
    changes: list[tuple[str, bool]] = []
    a = replica(schema, on_change=lambda leader: changes.append(("a", leader)))
    b = replica(schema, on_change=lambda leader: changes.append(("b", leader)))
    try:
        assert a.step() is True and a.role == "leader"
        assert b.step() is False and b.role == "standby"
        assert b.current is not None and (b.current.host, b.current.pid) == (a.host, a.pid)
        first = a.fence()
        assert first is not None and first[1] == a.me and b.fence() is None
        assert a.step() is True and a.fence() == first  # renewed: the same token

        a.stop(release=True)  # a clean stop lets the lease go at once
        assert b.step() is True
        second = b.fence()
        assert second is not None and second[2] == first[2] + 1
        assert changes == [("a", True), ("a", False), ("b", True)] or changes == [("a", True), ("b", True)]
    finally:
        a.stop(release=False)
        b.stop(release=False)


def test_a_paused_leader_cannot_write_once_another_took_the_lease(schema: tuple[str, str]) -> None:
    """The fence: the store refuses the old leader's transaction, though its own clock says it leads."""
    url, name = schema
    clock = Clock()
    old, new = replica(schema, clock=clock), replica(schema)
    store = PostgresStore(url, schema=name)
    store.fence = old.fence
    try:
        assert old.step()
        store.set_cursor("servicenow", Cursor(T0, "a"))  # the leader writes
        clock.pause()  # SIGSTOP: it renews no more, and still believes it leads
        wait_until("the standby to take the lapsed lease", new.step)
        assert old.is_leader()  # its view, frozen

        for write in (
            lambda: store.set_cursor("servicenow", Cursor(T0 + timedelta(hours=1), "b")),
            lambda: store.save_tracked(Tracked(window("w1"), Phase.SCHEDULED)),
            lambda: store.mark_delivery(1, "slack:C1", "inflight", T0),
        ):
            with pytest.raises(NotLeader, match="no longer holds token"):
                write()
        assert store.cursor("servicenow") == Cursor(T0, "a")  # nothing moved
        assert store.get_tracked(("servicenow", "w1")) is None
        clock.frozen = None  # it wakes: its own view now says the lease lapsed
        assert not old.is_leader() and old.fence() is None
        with pytest.raises(NotLeader, match="holds no lease"):
            store.set_cursor("servicenow", Cursor(T0 + timedelta(hours=2), "c"))
    finally:
        store.close()
        old.stop(release=False)
        new.stop(release=False)


def test_without_the_fence_the_paused_leader_overwrites_the_new_one(schema: tuple[str, str]) -> None:
    """The same pause without the token check (what fencing prevents): the old leader's stale write
    lands after the new leader's and moves the cursor back."""
    url, name = schema
    clock = Clock()
    old, new = replica(schema, clock=clock), replica(schema)
    old_store, new_store = PostgresStore(url, schema=name), PostgresStore(url, schema=name)
    new_store.fence = new.fence  # the old one writes unfenced
    try:
        assert old.step()
        clock.pause()
        wait_until("the standby to take the lapsed lease", new.step)
        new_store.set_cursor("servicenow", Cursor(T0 + timedelta(hours=1), "new"))
        old_store.set_cursor("servicenow", Cursor(T0, "stale"))  # accepted: nothing checks the token
        assert new_store.cursor("servicenow") == Cursor(T0, "stale")
    finally:
        old_store.close()
        new_store.close()
        old.stop(release=False)
        new.stop(release=False)


def test_the_guard_before_an_outside_request_follows_the_local_view_of_the_lease(
    schema: tuple[str, str],
) -> None:
    clock = Clock()
    a = replica(schema, clock=clock)
    try:
        with pytest.raises(NotLeader):
            a.guard()  # never held
        assert a.step()
        a.guard()
        clock.frozen = time.monotonic() + 5  # five seconds pass unnoticed (a pause): the lease lapsed
        with pytest.raises(NotLeader, match="no request is sent"):
            a.guard()
        unfenced = replica(schema, fenced=False)
        unfenced.guard()  # the test-only switch: nothing is checked
    finally:
        a.stop(release=False)


def test_losing_the_database_steps_the_leader_down_when_its_lease_lapses(schema: tuple[str, str]) -> None:
    url, name = schema
    up = [True]

    def connect() -> psycopg.Connection[Any]:
        if not up[0]:
            raise psycopg.OperationalError("connection refused (simulated)")
        return psycopg.connect(url, autocommit=True, options=f"-c search_path={name}")

    clock = Clock()
    roles: list[bool] = []
    a = Leadership(connect, lease=1.0, renew=0.3, monotonic=clock, on_change=roles.append)
    try:
        assert a.step() and a.reachable()
        up[0] = False
        a._conn.close()  # type: ignore[union-attr]  # the server went away
        assert a.step() is True  # still within its lease: keeps leading for now
        clock.frozen = time.monotonic() + 2  # the lease ran out without a renewal
        assert a.step() is False
        assert roles == [True, False] and a.error is not None and "refused" in a.error
        assert not a.reachable()
    finally:
        a.stop(release=False)


def test_a_store_whose_server_went_away_says_so_and_reconnects(schema: tuple[str, str]) -> None:
    url, name = schema
    store = PostgresStore(url, schema=name)
    try:
        pid = store._q("SELECT pg_backend_pid()")[0][0]
        pg.admin(url, f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(StateUnavailable, match=r"state database .* unavailable"):
            store.set_cursor("servicenow", Cursor(T0, "a"))
        store.set_cursor("servicenow", Cursor(T0, "a"))  # the next one connects again
        assert store.cursor("servicenow") == Cursor(T0, "a")
    finally:
        store.close()
