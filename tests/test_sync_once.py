"""``itsm-connector sync --once`` is one cycle of everything: every source polled, every Slack channel
and the Alertmanager silences delivered, then exit, non-zero naming each source that failed, after
delivering what the others produced. Through the real entry point, against two ServiceNow simulators,
the Slack simulator with three channels and the real Alertmanager. It used to judge the first source
only, stop before delivering when it failed, and never create a silence (only ``run`` did)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from connector.cli.main import main
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from tests.alertmanager_harness import run_alertmanager

pytestmark = pytest.mark.integration

MAINT, NETOPS, GLOBEX = "C0MAINT01", "C0NETOPS1", "C0GLOBEX1"


@pytest.fixture(autouse=True)
def slack_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITSM_SLACK__TOKEN", "xoxb-simulator")


def change(snow: ServiceNowSimulator, number: str, ci: str, group: str) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ci_id = snow.put_record("cmdb_ci", {"name": ci})["sys_id"]
    group_id = snow.put_record("sys_user_group", {"name": group})["sys_id"]
    snow.put_record(
        "change_request",
        make_change(
            number, short_description=f"{ci} patch", start=now - timedelta(minutes=5),
            end=now + timedelta(hours=1), state="-1", cmdb_ci=ci_id, assignment_group=group_id,
        ),
    )  # fmt: skip


def config(tmp_path: Path, sources: list[dict[str, Any]], slack: str, am: str) -> Path:
    data = {
        "sources": sources,
        "slack": {"channel": MAINT, "base_url": slack, "locale": "en", "timezone": "UTC",
                  "post_interval": 0, "first_run": "announce"},
        "routes": [
            {"name": "acme network", "match": {"source": "acme", "assignment_group": "Network"},
             "channels": [NETOPS]},
            {"name": "globex", "match": {"source": "globex"}, "channels": [GLOBEX]},
        ],
        "alertmanager": {"url": am},
        "state": {"path": str(tmp_path / "state.db")},
        "log": {"format": "text", "level": "ERROR"},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def silenced(am_url: str) -> list[str]:
    silences = requests.get(f"{am_url}/api/v2/silences", timeout=5).json()
    return sorted(m["value"] for s in silences if s["status"]["state"] == "active" for m in s["matchers"])


def test_one_cycle_covers_every_source_and_every_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        ServiceNowSimulator() as acme,
        ServiceNowSimulator() as globex,
        ServiceNowSimulator(password="the-real-one") as initech,
        SlackSimulator() as slack,
        run_alertmanager(tmp_path) as am,
    ):
        slack.add_channel(NETOPS, "netops")
        slack.add_channel(GLOBEX, "globex-maint")
        change(acme, "CHG0000101", "db01", "DBA")
        change(acme, "CHG0000102", "sw01", "Network")
        change(globex, "CHG0000201", "web01", "Web")
        change(initech, "CHG0000301", "app01", "Apps")
        sources = [
            {"name": "acme", "url": acme.url, "username": "admin", "password": "secret"},
            {"name": "globex", "url": globex.url, "username": "admin", "password": "secret"},
            {"name": "initech", "url": initech.url, "username": "admin", "password": "a-stale-one"},
        ]
        path = config(tmp_path, sources, slack.base_url, am.url)
        capsys.readouterr()
        rc = main(["sync", "--once", "-c", str(path)])
        out, err = capsys.readouterr()

        assert rc == 1, (out, err)
        failed = [ln for ln in err.splitlines() if ln.startswith("sync failed: ")]
        assert len(failed) == 1 and failed[0].startswith("sync failed: source initech: "), err
        assert "rejected the credentials" in failed[0] and "a-stale-one" not in err
        # ... after delivering what the others produced: every channel, and the silences
        assert [len(slack.parents(c)) for c in (MAINT, NETOPS, GLOBEX)] == [1, 1, 1]
        assert "CHG0000101" in slack.parents(MAINT)[0].text
        assert "CHG0000102" in slack.parents(NETOPS)[0].text and "CHG0000201" in slack.parents(GLOBEX)[0].text
        assert silenced(am.url) == ["db01(:[0-9]+)?", "sw01(:[0-9]+)?", "web01(:[0-9]+)?"]
        assert "source acme: fetched 2, events" in out and "source globex: fetched 1, events" in out
        assert f"slack {GLOBEX}: posted 2" in out and "alertmanager: 3 silences changed" in out

        # the source recovers: the next cycle succeeds and delivers its window too
        initech.password = "a-stale-one"
        assert main(["sync", "--once", "-c", str(path)]) == 0
        assert any("CHG0000301" in p.text for p in slack.parents(MAINT))
        assert "app01(:[0-9]+)?" in silenced(am.url)
