"""The state after a year of 50 windows a day, with and without retention: the database's size and what
an idle poll costs on it. ``python -m bench.retention [--days 365] [--per-day 50] [--json out.json]``.

The year is written in this process through the store's own API, day by day, as the daemon leaves it:
each window (closed, 30-90 words of description, two CIs) with its four events (announced, started,
ended, completed) delivered to one channel, its Slack message and its channel. With retention (90 days,
the default) each simulated day ends with the batches the daemon's refreshes run (``Store.prune``, up
to 200 windows each, until none is due); without, the retention is set to 100 years.

Then the daemon runs on that state in a child process (``bench.child retention``) against the
simulators holding 50 open windows: the CPU of 20 idle polls and cycles (poll + tick + the Slack
delivery pass, which also reads the gauges), measured as ``bench.idle`` does; of one calendar feed
(warm: icalendar already imported), also read the way it was before retention (every stored window
decoded); and of one systemd ``STATUS=`` line.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import CHANNEL, median, tmpdir
from bench.harness import _WORDS, Seeder, SimHost, simulators
from connector.domain.events import Event, EventKind
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.store.sqlite import Store

TARGET = Target.slack(CHANNEL)
RETENTION = timedelta(days=90)
KEPT = "36500d"  # "without pruning": a century
OPEN_WINDOWS = 50
POLLS = 20
BATCH = 200  # connector.daemon.PRUNE_BATCH


def _window(rng: random.Random, n: int, start: datetime) -> MaintenanceWindow:
    end = start + timedelta(hours=rng.choice((1, 2, 4, 6)))
    words = lambda k: " ".join(rng.choice(_WORDS) for _ in range(k))  # noqa: E731
    sys_id = f"{rng.getrandbits(128):032x}"
    return MaintenanceWindow(
        source="servicenow",
        sys_id=sys_id,
        number=f"CHG{n:07d}",
        title=f"[PM] {words(6)}",
        state=State.CLOSED,
        planned_start=start,
        planned_end=end,
        actual_start=start,
        actual_end=end,
        description=words(rng.randrange(30, 90)),
        cis=(f"host{rng.randrange(200):03d}.prod", f"host{rng.randrange(200):03d}.prod"),
        assignment_group=f"운영팀 {rng.randrange(20)}",
        assigned_to=f"User {rng.randrange(50)}",
        url=f"https://acme.service-now.com/change_request.do?sys_id={sys_id}",
        raw_state="3",
        updated_on=end + timedelta(hours=1),
    )


def _day(store: Store, rng: random.Random, day: datetime, per_day: int, first: int) -> None:
    """One day's windows, each as the daemon leaves it once it is closed."""
    with store.transaction():
        for i in range(per_day):
            w = _window(rng, first + i, day + timedelta(minutes=rng.randrange(24 * 60)))
            assert w.planned_start is not None and w.planned_end is not None
            told = [
                (EventKind.ANNOUNCED, Phase.SCHEDULED, w.planned_start - timedelta(days=2)),
                (EventKind.STARTED, Phase.IN_PROGRESS, w.planned_start),
                (EventKind.ENDED, Phase.ENDED, w.planned_end),
                (EventKind.COMPLETED, Phase.COMPLETED, w.planned_end + timedelta(hours=1)),
            ]
            for kind, phase, at in told:
                store.enqueue([Event(kind, at, w, phase)], [TARGET], at, state="done")
            store.save_tracked(Tracked(w, Phase.COMPLETED, announced=True))
            ts = f"{day.timestamp():.0f}.{i:06d}"
            store.set_targets(w.key, [TARGET])
            store.set_message(w.key, TARGET, ts=ts, state="posted", rendered="0" * 16)
        # each delivery as marked done: with the ts of its Slack message
        store._x(
            "UPDATE deliveries SET ts = printf('%d.%06d', ?, event_id) WHERE ts IS NULL",
            (int(day.timestamp()),),
        )


