"""The wall board's cost with 500 windows on it: ``python -m bench.board [--windows 500] [--requests 100]``.

Prints a table against the targets of issue 16:

- server time to answer ``/api/windows`` (in process: the store read, the selection, the JSON) and,
  over loopback HTTP, ``/board`` and ``/api/windows`` (median and p95);
- page weight: everything a browser loads for one look (page, CSS, JS, icon, data);
- memory the board adds to the daemon: the RSS of a daemon process (a child: ``--serve``) after it has
  answered only ``/healthz``, then after it has served the board over and over (roughly: RSS with vs
  without board requests).

The state holds the 500 windows in range and a history of 5,000 outside it (the store is read for the
range only). No simulator is needed: the daemon never polls here.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import build, median, percentile, rss_mb, settings_data, tmpdir

TARGET_MS, TARGET_KB, TARGET_MB = 50.0, 200.0, 5.0
HISTORY = 5000
PAGE = ("/board", "/board/assets/board.css", "/board/assets/board.js", "/board/assets/favicon.svg")


def _settings(state: Path) -> dict[str, Any]:
    data = settings_data("http://127.0.0.1:9", "http://127.0.0.1:9/api/", state)
    data["health"] = {"enabled": True, "listen": "127.0.0.1:0"}
    return data


def seed(state: Path, windows: int, now: datetime) -> None:
    """``windows`` announced windows spread over the board's range, and a history outside it."""
    from connector.domain.reconcile import Tracked
    from connector.domain.target import Target
    from connector.domain.window import MaintenanceWindow, State, phase_at
    from connector.store.sqlite import Store

    store = Store(state)
    span = timedelta(hours=52)
    with store.transaction():
        for i in range(windows + HISTORY):
            if i < windows:
                start = now - timedelta(hours=4) + span * i / windows
            else:
                start = now - timedelta(days=10 + (i - windows) / 10)
            w = MaintenanceWindow(
                source="servicenow",
                sys_id=f"{i:032x}",
                number=f"CHG{i:07d}",
                title=f"Quarterly patching of the payment cluster, node group {i % 40} (reboot required)",
                state=State.IMPLEMENT if i % 50 == 0 and i < windows else State.SCHEDULED,
                planned_start=start,
                planned_end=start + timedelta(hours=2),
                cis=(f"pay-db{i % 7:02d}", f"pay-app{i % 11:02d}", f"lb{i % 3}"),
                assignment_group="Payments Platform Ops",
                url=f"https://example.service-now.com/change_request.do?sys_id={i:032x}",
            )
            store.save_tracked(Tracked(w, phase_at(w, now), announced=True))
            store.set_targets(w.key, [Target.slack("C0MAINT01")])
    store.close()


def serve(state: Path) -> None:
    """The daemon's side: its listener with the board, and its RSS on request (``rss`` on stdin)."""
    from connector.memory import limit_malloc_arenas

    limit_malloc_arenas()  # as the daemon's first poll does (connector.readahead)
    app = build(_settings(state))
    app.health.start()
    print(json.dumps({"port": app.health.port}), flush=True)
    for line in sys.stdin:
        if line.strip() == "rss":
            gc.collect()
            print(json.dumps({"rss_mb": rss_mb()}), flush=True)
        else:
            break
    app.close()


def _get(port: int, path: str) -> tuple[float, bytes]:
    """(milliseconds, body as sent): gzip asked for, as a browser does."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept-Encoding": "gzip"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = resp.read()
    return (time.perf_counter() - t0) * 1000, body


def _raw(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return bytes(resp.read())


def measure(windows: int, requests: int) -> dict[str, Any]:
    work = tmpdir("board")
    state = work / "state.db"
    seed(state, windows, datetime.now(timezone.utc))

    app = build(_settings(state))  # in process: the server's own time, without HTTP
    in_process = []
    for _ in range(requests):
        t0 = time.perf_counter()
        doc = app.board.data(None)
        json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        in_process.append((time.perf_counter() - t0) * 1000)
    shown = sum(len(g["windows"]) for g in doc["groups"])
    app.close()

    child = subprocess.Popen(
        [sys.executable, "-m", "bench.board", "--serve", str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.stdin is not None and child.stdout is not None

    def child_rss() -> float:
        child.stdin.write("rss\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        return float(json.loads(child.stdout.readline())["rss_mb"])  # type: ignore[union-attr]

    try:
        port = int(json.loads(child.stdout.readline())["port"])
        for _ in range(requests):
            _get(port, "/healthz")
        without = child_rss()
        page_ms, api_ms, weight = [], [], 0
        for _ in range(requests):
            sizes = 0
            for path in PAGE:
                ms, body = _get(port, path)
                sizes += len(body)
                if path == "/board":
                    page_ms.append(ms)
            ms, body = _get(port, "/api/windows")
            api_ms.append(ms)
            weight = sizes + len(body)
        raw = sum(len(_raw(port, path)) for path in (*PAGE, "/api/windows"))
        with_board = child_rss()
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    return {
        "windows": shown,
        "in_process_ms": (median(in_process), percentile(in_process, 95)),
        "http_api_ms": (median(api_ms), percentile(api_ms, 95)),
        "http_page_ms": (median(page_ms), percentile(page_ms, 95)),
        "weight_kb": weight / 1024,
        "raw_kb": raw / 1024,
        "rss_mb": (without, with_board),
    }


def table(r: dict[str, Any], requests: int) -> str:
    def row(name: str, median: float, p95: float | None, target: float | None) -> tuple[str, ...]:
        if target is None:
            return (name, f"{median:.1f}", "", "", "")
        worst = median if p95 is None else p95  # a target is met by the p95 where there is one
        return (
            name,
            f"{median:.1f}",
            "" if p95 is None else f"{p95:.1f}",
            f"<= {target:.0f}",
            "yes" if worst <= target else "NO",
        )

    api, http_api, page = r["in_process_ms"], r["http_api_ms"], r["http_page_ms"]
    without, with_board = r["rss_mb"]
    rows = [
        ("figure", "median", "p95", "target", "met"),
        row("/api/windows, in process (ms)", *api, TARGET_MS),
        row("/api/windows over HTTP (ms)", *http_api, TARGET_MS),
        row("/board over HTTP (ms)", *page, TARGET_MS),
        row("page weight, all files + data, gzip (KB)", r["weight_kb"], None, TARGET_KB),
        row("  the same uncompressed (KB)", r["raw_kb"], None, None),
        row("daemon RSS without board (MB)", without, None, None),
        row("daemon RSS with board (MB)", with_board, None, None),
        row("RSS added by the board (MB)", with_board - without, None, TARGET_MB),
    ]
    widths = [max(len(cells[i]) for cells in rows) for i in range(5)]
    lines = [f"{r['windows']} windows on the board, {requests} requests each"]
    for cells in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--windows", type=int, default=500)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    print(table(measure(args.windows, args.requests), args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
