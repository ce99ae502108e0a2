"""The command line against a state produced by a real sync (pysnow and slack_sdk over loopback to the
simulators): ``status``, ``windows``, ``--version``, and the read-only commands' manners (no secrets
needed, no state database created or migrated)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from connector import __version__
from connector.cli.main import main
from connector.cli.service import _changed_keys
from connector.config import load_settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator

pytestmark = pytest.mark.integration

CHANNEL = "C0MAINT01"


@pytest.fixture
def synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config file whose state holds one real sync: two windows (one running) and a rejected ticket."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        ci = snow.put_record("cmdb_ci", {"name": "db01"})["sys_id"]
        snow.put_record(
            "change_request",
            make_change(
                "CHG0080001", short_description="DB patch", start=now - timedelta(minutes=10),
                end=now + timedelta(hours=1), state="-1", cmdb_ci=ci,
            ),
        )  # fmt: skip
        snow.put_record(
            "change_request",
            make_change(
                "CHG0080002", short_description="Router firmware", start=now + timedelta(days=1),
                end=now + timedelta(days=1, hours=2),
            ),
        )  # fmt: skip
        snow.put_record(
            "change_request", make_change("CHG0080003", short_description="No dates", start=None, end=None)
        )
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "servicenow": {"url": snow.url, "username": "admin", "poll_interval": 60},
                    "slack": {
                        "channel": CHANNEL, "base_url": slack.base_url, "locale": "en",
                        "timezone": "UTC", "post_interval": 0, "first_run": "announce",
                    },
                    "state": {"path": str(tmp_path / "state.db")},
                    "log": {"format": "text", "level": "WARNING"},
                }
            )
        )  # fmt: skip
        monkeypatch.setenv("ITSM_SERVICENOW__PASSWORD", "secret")
        monkeypatch.setenv("ITSM_SLACK__TOKEN", "xoxb-simulator")
        assert main(["sync", "-c", str(config)]) == 0
        assert len(slack.parents(CHANNEL)) == 2
    # From here on the commands run as an operator would, from a shell: no secrets in the environment.
    monkeypatch.delenv("ITSM_SERVICENOW__PASSWORD")
    monkeypatch.delenv("ITSM_SLACK__TOKEN")
    yield config


def test_status_shows_everything_in_one_screen(synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["status", "-c", str(synced)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"itsm-connector {__version__}   state {synced.parent / 'state.db'}"
    assert out[1] == "health     ok (according to the state database)"
    assert out[2].startswith("source     servicenow  http://127.0.0.1:")
    assert out[3].startswith("  last ok  ") and out[3].endswith(" ago)")
    assert out[4].startswith("  cursor   ") and "UTC · " in out[4]
    assert out[5:] == [
        "windows    1 scheduled, 1 in progress",
        "outbox     0 undelivered",
        "problems   1 rejected ticket: CHG0080003 (itsm-connector windows --problems)",
    ]


def test_status_says_failing_when_the_last_poll_is_stale(
    synced: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = sqlite3.connect(synced.parent / "state.db")
    old = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()
    record = {"ok_at": old, "error": "cannot reach table 'change_request': Connection refused"}
    db.execute("UPDATE meta SET value=? WHERE key='last_poll:servicenow'", (json.dumps(record),))
    failing = json.dumps({"error": "not_in_channel"})
    db.execute("INSERT OR REPLACE INTO meta VALUES('sink:slack:C0MAINT01', ?)", (failing,))  # sync wrote ok
    db.commit()
    db.close()
    capsys.readouterr()
    assert main(["status", "-c", str(synced)]) == 1
    out = capsys.readouterr().out
    assert "health     FAILING (according to the state database)\n" in out
    assert "           - servicenow: no successful poll for 600s (limit 180s): cannot reach" in out
    assert "           - slack:C0MAINT01 delivery failing: not_in_channel\n" in out
    assert "  error    cannot reach table 'change_request': Connection refused\n" in out
    assert "sink       slack:C0MAINT01 failing: not_in_channel\n" in out


def test_windows_lists_what_the_sync_saw(synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["windows", "-c", str(synced)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["CHG0080001", "in_progress"],
        ["CHG0080002", "scheduled"],
    ]
    assert lines[0].endswith("db01  DB patch")

    assert main(["windows", "--json", "-c", str(synced)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["phase"], r["cis"]) for r in rows] == [
        ("CHG0080001", "in_progress", ["db01"]),
        ("CHG0080002", "scheduled", []),
    ]

    assert main(["windows", "--problems", "-c", str(synced)]) == 0
    problems = capsys.readouterr().out
    assert "CHG0080003" in problems and "start_date" in problems


def test_read_only_commands_never_create_or_migrate_the_state(
    synced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "elsewhere.yaml"
    config = yaml.safe_load(synced.read_text())
    config["state"]["path"] = str(tmp_path / "missing" / "state.db")
    other.write_text(yaml.safe_dump(config))
    assert main(["status", "-c", str(other)]) == 1
    assert "no state database at" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()

    db = sqlite3.connect(synced.parent / "state.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    assert main(["windows", "-c", str(synced)]) == 1
    assert "schema v99" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"itsm-connector {__version__}\n"


def test_the_daemon_still_needs_its_secrets(synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "-c", str(synced)]) == 2
    assert "servicenow.password: not set" in capsys.readouterr().err
    assert load_settings(synced, secrets_required=False).primary_source.password is None


def test_changed_keys_name_keys_never_values() -> None:
    old = {"servicenow": {"poll_interval": 60, "password": "a"}, "log": {"level": "INFO"}}
    new = {"servicenow": {"poll_interval": 30, "password": "b"}, "log": {"level": "INFO"}, "x": 1}
    assert _changed_keys(old, new) == ["servicenow.password", "servicenow.poll_interval", "x"]
    assert _changed_keys(old, old) == []
