"""The daemon as a service: ``python -m connector run`` in a subprocess, as systemd would start it.

The test plays systemd: it binds the ``$NOTIFY_SOCKET`` datagram socket itself, sets ``WATCHDOG_USEC``,
and reads the process's stderr as the journal would. ServiceNow and Slack are the loopback
simulators, in this process, so the test can make ServiceNow hang, fail or vanish while the daemon
runs. Waits are bounded polls on observable facts; no fixed sleep is an assertion.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from tests.support import wait_for

pytestmark = pytest.mark.integration

CHANNEL = "C0MAINT01"
ROOT = Path(__file__).resolve().parent.parent




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NotifyListener:
    """The supervisor's end of sd_notify: every datagram, with the monotonic time it arrived."""

    def __init__(self, path: Path) -> None:
        assert len(str(path)) < 100, "AF_UNIX socket paths are limited to 108 bytes"
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, key: str) -> list[float]:
        return [t for t, m in list(self.messages) if f"{key}=" in m]

    def values(self, key: str) -> list[str]:
        return [
            line.split("=", 1)[1]
            for _, m in list(self.messages)
            for line in m.splitlines()
            if line.startswith(f"{key}=")
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@dataclass
class Service:
    proc: subprocess.Popen[str]
    config: Path
    stream: Any = None  # where its stderr is read (default: the Popen pipe)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        stream = self.stream or self.proc.stderr
        assert stream is not None
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines)

    def logged(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)


