from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.sdnotify import Heartbeat, Notifier


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 108 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"itsm-connector-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


def test_path_socket_gets_exact_datagrams(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert n.enabled

    assert n.ready()
    assert sock.recv(4096) == b"READY=1"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("polling servicenow: 3 windows")
    assert sock.recv(4096) == b"STATUS=polling servicenow: 3 windows"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert n.reloading()
    assert sock.recv(4096) == b"RELOADING=1"


def test_send_joins_fields_with_newlines_in_one_datagram(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    Notifier.from_env({"NOTIFY_SOCKET": address}).send(READY=1, STATUS="ready: 0 windows")
    assert sock.recv(4096) == b"READY=1\nSTATUS=ready: 0 windows"


def test_status_is_kept_on_one_line(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    Notifier.from_env({"NOTIFY_SOCKET": address}).status("servicenow failing:\nHTTP 503")
    assert sock.recv(4096) == b"STATUS=servicenow failing: HTTP 503"


def test_abstract_socket_at_prefix_becomes_nul(abstract_socket: tuple[str, socket.socket]) -> None:
    address, sock = abstract_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"
    assert n.status("ok")
    assert sock.recv(4096) == b"STATUS=ok"


def test_no_notify_socket_is_a_noop() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.status("x") is False
    assert n.watchdog_interval() is None


def test_send_failure_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level(logging.DEBUG, logger="connector.sdnotify"):
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.watchdog() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sd_notify" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # a parent is being watched
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "garbage"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": "@unused", **env})
    assert n.watchdog_interval() == expected


def test_no_watchdog_interval_without_a_socket() -> None:
    assert Notifier.from_env({"WATCHDOG_USEC": "60000000"}).watchdog_interval() is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(sock: socket.socket) -> list[bytes]:
    sock.settimeout(0.05)
    out = []
    try:
        while True:
            out.append(sock.recv(4096))
    except TimeoutError:
        return out


def test_heartbeat_rate_limits_pings_and_status(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    clock = FakeClock()
    calls = []

    def status() -> str:
        calls.append(clock.now)
        return "last poll ok 12:00:00Z; 0 windows in progress; outbox 0"

    notifier = Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000"})
    beat = Heartbeat(notifier, status, status_every=10, clock=clock)
    assert beat.ping_every == 1.0  # a quarter of WatchdogSec=4

    beat()
    assert drain(sock) == [b"WATCHDOG=1", b"STATUS=last poll ok 12:00:00Z; 0 windows in progress; outbox 0"]
    for _ in range(5):
        clock.now += 0.1
        beat()
    assert drain(sock) == []  # called often, says nothing new
    clock.now += 0.6
    beat()
    assert drain(sock) == [b"WATCHDOG=1"]
    clock.now += 9.4
    beat()
    assert drain(sock) == [b"WATCHDOG=1", b"STATUS=last poll ok 12:00:00Z; 0 windows in progress; outbox 0"]
    assert calls == [100.0, pytest.approx(110.5)]  # the status line is only computed when it is sent


def test_heartbeat_without_watchdog_sends_status_only(path_socket: tuple[str, socket.socket]) -> None:
    address, sock = path_socket
    beat = Heartbeat(Notifier.from_env({"NOTIFY_SOCKET": address}), lambda: "ok", clock=FakeClock())
    assert beat.ping_every is None
    beat()
    assert drain(sock) == [b"STATUS=ok"]


def test_heartbeat_survives_a_failing_status(
    path_socket: tuple[str, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    address, sock = path_socket
    clock = FakeClock()

    def broken() -> str:
        raise RuntimeError("database is locked")

    notifier = Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"})
    beat = Heartbeat(notifier, broken, status_every=1, clock=clock)
    for _ in range(3):
        beat()
        clock.now += 1
    assert drain(sock) == [b"WATCHDOG=1"] * 3
    assert len([r for r in caplog.records if "STATUS=" in r.getMessage()]) == 1


def test_heartbeat_is_silent_off_systemd() -> None:
    seen = []
    beat = Heartbeat(Notifier.from_env({}), lambda: seen.append(1) or "x", clock=FakeClock())
    beat()
    assert seen == [] and beat.ping_every is None
