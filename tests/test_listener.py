"""The health listener cannot be exhausted (issue 12, item 6): a fixed pool of threads however many
clients connect, a deadline on every connection, 503 at once when every worker is busy, a failing
route answers 500 and the next request is served, and the calendar is rendered once per change.

Real sockets on loopback. Waits are bounded waits for a condition; the connection deadline is either
short (0.3 s) or driven by an injected clock.
"""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

import connector.calendar as calendar
from connector.calendar import CalendarFeed
from connector.domain.events import Event, EventKind
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.health import WORKERS, HealthServer, HealthSnapshot
from connector.listener import BoundedHTTPServer
from connector.metrics import Metrics
from connector.store.sqlite import Store
from tests.support import Clock

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
WAIT = 5.0  # failsafe of every bounded wait below
HALF_A_REQUEST = b"GET /healthz HTTP/1.0\r\nHost: x\r\n"  # the blank line that ends it never comes


def snapshot() -> HealthSnapshot:
    return HealthSnapshot(started_at=T0, uptime=0.0)


def serve(**kw: Any) -> HealthServer:
    def broken() -> tuple[int, str, bytes]:
        raise RuntimeError("boom")

    routes = kw.pop("routes", {"/broken": broken})
    srv = HealthServer("127.0.0.1", 0, snapshot, Metrics("1").registry, routes, **kw)
    srv.start()
    return srv


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def half_open(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        s.sendall(HALF_A_REQUEST)
        socks.append(s)
    return socks


def answered(socks: list[socket.socket], at_least: int) -> dict[socket.socket, bytes]:
    """What the server sent (b"" when it closed without a word), once ``at_least`` sockets heard back."""
    heard: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + WAIT
    while len(heard) < at_least and time.monotonic() < deadline:
        ready, _, _ = select.select([s for s in socks if s not in heard], [], [], 0.1)
        for s in ready:
            heard[s] = s.recv(4096)
    return heard


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


@pytest.fixture
def until() -> Callable[[Callable[[], bool]], bool]:
    def wait(condition: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                return False
            threading.Event().wait(0.01)
        return True

    return wait


def test_many_half_open_connections_hold_no_more_threads_and_the_excess_gets_503() -> None:
    srv = serve()
    threads = threading.active_count()
    socks = half_open(srv.port, 3 * WORKERS)  # WORKERS busy, WORKERS waiting, WORKERS too many
    try:
        heard = answered(socks, at_least=WORKERS)
        assert len(heard) >= WORKERS
        assert all(reply.startswith(b"HTTP/1.0 503") for reply in heard.values()), heard
        assert threading.active_count() == threads  # before: one thread per connection, 3 * WORKERS more
    finally:
        close_all(socks)
        srv.stop()


def test_half_open_connections_are_cut_after_the_timeout_and_serving_goes_on() -> None:
    srv = serve(workers=2, request_timeout=0.3)
    socks = half_open(srv.port, 2)  # both workers (or waiting places, if not picked up yet)
    try:
        heard = answered(socks, at_least=2)
        assert set(heard.values()) == {b""}  # closed without an answer: the request never came
        assert get(srv.port, "/healthz")[0] == 200
    finally:
        close_all(socks)
        srv.stop()


def test_the_deadline_counts_from_accept_even_while_each_read_could_wait_longer(
    until: Callable[[Callable[[], bool]], bool],
) -> None:
    """A client sending a byte every few seconds never lets a read time out: the deadline is the
    connection's in all, and the accepting thread enforces it (here on an injected clock)."""
    now = [0.0]

    class Handler(BaseHTTPRequestHandler):
        timeout = 60  # each read: far longer than the test

    server = BoundedHTTPServer(("127.0.0.1", 0), Handler, workers=1, timeout=10, monotonic=lambda: now[0])
    server.start_workers("test-worker")
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    loop.start()
    (sock,) = half_open(server.server_address[1], 1)
    try:
        assert until(lambda: bool(server._deadlines))  # accepted, being read
        assert not select.select([sock], [], [], 0.2)[0]  # still open: its deadline is 10 s away
        now[0] = 10.0
        assert answered([sock], at_least=1) == {sock: b""}
    finally:
        sock.close()
        server.shutdown()
        server.stop_workers()
        server.server_close()


def test_a_failing_route_answers_500_and_every_worker_carries_on() -> None:
    srv = serve(workers=2)
    threads = threading.active_count()
    try:
        for _ in range(10):
            assert get(srv.port, "/broken") == (500, b"internal error\n")
        assert get(srv.port, "/healthz")[0] == 200
        assert threading.active_count() == threads
    finally:
        srv.stop()


def test_threads_that_cannot_start_are_logged_and_the_listener_serves_with_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What a task limit (systemd's TasksMax) does: the third thread cannot start."""
    start = threading.Thread.start
    started = [0]

    def limited(self: threading.Thread) -> None:
        if started[0] >= 2:
            raise RuntimeError("can't start new thread")
        started[0] += 1
        start(self)

    monkeypatch.setattr(threading.Thread, "start", limited)
    srv = serve(workers=4)  # the accepting thread and one worker start, the rest cannot
    monkeypatch.undo()
    try:
        assert "started 1 of 4 worker threads" in caplog.text
        assert get(srv.port, "/healthz")[0] == 200
    finally:
        srv.stop()


def test_no_thread_at_all_means_no_listener_and_no_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def never(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", never)
    srv = serve()
    monkeypatch.undo()
    assert "health listener off" in caplog.text
    srv.stop()


# -- the calendar: rendered once per change ---------------------------------------------------------

def window(sys_id: str, title: str) -> MaintenanceWindow:
    return MaintenanceWindow(
        source="servicenow",
        sys_id=sys_id,
        number=f"CHG{sys_id}",
        title=title,
        state=State.SCHEDULED,
        planned_start=T0 + timedelta(days=1),
        planned_end=T0 + timedelta(days=1, hours=2),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    for sys_id in ("0001", "0002"):
        t = Tracked(window(sys_id, "patch the routers"), Phase.SCHEDULED, announced=True)
        with store.transaction():
            store.save_tracked(t)
            store.set_targets(t.window.key, [Target.slack("C1")])
            store.enqueue([Event(EventKind.ANNOUNCED, T0, t.window, t.phase)], [Target.slack("C1")], T0)
    yield store
    store.close()


def test_the_calendar_is_rendered_once_for_many_requests_and_again_after_a_change(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(T0)
    renders: list[int] = []
    real = calendar.render_calendar

    def counted(*args: Any, **kw: Any) -> bytes:
        renders.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(calendar, "render_calendar", counted)
    srv = serve(routes=CalendarFeed(store, clock).routes(["C1"]))
    try:

        def fetch_many(path: str) -> set[bytes]:
            bodies: list[bytes] = []

            def client() -> None:
                for _ in range(4):
                    status, body = get(srv.port, path)
                    assert status == 200
                    bodies.append(body)

            clients = [threading.Thread(target=client) for _ in range(8)]
            for c in clients:
                c.start()
            for c in clients:
                c.join(WAIT)
            assert len(bodies) == 32
            return set(bodies)

        (first,) = fetch_many("/calendar.ics")
        assert len(renders) == 1
        assert b"patch the routers" in first

        clock.now = T0 + timedelta(minutes=5)  # time alone: still the same feed
        assert fetch_many("/calendar.ics") == {first}
        assert len(renders) == 1

        changed = Tracked(window("0002", "patch the firewalls"), Phase.SCHEDULED, announced=True)
        with store.transaction():
            store.save_tracked(changed)  # a quiet change: no event, the window only
        (second,) = fetch_many("/calendar.ics")
        assert len(renders) == 2
        assert b"patch the firewalls" in second

        assert fetch_many("/calendar/C1.ics") and len(renders) == 3  # each feed is its own
        assert fetch_many("/calendar/C1.ics") and len(renders) == 3

        clock.now = T0 + timedelta(minutes=20)  # past CALENDAR_MAX_AGE: windows may have aged out
        fetch_many("/calendar.ics")
        assert len(renders) == 4
    finally:
        srv.stop()
