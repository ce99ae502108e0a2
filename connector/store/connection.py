"""Opening the state database: the writer's connection (WAL, migrated by the store) or a reader's that
cannot write at all (``mode=ro``), for the commands that only look (``status``, ``windows``, ...)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote


def connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    """Raises ``sqlite3.Error`` (the store says it in the operator's words)."""
    if read_only:
        uri = f"file:{quote(path)}?mode=ro"
        if _on_read_only_filesystem(path):
            # A WAL database needs its -shm file to be read, and none can be made here. Nothing can
            # write a read-only filesystem either, so SQLite may read the file as it is.
            uri += "&immutable=1"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        if not read_only:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        # 512 KiB of page cache instead of SQLite's 2 MiB: the database is small and sits in the OS
        # page cache anyway; the daemon's resident memory is what runs for years (bench/steady).
        db.execute("PRAGMA cache_size=-512")
        db.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        db.close()
        raise
    return db


def _on_read_only_filesystem(path: str) -> bool:
    try:
        return bool(os.statvfs(Path(path).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
