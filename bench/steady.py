"""RSS after a long steady run: many poll cycles with small changes, in a child process.

``python -m bench.steady [--repeat N] [--cycles 2000]``. The instance holds 2,000 changes, about 500
of them open. Every cycle the parent makes a small change (a description edit every cycle, a
reschedule every 4th, a new window and a closed one every 10th), then the child runs
``Daemon.poll()``, ``Daemon.tick()``, the Slack delivery pass, and every 180th cycle (15 minutes at
a 5 s poll interval) ``Daemon.refresh()``. Slack is not rate limited here: memory is the point.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from bench.common import tmpdir
from bench.harness import Seeder, SimHost, simulators

CYCLES = 2000
CHANGES = 2000
OPEN_FRACTION = 0.25
REFRESH_EVERY = 180


def one_run(cycles: int = CYCLES) -> dict[str, Any]:
    work = tmpdir("steady")
    with simulators() as (snow, slack):
        seeder = Seeder(snow, datetime.now(timezone.utc))
        seeder.seed(CHANGES, open_fraction=OPEN_FRACTION)
        args = {
            "snow": snow.url,
            "slack": slack.base_url,
            "state": str(work / "state.db"),
            "log": str(work / "connector.log"),
            "cycles": cycles,
            "refresh_every": REFRESH_EVERY,
        }
        raw = SimHost(snow, slack, seeder).run("steady", args, work / "child.log")
    return {**raw, "work": str(work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cycles", type=int, default=CYCLES)
    args = parser.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(one_run(args.cycles), indent=1))


if __name__ == "__main__":
    main()
