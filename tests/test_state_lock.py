"""One process per state database: a second ``run``, or a ``sync --once`` while the daemon runs, is
refused at once (exit 3, naming the lock file and its holder) instead of posting every window a second
time; the read-only commands and ``--dry-run`` keep working beside the daemon.

Real processes (``python -m connector ...``) against the loopback simulators, as in test_service.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.errors import StateLocked
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from connector.store.lock import StateLock
from tests.test_service import CHANNEL, ROOT, seed, start, wait_for, write_config

pytestmark = pytest.mark.integration

EXIT_LOCKED = 3


def cli(config: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """One command in its own process; a command that does not end within ``timeout`` fails the test
    (a second daemon that was not refused runs forever)."""
    systemd = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")
    env = {k: v for k, v in os.environ.items() if k not in systemd}
    env.update({"ITSM_SERVICENOW__PASSWORD": "secret", "ITSM_SLACK__TOKEN": "xoxb-simulator"})
    command, *rest = args
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", command, "-c", str(config), *rest],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"`{' '.join(args)}` still running after {timeout:g}s: {err[-2000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_second_process_on_the_same_state_is_refused_and_nothing_is_posted_twice(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        seed(snow, now, n=3)
        config = write_config(tmp_path, snow, slack)
        daemon = start(config)
        try:
            wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 3)
            lock = tmp_path / "state.db.lock"

            t0 = time.monotonic()
            second = cli(config, "run", timeout=15)
            assert second.returncode == EXIT_LOCKED, second.stderr
            assert time.monotonic() - t0 < 10  # at once, not after a poll
            assert str(lock) in second.stderr and f"pid {daemon.proc.pid}" in second.stderr, second.stderr
            assert socket.gethostname() in second.stderr and "Traceback" not in second.stderr

            once = cli(config, "sync", "--once")
            assert once.returncode == EXIT_LOCKED, once.stderr
            assert str(lock) in once.stderr and f"pid {daemon.proc.pid}" in once.stderr, once.stderr

            # the read-only commands and a dry run read beside the daemon
            for args in (("status",), ("windows",), ("digest", "--print"), ("calendar",)):
                done = cli(config, *args)
                assert done.returncode == 0, (args, done.stderr)
                assert "Traceback" not in done.stderr
            assert "CHG0070001" in cli(config, "windows").stdout
            assert "BEGIN:VCALENDAR" in cli(config, "calendar").stdout
            dry = cli(config, "sync", "--dry-run")
            assert dry.returncode == 0, dry.stderr

            # new tickets are posted once, by the daemon
            for i in range(2):  # stamped now by the simulator: never behind the cursor
                start_at = now + timedelta(days=1, hours=i)
                snow.put_record(
                    "change_request",
                    make_change(
                        f"CHG00710{i:02d}", short_description=f"Later {i}", start=start_at,
                        end=start_at + timedelta(hours=1),
                    ),
                )  # fmt: skip
            wait_for("the new windows to be posted", lambda: len(slack.parents(CHANNEL)) >= 5)
            assert daemon.proc.poll() is None
        finally:
            assert daemon.stop() == 0
        texts = [m.text for m in slack.parents(CHANNEL)]
        numbers = ["CHG0070000", "CHG0070001", "CHG0070002", "CHG0071000", "CHG0071001"]
        assert sorted(n for n in numbers for t in texts if n in t) == numbers, texts  # each once
        assert "Traceback" not in daemon.log()

        # the daemon is gone: its lock went with it
        after = cli(config, "sync", "--once")
        assert after.returncode == 0, after.stderr
        assert len(slack.parents(CHANNEL)) == 5


def test_the_lock_says_who_holds_it_and_is_let_go(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    held = StateLock.acquire(db, command="run")
    try:
        with pytest.raises(StateLocked) as refused:
            StateLock.acquire(db, command="sync")
        message = str(refused.value)
        assert f"{db}.lock" in message and f"pid {os.getpid()}" in message and "run" in message
        assert socket.gethostname() in message
    finally:
        held.release()
    StateLock.acquire(db, command="sync").release()  # released: free again
