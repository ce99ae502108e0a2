"""The connector side of the process-separated benchmarks: ``python -m bench.child SCENARIO ARGS``.

Runs in a fresh interpreter, so its CPU time and peak RSS (VmHWM) are the connector's alone (the
simulators run in the parent, which this process drives through :class:`bench.harness.Parent`).
Scenarios: ``baseline`` (imports only), ``idle`` (cost of an idle poll and of a full refresh),
``catchup`` (first sync against a bare ``requests`` loop over the same pages), ``steady`` (RSS after
many small poll cycles), ``retention`` (idle polls on a year of stored windows).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Parent, build, maxrss_mb, median, peak_rss_mb, rss_mb, settings_data, setup_logs

# What the daemon imports before it does anything: the baseline of every memory figure.
import connector.wiring  # noqa: F401  isort: skip
from connector.cli.service import deliver_everywhere
from connector.daemon import utc_now

BASELINE_PEAK, BASELINE_RSS = peak_rss_mb(), rss_mb()


def baseline(parent: Parent, args: dict[str, Any]) -> dict[str, Any]:
    return {"peak_rss_mb": BASELINE_PEAK, "rss_mb": BASELINE_RSS}


@contextmanager
def profiled(args: dict[str, Any], name: str) -> Iterator[None]:
    """cProfile the block when the run was given ``profile`` (a directory): ``<dir>/<name>.prof``."""
    if not args.get("profile"):
        yield
        return
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        Path(args["profile"]).mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(Path(args["profile"]) / f"{name}.prof"))


def _app(args: dict[str, Any], **over: Any) -> Any:
    setup_logs(Path(args["log"]))
    return build(settings_data(args["snow"], args["slack"], args["state"], **over))


def idle(parent: Parent, args: dict[str, Any]) -> dict[str, Any]:
    """Requests, Slack calls and CPU of idle polls once the open windows are known; then refreshes.
    ``args["over"]``: settings to change, e.g. ``state__url`` for a PostgreSQL state (bench/ha.py): its
    leader election then runs as in the daemon, and each cycle counts the statements sent."""
    app = _app(args, **args.get("over", {}))
    if app.leadership is not None:
        app.leadership.start()
        deadline = time.monotonic() + 30
        while not app.leadership.is_leader() and time.monotonic() < deadline:
            time.sleep(0.05)
    d = app.daemon
    d.poll()  # the first sync (not measured), then the first-run digest
    d.tick()
    deliver_everywhere(app, utc_now())
    if args.get("recent"):  # tickets edited just now: each idle poll's lookback reads them again
        parent.call("touch", describe=args["recent"])
    d.poll()  # the first incremental poll sets the task_ci cursor without a request
    deliver_everywhere(app, utc_now())
    parent.call("counts")
    polls: list[dict[str, Any]] = []
    with profiled(args, "idle"):
        _idle_polls(parent, app, args, polls)
    refreshes: list[dict[str, Any]] = []
    with profiled(args, "refresh"):
        _refreshes(parent, app, args, refreshes)
    open_windows = len(app.store.tracked(open_only=True))
    app.close()
    return {"open_windows": open_windows, "polls": polls, "refreshes": refreshes}


def _idle_polls(parent: Parent, app: Any, args: dict[str, Any], polls: list[dict[str, Any]]) -> None:
    d = app.daemon
    statements = _statement_counter(app.store)
    for _ in range(args["polls"]):
        time.sleep(args.get("gap", 0.0))
        s0 = statements()
        c0, w0 = time.process_time(), time.perf_counter()
        d.poll()
        c1, w1 = time.process_time(), time.perf_counter()
        d.tick()
        deliver_everywhere(app, utc_now())
        c2 = time.process_time()
        s1 = statements()
        counts = parent.call("counts")
        polls.append(
            {
                "cpu_ms": (c1 - c0) * 1000,
                "wall_ms": (w1 - w0) * 1000,
                "cycle_cpu_ms": (c2 - c0) * 1000,
                "statements": s1 - s0,
                "snow": counts["snow"],
                "snow_bytes": counts["snow_bytes"],
                "slack": counts["slack"],
            }
        )


def _statement_counter(store: Any) -> Any:
    """A function returning how many statements the store has sent so far (both databases)."""
    if hasattr(store, "statements"):  # PostgreSQL counts its own
        return lambda: store.statements
    sent = [0]

    def count(_sql: str) -> None:
        sent[0] += 1

    store._db.set_trace_callback(count)
    return lambda: sent[0]


def _refreshes(parent: Parent, app: Any, args: dict[str, Any], refreshes: list[dict[str, Any]]) -> None:
    d = app.daemon
    for _ in range(args["refreshes"]):
        c0, w0 = time.process_time(), time.perf_counter()
        d.refresh()
        c1, w1 = time.process_time(), time.perf_counter()
        deliver_everywhere(app, utc_now())
        counts = parent.call("counts")
        refreshes.append(
            {
                "cpu_ms": (c1 - c0) * 1000,
                "wall_ms": (w1 - w0) * 1000,
                "snow": counts["snow"],
                "slack": counts["slack"],
            }
        )


def _time_requests(app: Any) -> dict[str, float]:
    """Wrap the source's one GET method to add up the wall time spent in it, per table."""
    spent: dict[str, float] = {}
    for source in app.sources:
        fetch_page = source.fetch_page

        def timed(*a: Any, _fetch: Any = fetch_page, _src: Any = source, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _fetch(*a, **kw)
            finally:
                table = kw.get("table") or _src.table
                spent[table] = spent.get(table, 0.0) + time.perf_counter() - t0

        source.fetch_page = timed
    return spent


def _time_transactions(app: Any) -> dict[str, float]:
    """Add up the wall time the poll's own thread spends in store transactions (committing pages)."""
    spent = {"committing": 0.0}
    transaction = app.store.transaction

    @contextmanager
    def timed() -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            with transaction():
                yield
        finally:
            spent["committing"] += time.perf_counter() - t0

    app.store.transaction = timed
    return spent


def catchup(parent: Parent, args: dict[str, Any]) -> dict[str, Any]:
    """The first sync, timed; then a bare ``requests`` loop asking for exactly the same pages.

    The poll reads pages in a thread of its own while it commits the pages already read, so the
    breakdown is not a sum: the requests' wall time (reader thread) overlaps the committing (the
    poll's thread); ``waiting`` is the poll's thread waiting for the reader (the sync minus
    committing). ``cpu_s`` splits the child's CPU time between the poll's thread and the rest."""
    import requests

    app = _app(args)
    spent = _time_requests(app)
    committing = _time_transactions(app)
    parent.call("requests")
    c0, t0 = time.process_time(), time.thread_time()
    w0 = time.perf_counter()
    with profiled(args, "catchup"):
        app.daemon.poll()
    sync_s = time.perf_counter() - w0
    cpu_s, main_cpu_s = time.process_time() - c0, time.thread_time() - t0
    peak, rss, maxrss = peak_rss_mb(), rss_mb(), maxrss_mb()
    windows = len(app.store.tracked())
    app.close()
    sent = parent.call("requests")
    pages = [r for r in sent if r["path"].endswith("/table/change_request")]

    session = requests.Session()
    session.auth = ("admin", "secret")
    w0 = time.perf_counter()
    rows = 0
    for page in pages:
        resp = session.get(args["snow"] + page["path"], params=page["params"], timeout=60)
        resp.raise_for_status()
        rows += len(resp.json()["result"])
    bare_s = time.perf_counter() - w0
    parent.call("requests")
    by_table: dict[str, int] = {}
    for r in sent:
        table = r["path"].rsplit("/", 1)[-1]
        by_table[table] = by_table.get(table, 0) + 1
    return {
        "sync_s": sync_s,
        "bare_s": bare_s,
        "ratio": sync_s / bare_s,
        "windows": windows,
        "bare_rows": rows,
        "requests": by_table,
        # where the sync's wall time went: each table's requests (reader thread, parsing included),
        # committing pages and waiting for the reader (the poll's thread); requests overlap the rest
        "breakdown_s": {**spent, **committing, "waiting": sync_s - committing["committing"]},
        "cpu_s": {"process": cpu_s, "poll thread": main_cpu_s, "other threads": cpu_s - main_cpu_s},
        "peak_rss_mb": peak,
        "ru_maxrss_mb": maxrss,
        "rss_after_mb": rss,
        "baseline_peak_rss_mb": BASELINE_PEAK,
    }


def steady(parent: Parent, args: dict[str, Any]) -> dict[str, Any]:
    """Many poll cycles with small changes (a normal day, compressed); RSS along the way."""
    app = _app(args, slack__post_interval=0)
    startup = {"imports": BASELINE_RSS, "app built": rss_mb()}
    d = app.daemon
    d.poll()
    startup["first sync"] = rss_mb()
    d.tick()
    deliver_everywhere(app, utc_now())
    startup["first delivery pass"] = rss_mb()
    samples: list[tuple[int, float]] = [(0, rss_mb())]
    cpu: list[float] = []
    for cycle in range(1, args["cycles"] + 1):
        parent.call(
            "touch",
            describe=1,
            reschedule=int(cycle % 4 == 0),
            new=int(cycle % 10 == 0),
            close=int(cycle % 10 == 5),
        )
        c0 = time.process_time()
        d.poll()
        d.tick()
        if cycle % args["refresh_every"] == 0:
            d.refresh()
        deliver_everywhere(app, utc_now())
        cpu.append((time.process_time() - c0) * 1000)
        if cycle % max(1, args["cycles"] // 10) == 0:
            samples.append((cycle, rss_mb()))
    result = {
        "cycles": args["cycles"],
        "rss_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": BASELINE_RSS,
        "startup_rss_mb": startup,
        "samples": samples,
        "cycle_cpu_ms_median": median(cpu),
        "open_windows": len(app.store.tracked(open_only=True)),
        "windows": len(app.store.tracked()),
    }
    app.close()
    return result


def retention(parent: Parent, args: dict[str, Any]) -> dict[str, Any]:
    """Idle polls on a state that holds a year of windows (``bench.retention`` wrote it), then one
    calendar feed and one systemd STATUS= line."""
    from connector.calendar import render_calendar

    app = _app(args, state__retention=args["retention"])
    d = app.daemon
    d.poll()  # the simulator's open windows (not measured), then the first-run digest
    d.tick()
    deliver_everywhere(app, utc_now())
    d.poll()
    deliver_everywhere(app, utc_now())
    parent.call("counts")
    polls: list[dict[str, Any]] = []
    _idle_polls(parent, app, args, polls)
    app.calendar.render(utc_now())  # the first one imports icalendar
    c0 = time.process_time()
    app.calendar.render(utc_now())
    c1 = time.process_time()
    app.view.status_line()
    c2 = time.process_time()
    counts = app.store.event_counts()  # the feed as it was read before retention: every window decoded
    render_calendar([(t, counts.get(t.window.key, 0)) for t in app.store.tracked()], utc_now())
    c3 = time.process_time()
    app.close()
    return {
        "polls": polls,
        "calendar_cpu_ms": (c1 - c0) * 1000,
        "status_cpu_ms": (c2 - c1) * 1000,
        "calendar_all_cpu_ms": (c3 - c2) * 1000,
    }


SCENARIOS = {"baseline": baseline, "idle": idle, "catchup": catchup, "steady": steady, "retention": retention}


def main() -> None:
    parent = Parent()
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    parent.result(SCENARIOS[scenario](parent, args))


if __name__ == "__main__":
    main()
