"""Run the real Alertmanager (Debian's prometheus-alertmanager, 0.25 on bookworm) on loopback for tests.

Clustering off (``--cluster.listen-address=``), a free port, a temporary storage path, a null receiver.
Absent binary: the tests are skipped on a workstation, but fail when ``CI`` is set (``.ci/run`` installs
it with ``.ci/install-alertmanager.sh``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

BINARY = os.environ.get("ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager")
CONFIG = 'route: {receiver: "null"}\nreceivers: [{name: "null"}]\n'
READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class RunningAlertmanager:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary_or_skip() -> str:
    """The binary's path; skips the test without it, unless ``CI`` is set: then absence fails."""
    path = BINARY if os.access(BINARY, os.X_OK) else shutil.which("prometheus-alertmanager")
    if path:
        return path
    message = f"{BINARY} not found: run .ci/install-alertmanager.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def run_alertmanager(workdir: Path, web_config: str | None = None) -> Iterator[RunningAlertmanager]:
    """Start Alertmanager in ``workdir``, wait until ``/-/ready`` (bounded), stop it on exit.
    ``web_config``: text of a ``--web.config.file`` (e.g. ``basic_auth_users``)."""
    binary = binary_or_skip()
    (workdir / "am.yml").write_text(CONFIG)
    args = [
        binary,
        f"--config.file={workdir / 'am.yml'}",
        f"--storage.path={workdir / 'data'}",
        "--cluster.listen-address=",
    ]
    if web_config is not None:
        (workdir / "web.yml").write_text(web_config)
        args.append(f"--web.config.file={workdir / 'web.yml'}")
    log_path = workdir / "alertmanager.log"
    for _attempt in range(3):  # the free port may be taken between probe and bind: try another
        port = free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*args, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT
            )
        running = RunningAlertmanager(f"http://127.0.0.1:{port}", process, log_path)
        try:
            if _wait_ready(running):
                yield running
                return
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    pytest.fail(f"Alertmanager did not become ready:\n{log_path.read_text(errors='replace')[-2000:]}")


def _wait_ready(am: RunningAlertmanager) -> bool:
    """Poll ``/-/ready`` until 200 (any answer counts when auth is on), the process exits, or timeout."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if am.process.poll() is not None:
            return False
        try:
            if requests.get(f"{am.url}/-/ready", timeout=1).status_code in (200, 401):
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAlertmanager]:
    """One real Alertmanager per test module."""
    with run_alertmanager(tmp_path_factory.mktemp("alertmanager")) as am:
        yield am
