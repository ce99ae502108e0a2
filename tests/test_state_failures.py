"""The state database failing under the store: a full disk, a damaged file, a database deleted or
replaced while open. Each ends in one :class:`StateError` that says what happened and what to do,
never in SQLite's own words alone, never in a second error about the rollback.

Real SQLite files in ``tmp_path``. A full disk is SQLite's own ``max_page_count`` here (the limit it
enforces exactly like a full filesystem: SQLITE_FULL); tests/test_state_failures_service.py fills a
real (tmpfs) filesystem under the running daemon.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest

from connector.cli.main import main
from connector.daemon import Daemon, SinkWorker
from connector.errors import StateError
from connector.store.sqlite import Store


def fill(store: Store, n: int = 2000) -> None:
    with store.transaction():
        for i in range(n):
            store._meta_set(f"filler:{i}", "x" * 500)


def test_a_full_disk_is_said_plainly_and_rolled_back_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with store.transaction():
        store._meta_set("before", "kept")
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow: SQLITE_FULL
    with pytest.raises(StateError) as full:
        fill(store)
    message = str(full.value)
    assert "is full" in message and str(tmp_path) in message, message
    assert "rollback" not in message  # not masked by "cannot rollback - no transaction is active"
    assert not full.value.operator and full.value.exit_code == 1  # may pass by itself: restarted
    assert not store._db.in_transaction

    store._db.execute("PRAGMA max_page_count = 1073741823")  # space again: the store carries on
    assert store._meta_get("filler:0") is None and store._meta_get("before") == "kept"
    fill(store, 10)
    assert store._meta_get("filler:9") == "x" * 500
    store.close()


def damage(path: Path) -> None:
    """Garbage over every page but the first: the header (and its schema version) still reads."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(size - 4096))


def make_state(path: Path) -> None:
    store = Store(path)
    fill(store, 200)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


@pytest.mark.parametrize("how", ["garbage", "damaged pages"])
def test_a_damaged_database_is_named_with_what_to_do(tmp_path: Path, how: str) -> None:
    path = tmp_path / "state.db"
    if how == "garbage":
        path.write_bytes(os.urandom(20000))
    else:
        make_state(path)
        damage(path)
    with pytest.raises(StateError) as damaged:
        store = Store(path)
        store.tracked()
        fill(store, 10)
    message = str(damaged.value)
    assert str(path) in message and "damaged" in message and "mv " in message, message
    assert damaged.value.operator and damaged.value.exit_code == 4


def test_deleting_the_database_under_an_open_store_is_noticed_before_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    fill(store, 1)
    os.unlink(path)
    with pytest.raises(StateError) as deleted:
        fill(store, 1)
    assert "was deleted" in str(deleted.value) and str(path) in str(deleted.value)
    assert deleted.value.operator
    with pytest.raises(StateError, match="was deleted"):
        store._meta_set("outside", "a transaction")  # a write outside a transaction is checked too
    store.close()
    assert not path.exists()  # nothing recreated it


def test_replacing_the_database_under_an_open_store_is_noticed(tmp_path: Path) -> None:
    path, other = tmp_path / "state.db", tmp_path / "backup.db"
    make_state(other)
    store = Store(path)
    fill(store, 1)
    shutil.copy(other, tmp_path / "incoming.db")
    os.replace(tmp_path / "incoming.db", path)  # e.g. a backup restored under the running daemon
    with pytest.raises(StateError) as replaced:
        fill(store, 1)
    assert "was replaced" in str(replaced.value) and replaced.value.operator
    store.close()


def test_a_bug_is_not_dressed_up_as_a_state_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with pytest.raises(sqlite3.IntegrityError), store.transaction():
        store._x("INSERT INTO meta(key, value) VALUES('k', NULL)")
    store.close()


# -- the read-only commands ----------------------------------------------------------------------------


def config_for(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "servicenow: {url: 'http://127.0.0.1:9', username: admin}\n"
        "slack: {channel: C0MAINT01}\n"
        f"state: {{path: '{tmp_path / 'state.db'}'}}\n"
        "log: {format: text}\n"
    )
    return path


@pytest.mark.parametrize("how", ["garbage", "damaged pages"])
@pytest.mark.parametrize("command", ["status", "windows"])
def test_read_only_commands_on_a_damaged_database_say_so_without_a_traceback(
    tmp_path: Path, command: str, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if how == "garbage":
        (tmp_path / "state.db").write_bytes(os.urandom(20000))
    else:
        make_state(tmp_path / "state.db")
        damage(tmp_path / "state.db")
    assert main([command, "-c", str(config_for(tmp_path))]) == 4
    err = capsys.readouterr().err
    assert "damaged" in err and str(tmp_path / "state.db") in err, err



# -- the daemon ------------------------------------------------------------------------------------------


def test_a_state_failure_in_a_sink_thread_stops_the_daemon_with_that_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not "delivery crashed" with a traceback every minute: the daemon stops and says why."""
    stop = threading.Event()
    daemon = Daemon([], stop=stop, shutdown_grace=1)
    gone = StateError("the state database /x/state.db was deleted while the connector ran", operator=True)

    def deliver(now: datetime) -> None:
        raise gone

    daemon.sinks.append(SinkWorker("slack:C1", deliver, stop, daemon.state))
    timer = threading.Timer(10, stop.set)  # a bound, should the error not stop it
    timer.start()
    try:
        with pytest.raises(StateError) as stopped:
            daemon.run()
    finally:
        timer.cancel()
    assert stopped.value is gone
    assert "crashed" not in caplog.text and "Traceback" not in caplog.text
