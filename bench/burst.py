"""100 new windows at once, the Slack simulator enforcing 1 post/s per channel: how long until L1
sees them all, and until everything is delivered; nothing may be lost or doubled.

``python -m bench.burst [--repeat N] [--windows 100]``. After a first sync of an empty instance,
100 scheduled changes appear at once. The clock starts with the ``Daemon.poll()`` that finds them;
the app's own ``SinkWorker`` thread delivers, with the default pacing (``slack.post_interval``
1.1 s). Each new window is one post: its parent message, which is its announcement (no reply
repeats it; ``slack.announce_in_thread`` would make it two), so the floor at 1 post/s is 100 s.
"Everything delivered" is read from the connector's outbox: every event of the burst told, none
waiting. Lost = a window whose announcement is not recorded as delivered by a message that is in
the channel; doubled = a message id seen twice.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from bench.common import CHANNEL, build, settings_data, setup_logs, tmpdir
from bench.harness import Seeder, simulators

WINDOWS = 100
TIMEOUT = 600.0


def one_run(windows: int = WINDOWS) -> dict[str, Any]:
    work = tmpdir("burst")
    stream = setup_logs(work / "connector.log")
    with simulators(post_rate=1.0) as (snow, slack):
        seeder = Seeder(snow, datetime.now(timezone.utc))
        stop = threading.Event()
        app = build(settings_data(snow.url, slack.base_url, work / "state.db"), stop=stop)
        app.daemon.poll()  # the first sync: nothing there yet
        for sink in app.daemon.sinks:
            sink.start()
        time.sleep(1)
        now = datetime.now(timezone.utc)
        for _ in range(windows):
            seeder.change(is_open=True, updated=now)
        slack.reset_calls()
        t0 = time.monotonic()
        app.daemon.poll()  # finds the burst, commits it, wakes the Slack worker
        t_polled = time.monotonic() - t0
        t_parents = t_all = None
        while time.monotonic() - t0 < TIMEOUT:
            time.sleep(0.25)
            elapsed = time.monotonic() - t0
            if t_parents is None and len(slack.parents(CHANNEL)) >= windows:
                t_parents = elapsed
            if t_parents is not None and app.store.outbox_stats(datetime.now(timezone.utc))[0] == 0:
                t_all = elapsed
                break
        calls = slack.calls
        stop.set()
        for sink in app.daemon.sinks:
            sink.join(timeout=10)
        parents = slack.parents(CHANNEL)
        app.close()
    stream.close()
    messages = [*parents, *(r for m in parents for r in m.replies)]
    idents = Counter(str(((m.metadata or {}).get("event_payload") or {}).get("id", "")) for m in messages)
    in_channel = {m.ts for m in messages}
    db = sqlite3.connect(f"file:{work / 'state.db'}?mode=ro", uri=True)
    told = db.execute(
        "SELECT d.ts FROM deliveries d JOIN events e ON e.id=d.event_id "
        "WHERE e.kind='announced' AND d.state='done'"
    ).fetchall()
    db.close()
    announced = sum(1 for (ts,) in told if ts in in_channel)
    return {
        "windows": windows,
        "poll_s": t_polled,
        "parents_visible_s": t_parents,
        "all_delivered_s": t_all,
        "parents_ratio": None if t_parents is None else t_parents / windows,
        "all_ratio": None if t_all is None else t_all / windows,
        "parents": len(parents),
        "doubled": sum(n - 1 for n in idents.values() if n > 1),
        "replies": sum(len(m.replies) for m in parents),
        "lost": windows - announced,
        "posts": sum(1 for c in calls if c.method == "chat.postMessage" and c.ok),
        "rate_limited": sum(1 for c in calls if c.status == 429),
        "work": str(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--windows", type=int, default=WINDOWS)
    args = parser.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(one_run(args.windows), indent=1))


if __name__ == "__main__":
    main()
