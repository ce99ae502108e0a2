"""What a newcomer reads when something is wrong, through the real entry point: a typo in an
environment variable, a YAML error, a bare port, a missing config file, an unreachable Slack, a
token written inline. One readable message, the key and where it came from; no library warning."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.cli.main import main
from connector.simulators.servicenow import ServiceNowSimulator
from connector.simulators.slack import SlackSimulator
from tests.alertmanager_harness import free_port

ROOT = Path(__file__).resolve().parent.parent




def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ITSM_") and k != "CREDENTIALS_DIRECTORY"}
    env.update(extra)
    return env


def config(tmp_path: Path, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "servicenow": {"url": "http://127.0.0.1:9", "username": "admin", "password": "secret"},
        "slack": {"token": "xoxb-simulator", "channel": "C0MAINT01"},
        "state": {"path": str(tmp_path / "state.db")},
        "log": {"format": "text"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
    )  # fmt: skip


# -- configuration ---------------------------------------------------------------------------------


def test_a_typo_in_an_environment_variable_is_reported_as_from_the_environment(tmp_path: Path) -> None:
    path = config(tmp_path)
    proc = cli("status", "-c", str(path), env=clean_env(ITSM_SLACK__CHANEL="C0OTHER"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "slack.chanel" in proc.stderr
    assert "environment variable ITSM_SLACK__CHANEL" in proc.stderr, proc.stderr
    # the file is not to blame: the message says where the key came from
    assert "Warning" not in proc.stderr and "warnings.warn" not in proc.stderr, proc.stderr
    assert proc.stderr.count("itsm-connector:") == 1


def test_an_environment_variable_for_a_section_that_does_not_exist_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pydantic-settings ignores ITSM_SLAK__CHANNEL silently: the override the user meant never applies."""
    monkeypatch.setenv("ITSM_SLAK__CHANNEL", "C0OTHER")
    assert main(["status", "-c", str(config(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "environment variable ITSM_SLAK__CHANNEL: no config section 'slak'" in err, err


def test_no_library_warning_reaches_the_terminal(tmp_path: Path) -> None:
    """pydantic-settings warned (IncompleteFieldDefinitionWarning) about a field it could not read from
    the environment, and then could not: ``ITSM_SLACK__CHANNELS`` was "not a valid list"."""
    path = config(tmp_path, state={"path": str(tmp_path / "nowhere" / "state.db")})
    channels = '[{"id": "C0MAINT01", "locale": "en"}]'
    proc = cli("status", "-c", str(path), env=clean_env(ITSM_SLACK__CHANNELS=channels), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("itsm-connector: no state database at"), proc.stderr
    assert "Warning" not in proc.stderr


def test_a_yaml_error_keeps_the_parsers_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("slack:\n\tchannel: C1\n", encoding="utf-8")
    assert main(["status", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 1" in err
    assert "found character '\\t' that cannot start any token" in err, err


def test_a_bare_port_for_health_listen_says_host_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config(tmp_path).read_text() + "health:\n  listen: 9464\n", encoding="utf-8")
    assert main(["status", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "health.listen: must be HOST:PORT, e.g. 127.0.0.1:9464" in err, err


def test_a_missing_config_file_names_the_option_and_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-c", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"config file {tmp_path / 'nope.yaml'} not found" in err
    for hint in ("-c FILE", "ITSM_CONNECTOR_CONFIG", "config.example.yaml", "itsm-connector simulate"):
        assert hint in err, err


def test_a_token_written_inline_is_warned_about_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        path = config(tmp_path, servicenow={"url": snow.url}, slack={"base_url": slack.base_url})
        assert main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "slack.token: written inline in" in err, err
    assert "servicenow.password: written inline in" in err
    assert "slack.token_file" in err  # where it belongs
    assert "xoxb-simulator" not in out + err
    assert "written inline" not in out  # a log line, not a check result


def test_a_token_from_a_file_or_the_environment_is_not_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "slack-token"
    token.write_text("xoxb-simulator\n")
    token.chmod(0o600)
    monkeypatch.setenv("ITSM_SERVICENOW__PASSWORD", "secret")
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        path = tmp_path / "config.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "servicenow": {"url": snow.url, "username": "admin"},
                    "slack": {"token_file": str(token), "channel": "C0MAINT01", "base_url": slack.base_url},
                    "state": {"path": str(tmp_path / "state.db")},
                }
            )
        )
        assert main(["check", "-c", str(path)]) == 0
    assert "inline" not in capsys.readouterr().err


# -- Slack unreachable: why --------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["refused", "dns", "tls", "timeout"])
def test_check_says_why_slack_is_unreachable(
    kind: str, tmp_path: Path, silent_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        base_url = {
            "refused": f"http://127.0.0.1:{free_port()}/api/",
            "dns": "https://no-such-host.invalid/api/",
            "tls": slack.base_url.replace("http://", "https://"),
            "timeout": f"http://127.0.0.1:{silent_port}/api/",
        }[kind]
        path = config(
            tmp_path,
            servicenow={"url": snow.url},
            slack={"base_url": base_url, "timeout": 0.5},
            log={"level": "ERROR"},
        )
        assert main(["check", "-c", str(path)]) == 1
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("FAIL slack")]
    expected = {
        "refused": "connection refused",
        "dns": "DNS: cannot resolve no-such-host.invalid",
        "tls": "TLS handshake failed",
        "timeout": "no answer within 0.5 s",
    }[kind]
    assert expected in line, line
    assert "URLError" not in line
