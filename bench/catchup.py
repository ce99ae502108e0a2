"""First sync of 10,000 changes: wall time ÷ a bare ``requests`` loop over the same pages; peak RSS.

``python -m bench.catchup [--repeat N] [--changes 10000]``. Each run is a fresh child process
(``bench.child catchup``) with an empty state: it runs ``Daemon.poll()`` (the first sync: every page,
the affected CIs, normalize, reconcile, SQLite), records ``ru_maxrss``, then replays exactly the
change-table requests the connector sent (same queries, page size and fields) with a bare
``requests.Session`` and ``resp.json()``: the ratio of the two is measured in one run.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from bench.common import tmpdir
from bench.harness import Seeder, SimHost, simulators

CHANGES = 10_000
OPEN_FRACTION = 0.05  # 500 open windows, the rest closed history


def run(repeat: int, changes: int = CHANGES, profile: str | None = None) -> list[dict[str, Any]]:
    """``repeat`` runs against one seeded simulator (seeding is not what is measured)."""
    out = []
    with simulators() as (snow, slack):
        seeder = Seeder(snow, datetime.now(timezone.utc))
        seeder.seed(changes, open_fraction=OPEN_FRACTION)
        host = SimHost(snow, slack, seeder)
        for _ in range(repeat):
            work = tmpdir("catchup")
            args = {
                "snow": snow.url,
                "slack": slack.base_url,
                "state": str(work / "state.db"),
                "log": str(work / "connector.log"),
                "profile": profile,
            }
            out.append({**host.run("catchup", args, work / "child.log"), "work": str(work)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--changes", type=int, default=CHANGES)
    parser.add_argument("--profile", metavar="DIR", help="write a cProfile of the sync to DIR/catchup.prof")
    args = parser.parse_args()
    for r in run(args.repeat, args.changes, args.profile):
        print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
