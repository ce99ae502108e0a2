"""kill -9 the real daemon at seeded random instants during a burst of changes; SIGTERM it cleanly.

Both simulators run in this process, on real time; the daemon is the real command
(``python -m connector run -c config.yaml``) in a child process. While a driver thread makes a burst
of ticket changes (creates, reschedules, Implement, Review, Cancelled), the daemon is killed with
SIGKILL at instants drawn from ``random.Random(SEED)`` and started again each time. Then it is let
drain, and the channel is checked exactly against the state database and the tickets:

* one parent per announced window, and none for anything else;
* one thread reply per event in the ``events`` table, in the window's own thread, in order;
* no metadata id twice;
* every parent shows its ticket's final state (the same rendering the daemon would make now).

Waiting for a real process is bounded by deadlines; nothing is asserted after a fixed sleep.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import Settings
from connector.domain.window import Phase
from connector.simulators.servicenow import ServiceNowSimulator, format_snow_datetime, make_change
from connector.simulators.slack import SimMessage, SlackSimulator
from connector.slack.render import render_parent
from connector.store.codec import window_from_dict
from connector.wiring import render_context
from tests.support import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0MAINT01"
TOKEN = "xoxb-crash-test-token"
USER, PASSWORD = "crash", "crash-test-password"
SEED = 20261126
KILLS = 12
FINAL = {"-2": Phase.SCHEDULED, "-1": Phase.IN_PROGRESS, "0": Phase.COMPLETED, "4": Phase.CANCELLED}


class Daemon:
    """The real daemon in a child process; its log lines are appended to one file across restarts."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, **extra_env: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ITSM_", "NOTIFY_", "WATCHDOG_"))}
        env.update(extra_env)
        env.pop("JOURNAL_STREAM", None)
        env.pop("CREDENTIALS_DIRECTORY", None)
        with self.log.open("a") as out:
            out.write(f"--- start {self.starts}\n")
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "connector", "run", "-c", str(self.config)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.starts += 1
        marker = f"--- start {self.starts - 1}\n"
        wait_for("the daemon to start", lambda: " started: " in self.text().split(marker, 1)[-1], 20)

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.text()[-2000:]
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def sigterm(self) -> tuple[int, float]:
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return rc, time.monotonic() - began

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""




@pytest.fixture
def sims() -> Iterator[tuple[ServiceNowSimulator, SlackSimulator]]:
    with (
        ServiceNowSimulator(username=USER, password=PASSWORD) as snow,
        SlackSimulator(tokens=[TOKEN]) as slack,
    ):
        yield snow, slack


