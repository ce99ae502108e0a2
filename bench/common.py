"""What both sides of a benchmark share: settings, the app, logging, the child's pipe, numbers.

Imports nothing of the simulators, so a child process's memory is the connector's alone.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from connector.simulators.slack import DEFAULT_TOKEN

CHANNEL = "C0MAINT01"
TOKEN = DEFAULT_TOKEN  # the simulator's fake token
USER, PASSWORD = "admin", "secret"


# -- settings and the app -------------------------------------------------------------------------------
def settings_data(snow_url: str, slack_url: str, state: Path | str, **over: Any) -> dict[str, Any]:
    """A complete config (as the YAML file would hold it) for the simulators; ``over`` sets
    ``section__key`` values, e.g. ``servicenow__poll_interval=5``."""
    data: dict[str, Any] = {
        "servicenow": {"url": snow_url, "username": USER, "password": PASSWORD, "poll_interval": 5},
        "slack": {
            "token": TOKEN,
            "channel": CHANNEL,
            "base_url": slack_url,
            "locale": "ko",
            "timezone": "Asia/Seoul",
            "first_run": "digest",
        },
        "state": {"path": str(state)},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        data[section][name] = value
    return data


def build(data: dict[str, Any], **kwargs: Any) -> Any:
    """The real app (``connector.wiring.build_app``), from a config dict."""
    from connector.config import Settings
    from connector.wiring import build_connector

    return build_connector(Settings.model_validate(data), **kwargs)


def setup_logs(path: Path) -> IO[str]:
    """Log like the daemon does (INFO, text), to a file: logging is part of what the connector costs."""
    from connector.logs import setup_logging

    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
    setup_logging("INFO", "text", stream=stream)
    return stream


class Parent:
    """The child's side of the pipe."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stdout = sys.stderr  # nothing else may write on the pipe

    def call(self, op: str, **args: Any) -> Any:
        self._out.write(json.dumps({"op": op, "args": args}) + "\n")
        return json.loads(sys.stdin.readline())

    def result(self, data: dict[str, Any]) -> None:
        self._out.write(json.dumps({"op": "result", "data": data}) + "\n")


# -- numbers --------------------------------------------------------------------------------------------
def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """Resident set size now (VmRSS), in MB."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process's address space so far (VmHWM), in MB.

    Not ``ru_maxrss``: Linux carries the *parent's* high-water mark across fork + exec into the
    child's ``ru_maxrss`` (exec folds the replaced address space into it), so a child started by a
    parent holding 10,000 seeded records would report the parent's size. VmHWM belongs to the
    child's own address space. ``maxrss_mb`` gives ``ru_maxrss`` for comparison.
    """
    return _status_mb("VmHWM")


def maxrss_mb() -> float:
    """``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in MB (see :func:`peak_rss_mb`)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): with 20 samples, p95 is the 19th smallest."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"itsm-bench-{prefix}-"))
