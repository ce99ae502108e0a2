"""A sink's worker thread: drains the outbox into one sink (a Slack channel, Alertmanager) whenever
woken after a commit, and every ``idle`` seconds; failures classified, logged on transition, backed off.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from connector.errors import SinkPermanentError, SinkRetryableError, StateError, StateInterrupted
from connector.logs import TransitionLog

if TYPE_CHECKING:
    from connector.daemon import RunState

log = logging.getLogger(__name__)

#: seconds between looks whether a standby became the leader
STANDBY_RECHECK = 1.0
#: seconds before a pass that the state database refused runs again (it may be back soon)
STATE_RETRY = 2.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class SinkWorker:
    """Runs ``deliver(now)`` in a thread whenever woken (and every ``idle`` seconds), with backoff."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[datetime], object],
        stop: threading.Event,
        state: RunState,
        *,
        clock: Callable[[], datetime] = utc_now,
        idle: float = 30.0,
        max_backoff: float = 300.0,
        on_result: Callable[[str, object | None, str | None], None] = lambda n, r, e: None,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.name = name
        self._active = active  # False on a standby replica: it delivers nothing
        self._deliver = deliver
        self._stop = stop
        self._state = state
        self._clock = clock
        self._idle = idle
        self._max_backoff = max_backoff
        self._on_result = on_result
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)
        self._translog = TransitionLog(log, f"{name} delivery")
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._wake.set()
        self._thread.join(timeout)

    def run_once(self) -> float:
        """One delivery pass; returns how long to wait before the next one."""
        if not self._active():
            return STANDBY_RECHECK
        try:
            result = self._deliver(self._clock())
        except StateInterrupted as e:  # the state database is down, or this replica lost the lease
            self.failures += 1
            self._state.sink_errors[self.name] = str(e)
            self._translog.failed(str(e), level=logging.ERROR)
            return STATE_RETRY
        except SinkPermanentError as e:
            self._fail(str(e), level=logging.ERROR)
            return min(self._max_backoff, 60.0 * 2 ** min(self.failures, 3))
        except SinkRetryableError as e:
            self._fail(str(e), level=logging.WARNING)
            retry_after = getattr(e, "retry_after", None)
            backoff = min(self._max_backoff, 2.0 ** min(self.failures, 8)) * (0.5 + random.random() / 2)
            return max(backoff, float(retry_after or 0))
        except StateError as e:  # nothing more can be recorded: the daemon stops (``Daemon.run``)
            if self._state.fatal is None:
                self._state.fatal = e
            self._stop.set()
            return 0.0
        except Exception as e:  # a bug must not kill the worker: log it whole, retry later
            log.exception("%s delivery crashed", self.name)
            self._fail(f"internal error: {type(e).__name__}", level=logging.ERROR)
            return 60.0
        self.failures = 0
        self._state.sink_errors[self.name] = None
        self._translog.ok()
        self._on_result(self.name, result, None)
        return self._idle

    def _fail(self, reason: str, level: int) -> None:
        self.failures += 1
        self._state.sink_errors[self.name] = reason
        self._translog.failed(reason, level=level)
        self._on_result(self.name, None, reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._pause(self.run_once())

    def _pause(self, delay: float) -> None:
        """Idle, a wake-up (new events) starts the next pass at once. Backing off after a failure
        (Retry-After, a permanent error), only shutdown ends the wait early: a wake-up after every
        poll would otherwise turn the backoff into one request per poll."""
        if self.failures:
            self._stop.wait(delay)
            return
        self._wake.wait(delay)
        self._wake.clear()
