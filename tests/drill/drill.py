"""Fault drills: the real pipeline against both simulators, one fault kind at a time, and a ledger.

A drill builds the app exactly as the daemon does (``build_app``) with the time injected: one fake
clock drives the wall clock, the monotonic clock of the Slack pacer and of the simulated Slack rate
limit, and every wait (retry backoff, ``Retry-After``, pacing) is recorded and "slept" instantly by
advancing that clock. Nothing here sleeps; only a fault that is really slow (``slow``, beyond a
timeout) costs that timeout in real time.

The scenarios (one script, one fault each) are in ``drill_scenarios``; the counting and the table
in ``drill_ledger``. ``Drill`` reads from the channel and the state what the ledger counts.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from connector.config import Settings
from connector.errors import SourceError
from connector.simulators.servicenow import ServiceNowSimulator, format_snow_datetime, make_change
from connector.simulators.slack import DEFAULT_TOKEN, SimMessage, SlackSimulator
from connector.wiring import Connector, build_connector
from tests.drill.ledger import Row, tally

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
CHANNEL = "C0MAINT01"
TOKEN = DEFAULT_TOKEN  # the Slack simulator's fake token
USER, PASSWORD = "drill", "drill-password-0123456789"


class FakeTime:
    """Wall clock, monotonic clock and an interruptible wait that only moves the clocks forward."""

    def __init__(self, stop: threading.Event, start: datetime = T0) -> None:
        self.stop = stop
        self.now = start
        self.mono = 1_000_000.0
        self.waits: list[float] = []
        self.on_wait: Callable[[float], None] | None = None  # e.g. a "SIGTERM" arriving mid-wait
        self._lock = threading.Lock()

    def clock(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def wait(self, seconds: float | None) -> bool:
        """Like ``Event.wait``: True when shutdown was requested. Records every real wait asked for."""
        if seconds and seconds > 0:
            with self._lock:
                self.waits.append(seconds)
                self.advance(seconds)
            if self.on_wait is not None:
                self.on_wait(seconds)
        return self.stop.is_set()

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now += timedelta(seconds=seconds)


class Drill:
    """Both simulators and the app, with time injected. Use as a context manager."""

    def __init__(
        self,
        state_dir: Path,
        *,
        page_size: int = 100,
        sn_timeout: float = 5.0,
        slack_timeout: float = 5.0,
        post_interval: float = 0.0,
        post_rate: float | None = None,
        first_run: str = "announce",
        filter: str = "",
        password: str = PASSWORD,
        token: str = TOKEN,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.stop = threading.Event()
        self.time = FakeTime(self.stop)
        self.snow = ServiceNowSimulator(username=USER, password=password, clock=self.time.clock).start()
        self.slack = SlackSimulator(
            tokens=[token], clock=self.time.monotonic, post_rate_per_channel=post_rate
        ).start()
        self.settings = Settings.model_validate(
            {
                "servicenow": {
                    "url": self.snow.url,
                    "username": USER,
                    "password": password,
                    "poll_interval": 60,
                    "page_size": page_size,
                    "timeout": sn_timeout,
                    "filter": filter,
                },
                "slack": {
                    "token": token,
                    "channel": CHANNEL,
                    "base_url": self.slack.base_url,
                    "locale": "en",
                    "timezone": "Asia/Seoul",
                    "post_interval": post_interval,
                    "timeout": slack_timeout,
                    "first_run": first_run,
                },
                "state": {"path": state_dir / "state.db"},
            }
        )
        self.app: Connector = build_connector(
            self.settings,
            clock=self.time.clock,
            monotonic=self.time.monotonic,
            stop=self.stop,
            wait=self.time.wait,
        )
        self.numbers: dict[str, str] = {}  # sys_id -> number
        self._seq = 0

    def close(self) -> None:
        self.stop.set()
        self.app.close()
        self.snow.stop()
        self.slack.stop()

    def __enter__(self) -> Drill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the world --------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.app.daemon.syncers[0].name

    @property
    def worker(self) -> Any:
        """The Slack sink worker, as the daemon runs it (classifies, logs on transition, backs off)."""
        return next(s for s in self.app.daemon.sinks if s.name.startswith("slack"))

    def create(self, title: str = "", *, start_in: timedelta = timedelta(days=1), **fields: str) -> str:
        self._seq += 1
        number = f"CHG{9000000 + self._seq}"
        start = self.time.now + start_in
        rec = self.snow.put_record(
            "change_request",
            make_change(
                number,
                short_description=title or f"drill change {self._seq}",
                start=start,
                end=start + timedelta(hours=2),
                sys_id=f"d{self._seq:04d}" + "0" * 27,
                **fields,
            ),
        )
        self.numbers[rec["sys_id"]] = number
        return rec["sys_id"]

    def update(self, sys_id: str, **fields: str) -> None:
        self.snow.update_record("change_request", sys_id, **fields)

    def reschedule(self, sys_id: str, hours: int) -> None:
        rec = next(r for r in self.snow.records("change_request") if r["sys_id"] == sys_id)
        start = datetime.strptime(rec["start_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        start += timedelta(hours=hours)
        self.update(
            sys_id,
            start_date=format_snow_datetime(start),
            end_date=format_snow_datetime(start + timedelta(hours=2)),
        )

    # -- driving ----------------------------------------------------------------------------------
    def poll(self) -> None:
        self.time.advance(1)
        self.app.daemon.poll()
        self.app.daemon.tick()

    def deliver(self) -> float:
        """One delivery pass as the sink worker runs it; returns the backoff it asks for."""
        return float(self.worker.run_once())

    def drain(self, passes: int = 20) -> int:
        """Delivery passes until the outbox is empty (bounded); returns the passes used."""
        for n in range(1, passes + 1):
            self.deliver()
            if self.outbox() == 0 and self.worker.failures == 0:
                return n
        return passes

    def outbox(self) -> int:
        return self.app.store.outbox_stats(self.time.now)[0]

    def cursor(self) -> Any:
        return self.app.store.cursor(self.source)

    def source_error(self) -> str | None:
        return self.app.daemon.state.sources[self.source].last_error

    # -- the ledger -------------------------------------------------------------------------------
    def events(self) -> dict[int, tuple[str, str]]:
        """event id -> (sys_id, kind), from the state database."""
        with _readonly(Path(self.settings.state.path)) as db:
            rows = db.execute("SELECT id, sys_id, kind FROM events").fetchall()
        return {int(i): (str(s), str(k)) for i, s, k in rows}

    def told_by_parent(self) -> set[tuple[str, str]]:
        """(sys_id, ts) of the announcements that their parent message told (no reply of their own)."""
        with _readonly(Path(self.settings.state.path)) as db:
            rows = db.execute(
                "SELECT e.sys_id, d.ts FROM deliveries d JOIN events e ON e.id=d.event_id "
                "WHERE e.kind='announced' AND d.state='done' AND d.ts IS NOT NULL"
            ).fetchall()
        return {(str(s), str(t)) for s, t in rows}

    def parents(self) -> list[SimMessage]:
        return self.slack.parents(CHANNEL)

    def thread_kinds(self) -> tuple[dict[str, list[str]], Counter[str], Counter[str]]:
        """Per window (number): the kinds of its thread replies, in order; and the metadata ids seen
        more than once among parents and among replies."""
        store_id = self.app.store.store_id
        events = self.events()
        announced_by_parent = self.told_by_parent()
        kinds: dict[str, list[str]] = {}
        parent_ids: Counter[str] = Counter()
        reply_ids: Counter[str] = Counter()
        for p in self.parents():
            pid = _meta_id(p)
            if pid is None or not pid.startswith(f"{store_id}:{self.source}:"):
                continue  # a digest, or not ours
            parent_ids[pid] += 1
            sys_id = pid.rsplit(":", 1)[1]
            number = self.numbers.get(sys_id, sys_id)
            thread = kinds.setdefault(number, [])
            if (sys_id, p.ts) in announced_by_parent:
                thread.append("announced")
            for r in p.replies:
                rid = _meta_id(r) or "?"
                reply_ids[rid] += 1
                event_id = int(rid.rsplit(":e", 1)[1]) if ":e" in rid else -1
                owner, kind = events.get(event_id, ("?", "unknown"))
                thread.append(kind if owner == sys_id else f"foreign:{kind}")
        return kinds, parent_ids, reply_ids

    def ledger(self, fault: str, expected: dict[str, list[str]]) -> Row:
        return tally(fault, expected, *self.thread_kinds())


def _meta_id(m: SimMessage) -> str | None:
    payload = (m.metadata or {}).get("event_payload") or {}
    ident = payload.get("id")
    return str(ident) if ident is not None else None


@contextmanager
def _readonly(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        yield db
    finally:
        db.close()


__all__ = [
    "CHANNEL",
    "Drill",
    "FakeTime",
    "SourceError",
]