def write_config(tmp_path: Path, snow: ServiceNowSimulator, slack: SlackSimulator, **extra: Any) -> Path:
    config: dict[str, Any] = {
        "servicenow": {
            "url": snow.url,
            "username": "admin",
            "poll_interval": 1,
            "timeout": 30,
            "page_size": 2,
        },
        "slack": {
            "channel": CHANNEL,
            "base_url": slack.base_url,
            "locale": "en",
            "post_interval": 0,
            "first_run": "announce",
        },
        "state": {"path": str(tmp_path / "state.db")},
        "log": {"format": "text"},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(config: Path, stderr: tuple[int, int] | None = None, **env: str) -> Service:
    """The daemon; its stderr is a new pipe, or ``stderr``: the (read, write) ends of the caller's."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")
    }
    environ.update(
        {
            "ITSM_SERVICENOW__PASSWORD": "secret",
            "ITSM_SLACK__TOKEN": "xoxb-simulator",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "run", "-c", str(config)],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if stderr is None else stderr[1],
        text=True,
    )
    if stderr is None:
        return Service(proc, config)
    os.close(stderr[1])
    return Service(proc, config, os.fdopen(stderr[0]))


def seed(snow: ServiceNowSimulator, now: datetime, n: int = 3) -> None:
    """``n`` changes (one running, the rest scheduled) and one that cannot become a window, all last
    updated a minute ago (a ticket updated in the very second of a poll is read again by the next)."""
    ci = snow.put_record("cmdb_ci", {"name": "db01"})["sys_id"]
    updated = (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    for i in range(n):
        start_at = now - timedelta(minutes=30) if i == 0 else now + timedelta(hours=i)
        snow.put_record(
            "change_request",
            make_change(
                f"CHG00700{i:02d}",
                short_description=f"Patch {i}",
                start=start_at,
                end=start_at + timedelta(hours=2),
                state="-1" if i == 0 else "-2",
                cmdb_ci=ci,
                sys_updated_on=updated,
            ),
        )
    snow.put_record(
        "change_request",
        make_change("CHG0070099", short_description="No dates", start=None, end=None, sys_updated_on=updated),
    )


@pytest.fixture
def sims() -> Iterator[tuple[ServiceNowSimulator, SlackSimulator]]:
    with ServiceNowSimulator(port=free_port()) as snow, SlackSimulator() as slack:
        yield snow, slack


def test_notify_ready_watchdog_status_and_a_hung_request_does_not_stop_the_pings(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    """The loop pings while a source's worker waits for a request within its timeout: a hung source
    is the source's problem (its health says so), not a reason for systemd to restart everything.
    A worker stuck beyond its timeout stops the pings: tests/test_scheduling.py."""
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=5)  # page_size 2: the first sync takes three pages
    notify = NotifyListener(tmp_path / "notify.sock")
    service = start(
        write_config(tmp_path, snow, slack),
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC="2000000",  # WatchdogSec=2: a ping at most every 0.5 s
    )
    try:
        wait_for("READY=1", lambda: notify.times("READY"))
        pings = wait_for("five watchdog pings", lambda: len(notify.times("WATCHDOG")) >= 5)
        assert pings
        wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 5)

        # ServiceNow hangs for 4 s on the next request (timeout 30 s): the pings go on.
        requests_before = len(snow.requests)
        blocked_from = time.monotonic()
        snow.inject("slow", delay=4.0)
        wait_for("the hung request to be answered", lambda: len(snow.requests) > requests_before, 10)
        answered_at = time.monotonic()
        wait_for("two more pings", lambda: len([t for t in notify.times("WATCHDOG") if t > answered_at]) > 2)

        pings_at = notify.times("WATCHDOG")
        during = [t for t in pings_at if blocked_from < t < answered_at]
        assert len(during) >= 5, during
        gaps = [b - a for a, b in itertools.pairwise(pings_at)]
        assert max(gaps) < 1.5, gaps  # regular, during the paged first sync and the hung request

        status = wait_for(
            "a STATUS= line with the last successful poll",
            lambda: [s for s in notify.values("STATUS") if s.startswith("last poll ok") and "never" not in s],
        )
        assert "1 windows in progress; outbox 0" in status[-1], status
        assert notify.messages[0][1].startswith("READY=1"), notify.messages[0]

        # SIGHUP: the config is re-read and checked, not applied; the log says a restart is needed.
        config = yaml.safe_load(service.config.read_text())
        config["servicenow"]["poll_interval"] = 30
        service.config.write_text(yaml.safe_dump(config))
        service.proc.send_signal(signal.SIGHUP)
        hup = wait_for("the SIGHUP verdict", lambda: service.logged("SIGHUP"))
        assert "servicenow.poll_interval" in hup[0] and "restart" in hup[0], hup
        assert service.proc.poll() is None

        assert service.stop() == 0
        assert notify.values("STOPPING") == ["1"]
    finally:
        service.stop()
        notify.close()
    assert "Traceback" not in service.log()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((f"itsm_connector_{name}", tuple(sorted(labels.items()))), 0.0)


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_metrics_health_and_logs_while_servicenow_goes_down_and_returns(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc))
    slack.inject("chat.postMessage", "500")  # the first post fails once: a delivery error, then a retry
    port = free_port()
    config = write_config(tmp_path, snow, slack, health={"enabled": True, "listen": f"127.0.0.1:{port}"})
    service = start(config)
    try:
        wait_for("/healthz 200", lambda: _answers(port) == 200)
        samples = wait_for(
            "every window posted and a few polls",
            lambda: (
                (s := scrape(port))
                # 3 parents (each is its window's announcement) + the running one's "started" reply
                and metric(s, "deliveries_total", sink="slack", result="posted") >= 4
                and metric(s, "polls_total", source="servicenow", result="ok") >= 3
                and s
            ),
        )
        assert metric(samples, "tickets_fetched_total", source="servicenow") == 4
        assert metric(samples, "events_total", kind="announced") == 3
        assert metric(samples, "events_total", kind="started") == 1
        assert metric(samples, "deliveries_total", sink="slack", result="error") == 1
        assert metric(samples, "outbox_depth") == 0
        assert metric(samples, "outbox_oldest_age_seconds") == 0
        assert metric(samples, "windows", phase="in_progress") == 1
        assert metric(samples, "windows", phase="scheduled") == 2
        assert metric(samples, "problem_tickets") == 1
        assert metric(samples, "build_info", version=_version()) == 1
        last_ok = metric(samples, "last_success_timestamp_seconds", source="servicenow")
        assert abs(last_ok - time.time()) < 5

        # `status` from another process while the daemon runs: one screen, the daemon's own verdict.
        shown = subprocess.run(
            [sys.executable, "-m", "connector", "status", "-c", str(config)],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "health     ok (according to the running daemon)" in shown.stdout
        assert "windows    2 scheduled, 1 in progress\n" in shown.stdout

        # ServiceNow goes away: /healthz turns 503 with the reason, the failure is logged once.
        snow.stop()
        down_at = time.monotonic()
        _, body = wait_for(
            "/healthz 503 naming the cause",
            lambda: (h := healthz(port))[0] == 503 and "cannot reach" in str(h[1]["reasons"]) and h,
            20,
        )
        assert body["reasons"][0].startswith("servicenow: no successful poll for "), body
        wait_for(
            "three failed polls",
            lambda: metric(scrape(port), "poll_errors_total", source="servicenow", kind="unavailable") >= 3,
            30,
        )
        snow.start()
        wait_for("/healthz 200 again", lambda: _answers(port) == 200, 20)
        assert time.monotonic() - down_at > 3  # really was down for several polls
        after = scrape(port)
        assert metric(after, "polls_total", source="servicenow", result="error") >= 3
        assert metric(after, "last_success_timestamp_seconds", source="servicenow") > last_ok
    finally:
        assert service.stop() == 0
    log = service.logged("ServiceNow source")
    assert len([line for line in log if "failing:" in line]) == 1, log
    assert len([line for line in log if "recovered after" in line]) == 1, log
    assert " ERROR connector.source_worker: ServiceNow source 'servicenow' failing: cannot reach" in log[0]
    summaries = service.logged("poll servicenow: fetched")
    assert summaries and "fetched 4, changed 3, events 4, rejected 1" in summaries[0], summaries
    assert len(summaries) == 1, "idle polls must not log a summary"
    assert "Traceback" not in service.log()


def _answers(port: int) -> int | None:
    try:
        return healthz(port)[0]
    except (OSError, ValueError):
        return None


def _version() -> str:
    from connector import __version__

    return __version__


def test_json_logs_one_object_per_line(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=1)
    service = start(write_config(tmp_path, snow, slack, log={"format": "json"}))
    try:
        wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 1)
        wait_for("the poll summary", lambda: service.logged("poll servicenow"))
    finally:
        assert service.stop() == 0
    docs = [json.loads(line) for line in service.lines]
    assert {"ts", "level", "logger", "msg"} <= set(docs[0])
    assert any(d["msg"].startswith("itsm-connector") and "started" in d["msg"] for d in docs)
    assert "secret" not in service.log() and "xoxb-simulator" not in service.log()


def test_a_long_first_sync_shows_a_sign_of_life_after_each_page(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    """In process: the worker hands the sync its sign of life, called after each committed page, so
    a sync of many pages is never taken for a stuck worker (which would stop the watchdog pings)."""
    from connector.config import Settings
    from connector.daemon import Daemon
    from connector.wiring import build_connector

    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=7)  # 8 tickets, 2 per page
    config = yaml.safe_load(write_config(tmp_path, snow, slack).read_text())
    config["servicenow"]["password"], config["slack"]["token"] = "secret", "xoxb-simulator"
    app = build_connector(Settings.model_validate(config))
    signs: list[int] = []
    daemon = Daemon(
        app.daemon.syncers,
        monotonic=lambda: signs.append(len(app.store.tracked())) or time.monotonic(),  # type: ignore[func-returns-value]
    )
    worker = daemon.workers["servicenow"]
    try:
        daemon.poll()
    finally:
        app.close()
    assert daemon.state.sources["servicenow"].last_error is None
    assert worker.stuck_for() is None
    # a sign of life (a read of its clock) after each page (4 pages of 2), once its windows were committed
    committed = sorted(set(signs) - {0})
    assert signs == sorted(signs) and len(committed) >= 4 and committed[-1] == 7, signs


def test_the_unit_hands_over_what_the_connector_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credential names, config path and state directory in the unit match config.py, and a config
    with no secrets in it loads from ``$CREDENTIALS_DIRECTORY`` exactly as systemd lays it out."""
    from connector.config import DEFAULT_CONFIG_PATH, load_settings
    from connector.credentials import SECRETS

    unit = (ROOT / "systemd" / "itsm-connector.service").read_text().splitlines()
    loaded = dict(line.split("=", 1)[1].split(":", 1) for line in unit if line.startswith("LoadCredential="))
    assert set(loaded) == {credential for _, _, _, credential, required in SECRETS if required}
    assert loaded == {name: f"{DEFAULT_CONFIG_PATH.parent}/{name}" for name in loaded}
    exec_start = next(line for line in unit if line.startswith("ExecStart="))
    assert exec_start.endswith(f" run --config {DEFAULT_CONFIG_PATH}")
    assert f"ConfigurationDirectory={DEFAULT_CONFIG_PATH.parent.name}" in unit
    assert "StateDirectory=itsm-connector" in unit

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "servicenow-password").write_text("pw-from-systemd\n")
    (credentials / "slack-token").write_text("xoxb-from-systemd\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "servicenow": {"url": "https://acme.service-now.com", "username": "svc"},
                "slack": {"channel": "C0123ABCD"},
            }
        )
    )
    for name in [k for k in os.environ if k.startswith("ITSM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/itsm-connector")
    settings = load_settings(config, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.primary_source.password is not None and settings.slack.token is not None
    assert settings.primary_source.password.get_secret_value() == "pw-from-systemd"
    assert settings.slack.token.get_secret_value() == "xoxb-from-systemd"
    assert settings.state.path == Path("/var/lib/itsm-connector/state.db")


def test_journal_format_when_stderr_is_the_journal_stream(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    """Under systemd stderr is the journal, named by $JOURNAL_STREAM (device:inode): with the default
    ``log.format: auto`` lines carry a syslog priority and no timestamp of their own."""
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=1)
    config = yaml.safe_load(write_config(tmp_path, snow, slack).read_text())
    del config["log"]  # auto
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    pipe = os.pipe()
    st = os.fstat(pipe[1])
    service = start(path, stderr=pipe, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    try:
        wait_for("the poll summary", lambda: service.logged("poll servicenow"))
    finally:
        assert service.stop() == 0
    summary = "<6>connector.source_worker: poll servicenow: fetched 2, changed 1, events 2, rejected 1"
    assert service.logged(summary)
    assert service.logged("<4>connector.apply: rejected ticket CHG0070099")
    assert all(line.startswith(("<3>", "<4>", "<6>")) for line in service.lines), service.lines


def test_a_taken_health_port_is_one_plain_error(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, snow, slack, health={"enabled": True, "listen": f"127.0.0.1:{port}"})
        service = start(config)
        assert service.proc.wait(30) == 1
    wait_for("stderr to be read", lambda: service.logged("cannot listen"))
    assert service.logged(f"ERROR connector.cli.service: cannot listen on health.listen 127.0.0.1:{port}: ")
    assert "Traceback" not in service.log()


def test_sigterm_during_a_hung_request_exits_within_ten_seconds(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=2)
    service = start(write_config(tmp_path, snow, slack))  # servicenow.timeout is 30 s
    try:
        wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 2)
        snow.inject("slow", delay=25.0)  # the next request hangs far past the stop deadline
        wait_for("the daemon to be inside the hung request", lambda: snow.pending_faults() == 0 or None, 10)
        stopped_at = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        service.proc.wait(12)
        assert time.monotonic() - stopped_at < 10.0
    finally:
        service.stop()
    assert len(slack.parents(CHANNEL)) == 2  # nothing doubled or lost by the hard stop