def write_config(
    tmp_path: Path, snow: ServiceNowSimulator, slack: SlackSimulator, **slack_extra: Any
) -> Path:
    config = {
        "servicenow": {
            "url": snow.url,
            "username": USER,
            "password": PASSWORD,
            "poll_interval": 1,
            "ci_refresh_interval": 10,
            "timeout": 5,
            "page_size": 5,
        },
        "slack": {
            "token": TOKEN,
            "channel": CHANNEL,
            "base_url": slack.base_url,
            "locale": "en",
            "timezone": "Asia/Seoul",
            "post_interval": 0.02,
            "timeout": 5,
            "first_run": "announce",
            **slack_extra,
        },
        "state": {"path": str(tmp_path / "state.db")},
        "log": {"level": "INFO", "format": "text"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# -- the burst ----------------------------------------------------------------------------------------
def burst(
    snow: ServiceNowSimulator, rng: random.Random, tickets: int, updates: int
) -> list[Callable[[], None]]:
    """Creates first (interleaved with early updates), then reschedules and state changes."""
    now = datetime.now(timezone.utc)
    state: dict[str, str] = {}
    ops: list[Callable[[], None]] = []

    def create(i: int) -> Callable[[], None]:
        def run() -> None:
            start = now + timedelta(days=1, hours=rng.randrange(48))
            sys_id = f"c{i:04d}" + "0" * 27
            snow.put_record(
                "change_request",
                make_change(
                    f"CHG{7100000 + i}",
                    short_description=f"crash test change {i}",
                    start=start,
                    end=start + timedelta(hours=2),
                    sys_id=sys_id,
                ),
            )
            state[sys_id] = "-2"

        return run

    def update() -> None:
        open_ = [s for s, st in state.items() if st in ("-2", "-1")]
        if not open_:
            return
        sys_id = rng.choice(open_)
        st = state[sys_id]
        choice = rng.random()
        if st == "-2" and choice < 0.45:
            rec = next(r for r in snow.records("change_request") if r["sys_id"] == sys_id)
            start = datetime.strptime(rec["start_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            start += timedelta(hours=rng.choice([-5, -2, 1, 3, 7]))
            snow.update_record(
                "change_request",
                sys_id,
                start_date=format_snow_datetime(start),
                end_date=format_snow_datetime(start + timedelta(hours=2)),
            )
        elif st == "-2" and choice < 0.8:
            snow.update_record(
                "change_request",
                sys_id,
                state="-1",
                work_start=format_snow_datetime(datetime.now(timezone.utc)),
            )
            state[sys_id] = "-1"
        elif st == "-1" and choice < 0.6:
            snow.update_record("change_request", sys_id, state="0", close_code="successful", active="false")
            state[sys_id] = "0"
        else:
            snow.update_record("change_request", sys_id, state="4", active="false")
            state[sys_id] = "4"

    creates = [create(i) for i in range(tickets)]
    for i, c in enumerate(creates):
        ops.append(c)
        if i >= 4 and rng.random() < 0.4:
            ops.append(update)
    while len(ops) < tickets + updates:
        ops.append(update)
    return ops


# -- the exact check ----------------------------------------------------------------------------------
def read_state(db_path: Path) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        store_id = db.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0]
        windows = {
            sys_id: (window_from_dict(json.loads(w)), Phase(phase), bool(announced))
            for sys_id, w, phase, announced in db.execute(
                "SELECT sys_id, window, phase, announced FROM windows"
            )
        }
        events = db.execute(
            "SELECT e.id, e.sys_id, e.kind, d.state, d.ts "
            "FROM events e JOIN deliveries d ON d.event_id = e.id WHERE d.target = ? ORDER BY e.id",
            (f"slack:{CHANNEL}",),
        ).fetchall()
        parents = Counter(state for (state,) in db.execute("SELECT state FROM messages"))
    finally:
        db.close()
    return {"store_id": store_id, "windows": windows, "events": events, "parents": parents}


def meta_id(m: SimMessage) -> str:
    return str(((m.metadata or {}).get("event_payload") or {}).get("id", "?"))


def channel_problems(
    snow: ServiceNowSimulator,
    slack: SlackSimulator,
    db_path: Path | Callable[[], dict[str, Any]],
    settings: Settings,
) -> tuple[list[str], dict[str, int]]:
    """Everything that is not exactly right, and the counts of what is. ``db_path``: the SQLite state,
    or a function that reads the state as :func:`read_state` does (tests/test_replicas.py: PostgreSQL)."""
    st = read_state(db_path) if isinstance(db_path, Path) else db_path()
    store_id, windows, events = st["store_id"], st["windows"], st["events"]
    problems: list[str] = []
    tickets = {r["sys_id"]: r for r in snow.records("change_request")}
    parents = slack.parents(CHANNEL)
    ids = Counter(meta_id(p) for p in parents) + Counter(meta_id(r) for p in parents for r in p.replies)
    problems += [f"metadata id {i} appears {n} times" for i, n in ids.items() if n > 1]
    by_window = {meta_id(p).rsplit(":", 1)[-1]: p for p in parents}
    source = "servicenow"

    for sys_id, rec in tickets.items():
        if sys_id not in windows:
            problems.append(f"{rec['number']}: not in the state database")
            continue
        w, phase, announced = windows[sys_id]
        if w.updated_on is None or format_snow_datetime(w.updated_on) != rec["sys_updated_on"]:
            problems.append(f"{rec['number']}: state database has an older version")
        want_phase = FINAL[rec["state"]]
        if announced and phase is not want_phase:
            problems.append(f"{rec['number']}: phase {phase.value}, ticket says {want_phase.value}")
        if rec["state"] in ("-2", "-1") and not announced:
            problems.append(f"{rec['number']}: open window never announced")
        parent = by_window.get(sys_id)
        if announced != (parent is not None):
            problems.append(f"{rec['number']}: announced={announced} but parent={'yes' if parent else 'no'}")
        if parent is None:
            continue
        if meta_id(parent) != f"{store_id}:{source}:{sys_id}":
            problems.append(f"{rec['number']}: parent metadata {meta_id(parent)}")
        ctx = render_context(settings, _NoSilences(), CHANNEL)(w)
        want = render_parent(w, phase, datetime.now(timezone.utc), ctx)
        drop = [b for b in want.blocks if b.get("type") != "context"]
        got = [b for b in parent.blocks if b.get("type") != "context"]
        if (parent.text, got) != (want.text, drop):
            problems.append(f"{rec['number']}: parent does not show the final state")
        mine = [(i, k, ts) for i, s, k, _, ts in events if s == sys_id]
        # the first event, the announcement, is told by the parent itself; each other one by a reply
        if [(k, ts) for _, k, ts in mine[:1]] != [("announced", parent.ts)]:
            problems.append(f"{rec['number']}: thread starts with {mine[:1]}, not the parent {parent.ts}")
        want_replies = [f"{store_id}:e{i}" for i, _, _ in mine[1:]]
        got_replies = [meta_id(r) for r in parent.replies]
        if got_replies != want_replies:
            problems.append(f"{rec['number']}: thread {got_replies} != events {want_replies}")
        kinds = [k for _, k, _ in mine]
        final_kind = {"-1": "started", "0": "completed", "4": "cancelled"}.get(rec["state"])
        if final_kind and final_kind not in kinds:
            problems.append(f"{rec['number']}: no {final_kind} reply in {kinds}")
    undelivered = [e for e in events if e[3] != "done"]
    if undelivered:
        problems.append(f"{len(undelivered)} events not delivered: {undelivered[:5]}")
    unposted = sum(n for state, n in st["parents"].items() if state != "posted")
    if unposted:
        problems.append(f"{unposted} parent messages not posted ({dict(st['parents'])})")
    stray = set(by_window) - set(tickets)
    problems += [f"a parent for unknown window {s}" for s in stray]
    counts = {
        "tickets": len(tickets),
        "windows": len(by_window),
        "events": len(events),
        "replies": sum(len(p.replies) for p in parents),
        "duplicates": sum(n - 1 for n in ids.values() if n > 1),
    }
    return problems, counts


class _NoSilences:
    def silences(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        return []


def load(config: Path) -> Settings:
    return Settings.model_validate(yaml.safe_load(config.read_text()))


# -- the tests ----------------------------------------------------------------------------------------
def test_kill_9_at_random_instants_during_a_burst_loses_and_doubles_nothing(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    rng = random.Random(SEED)
    config = write_config(tmp_path, snow, slack)
    settings = load(config)
    # Every post takes 0.25 s in Slack, and Slack stores it even when the poster died meanwhile:
    # a kill during a post is likely, and it leaves "stored, outcome unknown" for the next run.
    slack.inject("chat.postMessage", "slow", count=1000, delay=0.25)
    ops = burst(snow, rng, tickets=18, updates=30)
    assert len(ops) >= 48
    pauses = [rng.uniform(0.05, 0.35) for _ in ops]
    kill_after = [rng.uniform(0.1, 1.4) for _ in range(KILLS)]

    done = threading.Event()

    def drive() -> None:
        for op, pause in zip(ops, pauses, strict=True):
            op()
            time.sleep(pause)  # pacing the burst, not waiting for a result
        done.set()

    daemon = Daemon(config, tmp_path / "daemon.log")
    daemon.start()
    driver = threading.Thread(target=drive, name="burst", daemon=True)
    driver.start()
    caught_in_flight = 0
    for delay in kill_after:
        time.sleep(delay)  # a random instant: this is the experiment, not an assertion
        daemon.kill9()
        st = read_state(tmp_path / "state.db")
        caught_in_flight += bool(st["parents"]["inflight"] or any(e[3] == "inflight" for e in st["events"]))
        daemon.start()
    wait_for("the burst to finish", done.is_set, 30)

    state_db = tmp_path / "state.db"
    result: list[Any] = [None]

    def drained() -> bool:
        result[0] = channel_problems(snow, slack, state_db, settings)
        return not result[0][0]

    try:
        wait_for("the channel to match the tickets", drained, 30)
    except AssertionError:
        problems, counts = result[0]
        raise AssertionError(f"{counts}\n" + "\n".join(problems[:30])) from None
    finally:
        rc, took = daemon.sigterm()
    problems, counts = result[0]
    recovered = daemon.text().count("recovered the ")
    lookups = sum(1 for c in slack.calls if c.method.startswith("conversations."))
    print(
        f"\nkill -9 x{KILLS} (seed {SEED}): {counts['tickets']} tickets, {len(ops)} changes, "
        f"{counts['windows']} windows, {counts['events']} events, {counts['replies']} replies, "
        f"{counts['duplicates']} duplicated, 0 lost; {caught_in_flight} kills left a post in flight, "
        f"{lookups} metadata lookups, {recovered} posts found by them (not posted again)"
    )
    assert daemon.starts == KILLS + 1
    assert counts["windows"] >= 10 and counts["events"] >= 40
    assert counts["replies"] == counts["events"] - counts["windows"] and counts["duplicates"] == 0
    assert rc == 0 and took < 10
    assert "Traceback" not in daemon.text()


def test_sigterm_finishes_the_current_step_and_exits_within_10_s(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    config = write_config(tmp_path, snow, slack, post_interval=0.1)
    settings = load(config)
    now = datetime.now(timezone.utc)
    for i in range(20):
        start = now + timedelta(days=1, hours=i)
        snow.put_record(
            "change_request",
            make_change(
                f"CHG{7200000 + i}", short_description=f"t {i}", start=start, end=start + timedelta(hours=1)
            ),
        )
    daemon = Daemon(config, tmp_path / "daemon.log")
    daemon.start()
    wait_for("the burst to be half posted", lambda: len(slack.parents(CHANNEL)) >= 5, 20)
    rc, took = daemon.sigterm()
    assert rc == 0 and took < 10, daemon.text()[-3000:]
    st = read_state(tmp_path / "state.db")
    in_flight = [e for e in st["events"] if e[3] == "inflight"]
    assert not in_flight and not st["parents"]["inflight"], "a post was cut off mid-step"
    assert [e for e in st["events"] if e[3] == "pending"], "stopped before the end of the burst"
    assert "shutting down" in daemon.text()

    daemon.start()  # what was left is delivered once by the next run
    result: list[Any] = [None]

    def drained() -> bool:
        result[0] = channel_problems(snow, slack, tmp_path / "state.db", settings)
        return not result[0][0]

    try:
        wait_for("the rest to be delivered", drained, 20)
    finally:
        daemon.sigterm()
    _, counts = result[0]
    assert (counts["windows"], counts["events"], counts["replies"], counts["duplicates"]) == (20, 20, 0, 0)
