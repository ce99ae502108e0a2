"""The simulator side of the benchmarks: seed data, request counting, and the host of a child process.

The connector's own CPU time and memory are measured in a child process (``python -m bench.child``)
so that the simulators' threads and data, which live in this process, are not counted. The child asks
this process to act on the simulators over a JSON-lines pipe: it writes ``{"op": ..., "args": ...}``
on its stdout and reads the answer on its stdin (:class:`SimHost` here, ``common.Parent`` there).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import PASSWORD, TOKEN, USER
from connector.simulators.servicenow import ServiceNowSimulator, format_snow_datetime, make_change
from connector.simulators.slack import SlackSimulator

REPO = Path(__file__).resolve().parent.parent
_TEXT = (
    "patch kernel reboot failover primary replica storage firmware switch router certificate rotate "
    "rollback verify backup index vacuum upgrade migrate cluster node drain cordon 점검 정기 서버 교체 "
    "데이터베이스 네트워크 작업 재시작 이중화 절체 확인"
)
_WORDS = tuple(_TEXT.split())


# -- seed data ------------------------------------------------------------------------------------------
@dataclass
class Seeder:
    """Realistic change tickets in the ServiceNow simulator: dot-walked references, a CI per change
    from ``cmdb_ci`` and one more from ``task_ci``, a few hundred characters of description."""

    snow: ServiceNowSimulator
    now: datetime
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    cis: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    open_ids: list[str] = field(default_factory=list)
    number: int = 1_000_000

    def __post_init__(self) -> None:
        put = self.snow.put_record
        self.cis = [put("cmdb_ci", {"name": f"host{i:03d}.prod"})["sys_id"] for i in range(200)]
        self.groups = [put("sys_user_group", {"name": f"운영팀 {i}"})["sys_id"] for i in range(20)]
        self.users = [
            put("sys_user", {"name": f"User {i}", "user_name": f"u{i}"})["sys_id"] for i in range(50)
        ]

    def _id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def _text(self, words: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(words))

    def change(self, *, is_open: bool, updated: datetime) -> str:
        """One change (and its ``task_ci`` row); returns its sys_id."""
        rng = self.rng
        if is_open:  # scheduled, starting within the next month
            start = self.now + timedelta(minutes=rng.randrange(60, 30 * 24 * 60))
            state = "-2"
        else:  # closed, in the past
            start = self.now - timedelta(minutes=rng.randrange(2 * 24 * 60, 365 * 24 * 60))
            state = "3"
        start = start.replace(second=0, microsecond=0)
        end = start + timedelta(hours=rng.choice((1, 2, 4, 6)))
        self.number += 1
        sys_id = self._id()
        stamp = format_snow_datetime(updated)
        record = make_change(
            f"CHG{self.number}",
            short_description=f"[PM] {self._text(6)}",
            description=self._text(rng.randrange(30, 90)),
            start=start,
            end=end,
            state=state,
            cmdb_ci=rng.choice(self.cis),
            assignment_group=rng.choice(self.groups),
            assigned_to=rng.choice(self.users),
            sys_id=sys_id,
            sys_created_on=stamp,
            sys_updated_on=stamp,
        )
        self.snow.put_record("change_request", record)
        self.snow.put_record(
            "task_ci",
            {
                "task": sys_id,
                "ci_item": rng.choice(self.cis),
                "sys_updated_on": stamp,
                "sys_created_on": stamp,
            },
        )
        if is_open:
            self.open_ids.append(sys_id)
        return sys_id

    def seed(self, n: int, *, open_fraction: float, span: timedelta = timedelta(days=30)) -> None:
        """``n`` changes last updated over ``span`` before now (about 1 in 3 share a second: ties)."""
        step = span / max(n, 1)
        oldest = self.now - span - timedelta(minutes=1)
        for i in range(n):
            updated = oldest + step * (i - i % 3)
            self.change(is_open=self.rng.random() < open_fraction, updated=updated)

    def reschedule(self, sys_id: str, minutes: int = 30) -> None:
        """Move a window's planned end (a ``rescheduled`` event and a parent update in Slack)."""
        rec = self._record(sys_id)
        end = datetime.strptime(rec["end_date"], "%Y-%m-%d %H:%M:%S") + timedelta(minutes=minutes)
        self.snow.update_record("change_request", sys_id, end_date=end.strftime("%Y-%m-%d %H:%M:%S"))

    def describe(self, sys_id: str) -> None:
        """Edit the description only (no event: L1 is not told)."""
        self.snow.update_record("change_request", sys_id, description=self._text(40))

    def close(self, sys_id: str) -> None:
        self.snow.update_record("change_request", sys_id, state="3", active="false")
        self.open_ids.remove(sys_id)

    def _record(self, sys_id: str) -> dict[str, str]:
        with self.snow._lock:  # the simulator's records() copies the whole table; one row is enough
            return dict(self.snow._tables["change_request"][sys_id])


