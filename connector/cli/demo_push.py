"""``itsm-connector demo --push``: push end to end, in real time. The ServiceNow simulator sends a
signed hint on every save, as the Business Rule of ``contrib/servicenow/itsm_connector_hint.js``
does; the daemon runs as ``run`` runs it (its loop, the hook listener on loopback), with a poll
interval of 10 s (short, so the demo does not wait long for the lost hint's poll). Each edit is
timed from the save to the Slack update of its window; the third edit's hint is dropped on purpose,
and the next poll brings that edit.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import DEFAULT_TOKEN, SlackSimulator
from connector.wiring import build_connector

CHANNEL = "C0MAINT01"
POLL_INTERVAL = 10.0
PAUSE = 1.5  # seconds between two edits


def run_push_demo(out: TextIO, *, locale: str = "en", tz: str = "Asia/Seoul") -> int:
    secret = secrets.token_hex(32)
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    with (
        ServiceNowSimulator() as snow,
        SlackSimulator() as slack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        earlier = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
        ids = [
            snow.put_record("change_request", make_change(
                f"CHG004000{n}", short_description=title, start=start, end=start + timedelta(hours=2),
                sys_updated_on=earlier))["sys_id"]
            for n, title in enumerate(("DB patch", "Core switch firmware", "Storage migration"), start=1)
        ]  # fmt: skip
        settings = Settings.model_validate({
            "servicenow": {"name": "acme", "url": snow.url, "username": "admin", "password": "secret",
                           "poll_interval": POLL_INTERVAL, "hook_secret": secret},
            "slack": {"token": DEFAULT_TOKEN, "channel": CHANNEL, "base_url": slack.base_url,
                      "locale": locale, "timezone": tz, "post_interval": 0, "first_run": "announce"},
            "state": {"path": Path(tmp) / "state.db"},
            "hooks": {"enabled": True, "listen": "127.0.0.1:0"},
        })  # fmt: skip
        app = build_connector(settings)
        assert app.hooks is not None
        app.hooks.start()
        loop = threading.Thread(target=app.daemon.run, name="daemon", daemon=True)
        loop.start()
        try:
            _wait(lambda: len(slack.parents(CHANNEL)) == 3, 15)
            print(
                f"3 windows announced; poll interval {POLL_INTERVAL:g} s, hook listener on {app.hooks.url}",
                file=out,
            )
            hints = snow.enable_hints(f"{app.hooks.url}/hooks/servicenow/acme", secret)

            def edit(n: int, title: str) -> float:
                time.sleep(PAUSE)  # a person between two saves (and the queue's pace, 1 s, has passed)
                saved = time.monotonic()
                snow.update_record("change_request", ids[n], short_description=title)
                _wait(lambda: any(title in p.text for p in slack.parents(CHANNEL)), 30)
                return time.monotonic() - saved

            for n, title in (
                (0, "DB patch — rollback plan added"),
                (1, "Core switch firmware 17.9 (was 17.6)"),
            ):
                print(f"edited {title!r}: in Slack {edit(n, title):.2f} s after the save (by hint)", file=out)
            hints.drop = 1.0
            print(f"the next hint is lost; the poll (every {POLL_INTERVAL:g} s) brings the edit:", file=out)
            took = edit(2, "Storage migration, wave 2")
            print(
                f"edited 'Storage migration, wave 2': in Slack {took:.1f} s after the save (by poll)",
                file=out,
            )
        finally:
            app.daemon.stop.set()
            loop.join(timeout=15)
            app.close()
        print("\n" + "=" * 30 + " #maintenance as L1 sees it in Slack " + "=" * 30, file=out)
        print(slack.seen(CHANNEL, ZoneInfo(tz)), file=out)
    return 0


def _wait(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo did not see what it waited for")
        time.sleep(0.01)
