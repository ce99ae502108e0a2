"""What can go wrong with the state database itself, said in words that tell the operator what to do.

:func:`state_error` turns SQLite's error for a full disk, a damaged file, a read-only file or
filesystem, an I/O error or a database kept locked into a :class:`~connector.errors.StateError`;
anything else (a constraint violated, SQL that does not parse) is a bug and stays what it is.
:class:`FileIdentity` notices the database file being deleted or replaced under an open store: SQLite
would go on writing to the old file, which nobody will ever read again, and the next start would
begin anew with a first sync.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from connector.errors import StateError

# SQLite's primary result codes (https://sqlite.org/rescode.html)
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 5, 6, 8, 10, 11, 13, 14, 26
#: Python < 3.11 has no ``sqlite_errorcode``: SQLite's message for each code
_BY_MESSAGE = {
    "database or disk is full": _FULL,
    "database disk image is malformed": _CORRUPT,
    "file is not a database": _NOTADB,
    "attempt to write a readonly database": _READONLY,
    "disk I/O error": _IOERR,
    "unable to open database file": _CANTOPEN,
    "database is locked": _BUSY,
    "database table is locked": _LOCKED,
    "access permission denied": _PERM,
}


def _code(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF  # the primary code of an extended one (SQLITE_IOERR_WRITE → SQLITE_IOERR)
    text = str(e)
    return next((c for m, c in _BY_MESSAGE.items() if text.startswith(m)), None)


def state_error(e: sqlite3.Error, path: str) -> StateError | None:
    """The operator's version of ``e``, or None when ``e`` is not about the database file (a bug)."""
    code, where, detail = _code(e), Path(path).parent, str(e)
    if code == _FULL:
        return StateError(
            f"the disk holding the state database {path} is full ({detail}): the change being written "
            f"was rolled back, nothing is lost. Free space there (df -h {where}); the connector carries "
            "on where it stopped once it is started again",
            operator=False,
        )
    if code in (_CORRUPT, _NOTADB):
        return damaged(path, detail)
    if code in (_READONLY, _PERM):
        return StateError(
            f"the state database {path} cannot be written ({detail}): the file, its directory {where} "
            "or the filesystem is read-only for the user the connector runs as. Make them writable "
            "(under systemd: StateDirectory=, or ReadWritePaths= for another path)",
            operator=True,
        )
    if code == _CANTOPEN:
        return StateError(
            f"cannot open the state database {path} ({detail}): its directory {where} must exist and "
            "be writable by the user the connector runs as",
            operator=True,
        )
    if code == _IOERR:
        return StateError(
            f"I/O error on the state database {path} ({detail}): the change being written was rolled "
            f"back. Check the disk under {where} (dmesg, df -h); a full disk can show up this way too",
            operator=False,
        )
    if code in (_BUSY, _LOCKED):
        return StateError(
            f"the state database {path} stayed locked by another program ({detail}): close whatever "
            "holds it open for writing (an sqlite3 shell, a backup tool); the connector itself allows "
            "only one of its processes per database",
            operator=False,
        )
    return None


def damaged(path: str, detail: str) -> StateError:
    return StateError(
        f"the state database {path} is damaged ({detail}). Stop the connector, move the file aside "
        f"with its -wal and -shm files (mv {path} {path}.damaged), then start it: it begins again "
        "with a first sync (one digest of the open windows, not a message each); or put back a "
        "backup of the file",
        operator=True,
    )


class FileIdentity:
    """The database file as opened (device and inode): :meth:`check` raises when the path no longer
    leads to it. ``:memory:`` and other non-files are never checked."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._id: tuple[int, int] | None = None
        if path and path != ":memory:" and not path.startswith("file:"):
            try:
                st = os.stat(path)
            except OSError:
                pass
            else:
                self._id = (st.st_dev, st.st_ino)

    def check(self) -> None:
        if self._id is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StateError(
                f"the state database {self.path} was deleted while the connector was running: stopped, "
                "so that it neither writes to a file no one will read nor starts over by itself. Put the "
                "file back (or a backup) and start the connector; started without it, it begins again "
                "with a first sync (one digest of the open windows)",
                operator=True,
            ) from None
        if (st.st_dev, st.st_ino) != self._id:
            raise StateError(
                f"the state database {self.path} was replaced by another file while the connector was "
                "running: stopped, so that it does not go on writing to the old one. Start it again to "
                "use the new file",
                operator=True,
            )
