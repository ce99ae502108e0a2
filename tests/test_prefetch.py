"""The poll reads ahead (``connector.readahead.ReadAhead``): a thread fetches and normalizes the next
pages, and asks ``task_ci`` about several pages' open tickets at once, while the poll commits pages in order.

What must hold whatever the reader does: each page's cursor is committed with that page's windows and
nothing beyond; an error of the reader comes out of ``poll()`` as the same exception, after the pages
read before it are committed; no thread is left running once ``poll()`` returns or raises. The
integration tests use the ServiceNow simulator over loopback; nothing waits for time to pass.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import connector.readahead as readahead
from connector.domain.target import Target
from connector.errors import SourceBadResponse, SourceUnavailable
from connector.servicenow.client import ServiceNowSource
from connector.servicenow.mapping import SourceMapping
from connector.servicenow.query import ChangePage, Cursor, format_sn_datetime, record_cursor
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.store.sqlite import Store
from connector.sync import Syncer

C1 = Target.slack("C1")

pytestmark = pytest.mark.integration

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
USER, PASSWORD = "svc.prefetch", "prefetch-test-password"
WAIT = 10.0  # a failsafe for Event.wait: the events below are set by the other thread, not by time


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("poll-")]


def syncer(source: Any, store: Store, base_url: str = "https://acme.service-now.com") -> Syncer:
    return Syncer(
        source,
        store,
        name="servicenow",
        base_url=base_url,
        table="change_request",
        filter="",
        mapping=SourceMapping(),
        targets=[C1],
    )


# -- against the simulator ----------------------------------------------------------------------------
class World:
    """The simulator with ``n`` changes (one updated per second, in sys_id order) and, for the open
    ones, a CI in ``task_ci``; a real ``ServiceNowSource`` with pages of ``page_size``."""

    def __init__(self, sim: ServiceNowSimulator, tmp_path: Path, n: int, page_size: int, open_every: int):
        self.sim = sim
        ci = sim.put_record("cmdb_ci", {"name": "db-replica-7"})["sys_id"]
        self.ids: list[str] = []
        for i in range(n):
            is_open = i % open_every == 0
            start = NOW + timedelta(days=1) if is_open else NOW - timedelta(days=30)
            record = make_change(
                f"CHG{7000000 + i}",
                short_description=f"change {i}",
                start=start,
                end=start + timedelta(hours=2),
                state="-2" if is_open else "3",
                sys_id=f"{i + 1:032x}",
                sys_updated_on=format_sn_datetime(NOW - timedelta(hours=1) + timedelta(seconds=i)),
            )
            self.ids.append(sim.put_record("change_request", record)["sys_id"])
            if is_open:
                sim.put_record("task_ci", {"task": self.ids[-1], "ci_item": ci})
        self.source = ServiceNowSource(url=sim.url, username=USER, password=PASSWORD, page_size=page_size)
        self.store = Store(tmp_path / "state.db")
        self.syncer = syncer(self.source, self.store, sim.url)

    def cursor_after(self, index: int) -> Cursor:
        """The cursor of the record at ``index`` (the end of the page it closes)."""
        rows = {r["sys_id"]: r for r in self.sim.records("change_request")}
        return record_cursor(rows[self.ids[index]])

    def requests(self, table: str) -> int:
        return sum(1 for e in self.sim.requests if e.path.endswith("/table/" + table))

    def close(self) -> None:
        self.source.close()
        self.store.close()


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator(username=USER, password=PASSWORD) as s:
        yield s


def test_first_sync_reads_every_page_with_its_cis_in_few_task_ci_requests(
    sim: ServiceNowSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 pages of 5; every 4th change open: task_ci is asked once per 4 pages, not once per page,
    except at the end: the last page alone (what is committed after the last request is small)."""
    monkeypatch.setattr(readahead, "_WAIT_BEAT", 600.0)  # heartbeats here: after commits only
    w = World(sim, tmp_path, n=100, page_size=5, open_every=4)
    try:
        committed: list[Cursor | None] = []
        result = w.syncer.poll(NOW, progress=lambda: committed.append(w.store.cursor("servicenow")))
        assert result.fetched == 100 and len(w.store.tracked()) == 100
        assert w.requests("change_request") == 20
        assert w.requests("task_ci") == 6  # pages 1-4, 5-8, 9-12, 13-16, 17-19, 20
        # one heartbeat per committed page, each after its own page's cursor
        assert committed == [w.cursor_after(i) for i in range(4, 100, 5)]
        by_id = {t.window.sys_id: t.window for t in w.store.tracked()}
        assert all(by_id[w.ids[i]].cis == ("db-replica-7",) for i in range(0, 100, 4))
        assert readers() == []
    finally:
        w.close()


def test_each_page_says_how_many_more_the_instance_counted(sim: ServiceNowSimulator, tmp_path: Path) -> None:
    w = World(sim, tmp_path, n=23, page_size=5, open_every=4)
    try:
        pages = list(w.source.fetch_changes("", None, ["sys_id"], signpost=NOW))
        assert [p.pages_left for p in pages] == [4, 3, 2, 1, 0]
        assert [len(p.records) for p in pages] == [5, 5, 5, 5, 3]
    finally:
        w.close()


