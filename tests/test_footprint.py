"""The daemon's import footprint: what every running connector pays in memory (issue 7, steady RSS)."""

from __future__ import annotations

import subprocess
import sys

#: Imported only by the code that needs them, never by a daemon that does not use them.
LAZY = ("icalendar",)


def test_the_daemon_does_not_import_what_only_optional_features_use() -> None:
    probe = (
        "import sys, connector.cli.main, connector.wiring; "
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "", f"imported at start-up: {out}"
