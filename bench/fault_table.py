"""Print the fault table: events expected / delivered / duplicated / lost for each fault kind.

    .venv/bin/python -m bench.fault_table            # the table (about 20 s)
    .venv/bin/python -m bench.fault_table --json     # the rows as JSON
    .venv/bin/python -m bench.fault_table -k lost    # only the scenarios whose name contains "lost"

The scenarios are those of ``tests/test_faults.py`` (:mod:`tests.drill.scenarios`):
the real pipeline against the ServiceNow and Slack simulators, time injected, one fault each. The exit
code is 1 when any row has a missing parent, a duplicate or a lost event. The kill -9 test is separate:
``.venv/bin/python -m pytest -s tests/test_crash.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from tests.drill.ledger import Row, as_json, format_table
from tests.drill.scenarios import SCENARIOS, pacing_burst, run_scenario


def run(selected: str = "") -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fault-table-") as tmp:
        for i, (name, kwargs) in enumerate(SCENARIOS.items()):
            if selected.lower() not in name.lower():
                continue
            row, drill = run_scenario(Path(tmp) / f"s{i}", name, **kwargs)
            drill.close()
            rows.append(row)
        for j, interval in enumerate((1.0, 0.0)):
            row, drill = pacing_burst(Path(tmp) / f"p{j}", 20, post_interval=interval)
            drill.close()
            if selected.lower() in row.fault.lower():
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("-k", default="", help="only scenarios whose name contains this")
    parser.add_argument("-v", action="store_true", help="show the connector's log lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.v else logging.CRITICAL, stream=sys.stderr)
    rows = run(args.k)
    print(as_json(rows) if args.json else format_table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