def test_an_error_on_page_3_comes_out_of_poll_with_pages_1_and_2_committed(
    sim: ServiceNowSimulator, tmp_path: Path
) -> None:
    """Pages 1 and 2 wait for their CIs (a batch is 4 pages) when page 3 fails: they are still
    committed, page 3 is not, and the error is the source's own SourceUnavailable."""
    w = World(sim, tmp_path, n=30, page_size=5, open_every=3)
    try:
        sim.inject("503", count=1, path_contains="sys_id%3E" + w.ids[9])  # the keyset after page 2
        with pytest.raises(SourceUnavailable, match="503"):
            w.syncer.poll(NOW)
        assert w.store.cursor("servicenow") == w.cursor_after(9)
        by_id = {t.window.sys_id: t.window for t in w.store.tracked()}
        assert sorted(by_id) == sorted(w.ids[:10])
        assert [by_id[w.ids[i]].cis for i in (0, 3, 6, 9)] == [("db-replica-7",)] * 4  # the open ones
        assert readers() == []
        # the next poll continues from there: nothing missed, nothing repeated
        before = len(sim.requests)
        w.syncer.poll(NOW)
        assert len(w.store.tracked()) == 30 and w.store.cursor("servicenow") == w.cursor_after(29)
        first = sim.requests[before]
        assert w.ids[9] in first.params["sysparm_query"]
    finally:
        w.close()


def test_a_failed_task_ci_question_commits_nothing_of_its_pages(
    sim: ServiceNowSimulator, tmp_path: Path
) -> None:
    """The CIs of pages 5-8 cannot be read: pages 1-4 (the first batch) are committed, 5-8 are not."""
    w = World(sim, tmp_path, n=60, page_size=5, open_every=3)
    try:
        sim.inject("500", count=1, path_contains=w.ids[21])  # an open ticket of page 5: only task_ci asks
        with pytest.raises(SourceUnavailable):
            w.syncer.poll(NOW)
        # the first batch's 7 open tickets are two task_ci pages of 5; the second batch's question fails
        assert [e.status for e in sim.requests if e.path.endswith("/task_ci")] == [200, 200, 500]
        assert w.store.cursor("servicenow") == w.cursor_after(19)
        assert sorted(t.window.sys_id for t in w.store.tracked()) == sorted(w.ids[:20])
        assert readers() == []
        w.syncer.poll(NOW)  # the faults are used up: everything is read
        assert len(w.store.tracked()) == 60
    finally:
        w.close()


def test_a_failure_while_committing_stops_the_reader_and_sends_nothing_more(
    sim: ServiceNowSimulator, tmp_path: Path
) -> None:
    """The heartbeat after page 1 raises (as a failing store would): poll() raises it, the reader is
    joined, and it did not read the whole table."""
    w = World(sim, tmp_path, n=200, page_size=5, open_every=3)
    try:

        def progress() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            w.syncer.poll(NOW, progress=progress)
        assert readers() == []
        assert w.store.cursor("servicenow") == w.cursor_after(4)
        # committed, queued, waiting, one put
        limit = 1 + readahead.READ_AHEAD_PAGES + readahead.CI_BATCH_PAGES + 1
        assert w.requests("change_request") <= limit < 40
    finally:
        w.close()


# -- with a scripted source: the reader's timing is controlled ---------------------------------------
def change(i: int, *, open_: bool = False) -> dict[str, str]:
    start = NOW + timedelta(days=1) if open_ else NOW - timedelta(days=3)
    return {
        "sys_id": f"{i:032x}",
        "number": f"CHG{8000000 + i}",
        "short_description": f"change {i}",
        "state": "-2" if open_ else "3",
        "start_date": format_sn_datetime(start),
        "end_date": format_sn_datetime(start + timedelta(hours=1)),
        "sys_updated_on": format_sn_datetime(NOW - timedelta(minutes=10) + timedelta(seconds=i)),
    }


class Scripted:
    """Pages of one record each; ``gate[i]`` (if any) must be set before page ``i`` is handed out;
    ``fail_at`` raises ``error`` instead of that page. Records how far the reader got."""

    def __init__(self, pages: int, fail_at: int | None = None, error: Exception | None = None) -> None:
        self.pages, self.fail_at, self.error = pages, fail_at, error
        self.gate: dict[int, threading.Event] = {}
        self.read = 0
        self.reached: dict[int, threading.Event] = {i: threading.Event() for i in range(pages + 1)}
        self.threads: set[str] = set()

    def fetch_changes(
        self,
        filter: str,
        cursor: Cursor | None,
        fields: list[str],
        *,
        signpost: datetime,
        max_pages: int = 1,
        lookback: timedelta = timedelta(0),
    ) -> Iterator[ChangePage]:
        for i in range(self.pages):
            self.threads.add(threading.current_thread().name)
            if i in self.gate:
                assert self.gate[i].wait(WAIT), f"page {i} was never let through"
            if i == self.fail_at:
                assert self.error is not None
                raise self.error
            record = change(i, open_=i % 2 == 0)
            self.read = i + 1
            self.reached[i].set()
            yield ChangePage([record], record_cursor(record))

    def fetch_by_ids(
        self, sys_ids: Sequence[str], fields: list[str], filter: str = ""
    ) -> list[dict[str, Any]]:
        return []

    def fetch_task_cis(
        self, *, task_ids: Sequence[str] | None = None, updated_since: Cursor | None = None
    ) -> list[tuple[str, str, Cursor]]:
        self.threads.add(threading.current_thread().name)
        return [(t, "ci-" + t[-2:], Cursor(NOW, "")) for t in task_ids or ()]


