"""One process per state database: an exclusive ``flock`` on ``<database>.lock``, held for the life of
the process that writes (``run``, ``sync``).

Two writers on one state would each poll and each deliver the same events: Slack gets every window
twice. The lock is taken before the database is opened and is let go when the process ends, however it
ends (the kernel drops a ``flock`` with its file). The file keeps who holds it (pid, host, command,
since) so the one that is refused can say so. The file itself is left in place: removing it would let a
third process lock a new file while the second still holds the old one.

The read-only commands (``status``, ``windows``, ``digest``, ``calendar``) and ``--dry-run`` (which
works on a copy) never take it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from connector.errors import StateError, StateLocked


class StateLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, database: Path | str, *, command: str) -> StateLock:
        """The lock of ``database``, or :class:`StateLocked` (at once, never waiting) naming its holder."""
        path = Path(f"{database}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StateError(
                f"cannot create the lock file {path} of the state database ({e.strerror}): the state "
                f"directory {path.parent} must exist and be writable by the user the connector runs as",
                operator=True,
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateError(f"cannot lock {path} ({e.strerror})", operator=True) from None
            raise StateLocked(
                f"the state database {database} is in use by another itsm-connector ({holder}; lock file "
                f"{path}): only one process may write it. Stop that one first (systemctl stop "
                f"itsm-connector), or use the read-only commands (status, windows, digest --print, "
                f"calendar) or --dry-run beside it"
            ) from None
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the file stays (see the module doc)
            self._fd = None


def _holder(fd: int) -> str:
    """``pid 4242 on host db01, `run` since 2026-11-27T03:00:00+00:00``, or as much as is known."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or "pid" not in data:
        return "a process that has not said who it is"
    text = f"pid {data['pid']} on host {data.get('host', '?')}"
    if data.get("command"):
        text += f", `{data['command']}`"
    if data.get("since"):
        text += f" since {data['since']}"
    return text