@contextmanager
def simulators(*, post_rate: float | None = None) -> Iterator[tuple[ServiceNowSimulator, SlackSimulator]]:
    with (
        ServiceNowSimulator(username=USER, password=PASSWORD) as snow,
        SlackSimulator(tokens=(TOKEN,), post_rate_per_channel=post_rate) as slack,
    ):
        yield snow, slack


def set_post_rate(slack: SlackSimulator, per_second: float | None) -> None:
    """Switch the simulator's per-channel post limit (bench-only: used to skip a slow warm-up)."""
    with slack._lock:
        slack._interval = None if per_second is None else 1.0 / per_second


# -- counting requests ----------------------------------------------------------------------------------
def snow_counts(snow: ServiceNowSimulator, reset: bool = True) -> dict[str, int]:
    """Requests per table since the last reset."""
    with snow._log_lock:
        entries = list(snow.requests)
        if reset:
            snow.requests.clear()
    return dict(Counter(e.path.rstrip("/").rsplit("/table/", 1)[-1].split("/")[0] for e in entries))


def snow_bytes(snow: ServiceNowSimulator) -> dict[str, int]:
    """Bytes of answer bodies per table since the last reset (call before :func:`snow_counts`)."""
    with snow._log_lock:
        entries = list(snow.requests)
    out: Counter[str] = Counter()
    for e in entries:
        out[e.path.rstrip("/").rsplit("/table/", 1)[-1].split("/")[0]] += e.bytes
    return dict(out)


def slack_counts(slack: SlackSimulator, reset: bool = True) -> dict[str, int]:
    calls = slack.calls
    if reset:
        slack.reset_calls()
    return dict(Counter(c.method + ("" if c.status != 429 else ":429") for c in calls))


# -- the child process ----------------------------------------------------------------------------------
class SimHost:
    """This side of the pipe: runs the child and does what it asks to the simulators."""

    def __init__(
        self, snow: ServiceNowSimulator, slack: SlackSimulator, seeder: Seeder | None = None
    ) -> None:
        self.snow, self.slack, self.seeder = snow, slack, seeder
        self.rng = random.Random(11)

    def run(self, scenario: str, args: dict[str, Any], log: Path) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "bench.child", scenario, json.dumps(args)]
        with open(log, "a", encoding="utf-8") as err:
            proc = subprocess.Popen(
                cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
            assert proc.stdin is not None and proc.stdout is not None
            result: dict[str, Any] | None = None
            for line in proc.stdout:
                msg = json.loads(line)
                if msg["op"] == "result":
                    result = msg["data"]
                    continue
                reply = getattr(self, f"op_{msg['op']}")(**msg.get("args", {}))
                proc.stdin.write(json.dumps(reply) + "\n")
                proc.stdin.flush()
            rc = proc.wait()
        if rc != 0 or result is None:
            raise RuntimeError(f"bench child {scenario} failed (exit {rc}); see {log}")
        return result

    def op_counts(self) -> dict[str, Any]:
        sent = snow_bytes(self.snow)
        return {"snow": snow_counts(self.snow), "snow_bytes": sent, "slack": slack_counts(self.slack)}

    def op_requests(self) -> list[dict[str, Any]]:
        """Every ServiceNow request since the last reset, path and parameters (then reset)."""
        with self.snow._log_lock:
            entries = list(self.snow.requests)
            self.snow.requests.clear()
        return [{"path": e.path, "params": e.params, "status": e.status} for e in entries]

    def op_touch(self, describe: int = 0, reschedule: int = 0, new: int = 0, close: int = 0) -> int:
        """Small changes, as a normal day brings them; returns how many open windows there are."""
        s = self.seeder
        assert s is not None
        for sys_id in self.rng.sample(s.open_ids, min(describe, len(s.open_ids))):
            s.describe(sys_id)
        for sys_id in self.rng.sample(s.open_ids, min(reschedule, len(s.open_ids))):
            s.reschedule(sys_id)
        for sys_id in self.rng.sample(s.open_ids, min(close, len(s.open_ids))):
            s.close(sys_id)
        for _ in range(new):
            s.change(is_open=True, updated=datetime.now(timezone.utc))
        self.snow.reset_requests()  # the log would grow for ever in a long run
        self.slack.reset_calls()
        return len(s.open_ids)
