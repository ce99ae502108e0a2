"""``itsm-connector run`` with push on (issue 14): the real process starts the hook listener next to
the health listener, takes the simulator's signed hints, never logs the secret, and a taken hook port
is one plain error."""

from __future__ import annotations

import signal
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from tests.push_harness import SECRET
from tests.support import wait_for
from tests.test_service import CHANNEL, free_port, sims, start, write_config

pytestmark = pytest.mark.integration
__all__ = ["sims"]  # the fixture


def test_the_daemon_posts_a_hinted_edit_long_before_its_poll(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    start_at = datetime.now(timezone.utc) + timedelta(days=1)
    earlier = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    sys_id = snow.put_record("change_request", make_change(
        "CHG0070001", short_description="before", start=start_at, end=start_at + timedelta(hours=1),
        sys_updated_on=earlier))["sys_id"]  # fmt: skip
    port = free_port()
    config = write_config(tmp_path, snow, slack, hooks={"enabled": True, "listen": f"127.0.0.1:{port}"})
    text = config.read_text().replace("poll_interval: 1", "poll_interval: 300")
    config.write_text(text)
    service = start(config, ITSM_SERVICENOW__HOOK_SECRET=SECRET)
    try:
        wait_for("the first sync", lambda: len(slack.parents(CHANNEL)) == 1)
        wait_for("the hook listener", lambda: service.logged("hook listener on http://127.0.0.1:"))
        snow.enable_hints(f"http://127.0.0.1:{port}/hooks/servicenow/servicenow", SECRET)
        snow.update_record("change_request", sys_id, short_description="after, pushed")
        wait_for("the pushed edit", lambda: "after, pushed" in slack.parents(CHANNEL)[0].text, 10)
    finally:
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(15) == 0
    assert SECRET not in service.log()
    assert service.logged("hints servicenow: 1 records read again: changed 1")


def test_a_taken_hook_port_is_one_plain_error(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, snow, slack, hooks={"enabled": True, "listen": f"127.0.0.1:{port}"})
        service = start(config, ITSM_SERVICENOW__HOOK_SECRET=SECRET)
        assert service.proc.wait(30) == 1
    wait_for("stderr to be read", lambda: service.logged("cannot listen"))
    assert service.logged(f"ERROR connector.cli.service: cannot listen on hooks.listen 127.0.0.1:{port}: ")
    assert "Traceback" not in service.log()
