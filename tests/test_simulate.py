"""``itsm-connector simulate``, started as a newcomer would (a subprocess), is something to point
``check``, ``sync`` and ``status`` at: it writes a config and the secret files it names, the tickets
keep changing, and Ctrl-C or SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connector.cli.main import main

pytestmark = pytest.mark.integration




class Simulate:
    """The running ``simulate`` process, its stdout read line by line in a thread (so it never blocks)."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ITSM_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "simulate", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = 30.0) -> str:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"not seen in {timeout}s; output so far: {self.seen}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def simulate(tmp_path: Path) -> Iterator[Simulate]:
    sim = Simulate("--dir", str(tmp_path / "sim"), "--interval", "0.3", "--changes", "6", "--locale", "en")
    try:
        yield sim
    finally:
        sim.stop(signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_simulate_is_something_to_check_and_sync_against(
    sig: int, simulate: Simulate, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Path(simulate.wait_for(lambda ln: ln.startswith("config: ")).removeprefix("config: "))
    assert config == (tmp_path / "sim" / "config.yaml").resolve()
    text = "\n".join(simulate.seen)
    for command in ("check", "sync", "run", "status"):
        assert f"itsm-connector {command} -c {config}" in text  # it says how to use it
    data = yaml.safe_load(config.read_text())
    for key, section in (("password_file", "servicenow"), ("token_file", "slack")):
        secret = Path(data[section][key])
        assert secret.parent == config.parent and secret.stat().st_mode & 0o077 == 0
    assert "password" not in data["servicenow"] and "token" not in data["slack"]  # nothing inline

    assert main(["check", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert [ln.split()[0] for ln in out.splitlines()] == ["ok", "ok", "ok"], out
    assert "inline" not in err and "WARNING" not in err, err

    assert main(["sync", "--once", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "slack C0MAINT01: posted 1 (1 digest), updated 0" in out, out

    # the tickets keep changing: the next sync finds what changed since
    simulate.wait_for(lambda ln: " created: " in ln)
    simulate.wait_for(lambda ln: " started " in ln)
    assert main(["sync", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    fetched = int(out.split("source sim: fetched ")[1].split(",")[0])
    assert fetched >= 1, out
    assert main(["status", "-c", str(config)]) == 0, capsys.readouterr()

    seen = (config.parent / "slack.txt").read_text()
    assert "#maintenance (C0MAINT01)" in seen and "Maintenance windows" in seen

    simulate.wait_for(lambda ln: ln.startswith("no more ticket changes (--changes 6)"))
    assert simulate.stop(sig) == 0
    assert simulate.seen[-1] == "simulators stopped" or "simulators stopped" in simulate.lines.get(timeout=5)


def test_simulate_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("servicenow: {}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "simulate", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "was not written by `itsm-connector simulate`: choose another --dir" in proc.stderr
    assert (tmp_path / "config.yaml").read_text() == "servicenow: {}\n"
