"""Every figure of issue 7, as a table and as JSON: ``python -m bench.run_all [--json out.json]``.

``--repeat N`` runs the fast figures (idle poll, first sync, baseline) N times and quotes medians;
``--slow-repeat M`` does the same for the long ones (update latency ~1.5 min a run, the burst of 100
windows ~4 min, the steady run of 2,000 cycles a few minutes). ``--only idle,catchup`` picks
figures. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import burst, catchup, idle, latency, retention, steady
from bench.common import median

FIGURES = ("idle", "catchup", "latency", "burst", "steady", "baseline", "retention")


def _median_of(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return median(values) if values else float("nan")


def run_baseline(repeat: int) -> dict[str, Any]:
    from bench.harness import REPO

    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", "import bench.child as c; print(c.BASELINE_PEAK)"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append({"peak_rss_mb": float(out.stdout.strip())})
    return {"runs": runs, "peak_rss_mb": _median_of(runs, "peak_rss_mb")}


def run_idle(repeat: int) -> dict[str, Any]:
    runs = [idle.one_run() for _ in range(repeat)]
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {"runs": runs, **{k: _median_of(runs, k) for k in keys}}


def run_catchup(repeat: int) -> dict[str, Any]:
    runs = catchup.run(repeat)
    keys = ["ratio", "sync_s", "bare_s", "peak_rss_mb", "ru_maxrss_mb", "baseline_peak_rss_mb"]
    parts = {p: median([r["breakdown_s"].get(p, 0.0) for r in runs]) for p in runs[0]["breakdown_s"]}
    return {"runs": runs, **{k: _median_of(runs, k) for k in keys}, "breakdown_s": parts}


def run_latency(repeat: int) -> dict[str, Any]:
    runs = [latency.one_run(seed=3 + i) for i in range(repeat)]
    pooled = [x for r in runs for x in r["latencies_s"]]
    from bench.common import percentile

    return {
        "runs": runs,
        "p95_s": _median_of(runs, "p95_s"),
        "p50_s": _median_of(runs, "p50_s"),
        "max_s": max(r["max_s"] for r in runs),
        "pooled_p95_s": percentile(pooled, 95),
        "lost": sum(r["lost"] for r in runs),
    }


def run_burst(repeat: int) -> dict[str, Any]:
    runs = [burst.one_run() for _ in range(repeat)]
    keys = ["parents_ratio", "all_ratio", "parents_visible_s", "all_delivered_s", "poll_s"]
    keys += ["posts", "replies"]
    return {
        "runs": runs,
        **{k: _median_of(runs, k) for k in keys},
        "lost": sum(r["lost"] for r in runs),
        "doubled": sum(r["doubled"] for r in runs),
        "rate_limited": sum(r["rate_limited"] for r in runs),
    }


def run_steady(repeat: int, cycles: int) -> dict[str, Any]:
    runs = [steady.one_run(cycles) for _ in range(repeat)]
    keys = ["rss_mb", "peak_rss_mb", "baseline_rss_mb", "cycle_cpu_ms_median"]
    return {"runs": runs, "cycles": cycles, **{k: _median_of(runs, k) for k in keys}}


# -- the table ------------------------------------------------------------------------------------------
Row = tuple[str, str, str, str]


def _ok(good: bool | None) -> str:
    return "" if good is None else ("ok" if good else "MISSED")


def rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []

    def add(name: str, target: str, value: str, good: bool | None = None) -> None:
        out.append((name, target, value, _ok(good)))

    if "idle" in r:
        i = r["idle"]
        n = int(i["open_windows"])
        add(
            f"SN requests per idle poll, {n} open windows: change table",
            "1",
            f"{i['change_requests_per_poll']:g}",
            i["change_requests_per_poll"] <= 1,
        )
        add(
            "  … task_ci (new affected-CI rows)",
            "≤ 1",
            f"{i['task_ci_requests_per_poll']:g}",
            i["task_ci_requests_per_poll"] <= 1,
        )
        add("  … other tables", "0", f"{i['other_requests_per_poll']:g}", i["other_requests_per_poll"] == 0)
        add(
            "Slack calls per idle poll (incl. tick + delivery pass)",
            "0",
            f"{i['slack_calls_max']:g} (max)",
            i["slack_calls_max"] == 0,
        )
        add(f"SN requests per full refresh of {n} windows (own line)", "—", f"{i['refresh_requests']:g}")
        add(
            "CPU per idle poll (process_time around Daemon.poll)",
            "≤ 20 ms",
            f"{i['cpu_ms_per_poll']:.1f} ms",
            i["cpu_ms_per_poll"] <= 20,
        )
        add("  CPU per idle cycle: poll + tick + Slack delivery pass", "—", f"{i['cpu_ms_per_cycle']:.1f} ms")
        add("  CPU per full refresh", "—", f"{i['refresh_cpu_ms']:.0f} ms")
    if "catchup" in r:
        c = r["catchup"]
        b = c["breakdown_s"]
        add(
            "First sync of 10,000 changes: wall ÷ bare requests loop",
            "≤ 1.5",
            f"{c['ratio']:.2f}",
            c["ratio"] <= 1.5,
        )
        add("  sync / bare loop (median s)", "—", f"{c['sync_s']:.2f} / {c['bare_s']:.2f}")
        add(
            "  requests (reader thread): change pages / task_ci (s)",
            "—",
            f"{b.get('change_request', 0):.2f} / {b.get('task_ci', 0):.2f}",
        )
        add(
            "  poll thread, overlapping them: committing / waiting for pages (s)",
            "—",
            f"{b.get('committing', 0):.2f} / {b.get('waiting', 0):.2f}",
        )
        add(
            "Peak RSS during that sync (VmHWM of the child)",
            "≤ 100 MB",
            f"{c['peak_rss_mb']:.1f} MB",
            c["peak_rss_mb"] <= 100,
        )
    if "baseline" in r or "catchup" in r:
        base = r.get("baseline", {}).get("peak_rss_mb") or r["catchup"]["baseline_peak_rss_mb"]
        add("  baseline: idle interpreter with the daemon's imports", "—", f"{base:.1f} MB")
    if "latency" in r:
        lat = r["latency"]
        add(
            "Ticket update → Slack parent updated (poll 5 s): p95",
            "≤ 7 s",
            f"{lat['p95_s']:.2f} s",
            lat["p95_s"] <= 7 and lat["lost"] == 0,
        )
        add(
            "  p50 / max / pooled p95",
            "—",
            f"{lat['p50_s']:.2f} / {lat['max_s']:.2f} / {lat['pooled_p95_s']:.2f} s",
        )
    if "burst" in r:
        bu = r["burst"]
        add(
            "100 new windows at 1 post/s: all parents visible ÷ 100 s",
            "≤ 1.15",
            f"{bu['parents_ratio']:.2f}",
            bu["parents_ratio"] <= 1.15 and bu["lost"] == 0 and bu["doubled"] == 0,
        )
        add(
            "  everything delivered (outbox empty) ÷ 100 s",
            "≤ 1.15",
            f"{bu['all_ratio']:.2f}",
            bu["all_ratio"] <= 1.15,
        )
        add(
            "  lost / doubled / HTTP 429 / posts / thread replies",
            "0 / 0 / — / — / —",
            f"{bu['lost']} / {bu['doubled']} / {bu['rate_limited']}"
            f" / {bu['posts']:.0f} / {bu['replies']:.0f}",
            bu["lost"] == 0 and bu["doubled"] == 0,
        )
    if "steady" in r:
        s = r["steady"]
        add(
            f"RSS after a steady run ({s['cycles']} poll cycles)",
            "≤ 60 MB",
            f"{s['rss_mb']:.1f} MB",
            s["rss_mb"] <= 60,
        )
        add(
            "  its baseline (same process, after imports) / CPU per cycle",
            "—",
            f"{s['baseline_rss_mb']:.1f} MB / {s['cycle_cpu_ms_median']:.0f} ms",
        )
    if "retention" in r:
        k, p = r["retention"]["kept"], r["retention"]["pruned"]
        add(
            "State after a year of 50 windows a day: database, no pruning / retention 90 d",
            "—",
            f"{k['db_mb']:.0f} MB / {p['db_mb']:.0f} MB",
        )
        add(
            "  CPU per idle cycle on it, no pruning / retention 90 d",
            "—",
            f"{k['cpu_ms_per_cycle']:.1f} ms / {p['cpu_ms_per_cycle']:.1f} ms",
        )
    return out


def table(r: dict[str, Any]) -> str:
    lines = [("figure", "target", "median", ""), ("---", "---", "---", "---")]
    lines += rows(r)
    return "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each fast figure (median)")
    parser.add_argument("--slow-repeat", type=int, default=1, help="runs of latency, burst, steady")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated: {','.join(FIGURES)}")
    parser.add_argument("--cycles", type=int, default=steady.CYCLES, help="poll cycles of the steady run")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    args = parser.parse_args()
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "baseline": lambda: run_baseline(args.repeat),
        "idle": lambda: run_idle(args.repeat),
        "catchup": lambda: run_catchup(args.repeat),
        "steady": lambda: run_steady(args.slow_repeat, args.cycles),
        "latency": lambda: run_latency(args.slow_repeat),
        "burst": lambda: run_burst(args.slow_repeat),
        "retention": lambda: retention.one_run(),  # one run: ~1 min, the figures are sizes
    }
    results: dict[str, Any] = {}
    for name in FIGURES:
        if name in only:
            t0 = time.monotonic()
            print(f"running {name} …", file=sys.stderr, flush=True)
            results[name] = jobs[name]()
            print(f"  {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        meta = {"argv": sys.argv, "python": platform.python_version(), "machine": platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, **results}, indent=1, default=str))


if __name__ == "__main__":
    main()
