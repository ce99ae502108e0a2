"""``sync`` against a ServiceNow that never answers said nothing for 94 s (three attempts of 30 s and
the waits between them). It now says what it is waiting for: a line before the first request to each
source, and one whenever a retry is scheduled."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connector.cli.main import main
from connector.simulators.slack import SlackSimulator

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process state is isolated by tests/conftest.py; these are the secrets the config omits."""
    monkeypatch.setenv("ITSM_SERVICENOW__PASSWORD", "secret")
    monkeypatch.setenv("ITSM_SLACK__TOKEN", "xoxb-simulator")


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A ServiceNow that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_sync_says_what_it_waits_for(
    silent_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SlackSimulator() as slack:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({
            "servicenow": {"name": "acme", "url": silent_url, "username": "admin", "timeout": 0.3},
            "slack": {"channel": "C0MAINT01", "base_url": slack.base_url},
            "state": {"path": str(tmp_path / "state.db")},
            "log": {"format": "text", "level": "INFO"},
        }))  # fmt: skip
        assert main(["sync", "--once", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    polling = [i for i, ln in enumerate(lines) if f"polling acme ({silent_url}, timeout 0.3 s)…" in ln]
    assert len(polling) == 1, err
    retries = [ln for ln in lines if re.search(r"source acme: .*; retry 2 of 3 in \d+(\.\d)?s", ln)]
    assert retries and "INFO" in retries[0], err
    assert any(re.search(r"source acme: .*; retry 3 of 3 in \d+(\.\d)?s", ln) for ln in lines), err
    assert polling[0] < lines.index(retries[0])
    assert "sync failed: source acme" in err


def test_a_daemon_that_keeps_failing_does_not_log_every_retry(silent_url: str, tmp_path: Path) -> None:
    """Log on transition: the retries of the first failing poll are told, not those of every poll
    of the same outage; and "polling" only before a source's first request."""
    from connector.config import Settings
    from connector.wiring import build_connector

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("connector")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with SlackSimulator() as slack:
            settings = Settings.model_validate({
                "servicenow": {"name": "acme", "url": silent_url, "username": "a", "password": "secret",
                               "timeout": 0.2},
                "slack": {"token": "xoxb-simulator", "channel": "C0MAINT01", "base_url": slack.base_url},
                "state": {"path": str(tmp_path / "state.db")},
            })  # fmt: skip
            app = build_connector(settings, wait=lambda seconds: False)  # no real waits between retries
            try:
                app.daemon.poll()
                app.daemon.poll()
            finally:
                app.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [r.getMessage() for r in records]
    assert sum("polling acme" in m for m in messages) == 1, messages
    assert sum("; retry " in m for m in messages) == 2, messages  # attempts 2 and 3 of the first poll
