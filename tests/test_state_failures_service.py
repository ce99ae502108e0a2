"""The daemon (``python -m connector run``, a real process) when its state database fails under it: a
full disk, a read-only filesystem, a damaged file, the file deleted or replaced while it runs. Each
ends in one logged sentence that says what to do and the documented exit code, never a traceback; and
never in a second first sync that would announce everything again.

A full disk and a read-only filesystem are real: a small tmpfs mounted for the test, filled with a
ballast file, or remounted read-only (the tests run as root, for whom file modes do not stop a write;
they are skipped where mounting is not allowed).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from tests.test_service import CHANNEL, seed, start, wait_for, write_config
from tests.test_state_failures import damage
from tests.test_state_lock import cli

pytestmark = pytest.mark.integration


@pytest.fixture
def sims() -> Iterator[tuple[ServiceNowSimulator, SlackSimulator]]:
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        yield snow, slack


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the state directory, unmounted afterwards."""
    where = tmp_path / "state"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(where)])
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


def on(state: Path, tmp_path: Path, snow: ServiceNowSimulator, slack: SlackSimulator) -> Path:
    return write_config(tmp_path, snow, slack, state={"path": str(state / "state.db")})


def add_changes(snow: ServiceNowSimulator, first: int, n: int, words: int = 0) -> list[str]:
    now = datetime.now(timezone.utc)
    numbers = []
    for i in range(first, first + n):
        start_at = now + timedelta(days=2, minutes=i)
        number = f"CHG00720{i:02d}"
        snow.put_record(
            "change_request",
            make_change(
                number, short_description=f"Later {i}", description="word " * words, start=start_at,
                end=start_at + timedelta(hours=1),
            ),
        )  # fmt: skip  (stamped now by the simulator, as ServiceNow does: never behind the cursor)
        numbers.append(number)
    return numbers


def fill_up(where: Path) -> None:
    with (where / "ballast").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_a_full_disk_stops_the_daemon_with_one_plain_error_and_it_carries_on_after(
    tmp_path: Path, tmpfs: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=3)
    config = on(tmpfs, tmp_path, snow, slack)
    daemon = start(config)
    try:
        wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 3)
        fill_up(tmpfs)
        numbers = add_changes(snow, 0, 20, words=400)  # more than the WAL has room for
        code = wait_for("the daemon to stop", lambda: daemon.proc.poll() is not None, timeout=30)
        assert code
    finally:
        daemon.stop()
    assert daemon.proc.returncode == 1  # may pass by itself: systemd restarts it
    log = daemon.log()
    assert "is full" in log and str(tmpfs / "state.db") in log, log
    assert "Traceback" not in log and "cannot rollback" not in log, log

    (tmpfs / "ballast").unlink()  # space again: started again, it carries on where it stopped
    again = start(config)
    try:
        wait_for("the new windows to be posted", lambda: len(slack.parents(CHANNEL)) == 23, timeout=30)
    finally:
        assert again.stop() == 0
    texts = [m.text for m in slack.parents(CHANNEL)]
    assert all(sum(n in t for t in texts) == 1 for n in numbers), texts


def test_a_read_only_filesystem_is_named_and_the_read_only_commands_still_read_it(
    tmp_path: Path, tmpfs: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=3)
    config = on(tmpfs, tmp_path, snow, slack)
    daemon = start(config)
    try:
        wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 3)
    finally:
        assert daemon.stop() == 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0

    for command in (("run",), ("sync", "--once")):
        refused = cli(config, *command, timeout=20)
        assert refused.returncode == 4, refused.stderr
        assert "Read-only file system" in refused.stderr and str(tmpfs) in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    windows = cli(config, "windows")
    assert windows.returncode == 0, windows.stderr
    assert "CHG0070001" in windows.stdout
    status = cli(config, "status")
    assert "Traceback" not in status.stderr and "windows" in status.stdout, status.stderr


def test_a_damaged_database_stops_the_start_with_what_to_do(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator]
) -> None:
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=3)
    config = write_config(tmp_path, snow, slack)
    daemon = start(config)
    try:
        wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 3)
    finally:
        assert daemon.stop() == 0
    damage(tmp_path / "state.db")
    for command in (("run",), ("sync", "--once"), ("sync", "--dry-run")):
        refused = cli(config, *command, timeout=20)
        assert refused.returncode == 4, (command, refused.stderr)
        assert f"the state database {tmp_path / 'state.db'} is damaged" in refused.stderr, refused.stderr
        assert "mv " in refused.stderr and "Traceback" not in refused.stderr
    assert len(slack.parents(CHANNEL)) == 3


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_the_database_deleted_or_replaced_under_the_daemon_stops_it(
    tmp_path: Path, sims: tuple[ServiceNowSimulator, SlackSimulator], how: str
) -> None:
    snow, slack = sims
    seed(snow, datetime.now(timezone.utc), n=3)
    config = write_config(tmp_path, snow, slack)
    db = tmp_path / "state.db"
    daemon = start(config)
    try:
        wait_for("the first sync to be posted", lambda: len(slack.parents(CHANNEL)) == 3)
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        else:
            copy = sqlite3.connect(tmp_path / "copy.db")
            source = sqlite3.connect(db)
            source.backup(copy)
            source.close()
            copy.close()
            shutil.move(tmp_path / "copy.db", db)
        add_changes(snow, 0, 2)
        wait_for("the daemon to stop", lambda: daemon.proc.poll() is not None, timeout=30)
    finally:
        daemon.stop()
    assert daemon.proc.returncode == 4, daemon.log()
    log = daemon.log()
    assert f"the state database {db} was {how}" in log and "while the connector was running" in log, log
    assert "Traceback" not in log
    assert len(slack.parents(CHANNEL)) == 3  # nothing announced to a file no one reads
    assert db.exists() == (how == "replaced")  # not recreated: no second first sync by itself
