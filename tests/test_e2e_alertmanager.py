"""End to end with the real Alertmanager: ServiceNow simulator → connector → silence + Slack parent.

Times are real (Alertmanager judges silences by its own clock), so the window is built around the
current time and nothing waits for time to pass.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from connector.cli.service import deliver_everywhere
from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from connector.wiring import build_connector
from tests.alertmanager_harness import run_alertmanager

pytestmark = pytest.mark.integration


def post_alerts(url: str, *instances: str) -> None:
    now = datetime.now(timezone.utc)
    alerts = [
        {
            "labels": {"alertname": "HostDown", "instance": i},
            "startsAt": (now - timedelta(minutes=1)).isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        for i in instances
    ]
    requests.post(f"{url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()


def silenced_by(url: str) -> dict[str, list[str]]:
    reply = requests.get(f"{url}/api/v2/alerts", timeout=5)
    reply.raise_for_status()
    return {a["labels"]["instance"]: a["status"]["silencedBy"] for a in reply.json()}


def test_running_window_silences_its_cis_only_until_closed(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with run_alertmanager(tmp_path) as am, ServiceNowSimulator() as snow, SlackSimulator() as slack:
        ci = snow.put_record("cmdb_ci", {"name": "db01"})
        rec = snow.put_record(
            "change_request",
            make_change(
                "CHG0060001",
                short_description="DB patch",
                start=now - timedelta(minutes=5),
                end=now + timedelta(hours=1),
                state="-1",
                cmdb_ci=ci["sys_id"],
            ),
        )
        settings = Settings.model_validate(
            {
                "servicenow": {"url": snow.url, "username": "admin", "password": "secret"},
                "slack": {
                    "token": "xoxb-simulator",
                    "channel": "C0MAINT01",
                    "base_url": slack.base_url,
                    "post_interval": 0,
                    "first_run": "announce",
                    "locale": "en",
                },
                "alertmanager": {"url": am.url, "ui_url": "http://am.example"},
                "state": {"path": tmp_path / "state.db"},
            }
        )
        app = build_connector(settings)
        assert app.silences is not None

        def cycle() -> None:
            t = datetime.now(timezone.utc)
            app.daemon.poll()
            app.daemon.tick()
            app.silences.deliver(t)  # type: ignore[union-attr]
            deliver_everywhere(app, t)

        cycle()
        post_alerts(am.url, "db01:9100", "db011:9100", "web01:9100")
        silence_ids = [s["id"] for s in app.store.silences(("servicenow", rec["sys_id"]))]
        assert len(silence_ids) == 1
        state = silenced_by(am.url)
        assert state["db01:9100"] == silence_ids
        assert state["db011:9100"] == [] and state["web01:9100"] == []
        parent = slack.parents("C0MAINT01")[0]
        assert silence_ids[0] in str(parent.blocks)  # the parent names its silence

        snow.update_record(
            "change_request",
            rec["sys_id"],
            state="3",
            close_code="successful",
            work_end=now.strftime("%Y-%m-%d %H:%M:%S"),
        )
        cycle()
        cycle()  # idempotent: nothing more to do
        assert silenced_by(am.url)["db01:9100"] == []  # closed early: alerts are live again
        replies = [r.text for r in slack.parents("C0MAINT01")[0].replies]
        # announced by the parent itself; the thread tells the start and the early close
        assert [("started" in replies[0].lower()), ("completed" in replies[-1].lower())] == [True, True]
        app.close()