def test_pages_are_committed_in_order_with_their_cursors_while_the_reader_runs_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When page 1 is committed the reader has already read page 6; the store still says page 1."""
    monkeypatch.setattr(readahead, "_WAIT_BEAT", 600.0)  # heartbeats here: after commits only
    source = Scripted(pages=10)
    store = Store(tmp_path / "state.db")
    s = syncer(source, store)
    seen: list[tuple[Cursor | None, int, int]] = []

    def progress() -> None:
        if not seen:
            assert source.reached[5].wait(WAIT)  # the reader is 5 pages ahead of this commit
        seen.append((store.cursor("servicenow"), len(store.tracked()), source.read))

    try:
        s.poll(NOW, progress=progress)
        cursors = [record_cursor(change(i)) for i in range(10)]
        assert [c for c, _, _ in seen] == cursors  # every page, in order, each with its own cursor
        assert [n for _, n, _ in seen] == list(range(1, 11))  # with exactly its own windows
        assert seen[0][2] >= 6
        # the source is used by one thread, the reader's fetching thread, and never by the poll's
        assert len(source.threads) == 1 and threading.current_thread().name not in source.threads
        by_id = {t.window.sys_id: t.window for t in store.tracked()}
        assert by_id[f"{4:032x}"].cis == ("ci-04",) and by_id[f"{3:032x}"].cis == ()
        assert readers() == []
    finally:
        store.close()


def test_the_readers_exception_is_raised_as_is_after_the_pages_before_it(tmp_path: Path) -> None:
    error = SourceBadResponse("pagination loop detected in change_request: record ... comes before ...")
    source = Scripted(pages=6, fail_at=3, error=error)
    store = Store(tmp_path / "state.db")
    try:
        with pytest.raises(SourceBadResponse) as raised:
            syncer(source, store).poll(NOW)
        assert raised.value is error
        assert store.cursor("servicenow") == record_cursor(change(2))
        assert len(store.tracked()) == 3
        assert readers() == []
    finally:
        store.close()


def test_the_heartbeat_beats_while_a_page_is_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Page 3 is held back until the poll's thread, which has nothing to commit yet (pages 1-2 wait
    for their batch's CIs), has called ``progress`` while waiting: the daemon's watchdog must not fire
    while several pages are read."""
    monkeypatch.setattr(readahead, "_WAIT_BEAT", 0.01)
    source = Scripted(pages=3)
    beats = threading.Event()
    source.gate[2] = beats
    store = Store(tmp_path / "state.db")
    calls: list[int] = []

    def progress() -> None:
        calls.append(len(store.tracked()))
        if len(calls) > len(store.tracked()):  # a beat that is not a commit
            beats.set()

    try:
        syncer(source, store).poll(NOW, progress=progress)
        assert beats.is_set() and len(store.tracked()) == 3
    finally:
        store.close()


class OnePage(Scripted):
    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__(pages=1)
        self.records = records

    def fetch_changes(
        self,
        filter: str,
        cursor: Cursor | None,
        fields: list[str],
        *,
        signpost: datetime,
        max_pages: int = 1,
        lookback: timedelta = timedelta(0),
    ) -> Iterator[ChangePage]:
        yield ChangePage(self.records, record_cursor(self.records[-1]))


def test_a_ticket_twice_in_one_page_is_read_again_not_taken_from_the_pages_first_look(tmp_path: Path) -> None:
    """The store is read once per page (windows, problems); a ticket met again in the same page must
    see what its first occurrence just saved: rejected then fixed clears its problem, and a second
    version reconciles against the first (one announcement, then a reschedule)."""
    bad = {**change(1, open_=True), "start_date": "not a date"}
    first, second = change(2, open_=True), change(2, open_=True)
    second["end_date"] = format_sn_datetime(NOW + timedelta(days=1, hours=3))
    store = Store(tmp_path / "state.db")
    try:
        s = syncer(OnePage([bad, change(1, open_=True), first, second]), store)
        s.first_run = "announce"
        s.poll(NOW)
        assert store.problems() == []
        assert len(store.tracked()) == 2
        kinds = [d.event.kind.value for d in store.open_deliveries(C1)]
        assert kinds.count("announced") == 2 and "rescheduled" in kinds
    finally:
        store.close()
