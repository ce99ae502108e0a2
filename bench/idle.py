"""Cost of an idle poll with 500 open windows (requests, Slack calls, CPU), and of a full refresh.

``python -m bench.idle [--repeat N] [--recent N]``. The daemon runs in a child process (``bench.child
idle``): each run seeds fresh simulators, lets the child do its first sync, then times idle polls one by
one. ``--recent N`` edits N open tickets just before: each idle poll's lookback reads them again (and
skips them), which is what an idle poll costs in the minutes after a change.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from bench.common import median, tmpdir
from bench.harness import Seeder, SimHost, simulators

OPEN_WINDOWS = 500
POLLS = 20
REFRESHES = 2


def one_run(
    open_windows: int = OPEN_WINDOWS,
    polls: int = POLLS,
    profile: str | None = None,
    recent: int = 0,
    over: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``over``: settings to change (``state__url`` etc.: bench/ha.py runs it on PostgreSQL)."""
    work = tmpdir("idle")
    with simulators() as (snow, slack):
        seeder = Seeder(snow, datetime.now(timezone.utc))
        seeder.seed(open_windows, open_fraction=1.0)
        args = {
            "snow": snow.url,
            "slack": slack.base_url,
            "state": str(work / "state.db"),
            "log": str(work / "connector.log"),
            "polls": polls,
            "refreshes": REFRESHES,
            "gap": 0.05,
            "profile": profile,
            "recent": recent,
            "over": over or {},
        }
        raw = SimHost(snow, slack, seeder).run("idle", args, work / "child.log")
    polls_ = raw["polls"]

    def per_poll(table: str) -> float:
        return median([p["snow"].get(table, 0) for p in polls_])

    return {
        "open_windows": raw["open_windows"],
        "change_requests_per_poll": per_poll("change_request"),
        "task_ci_requests_per_poll": per_poll("task_ci"),
        "recently_changed": recent,
        "change_request_bytes_per_poll": median([p["snow_bytes"].get("change_request", 0) for p in polls_]),
        "snow_bytes_per_poll": median([sum(p["snow_bytes"].values()) for p in polls_]),
        "other_requests_per_poll": median(
            [sum(n for t, n in p["snow"].items() if t not in ("change_request", "task_ci")) for p in polls_]
        ),
        "slack_calls_per_poll": median([sum(p["slack"].values()) for p in polls_]),
        "slack_calls_max": max(sum(p["slack"].values()) for p in polls_),
        "cpu_ms_per_poll": median([p["cpu_ms"] for p in polls_]),
        "wall_ms_per_poll": median([p["wall_ms"] for p in polls_]),
        "cpu_ms_per_cycle": median([p["cycle_cpu_ms"] for p in polls_]),
        "statements_per_cycle": median([p.get("statements", 0) for p in polls_]),
        "refresh_requests": median([sum(r["snow"].values()) for r in raw["refreshes"]]),
        "refresh_requests_by_table": raw["refreshes"][-1]["snow"],
        "refresh_cpu_ms": median([r["cpu_ms"] for r in raw["refreshes"]]),
        "refresh_wall_ms": median([r["wall_ms"] for r in raw["refreshes"]]),
        "work": str(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--recent", type=int, default=0, metavar="N", help="edit N tickets just before")
    parser.add_argument("--profile", metavar="DIR", help="write cProfiles to DIR/idle.prof, DIR/refresh.prof")
    args = parser.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(one_run(profile=args.profile, recent=args.recent), indent=1))


if __name__ == "__main__":
    main()
