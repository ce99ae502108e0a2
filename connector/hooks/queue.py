"""One source's hints waiting to be read again: bounded, coalesced, paced.

The listener :meth:`HintQueue.add` s a hint and sets :attr:`HintQueue.ready`, which wakes the source's
worker; the worker :meth:`HintQueue.take` s every pending record in one round, once the round is due,
and reads them again in batches (``sys_idIN…``, 100 ids a request). Rules:

* a record already pending is not queued twice: a burst of hints for it is one re-read;
* a round is due ``GATHER`` seconds after the oldest pending hint (hints sent together are read
  together), and never sooner than ``PACE`` seconds after the previous round: a source is re-read at
  most once a second, and so is any one record, however many hints arrive;
* at most ``capacity`` records wait; a hint beyond that is refused (the poll catches its change).

Times are on the monotonic clock given to the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from connector.hooks.hint import Hint

#: seconds a round waits after its first hint for the ones sent with it
GATHER = 0.05
#: seconds between two rounds of one source, at least
PACE = 1.0
#: records waiting, at most
CAPACITY = 10_000


class HintQueue:
    def __init__(
        self,
        monotonic: Callable[[], float],
        *,
        capacity: int = CAPACITY,
        gather: float = GATHER,
        pace: float = PACE,
    ) -> None:
        self._monotonic = monotonic
        self._capacity, self._gather, self._pace = capacity, gather, pace
        self._lock = threading.Lock()
        self._pending: dict[str, bool] = {}  # sys_id -> read its task_ci rows too; in arrival order
        self._first_at: float | None = None  # when the oldest pending hint arrived
        self._last_round = float("-inf")
        #: set on every hint queued (and at shutdown): the worker's wake-up
        self.ready = threading.Event()

    def add(self, hint: Hint) -> bool:
        """Queue ``hint``; False when the queue is full (the hint is dropped)."""
        with self._lock:
            if hint.sys_id in self._pending:
                self._pending[hint.sys_id] |= hint.cis
            elif len(self._pending) >= self._capacity:
                return False
            else:
                self._pending[hint.sys_id] = hint.cis
                if self._first_at is None:
                    self._first_at = self._monotonic()
        self.ready.set()
        return True

    def due_at(self) -> float | None:
        """When the next round is due (monotonic), or None when nothing waits."""
        with self._lock:
            if self._first_at is None:
                return None
            return max(self._first_at + self._gather, self._last_round + self._pace)

    def take(self) -> list[Hint]:
        """Every pending record, in the order their first hints came, if a round is due now."""
        with self._lock:
            now = self._monotonic()
            if self._first_at is None or now < max(
                self._first_at + self._gather, self._last_round + self._pace
            ):
                return []
            taken = [Hint(sys_id, cis) for sys_id, cis in self._pending.items()]
            self._pending.clear()
            self._first_at, self._last_round = None, now
            return taken

    def clear(self) -> int:
        """Drop every pending record (no first sync yet: it reads everything); returns how many."""
        with self._lock:
            n = len(self._pending)
            self._pending.clear()
            self._first_at = None
            return n

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
