"""Ticket update → Slack parent updated, with the real daemon loop, real time, poll interval 5 s.

``python -m bench.latency [--repeat N] [--updates 20]``. 20 windows are announced first (a warm-up
app with no pacing against a simulator with no rate limit), then the measured app runs
``Daemon.run`` in a thread with its ``SinkWorker`` and default pacing, against a Slack simulator
enforcing 1 post/s per channel. At random gaps of 0.5–5 s one window after another is rescheduled
(its planned end moves 30 minutes: a ``rescheduled`` reply and a parent update). The latency of an
update is from the moment the ticket changed in the simulator to the moment the simulator applied
the ``chat.update`` of that window's parent.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from datetime import datetime, timezone
from typing import Any

from bench.common import CHANNEL, build, median, percentile, settings_data, setup_logs, tmpdir
from bench.harness import Seeder, set_post_rate, simulators
from connector.cli.service import deliver_everywhere

UPDATES = 20
POLL_INTERVAL = 5
TIMEOUT = 30.0  # an update not visible after this is counted as lost


def parent_ts(slack: Any) -> dict[str, str]:
    """sys_id → ts of its parent message (from the message metadata the connector sets)."""
    out = {}
    for m in slack.parents(CHANNEL):
        ident = ((m.metadata or {}).get("event_payload") or {}).get("id", "")
        out[str(ident).rsplit(":", 1)[-1]] = m.ts
    return out


def watch_updates(
    slack: Any, changed: dict[str, float], seen: dict[str, float], done: threading.Event, every: float
) -> threading.Thread:
    """Start a thread that notes in ``seen`` when (monotonic) each parent ``ts`` in ``changed`` was
    first updated successfully in Slack, until ``done`` is set; returns the thread to join."""

    def watch() -> None:
        index = 0
        while not done.is_set():
            calls = slack.calls
            now = time.monotonic()
            for c in calls[index:]:
                if c.method == "chat.update" and c.ok and c.ts in changed and c.ts not in seen:
                    seen[c.ts] = now
            index = len(calls)
            time.sleep(every)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def one_run(updates: int = UPDATES, seed: int = 3) -> dict[str, Any]:
    from connector.daemon import utc_now

    work = tmpdir("latency")
    stream = setup_logs(work / "connector.log")
    rng = random.Random(seed)
    with simulators() as (snow, slack):
        seeder = Seeder(snow, datetime.now(timezone.utc))
        seeder.seed(updates, open_fraction=1.0)
        data = settings_data(
            snow.url,
            slack.base_url,
            work / "state.db",
            servicenow__poll_interval=POLL_INTERVAL,
            slack__first_run="announce",
            slack__post_interval=0,
        )
        warm = build(data)  # announce every window quickly: the warm-up is not what is measured
        warm.daemon.poll()
        deliver_everywhere(warm, utc_now())
        warm.close()
        ts_of = parent_ts(slack)
        set_post_rate(slack, 1.0)
        del data["slack"]["post_interval"]  # the default pacing
        stop = threading.Event()
        app = build(data, stop=stop)
        loop = threading.Thread(target=app.daemon.run, name="daemon", daemon=True)
        loop.start()
        time.sleep(POLL_INTERVAL + 1)  # the first poll and delivery pass are done
        slack.reset_calls()

        changed: dict[str, float] = {}  # parent ts → when its ticket was changed
        seen: dict[str, float] = {}
        done = threading.Event()
        watcher = watch_updates(slack, changed, seen, done, every=0.02)
        targets = list(seeder.open_ids)
        rng.shuffle(targets)
        for sys_id in targets[:updates]:
            time.sleep(rng.uniform(0.5, 5.0))
            seeder.reschedule(sys_id)
            changed[ts_of[sys_id]] = time.monotonic()
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < len(changed) and time.monotonic() < deadline:
            time.sleep(0.1)
        done.set()
        watcher.join()
        calls = slack.calls
        stop.set()
        loop.join(timeout=30)
        app.close()
    stream.close()
    latencies = [seen[ts] - t for ts, t in changed.items() if ts in seen]
    return {
        "updates": len(changed),
        "lost": len(changed) - len(latencies),
        "p50_s": median(latencies),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies, default=float("nan")),
        "latencies_s": sorted(round(x, 3) for x in latencies),
        "rate_limited": sum(1 for c in calls if c.status == 429),
        "work": str(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--updates", type=int, default=UPDATES)
    args = parser.parse_args()
    for i in range(args.repeat):
        print(json.dumps(one_run(args.updates, seed=3 + i), indent=1))


if __name__ == "__main__":
    main()
