"""How the commands are called and what they say, through the real entry point against the simulators:
``-c`` anywhere and ``ITSM_CONNECTOR_CONFIG``; ``--help``; the no-op flags; read-only commands without
secrets; ``--dry-run`` leaves nothing behind and never says "posted"; ``check`` prints results only;
summaries count digests; every log line about a channel names it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.cli.main import main
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator

pytestmark = pytest.mark.integration

CHANNEL = "C0MAINT01"




class World:
    """Both simulators with two changes (one running), secrets in files, a config file."""

    def __init__(self, tmp_path: Path, snow: ServiceNowSimulator, slack: SlackSimulator) -> None:
        self.tmp_path, self.snow, self.slack = tmp_path, snow, slack
        self.state = tmp_path / "state" / "state.db"
        for name, value in (("servicenow-password", "secret"), ("slack-token", "xoxb-simulator")):
            (tmp_path / name).write_text(value + "\n")
            (tmp_path / name).chmod(0o600)
        self.config = self.write()

    def write(self, *, secrets: bool = True, name: str = "config.yaml", **change: Any) -> Path:
        data: dict[str, Any] = {
            "servicenow": {"url": self.snow.url, "username": "admin"},
            "slack": {"channel": CHANNEL, "base_url": self.slack.base_url, "locale": "en",
                      "timezone": "UTC", "post_interval": 0},
            "state": {"path": str(self.state)},
            "log": {"format": "text", "level": "INFO"},
        }  # fmt: skip
        if secrets:
            data["servicenow"]["password_file"] = str(self.tmp_path / "servicenow-password")
            data["slack"]["token_file"] = str(self.tmp_path / "slack-token")
        for key, value in change.items():
            data[key] = {**data.get(key, {}), **value}
        path = self.tmp_path / name
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path


def seed(snow: ServiceNowSimulator) -> None:
    now = datetime.now(timezone.utc)
    snow.put_record("change_request", make_change(
        "CHG0070001", short_description="DB patch", start=now - timedelta(minutes=5),
        end=now + timedelta(hours=1), state="-1",
    ))  # fmt: skip
    snow.put_record("change_request", make_change(
        "CHG0070002", short_description="Router firmware", start=now + timedelta(hours=3),
        end=now + timedelta(hours=4),
    ))  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        seed(snow)
        yield World(tmp_path, snow, slack)


@pytest.fixture
def synced(world: World, capsys: pytest.CaptureFixture[str]) -> World:
    assert main(["sync", "-c", str(world.config)]) == 0
    capsys.readouterr()
    return world


# -- -c and ITSM_CONNECTOR_CONFIG ------------------------------------------------------------------


def test_config_option_before_or_after_the_command(synced: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["windows", "-c", str(synced.config)]) == 0
    after = capsys.readouterr().out
    assert main(["-c", str(synced.config), "windows"]) == 0
    before = capsys.readouterr().out
    assert main(["--config", str(synced.config), "windows"]) == 0
    assert before == after == capsys.readouterr().out
    assert "CHG0070001" in before


def test_config_from_the_environment_and_c_wins_over_it(
    synced: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ITSM_CONNECTOR_CONFIG", str(synced.config))
    assert main(["windows"]) == 0
    assert "CHG0070001" in capsys.readouterr().out
    monkeypatch.setenv("ITSM_CONNECTOR_CONFIG", str(synced.tmp_path / "elsewhere.yaml"))
    assert main(["windows"]) == 2
    assert f"config file {synced.tmp_path / 'elsewhere.yaml'} not found" in capsys.readouterr().err
    assert main(["windows", "-c", str(synced.config)]) == 0


# -- --help and the flags that did nothing ----------------------------------------------------------


def help_of(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main([*args, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_is_user_facing_and_current(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys=capsys)
    for command in ("run", "sync", "check", "windows", "status", "digest", "calendar", "demo", "simulate"):
        assert f"\n    {command} " in text, (command, text)
    for words in ("-c FILE", "ITSM_CONNECTOR_CONFIG", "/etc/itsm-connector/config.yaml", "exit codes"):
        assert words in text, (words, text)
    assert "No business logic" not in text and "{run,sync" not in text


@pytest.mark.parametrize(("command", "flag"), [("sync", "--once"), ("digest", "--print")])
def test_a_flag_that_was_always_on_is_accepted_but_not_advertised(
    command: str, flag: str, synced: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert flag not in help_of(command, capsys=capsys)
    assert main([command, flag, "-c", str(synced.config)]) == 0
    with_flag = capsys.readouterr().out
    assert main([command, "-c", str(synced.config)]) == 0
    assert capsys.readouterr().out.split("\n")[0] == with_flag.split("\n")[0]


# -- read-only commands ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["digest", "calendar", "status", "windows"])
def test_read_only_commands_need_no_secrets(
    command: str, synced: World, capsys: pytest.CaptureFixture[str]
) -> None:
    path = synced.write(secrets=False, name="no-secrets.yaml")
    assert main([command, "-c", str(path)]) in (0, 1)  # status: 1 when not healthy
    out, err = capsys.readouterr()
    assert "not set" not in err, err
    assert out


@pytest.mark.parametrize("command", ["digest", "calendar", "status", "windows"])
def test_read_only_commands_say_when_there_is_no_state(
    command: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = world.tmp_path / "nowhere" / "state.db"
    path = world.write(secrets=False, state={"path": str(nowhere)})
    assert main([command, "-c", str(path)]) == 1
    assert f"no state database at {nowhere}" in capsys.readouterr().err
    assert not nowhere.parent.exists()


# -- --dry-run ------------------------------------------------------------------------------------


def test_a_dry_run_leaves_no_copy_behind_and_never_says_posted(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = world.tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    assert main(["sync", "--dry-run", "-c", str(world.config)]) == 0
    out, err = capsys.readouterr()
    assert list(tmp.iterdir()) == []  # the throwaway copy of the state is gone
    assert not world.state.exists()  # and the real one was never made
    assert "posted" not in out + err, out + err
    assert f"slack {CHANNEL}: printed 1 (1 digest), updated 0 (dry run: nothing sent)" in out
    assert world.slack.calls == []


# -- summaries and logs -----------------------------------------------------------------------------


def test_the_sync_summary_counts_the_digest(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "-c", str(world.config)]) == 0
    out = capsys.readouterr().out
    assert f"slack {CHANNEL}: posted 1 (1 digest), updated 0" in out, out
    assert len(world.slack.parents(CHANNEL)) == 1


def test_every_log_line_about_a_channel_names_it(
    world: World, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty first sync (no digest), a rate limit, a refused message: each line names the channel."""
    empty = world.write(name="empty.yaml", servicenow={"filter": "number=CHG0NONE"})
    with caplog.at_level(logging.INFO):
        assert main(["sync", "-c", str(empty)]) == 0
        world.write(name="empty.yaml", servicenow={"filter": ""})
        world.slack.inject("chat.postMessage", "429", retry_after=1)
        world.slack.inject("chat.postMessage", "error", error="invalid_blocks")
        main(["sync", "-c", str(empty)])
    about_slack = [r for r in caplog.records if r.name.startswith("connector.slack")]
    assert {"digest", "rate limit", "refused"} <= {
        word for r in about_slack for word in ("digest", "rate limit", "refused") if word in r.getMessage()
    }, [r.getMessage() for r in about_slack]
    for record in about_slack:
        assert CHANNEL in record.getMessage(), record.getMessage()


def test_check_prints_its_results_without_log_lines_between_them(world: World) -> None:
    path = world.write(log={"level": "DEBUG"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITSM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "check", "-c", str(path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [ln.split()[0] for ln in proc.stdout.splitlines()] == ["ok"] * 3, proc.stdout
    assert proc.stderr == "", proc.stderr  # DEBUG lines of pysnow, urllib3 and slack_sdk: not during check
