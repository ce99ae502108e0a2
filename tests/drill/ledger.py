"""The fault drills' ledger: a drill's channel counted against what its script must produce.

After each scenario (``drill_scenarios``) the ledger counts, from the channel itself (message
metadata) against what the script must produce:

    expected    thread messages the script must produce (one per lifecycle event; the parent
                message itself tells its window's first announcement)
    delivered   expected replies found in the right thread, once or more
    duplicated  replies (or parents) beyond one per event (per window)
    lost        expected replies never found

``python -m bench.fault_table`` prints the table; ``tests/test_faults.py`` asserts on the same rows.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field


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


def tally(
    fault: str,
    expected: dict[str, list[str]],
    kinds: dict[str, list[str]],
    parent_ids: Counter[str],
    reply_ids: Counter[str],
) -> Row:
    """The table row: what ``expected`` (number -> kinds its thread must hold, in order) asks
    against what the channel holds (``kinds``, and the metadata ids seen among parents and replies)."""
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
