"""The first poll starts the ``task_ci`` cursor at "now": at its whole second, like every later cursor
(``next_cursor``). With the microseconds kept, a ``task_ci`` row written earlier in that same second
came back from the next poll "before the cursor", which the keyset check calls a pagination loop: the
source failed on every poll from then on. ``itsm-connector simulate`` followed at once by ``sync``
hit it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from connector.wiring import build_connector
from tests.support import Clock

pytestmark = pytest.mark.integration



def test_a_task_ci_row_from_the_second_of_the_first_poll_does_not_break_the_next(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 26, 12, 0, 0, 100_000, tzinfo=timezone.utc))
    with ServiceNowSimulator(clock=clock) as snow, SlackSimulator() as slack:
        ci = snow.put_record("cmdb_ci", {"name": "db01"})["sys_id"]
        ci2 = snow.put_record("cmdb_ci", {"name": "db02"})["sys_id"]
        change = snow.put_record("change_request", make_change(
            "CHG0090001", short_description="DB patch", start=clock.now + timedelta(hours=1),
            end=clock.now + timedelta(hours=2), cmdb_ci=ci,
        ))  # fmt: skip
        snow.put_record("task_ci", {"task": change["sys_id"], "ci_item": ci2})
        settings = Settings.model_validate({
            "servicenow": {"url": snow.url, "username": "admin", "password": "secret"},
            "slack": {"token": "xoxb-simulator", "channel": "C0MAINT01", "base_url": slack.base_url},
            "state": {"path": str(tmp_path / "state.db")},
        })  # fmt: skip
        app = build_connector(settings, clock=clock)
        try:
            clock.now = clock.now.replace(microsecond=700_000)  # the first poll, in the same second
            app.daemon.poll()
            clock.now += timedelta(seconds=10)
            app.daemon.poll()
            assert app.daemon.state.sources["servicenow"].last_error is None
            (tracked,) = app.store.tracked()
            assert tracked.window.cis == ("db01", "db02")
        finally:
            app.close()
