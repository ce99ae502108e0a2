"""``itsm-connector check`` covers every source, every channel named anywhere and Alertmanager, one line
each, through the real entry point against two ServiceNow simulators, the Slack simulator (three
channels) and the real Alertmanager. It used to test the first source and ``slack.channel`` only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.cli.main import main
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from tests.alertmanager_harness import free_port, run_alertmanager

pytestmark = pytest.mark.integration

MAINT, NETOPS, GLOBEX = "C0MAINT01", "C0NETOPS1", "C0GLOBEX1"
SCOPES = ("chat:write", "channels:history", "channels:read")
AM_TOKEN = "am-bearer-SeCrEt-9"


@pytest.fixture(autouse=True)
def slack_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITSM_SLACK__TOKEN", "xoxb-simulator")


class World:
    def __init__(
        self, tmp_path: Path, acme: ServiceNowSimulator, globex: ServiceNowSimulator, slack: SlackSimulator
    ):
        self.tmp_path, self.acme, self.globex, self.slack = tmp_path, acme, globex, slack

    def config(self, **change: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "sources": [
                {"name": "acme", "url": self.acme.url, "username": "admin", "password": "secret",
                 "filter": "assignment_group.name=DB^ORtypeINnormal,standard"},
                {"name": "globex", "url": self.globex.url, "username": "admin", "password": "secret"},
            ],
            "slack": {"channel": MAINT, "base_url": self.slack.base_url,
                      "channels": [{"id": MAINT, "locale": "en"}]},
            "routes": [
                {"name": "acme network", "match": {"source": "acme"}, "channels": [NETOPS, MAINT]},
                {"name": "globex", "match": {"source": "globex"}, "channels": [GLOBEX]},
            ],
            "state": {"path": str(self.tmp_path / "state.db")},
            "log": {"level": "ERROR"},
        }  # fmt: skip
        data.update(change)
        return data

    def check(self, data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
        path = self.tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        capsys.readouterr()
        rc = main(["check", "-c", str(path)])
        return rc, capsys.readouterr().out.splitlines()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with (
        ServiceNowSimulator() as acme,
        ServiceNowSimulator() as globex,
        SlackSimulator(scopes=SCOPES) as slack,
    ):
        now = datetime.now(timezone.utc)
        change = make_change(
            "CHG0000001", short_description="DB patch", start=now, end=now + timedelta(hours=1)
        )
        acme.put_record("change_request", change)
        slack.add_channel(NETOPS, "netops")
        slack.add_channel(GLOBEX, "globex-maint")
        yield World(tmp_path, acme, globex, slack)


def line(lines: list[str], start: str) -> str:
    found = [ln for ln in lines if ln.startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


def test_everything_named_is_checked_one_line_each(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = world.check(world.config(), capsys)
    assert rc == 0, lines
    assert line(lines, "ok   source acme (").endswith("table change_request): readable as admin; filter ok")
    assert line(lines, "ok   source globex (").endswith("table change_request): readable as admin")
    assert line(lines, "ok   slack token: valid")
    maint = line(lines, f"ok   slack channel {MAINT} ")
    assert maint == (
        f"ok   slack channel {MAINT} (slack.channel, routes.0.channels, slack.channels.0): "
        "#maintenance: the bot is a member and can post"
    )
    assert line(lines, f"ok   slack channel {NETOPS} (routes.0.channels): #netops")
    assert line(lines, f"ok   slack channel {GLOBEX} (routes.1.channels): #globex-maint")
    assert len(lines) == 6


def test_a_second_source_on_a_closed_port_fails(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    data = world.config()
    data["sources"][1]["url"] = f"http://127.0.0.1:{free_port()}"
    rc, lines = world.check(data, capsys)
    assert rc == 1
    assert line(lines, "ok   source acme (")
    assert "cannot reach table 'change_request'" in line(lines, "FAIL source globex (")


def test_a_route_channel_that_does_not_exist_fails(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    data = world.config()
    data["routes"][1]["channels"] = ["C0NOSUCH1"]
    rc, lines = world.check(data, capsys)
    assert rc == 1
    assert line(lines, "FAIL slack channel C0NOSUCH1 (routes.1.channels): no such channel")


def test_a_channel_name_is_an_error_showing_the_id(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    data = world.config()
    data["routes"][0]["channels"] = ["#netops"]
    data["routes"][1]["channels"] = ["globex-maint", "ops"]
    rc, lines = world.check(data, capsys)
    assert rc == 1
    assert line(lines, "FAIL slack channel #netops") == (
        f"FAIL slack channel #netops (routes.0.channels): a channel name, not an ID: use its ID {NETOPS}"
    )
    assert line(lines, "FAIL slack channel globex-maint").endswith(f"use its ID {GLOBEX}")
    assert line(lines, "FAIL slack channel ops ").endswith("no channel the bot can see is called 'ops'")


def test_without_channels_read_a_name_still_fails_and_membership_is_still_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        ServiceNowSimulator() as acme,
        ServiceNowSimulator() as globex,
        SlackSimulator(scopes=("chat:write", "channels:history")) as slack,
    ):
        slack.add_channel(NETOPS, "netops", member=False)
        w = World(tmp_path, acme, globex, slack)
        data = w.config()
        data["routes"][1]["channels"] = ["#globex-maint"]
        rc, lines = w.check(data, capsys)
    assert rc == 1
    assert line(lines, f"ok   slack channel {MAINT} ").endswith("the bot is a member and can post")
    assert "the bot is not a member" in line(lines, f"FAIL slack channel {NETOPS} ")
    assert line(lines, "FAIL slack channel #globex-maint").endswith(
        "could not be looked up: the token lacks channels:read"
    )


def test_a_channel_the_bot_is_not_in_or_cannot_post_to(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.slack.set_channel(GLOBEX, member=False)
    world.slack.add_channel("C0OLDMAINT", "old-maint", archived=True)
    data = world.config()
    data["slack"]["channels"].append({"id": "C0OLDMAINT", "locale": "ko"})
    rc, lines = world.check(data, capsys)
    assert rc == 1
    assert "not a member of the channel: invite it" in line(lines, f"FAIL slack channel {GLOBEX} ")
    assert "archived" in line(lines, "FAIL slack channel C0OLDMAINT (slack.channels.1)")


def test_a_token_without_chat_write_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with (
        ServiceNowSimulator() as acme,
        ServiceNowSimulator() as globex,
        SlackSimulator(scopes=("channels:history", "channels:read")) as slack,
    ):
        slack.add_channel(NETOPS, "netops")
        slack.add_channel(GLOBEX, "globex-maint")
        rc, lines = World(tmp_path, acme, globex, slack).check(
            World(tmp_path, acme, globex, slack).config(), capsys
        )
    assert rc == 1
    assert line(lines, "FAIL slack token: lacks the chat:write scope")


def test_a_filter_on_a_field_the_table_lacks_fails(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """ServiceNow drops a condition on an unknown field: the filter silently selects more tickets."""
    data = world.config()
    data["sources"][0]["filter"] = "asignment_group.name=DB^ORtypeINnormal^u_customer=acme"
    rc, lines = world.check(data, capsys)
    assert rc == 1
    assert line(lines, "FAIL source acme (").endswith(
        "readable as admin, but the filter names fields the table does not show "
        "(asignment_group.name, u_customer): ServiceNow ignores such a condition, which widens the filter"
    )


def test_alertmanager_is_checked_when_configured(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "am").mkdir()
    with run_alertmanager(tmp_path / "am") as am:
        rc, lines = world.check(world.config(alertmanager={"url": am.url}), capsys)
    assert rc == 0, lines
    assert line(lines, f"ok   alertmanager {am.url}: ready, API v2 answers (version 0.25")

    closed = f"http://127.0.0.1:{free_port()}"
    rc, lines = world.check(world.config(alertmanager={"url": closed}), capsys)
    assert rc == 1
    assert line(lines, f"FAIL alertmanager {closed}: GET {closed}/-/ready: cannot reach Alertmanager")


class _EchoHeaders(BaseHTTPRequestHandler):
    """A proxy's error page that quotes the request's headers."""

    def do_GET(self) -> None:
        body = f"upstream failed; your request had Authorization: {self.headers['Authorization']}".encode()
        self.send_response(502)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_check_output_is_redacted(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rc, lines = world.check(world.config(alertmanager={"url": url, "bearer_token": AM_TOKEN}), capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 1
    failed = line(lines, f"FAIL alertmanager {url}: GET {url}/-/ready: HTTP 502 upstream failed")
    assert AM_TOKEN not in "\n".join(lines) and "Bearer ***" in failed
