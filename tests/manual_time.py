"""Time the test moves by hand, for the daemon's threads: a wall clock, a monotonic clock, and a
``wait`` that blocks until the test has moved the monotonic clock past its end (or shutdown).

The test moves time with :meth:`ManualTime.advance` and then :meth:`ManualTime.settle`: a bounded
real-time wait until the given number of threads are all waiting for a moment still ahead, i.e.
everything that was due has run. Nothing sleeps for the time it simulates.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta


class ManualTime:
    def __init__(self, stop: threading.Event, wall: datetime, mono: float = 1000.0) -> None:
        self.stop = stop
        self.wall = wall
        self.mono = mono
        self._cond = threading.Condition()
        self._sleepers: dict[int, float] = {}  # thread -> the moment it waits for

    def clock(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def wait(self, seconds: float) -> bool:
        """Like ``Event.wait``: True when shutdown was requested."""
        if seconds <= 0:
            return self.stop.is_set()
        me = threading.get_ident()
        with self._cond:
            deadline = self.mono + seconds
            self._sleepers[me] = deadline
            self._cond.notify_all()
            try:
                while not self.stop.is_set() and self.mono < deadline:
                    self._cond.wait(0.05)  # shutdown does not notify this condition
            finally:
                del self._sleepers[me]
                self._cond.notify_all()
        return self.stop.is_set()

    def advance(self, seconds: float) -> None:
        """Both clocks move on, as time passes."""
        with self._cond:
            self.mono += seconds
            self.wall += timedelta(seconds=seconds)
            self._cond.notify_all()

    def step_wall(self, seconds: float) -> None:
        """Only the wall clock jumps (NTP, an operator, a VM resumed): the monotonic clock does not."""
        with self._cond:
            self.wall += timedelta(seconds=seconds)

    def settle(self, threads: int, timeout: float = 15.0) -> None:
        """Wait until ``threads`` threads wait for a moment still ahead (bounded, in real time)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for d in self._sleepers.values() if d > self.mono) < threads:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{threads} threads did not settle within {timeout:g}s")
                self._cond.wait(min(left, 0.05))

    def run(self, seconds: float, threads: int, step: float = 0.5) -> None:
        """``seconds`` pass in steps of ``step``, everything due at each step run before the next."""
        for _ in range(round(seconds / step)):
            self.advance(step)
            self.settle(threads)
