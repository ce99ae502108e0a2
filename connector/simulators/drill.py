"""Fault drills: the real pipeline against both simulators, one fault kind at a time, and a ledger.

A drill builds the app exactly as the daemon does (``build_app``) with the time injected: one fake
clock drives the wall clock, the monotonic clock of the Slack pacer and of the simulated Slack rate
limit, and every wait (retry backoff, ``Retry-After``, pacing) is recorded and "slept" instantly by
advancing that clock. Nothing here sleeps; only a fault that is really slow (``slow``, beyond a
timeout) costs that timeout in real time.

Each scenario runs the same script with one fault injected where it hurts, then drains the outbox
and counts, from the channel itself (message metadata) against what the script must produce:

    expected    thread messages the script must produce (one per lifecycle event; the parent
                message itself tells its window's first announcement)
    delivered   expected replies found in the right thread, once or more
    duplicated  replies (or parents) beyond one per event (per window)
    lost        expected replies never found

``python -m bench.fault_table`` prints the table; ``tests/test_faults.py`` asserts on the same rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from connector.app import build_app
from connector.config import Settings
from connector.errors import SourceError
from connector.runtime import App
from connector.simulators.servicenow import ServiceNowSimulator, format_snow_datetime, make_change
from connector.simulators.slack import DEFAULT_TOKEN, SimMessage, SlackSimulator

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


@dataclass
class Row:
    """One line of the fault table."""

    fault: str
    windows: int = 0
    parents: int = 0
    expected: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.parents == self.windows and not self.duplicated and not self.lost


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
        self.app: App = build_app(
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
        return self.app.daemon.status.sources[self.source].last_error

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
        kinds, parent_ids, reply_ids = self.thread_kinds()
        row = Row(fault, windows=len(expected), parents=sum(1 for n in expected if n in kinds))
        row.duplicated += sum(c - 1 for c in parent_ids.values() if c > 1)
        row.duplicated += sum(c - 1 for c in reply_ids.values() if c > 1)
        for number, want in expected.items():
            got = Counter(kinds.get(number, []))
            need = Counter(want)
            hit = sum((got & need).values())
            row.expected += len(want)
            row.delivered += hit
            row.lost += len(want) - hit
            extra = sum((got - need).values())
            row.duplicated += extra
        unexpected = set(kinds) - set(expected)
        row.duplicated += sum(len(kinds[n]) + 1 for n in unexpected)
        return row


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


# -- the script every scenario runs ------------------------------------------------------------------
#: What the script must leave in each window's thread, in order.
SCRIPT_EXPECTED: dict[str, list[str]] = {
    "CHG9000001": ["announced", "rescheduled"],
    "CHG9000002": ["announced", "started"],
    "CHG9000003": ["announced", "cancelled"],
    "CHG9000004": ["announced", "completed"],
    "CHG9000005": ["announced"],
}


def step_a(d: Drill) -> list[str]:
    """Four windows announced, cleanly."""
    ids = [d.create() for _ in range(4)]
    d.poll()
    d.drain()
    return ids


def step_b(d: Drill, ids: list[str]) -> None:
    """A reschedule, a start, a cancellation, a completion and a new window: in the source only."""
    d.reschedule(ids[0], 3)
    d.update(ids[1], state="-1", work_start=format_snow_datetime(d.time.now))
    d.update(ids[2], state="4", active="false")
    d.update(ids[3], state="0", close_code="successful")
    d.create()


Inject = Callable[[Drill], None]


def run_scenario(
    state_dir: Path,
    fault: str,
    *,
    before_poll: Inject | None = None,
    heal: Inject | None = None,
    before_deliver: Inject | None = None,
    fix: Inject | None = None,
    failing_passes: int = 0,
    drill_args: dict[str, Any] | None = None,
) -> tuple[Row, Drill]:
    """The script with one fault. ``before_poll`` injects a ServiceNow fault before step B is polled
    (the first poll may fail; ``heal`` then repairs the source; later polls must catch up);
    ``before_deliver`` injects a Slack fault before step B is delivered; ``fix`` runs after
    ``failing_passes`` delivery passes.
    The drill is returned open (the caller closes it) so tests can look further."""
    d = Drill(state_dir, **(drill_args or {}))
    try:
        ids = step_a(d)
        step_b(d, ids)
        notes: list[str] = []
        cursor_before = d.cursor()
        if before_poll is not None:
            before_poll(d)
        d.poll()
        if d.source_error():
            moved = d.cursor() != cursor_before
            notes.append(f"poll failed: cursor {'MOVED' if moved else 'held'}")
            deferred = d.app.daemon.status.sources[d.source].retry_at
            if deferred is not None:
                notes.append(f"next poll deferred {(deferred - d.time.now).total_seconds():.0f}s")
        if heal is not None:
            heal(d)
        for _ in range(5):
            if not d.source_error():
                break
            d.time.advance(600)  # past any auth back-off or Retry-After
            d.poll()
        if before_deliver is not None:
            before_deliver(d)
        for _ in range(failing_passes):
            d.deliver()
        if failing_passes:
            notes.append(f"{failing_passes} passes refused, outbox kept {d.outbox()}")
        if fix is not None:
            fix(d)
        passes = d.drain()
        waits = [w for w in d.time.waits if w >= 1]
        if waits:
            notes.append("waited " + ", ".join(f"{w:.0f}s" for w in waits[:4]))
        lookups = sum(1 for c in d.slack.calls if c.method.startswith("conversations."))
        if lookups:
            notes.append(f"{lookups} metadata lookup{'s' if lookups > 1 else ''}")
        row = d.ledger(fault, SCRIPT_EXPECTED)
        row.notes = [*notes, f"drained in {passes} pass{'es' if passes > 1 else ''}"]
        if d.outbox():
            row.notes.append(f"outbox NOT empty: {d.outbox()}")
        return row, d
    except BaseException:
        d.close()
        raise


def _sn(kind: str, count: int = 1, **kw: Any) -> Inject:
    return lambda d: d.snow.inject(kind, count=count, path_contains="change_request", **kw)


def _sl(method: str, kind: str, count: int = 1, **kw: Any) -> Inject:
    return lambda d: d.slack.inject(method, kind, count=count, **kw)


def _then(*steps: Inject) -> Inject:
    def run(d: Drill) -> None:
        for s in steps:
            s(d)

    return run


def _password(value: str) -> Inject:
    def run(d: Drill) -> None:
        d.snow.password = value

    return run


def _channel(**state: bool) -> Inject:
    return lambda d: d.slack.set_channel(CHANNEL, **state)


#: fault name -> run_scenario keyword arguments
SCENARIOS: dict[str, dict[str, Any]] = {
    "none (baseline)": {},
    "SN 429 + Retry-After 7": {"before_poll": _sn("429", retry_after=7)},
    "SN 429 + Retry-After 120": {"before_poll": _sn("429", retry_after=120)},
    "SN 500 x3": {"before_poll": _sn("500", 3)},
    "SN 502 (HTML) x3": {"before_poll": _sn("502", 3)},
    "SN 503 + Retry-After 5": {"before_poll": _sn("503", retry_after=5)},
    "SN slow > timeout x3": {
        "before_poll": _sn("slow", 3, delay=0.6),
        "drill_args": {"sn_timeout": 0.3},
    },
    "SN dropped connection x3": {"before_poll": _sn("drop", 3)},
    "SN HTML 200 (hibernating)": {"before_poll": _sn("html")},
    "SN truncated JSON": {"before_poll": _sn("truncated")},
    "SN 401 (password changed)": {"before_poll": _password("rotated-elsewhere"), "heal": _password(PASSWORD)},
    "SN 403 (ACL)": {"before_poll": _sn("403", 2)},
    "SN task_ci 503 x3": {
        "before_poll": lambda d: d.snow.inject("503", count=3, path_contains="task_ci"),
    },
    "Slack 429 + Retry-After 3": {"before_deliver": _sl("chat.postMessage", "429", retry_after=3)},
    "Slack 500 on post": {"before_deliver": _sl("chat.postMessage", "500")},
    "Slack 503 on post x3": {"before_deliver": _sl("chat.postMessage", "503", 3)},
    "Slack 500 on update": {"before_deliver": _sl("chat.update", "500", 2)},
    "Slack dropped connection": {"before_deliver": _sl("chat.postMessage", "drop", 2)},
    "Slack slow > timeout": {
        "before_deliver": _sl("chat.postMessage", "slow", delay=1.5),
        "drill_args": {"slack_timeout": 0.5},
    },
    "Slack HTML 200": {"before_deliver": _sl("chat.postMessage", "html")},
    "Slack fatal_error (HTTP 200)": {"before_deliver": _sl("chat.postMessage", "error", error="fatal_error")},
    "Slack lost response: parent": {"before_deliver": _sl("chat.postMessage", "lost_response")},
    "Slack lost response: reply": {
        "before_deliver": _then(
            _sl("chat.postMessage", "slow", delay=0.0), _sl("chat.postMessage", "lost_response")
        ),
    },
    "Slack lost response: every post": {"before_deliver": _sl("chat.postMessage", "lost_response", 6)},
    "Slack 429 on history lookup": {
        "before_deliver": _then(
            _sl("chat.postMessage", "lost_response"), _sl("conversations.history", "429", retry_after=2)
        ),
    },
    "Slack channel_not_found": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="channel_not_found"),
        "failing_passes": 3,
    },
    "Slack not_in_channel": {
        "before_deliver": _channel(member=False),
        "failing_passes": 3,
        "fix": _channel(member=True),
    },
    "Slack is_archived": {
        "before_deliver": _channel(archived=True),
        "failing_passes": 3,
        "fix": _channel(archived=False),
    },
    "Slack invalid_auth": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="invalid_auth"),
        "failing_passes": 3,
    },
    "Slack token_revoked": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="token_revoked"),
        "failing_passes": 3,
    },
    "Slack missing_scope": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="missing_scope"),
        "failing_passes": 3,
    },
}


def pacing_burst(state_dir: Path, windows: int = 20, *, post_interval: float = 1.0) -> tuple[Row, Drill]:
    """``windows`` new windows at once against Slack's 1 post/s/channel limit (simulated)."""
    d = Drill(state_dir, post_interval=post_interval, post_rate=1.0)
    try:
        for _ in range(windows):
            d.create()
        d.poll()
        start = d.time.mono
        passes = d.drain()
        calls = d.slack.calls
        posts = [c for c in calls if c.method == "chat.postMessage"]
        limited = sum(1 for c in posts if c.status == 429)
        expected = {n: ["announced"] for n in d.numbers.values()}
        row = d.ledger(f"Slack pacing: {windows} windows, interval {post_interval:g}s", expected)
        row.notes = [
            f"{len(posts) - limited} posts in {d.time.mono - start:.0f}s simulated",
            f"{limited} x 429",
            f"drained in {passes} pass{'es' if passes > 1 else ''}",
        ]
        return row, d
    except BaseException:
        d.close()
        raise


def format_table(rows: list[Row]) -> str:
    head = ("fault", "windows", "parents", "expected", "delivered", "duplicated", "lost", "notes")
    lines = [
        (r.fault, str(r.windows), str(r.parents), str(r.expected), str(r.delivered), str(r.duplicated),
         str(r.lost), "; ".join(r.notes))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
    out = []
    for i, cells in enumerate([head, *lines]):
        out.append("  ".join(c.ljust(w) if j in (0, 7) else c.rjust(w) for j, (c, w) in enumerate(
            zip(cells, widths, strict=True))).rstrip())  # fmt: skip
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def as_json(rows: list[Row]) -> str:
    return json.dumps([r.__dict__ for r in rows], indent=2)


__all__ = [
    "CHANNEL",
    "SCENARIOS",
    "SCRIPT_EXPECTED",
    "Drill",
    "FakeTime",
    "Row",
    "SourceError",
    "format_table",
    "pacing_burst",
    "run_scenario",
]
