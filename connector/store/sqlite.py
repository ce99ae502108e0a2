"""The state store on SQLite (stdlib, WAL), the default: one host, one file, schema versioned with
``PRAGMA user_version``.

:class:`Store` runs the migrations of :mod:`connector.store.schema` (which says what each table keeps
and why); the queries are :class:`connector.store.queries.SqlStore`'s, shared with PostgreSQL. Every
SQLite error about the file itself (full disk, damaged, read-only, ...) leaves it as a
:class:`~connector.errors.StateError` saying what to do (``connector.store.failures``); before each
write the path must still lead to the file that was opened (:class:`FileIdentity`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from connector.errors import StateError
from connector.store.api import Delivery, MessageRef, NotRouted, ProblemRow, StoredWindow
from connector.store.connection import connect
from connector.store.facts import LastPoll, SinkState
from connector.store.failures import FileIdentity, state_error
from connector.store.queries import SqlStore
from connector.store.schema import MIGRATIONS

__all__ = [
    "Delivery",
    "LastPoll",
    "MessageRef",
    "NotRouted",
    "ProblemRow",
    "SinkState",
    "Store",
    "StoredWindow",
]


class Store(SqlStore):
    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """``read_only``: for the commands that only look: the file is neither created nor migrated
        nor written (SQLite's ``mode=ro``)."""
        self.path = str(path)
        self._setup()
        try:
            self._db = connect(self.path, read_only=read_only)
        except sqlite3.Error as e:
            self._raise(e)
        self._file = FileIdentity("" if read_only else self.path)
        try:
            if read_only:
                self.store_id = ""  # it posts nothing, so it needs no id (and the schema is not checked yet)
            else:
                self._migrate()
                self._load_id()
        except BaseException as e:
            self._db.close()
            if isinstance(e, sqlite3.Error):
                self._raise(e)
            raise

    @property
    def location(self) -> str:
        return self.path

    # -- plumbing ---------------------------------------------------------------------------------
    def _raise(self, e: sqlite3.Error) -> NoReturn:
        """``e`` as the operator's :class:`StateError` when it is about the database file, else as is."""
        err = state_error(e, self.path)
        if err is None:
            raise e
        raise err from e

    def schema_version(self) -> int:
        return int(self._q("PRAGMA user_version")[0][0])

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StateError(
                f"the state database {self.path} is schema v{version}, newer than this program: it was "
                "written by a newer release. Install that release again, or put back the copy of the "
                "file kept before the upgrade",
                operator=True,
            )
        for n, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for stmt in filter(str.strip, script.split(";")):
                    self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version = {n}")

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.Error as e:
                self._raise(e)

    def _execmany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            try:
                self._db.executemany(sql, rows)
            except sqlite3.Error as e:
                self._raise(e)

    def _insert_id(self, sql: str, args: Sequence[Any]) -> int:
        rowid = self._exec(sql, args).lastrowid
        assert rowid is not None
        return rowid

    def _begin(self) -> None:
        self._file.check()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            self._raise(e)

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._raise(e)

    def _rollback(self) -> None:
        """Roll back what is still open: after some errors (a full disk) SQLite already has, and a
        second ROLLBACK would raise "no transaction is active" in place of the real error."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error that brought us here is the one to raise
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- what only SQLite's dialect says ----------------------------------------------------------
    #: SQLite picks the planned times out of the window's JSON
    _WINDOW_COLUMN = "w.window"
    _OVERLAPS = (
        "julianday(json_extract(w.window, '$.planned_end')) >= julianday(?) AND "
        "julianday(json_extract(w.window, '$.planned_start')) <= julianday(?)"
    )

