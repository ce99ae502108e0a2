"""Issue 17: a source that hangs must not hold back the others, end to end and in real time.

Two ServiceNow simulators and the Slack simulator, the daemon running as in production
(``Daemon.run``, real clocks, real socket timeouts). One instance accepts every request and never
answers; the other's edits must still reach Slack within one poll interval and a second, while the
hung one runs into its timeout again and again. Waits are bounded polls on observable facts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from connector.wiring import Connector, build_connector
from tests.support import wait_for

pytestmark = pytest.mark.integration

CHANNEL = "C0MAINT01"
POLL_INTERVAL = 1.0  # the healthy source's
HUNG_TIMEOUT = 2.5  # the hung source's request timeout (3 attempts: ~12 s per poll of it)
Desk = tuple[ServiceNowSimulator, ServiceNowSimulator, SlackSimulator, Connector]




@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with ServiceNowSimulator() as acme, ServiceNowSimulator() as globex, SlackSimulator() as slack:
        settings = Settings.model_validate(
            {
                "sources": [
                    {
                        "name": "acme",
                        "url": acme.url,
                        "username": "admin",
                        "password": "secret",
                        "poll_interval": 5,
                        "timeout": HUNG_TIMEOUT,
                    },
                    {
                        "name": "globex",
                        "url": globex.url,
                        "username": "admin",
                        "password": "secret",
                        "poll_interval": POLL_INTERVAL,
                    },
                ],
                "slack": {
                    "token": "xoxb-simulator",
                    "channel": CHANNEL,
                    "base_url": slack.base_url,
                    "locale": "en",
                    "post_interval": 0,
                    "first_run": "announce",
                },
                "state": {"path": tmp_path / "state.db"},
            }
        )
        app = build_connector(settings)
        try:
            yield acme, globex, slack, app
        finally:
            acme.release()
            app.close()


def test_a_hung_source_does_not_hold_back_the_other(
    desk: Desk,
) -> None:
    acme, globex, slack, app = desk
    start = datetime.now(timezone.utc) + timedelta(days=1)
    for sim, number in ((acme, "CHG0000001"), (globex, "CHG0000002")):
        sim.put_record("change_request", make_change(
            number, short_description=f"{number} v0", start=start, end=start + timedelta(hours=1),
            sys_updated_on=(datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
        ))  # fmt: skip
    sys_id = globex.records("change_request")[0]["sys_id"]
    beats: list[float] = []
    loop = threading.Thread(
        target=app.daemon.run, kwargs={"heartbeat": lambda: beats.append(time.monotonic())}, daemon=True
    )
    loop.start()
    try:
        wait_for("both windows posted", lambda: len(slack.parents(CHANNEL)) == 2)
        acme.inject("hang", count=10_000)  # from now on acme accepts every request and never answers
        hung_from = time.monotonic()
        wait_for("acme's next poll to hang", lambda: acme.held() >= 1, 10)

        latencies, seen_hung = [], []
        for version in range(1, 5):
            title = f"CHG0000002 v{version}"
            globex.update_record("change_request", sys_id, short_description=title)
            edited = time.monotonic()

            def arrived(title: str = title) -> bool:
                health = app.daemon.source_health()["acme"]
                if health.hung() and health.request_age is not None:
                    seen_hung.append(health.request_age)
                return any(title in p.text for p in slack.parents(CHANNEL))

            wait_for(f"{title} in Slack", arrived, 15)
            latencies.append(time.monotonic() - edited)
        hung_for = time.monotonic() - hung_from
        wait_for("acme's third timeout", lambda: acme.held() >= 3, 10)
    finally:
        app.daemon.stop.set()
        acme.release()
        loop.join(10)
    assert not loop.is_alive()
    print(f"edit-to-Slack latencies {[round(x, 2) for x in latencies]} while acme hung {hung_for:.1f}s")
    assert max(latencies) <= POLL_INTERVAL + 1.0, latencies
    assert hung_for > 2 * HUNG_TIMEOUT
    assert seen_hung and min(seen_hung) < HUNG_TIMEOUT, "seen as hung before its timeout ended it"
    during = [b for b in beats if hung_from <= b]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert gaps and max(gaps) < 1.5, gaps  # the watchdog was fed all along