def simulate_year(path: Path, *, days: int, per_day: int, prune: bool, end: datetime) -> dict[str, Any]:
    rng = random.Random(5)
    store = Store(path)
    prune_ms: list[float] = []
    pruned = 0
    t0 = time.perf_counter()
    first_day = (end - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    for d in range(days):
        day = first_day + timedelta(days=d)
        _day(store, rng, day, per_day, d * per_day)
        while prune:  # the day's refreshes: one batch each, until none is due
            c0 = time.process_time()
            n = store.prune(day + timedelta(days=1) - RETENTION, limit=BATCH)
            if not n:
                break
            prune_ms.append((time.process_time() - c0) * 1000)
            pruned += n
    build_s = time.perf_counter() - t0
    counts = {t: store._q(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("windows", "events", "deliveries")}
    store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page, pages, free = (
        db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count")
    )
    db.close()
    return {
        **counts,
        "pruned": pruned,
        "db_mb": path.stat().st_size / 2**20,
        "used_mb": (pages - free) * page / 2**20,
        "prune_batches": len(prune_ms),
        "prune_batch_cpu_ms": median(prune_ms),
        "build_s": build_s,
    }


def one_run(days: int = 365, per_day: int = 50) -> dict[str, Any]:
    results: dict[str, Any] = {"days": days, "per_day": per_day}
    end = datetime.now(timezone.utc)
    for mode in ("kept", "pruned"):
        work = tmpdir(f"retention-{mode}")
        state = work / "state.db"
        year = simulate_year(state, days=days, per_day=per_day, prune=mode == "pruned", end=end)
        with simulators() as (snow, slack):
            seeder = Seeder(snow, datetime.now(timezone.utc))
            seeder.seed(OPEN_WINDOWS, open_fraction=1.0)
            args = {
                "snow": snow.url,
                "slack": slack.base_url,
                "state": str(state),
                "log": str(work / "connector.log"),
                "polls": POLLS,
                "gap": 0.05,
                "retention": "90d" if mode == "pruned" else KEPT,
            }
            raw = SimHost(snow, slack, seeder).run("retention", args, work / "child.log")
        polls = raw["polls"]
        results[mode] = {
            **year,
            "cpu_ms_per_poll": median([p["cpu_ms"] for p in polls]),
            "cpu_ms_per_cycle": median([p["cycle_cpu_ms"] for p in polls]),
            "calendar_cpu_ms": raw["calendar_cpu_ms"],
            "status_cpu_ms": raw["status_cpu_ms"],
            "calendar_all_cpu_ms": raw["calendar_all_cpu_ms"],
            "work": str(work),
        }
    return results


def table(r: dict[str, Any]) -> str:
    k, p = r["kept"], r["pruned"]
    lines = [
        ("figure", "no pruning", "retention 90 d"),
        ("---", "---", "---"),
        (
            "windows / events kept at the end",
            f"{k['windows']:,} / {k['events']:,}",
            f"{p['windows']:,} / {p['events']:,}",
        ),
        ("database file (after a checkpoint)", f"{k['db_mb']:.1f} MB", f"{p['db_mb']:.1f} MB"),
        ("  of which in use (pages not free)", f"{k['used_mb']:.1f} MB", f"{p['used_mb']:.1f} MB"),
        (
            "CPU per idle poll (Daemon.poll)",
            f"{k['cpu_ms_per_poll']:.1f} ms",
            f"{p['cpu_ms_per_poll']:.1f} ms",
        ),
        (
            "CPU per idle cycle (poll + tick + delivery pass)",
            f"{k['cpu_ms_per_cycle']:.1f} ms",
            f"{p['cpu_ms_per_cycle']:.1f} ms",
        ),
        (
            "CPU of one calendar feed (/calendar.ics), reading what it shows",
            f"{k['calendar_cpu_ms']:.1f} ms",
            f"{p['calendar_cpu_ms']:.1f} ms",
        ),
        (
            "  … reading every stored window, as it did before",
            f"{k['calendar_all_cpu_ms']:.1f} ms",
            f"{p['calendar_all_cpu_ms']:.1f} ms",
        ),
        ("CPU of one STATUS= line", f"{k['status_cpu_ms']:.1f} ms", f"{p['status_cpu_ms']:.1f} ms"),
        (
            "prune batches run / CPU per batch (median)",
            "—",
            f"{p['prune_batches']} / {p['prune_batch_cpu_ms']:.1f} ms",
        ),
    ]
    return "\n".join(f"| {a} | {b} | {c} |" for a, b, c in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()
    r = one_run(args.days, args.per_day)
    print(f"{args.days} days of {args.per_day} windows a day, {OPEN_WINDOWS} open windows in ServiceNow")
    print(table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
