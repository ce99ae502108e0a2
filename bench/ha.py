"""The steady cost of a PostgreSQL state against SQLite's: idle polls with 500 open windows.

``python -m bench.ha [--repeat N]``: each run is ``bench.idle``'s (a child process, fresh simulators,
the first sync, then 20 idle polls timed one by one), once on a SQLite file and once on the real
PostgreSQL server of the tests (``ITSM_TEST_POSTGRES_DSN``, a fresh schema; the replica's leader
election runs, as in the daemon). Prints per run and the medians over runs: CPU per idle poll and per
idle cycle (poll + tick + delivery pass), statements sent per idle cycle, and the ratio.

The takeover figures (kill -9, SIGSTOP, database restart) come from tests/test_replicas.py, which runs
two real replicas; see docs/ha.md.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from typing import Any

import psycopg

from bench.common import median
from bench.idle import one_run

DEFAULT_DSN = "postgresql://itsm:itsm-test-only@127.0.0.1:5432/itsm_test"


def postgresql_run(dsn: str) -> dict[str, Any]:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    netloc = f"{parts.username}@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=netloc))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    over = {"state__url": url, "state__password": parts.password, "state__pg_schema": schema}
    try:
        return one_run(over=over)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


KEYS = ("cpu_ms_per_poll", "cpu_ms_per_cycle", "statements_per_cycle", "wall_ms_per_poll")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    dsn = os.environ.get("ITSM_TEST_POSTGRES_DSN") or DEFAULT_DSN
    runs: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgresql": []}
    for i in range(args.repeat):
        for name, run in (("sqlite", lambda: one_run()), ("postgresql", lambda: postgresql_run(dsn))):
            r = run()
            runs[name].append(r)
            print(json.dumps({"run": i, "state": name, **{k: round(r[k], 2) for k in KEYS}}))
    table = {name: {k: median([r[k] for r in rs]) for k in KEYS} for name, rs in runs.items()}
    spread = {
        name: {k: (min(r[k] for r in rs), max(r[k] for r in rs)) for k in KEYS} for name, rs in runs.items()
    }
    print(f"\nidle poll, {runs['sqlite'][0]['open_windows']} open windows, medians of {args.repeat} runs")
    print(f"{'':22}{'SQLite':>14}{'PostgreSQL':>14}{'ratio':>8}   spread (min-max) SQLite / PostgreSQL")
    for k in KEYS:
        a, b = table["sqlite"][k], table["postgresql"][k]
        (a0, a1), (b0, b1) = spread["sqlite"][k], spread["postgresql"][k]
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"{k:22}{a:14.2f}{b:14.2f}{ratio:>8}   {a0:.1f}-{a1:.1f} / {b0:.1f}-{b1:.1f}")


if __name__ == "__main__":
    main()
