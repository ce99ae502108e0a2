"""Credentials in clear text: ``http://`` to a host that is not loopback is a config error unless the
section opts in (``allow_insecure_http: true``), and then every start warns; secret files the group or
others can read are warned about too."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.cli.main import main
from connector.config import Settings, load_settings
from connector.errors import ConfigError
from connector.simulators.servicenow import ServiceNowSimulator
from connector.simulators.slack import SlackSimulator
from connector.transport import is_loopback

PASSWORD = "Sn-Pa55-insecure-1"
TOKEN = "xoxb-simulator"


def config(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "servicenow": {"url": "https://acme.service-now.com", "username": "svc", "password": PASSWORD},
        "slack": {"token": TOKEN, "channel": "C0MAINT01"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    return err.value.problems


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LOCALHOST.", True),
        ("[::1]", True), ("::1", True), ("10.0.0.5", False), ("acme.service-now.com", False),
        ("localhost.evil.example", False), ("::ffff:10.0.0.1", False), ("", False),
    ],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("data", "key", "what"),
    [
        pytest.param(
            config(servicenow={"url": "http://acme.service-now.com"}),
            "servicenow", "the ServiceNow password", id="servicenow",
        ),
        pytest.param(
            config(sources=[{"name": "b", "url": "http://10.1.2.3", "username": "u", "password": "pw-1"}]),
            "sources.0", "the ServiceNow password", id="second-source",
        ),
        pytest.param(
            config(slack={"base_url": "http://slack-proxy.internal/api/"}),
            "slack", "the Slack token", id="slack",
        ),
        pytest.param(
            config(alertmanager={"url": "http://am.internal:9093", "username": "am", "password": "am-pw-1"}),
            "alertmanager", "the Alertmanager credentials", id="alertmanager-basic",
        ),
        pytest.param(
            config(alertmanager={"url": "http://am.internal:9093", "bearer_token": "am-token-1"}),
            "alertmanager", "the Alertmanager credentials", id="alertmanager-bearer",
        ),
    ],
)  # fmt: skip
def test_plain_http_to_a_remote_host_is_refused(
    tmp_path: Path, data: dict[str, Any], key: str, what: str
) -> None:
    found = problems(tmp_path, data)
    assert len(found) == 1 and found[0].startswith(f"{key}: "), found
    assert what in found[0] and "over plain http" in found[0] and "allow_insecure_http: true" in found[0]


def test_plain_http_is_fine_to_loopback_and_without_credentials(tmp_path: Path) -> None:
    data = config(
        servicenow={"url": "http://127.0.0.1:8080"},
        slack={"base_url": "http://localhost:3000/api/"},
        alertmanager={"url": "http://am.internal:9093"},  # no credentials: nothing to read on the way
        sources=[{"name": "lab", "url": "http://[::1]:8081", "username": "u", "password": "pw-1"}],
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    warnings = load_settings(path, env={}).warnings()
    # the inline secrets of this fixture are warned about on their own (tests/test_cli_messages.py)
    assert [w for w in warnings if "written inline" not in w] == []


def test_the_opt_in_loads_and_warns_at_every_start() -> None:
    data = config(
        servicenow={"url": "http://acme.internal", "allow_insecure_http": True},
        slack={"base_url": "http://slack-proxy.internal/api/", "allow_insecure_http": True},
        alertmanager={
            "url": "http://am.internal:9093",
            "bearer_token": "am-token-1",
            "allow_insecure_http": True,
        },
    )
    assert Settings.model_validate(data).warnings() == [
        "servicenow: allow_insecure_http is set: sending the password of source 'servicenow' to "
        "acme.internal over plain http, readable on the way",
        "slack: allow_insecure_http is set: sending the Slack token to slack-proxy.internal over plain http, "
        "readable on the way",
        "alertmanager: allow_insecure_http is set: sending the Alertmanager credentials to am.internal over "
        "plain http, readable on the way",
    ]


@pytest.mark.integration
def test_check_warns_about_a_secret_file_others_can_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "servicenow-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o644)
    token = tmp_path / "slack-token"
    token.write_text(TOKEN, encoding="utf-8")
    token.chmod(0o600)
    with ServiceNowSimulator(password=PASSWORD) as snow, SlackSimulator() as slack:
        data = {
            "servicenow": {"url": snow.url, "username": "admin", "password_file": str(secret)},
            "slack": {"token_file": str(token), "channel": "C0MAINT01", "base_url": slack.base_url},
            "state": {"path": str(tmp_path / "state.db")},
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        with caplog.at_level(logging.WARNING):
            assert main(["check", "-c", str(path)]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        f"servicenow.password_file: {secret} is readable by its group or by others (mode 0644): "
        f"chmod 600 {secret}"
    ]
