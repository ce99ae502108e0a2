"""The tick reads the open windows only when one of them can have reached a start, end or reminder
time; a window saved in between (by a poll) wakes it up at that window's next moment."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connector.domain.events import EventKind
from connector.domain.target import Target
from connector.servicenow.mapping import SourceMapping
from connector.servicenow.query import ChangePage, Cursor, format_sn_datetime
from connector.store.sqlite import Store
from connector.sync import Syncer

C1 = Target.slack("C1")

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def change(sys_id: str, start: datetime, hours: int = 2) -> dict[str, str]:
    return {
        "sys_id": sys_id,
        "number": f"CHG{sys_id}",
        "short_description": "patch",
        "state": "-2",
        "start_date": format_sn_datetime(start),
        "end_date": format_sn_datetime(start + timedelta(hours=hours)),
        "sys_updated_on": format_sn_datetime(T0 - timedelta(minutes=1)),
    }


class Source:
    """One page of changes per poll, no affected-CI rows."""

    def __init__(self) -> None:
        self.pages: list[list[dict[str, Any]]] = []

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
        page = self.pages.pop(0) if self.pages else []
        yield ChangePage(page, cursor)

    def fetch_by_ids(
        self, sys_ids: Sequence[str], fields: list[str], filter: str = ""
    ) -> list[dict[str, Any]]:
        return []

    def fetch_task_cis(
        self, *, task_ids: Sequence[str] | None = None, updated_since: Cursor | None = None
    ) -> list[tuple[str, str, Cursor]]:
        return []


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Source, Store, Syncer]]:
    source, store = Source(), Store(tmp_path / "state.db")
    syncer = Syncer(
        source,
        store,
        name="servicenow",
        base_url="https://acme.service-now.com",
        table="change_request",
        filter="",
        mapping=SourceMapping(),
        targets=[C1],
        first_run="announce",
    )
    yield source, store, syncer
    store.close()


def kinds(syncer: Syncer, store: Store) -> list[EventKind]:
    return [d.event.kind for d in store.open_deliveries(C1)]


def test_tick_sleeps_until_the_next_start_and_still_fires_it(
    env: tuple[Source, Store, Syncer], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, store, syncer = env
    source.pages = [[change("a", T0 + timedelta(hours=1))]]
    syncer.poll(T0)
    syncer.tick(T0)  # reads the open windows once: nothing is due before 13:00
    reads = []
    real = store.tracked
    monkeypatch.setattr(store, "tracked", lambda **kw: reads.append(kw) or real(**kw))
    assert syncer.tick(T0 + timedelta(minutes=59)).events == 0
    assert reads == []
    assert syncer.tick(T0 + timedelta(hours=1)).events == 1  # started, on time
    assert kinds(syncer, store) == [EventKind.ANNOUNCED, EventKind.STARTED]
    assert len(reads) == 1


def test_a_window_saved_by_a_poll_wakes_the_tick_at_its_own_start(env: tuple[Source, Store, Syncer]) -> None:
    source, store, syncer = env
    source.pages = [[change("a", T0 + timedelta(hours=5))], [change("b", T0 + timedelta(minutes=30))]]
    syncer.poll(T0)
    syncer.tick(T0)  # quiet until 17:00
    syncer.poll(T0 + timedelta(minutes=10))  # b starts at 12:30
    assert syncer.tick(T0 + timedelta(minutes=30)).events == 1
    assert kinds(syncer, store)[-1] is EventKind.STARTED


def test_a_reminder_time_is_a_moment_too(env: tuple[Source, Store, Syncer]) -> None:
    source, store, syncer = env
    syncer.ticker._reminder_minutes = lambda target: 15
    store.set_targets(("servicenow", "a"), [C1])
    source.pages = [[change("a", T0 + timedelta(hours=1))]]
    syncer.poll(T0)
    syncer.tick(T0)
    assert syncer.tick(T0 + timedelta(minutes=44)).events == 0
    assert syncer.tick(T0 + timedelta(minutes=45)).events == 1
    assert kinds(syncer, store)[-1] is EventKind.REMINDER
