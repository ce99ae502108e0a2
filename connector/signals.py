"""SIGTERM, SIGINT and SIGHUP turned into events, with no lock taken inside the signal handler.

A Python signal handler runs in the main thread between two bytecodes, perhaps while that very thread
holds a lock: the condition lock inside ``threading.Event.wait``, threading's thread-start lock while
the poll starts its read-ahead threads, the logging lock. A handler that takes such a lock again
(``Event.set``, ``Thread.start``, a log call) waits for itself, and the daemon hangs until SIGKILL.
So the handler only writes the signal's number to a pipe (``os.write`` takes no lock); a watcher
thread reads it, sets ``stop`` or ``hup``, and on the first stop arms the exit deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

STOPPING = (signal.SIGTERM, signal.SIGINT)


class SignalWatcher:
    """``deadline``: seconds from the first stop signal to ``exit_now(0)``, however long the step in
    progress hangs (a request cannot be interrupted; every step commits atomically, so exiting past the
    deadline loses nothing: tests/test_crash.py)."""

    def __init__(
        self,
        stop: threading.Event,
        hup: threading.Event,
        *,
        deadline: float,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self.stop, self.hup = stop, hup
        self._deadline, self._exit_now = deadline, exit_now
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)
        self._thread = threading.Thread(target=self._watch, name="signals", daemon=True)
        self._thread.start()

    def install(self) -> None:
        """In the main thread (Python allows handlers there only)."""
        for signum in (*STOPPING, signal.SIGHUP):
            signal.signal(signum, self.handler)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):  # 64 KiB of signals unread: this one adds nothing
            os.write(self._write_end, bytes([signum]))

    def _watch(self) -> None:
        armed = False
        while True:
            for signum in os.read(self._read_end, 64):
                if signum == signal.SIGHUP:
                    self.hup.set()
                    continue
                self.stop.set()  # logged by the main loop
                if not armed:
                    armed = True
                    timer = threading.Timer(self._deadline, self._exit_now, args=(0,))
                    timer.daemon = True
                    timer.start()
