"""The daemon: jobs on a schedule, failures classified and logged on transition, shutdown honoured.

Jobs run in the main loop (so a stuck loop really stops the watchdog pings):

- ``poll``    every ``servicenow.poll_interval``: incremental sync (with bounded, interruptible retries);
- ``tick``    every few seconds: time-driven events (started / ended / overran), no I/O;
- ``refresh`` every ``servicenow.ci_refresh_interval``: affected CIs and membership of open windows.

The ``heartbeat`` (``connector.sdnotify.Heartbeat`` under systemd) is called from this loop only: on
every turn, after each committed page of a long sync, and while waiting between retries — never while
a request is outstanding. A request that hangs therefore stops the watchdog pings; one that times out
(``servicenow.timeout``, well below ``WatchdogSec=``) does not.

Sinks drain the outbox in their own worker threads, woken after each commit, so a slow or failing
Slack (or Alertmanager) never holds back polling, and polling never waits for them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import schedule
import tenacity

from connector.errors import (
    SinkPermanentError,
    SinkRetryableError,
    SourceAuthError,
    SourceError,
    SourceUnavailable,
)
from connector.logs import TransitionLog
from connector.sync import PollResult, Syncer

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SourceStatus:
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_result: PollResult | None = None
    auth_retry_at: datetime | None = None
    retry_at: datetime | None = None  # the source asked for more than a poll interval (Retry-After)


@dataclass
class Status:
    started_at: datetime
    sources: dict[str, SourceStatus] = field(default_factory=dict)
    sink_errors: dict[str, str | None] = field(default_factory=dict)


class SinkWorker:
    """Runs ``deliver(now)`` in a thread whenever woken (and every ``idle`` seconds), with backoff."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[datetime], object],
        stop: threading.Event,
        status: Status,
        *,
        clock: Callable[[], datetime] = utc_now,
        idle: float = 30.0,
        max_backoff: float = 300.0,
        on_result: Callable[[str, object | None, str | None], None] = lambda n, r, e: None,
    ) -> None:
        self.name = name
        self._deliver = deliver
        self._stop = stop
        self._status = status
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
        try:
            result = self._deliver(self._clock())
        except SinkPermanentError as e:
            self._fail(str(e), level=logging.ERROR)
            return min(self._max_backoff, 60.0 * 2 ** min(self.failures, 3))
        except SinkRetryableError as e:
            self._fail(str(e), level=logging.WARNING)
            retry_after = getattr(e, "retry_after", None)
            backoff = min(self._max_backoff, 2.0 ** min(self.failures, 8)) * (0.5 + random.random() / 2)
            return max(backoff, float(retry_after or 0))
        except Exception as e:  # a bug must not kill the worker: log it whole, retry later
            log.exception("%s delivery crashed", self.name)
            self._fail(f"internal error: {type(e).__name__}", level=logging.ERROR)
            return 60.0
        self.failures = 0
        self._status.sink_errors[self.name] = None
        self._translog.ok()
        self._on_result(self.name, result, None)
        return self._idle

    def _fail(self, reason: str, level: int) -> None:
        self.failures += 1
        self._status.sink_errors[self.name] = reason
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


class Daemon:
    def __init__(
        self,
        syncers: list[Syncer],
        *,
        poll_interval: float,
        refresh_interval: float,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = utc_now,
        tick_interval: float = 5.0,
        retry_attempts: int = 3,
        on_poll: Callable[[str, PollResult | None, str | None, str | None], None] = lambda s, r, e, k: None,
        heartbeat: Callable[[], None] = lambda: None,
        sleep: Callable[[float], object] | None = None,
        shutdown_grace: float = 8.0,
        status: Status | None = None,
        sinks: Sequence[SinkWorker] = (),
    ) -> None:
        """``status`` is shared with the sink workers (they report into it); ``sinks`` are started
        with the loop and given ``shutdown_grace`` to finish the step in progress at shutdown."""
        self.syncers = syncers
        self.shutdown_grace = shutdown_grace  # for the sinks to finish their step: all of them together
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.tick_interval = tick_interval
        self.stop = stop or threading.Event()
        self.clock = clock
        self.retry_attempts = retry_attempts
        self.status = status or Status(started_at=clock())
        for s in syncers:
            self.status.sources.setdefault(s.name, SourceStatus())
        self.sinks = list(sinks)
        self._on_poll = on_poll
        self._heartbeat = heartbeat
        self._max_nap = 1.0
        self._retry_sleep = sleep or self._sleep  # between retries of a poll; tests inject a fake clock's
        self._translogs = {s.name: TransitionLog(log, f"ServiceNow source {s.name!r}") for s in syncers}

    # -- jobs ---------------------------------------------------------------------------------------
    def poll(self) -> None:
        for syncer in self.syncers:
            self._poll_one(syncer)
        self._wake_sinks()

    def _poll_one(self, syncer: Syncer) -> None:
        st = self.status.sources[syncer.name]
        now = self.clock()
        if st.auth_retry_at and now < st.auth_retry_at:
            return  # credentials were refused: retry slowly, not every poll
        if st.retry_at and now < st.retry_at:
            return  # the source asked us to wait longer than a poll interval
        longest = min(self.poll_interval, 60.0)  # longest wait inside one poll: the loop has more to do
        retrying = tenacity.Retrying(
            stop=tenacity.stop_any(
                tenacity.stop_after_attempt(self.retry_attempts),
                tenacity.stop_when_event_set(self.stop),
                _stop_before_waiting_longer_than(longest),
            ),
            wait=_wait_retry_after(tenacity.wait_exponential_jitter(initial=1, max=30)),
            retry=tenacity.retry_if_exception_type(SourceUnavailable),
            sleep=self._retry_wait,
            before_sleep=lambda rs: _note_attempt(st, rs),  # /healthz names the cause while retrying
            reraise=True,
        )
        try:
            result = retrying(syncer.poll, self.clock(), progress=self._heartbeat)
        except _Interrupted:
            return  # shutdown while waiting to retry: nothing was committed, the next start polls again
        except SourceError as e:
            kind = _error_kind(e)
            st.last_error = str(e)
            if isinstance(e, SourceAuthError):
                st.auth_retry_at = now + timedelta(seconds=max(300.0, self.poll_interval * 5))
            if e.retry_after is not None and e.retry_after > longest:
                st.retry_at = now + timedelta(seconds=e.retry_after)  # honoured without blocking the loop
            self._translogs[syncer.name].failed(str(e), level=logging.ERROR)
            self._on_poll(syncer.name, None, str(e), kind)
            return
        st.last_ok_at, st.last_error, st.last_result, st.auth_retry_at = self.clock(), None, result, None
        st.retry_at = None
        self._translogs[syncer.name].ok()
        self._on_poll(syncer.name, result, None, None)
        if result.fetched or result.events:
            log.info(
                "poll %s: fetched %d, changed %d, events %d, rejected %d",
                syncer.name,
                result.fetched,
                result.changed,
                result.events,
                result.problems,
            )

    def _retry_wait(self, seconds: float) -> None:
        self._retry_sleep(seconds)
        if self.stop.is_set():
            raise _Interrupted  # not one more attempt (up to a request timeout) after SIGTERM

    def _sleep(self, seconds: float) -> None:
        """Wait between retries: interrupted by shutdown, and still the main loop, so it pings."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stop.wait(min(remaining, self._max_nap)):
                return
            self._heartbeat()

    def tick(self) -> None:
        now = self.clock()
        events = sum(s.tick(now).events for s in self.syncers)
        if events:
            self._wake_sinks()

    def refresh(self) -> None:
        for syncer in self.syncers:
            self._heartbeat()
            try:
                syncer.refresh(self.clock())
            except SourceError as e:
                log.warning("refresh of open windows from %s failed: %s (will retry)", syncer.name, e)
        self._wake_sinks()

    def _wake_sinks(self) -> None:
        for s in self.sinks:
            s.wake()

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, heartbeat: Callable[[], None] | None = None, max_nap: float | None = None) -> None:
        """The loop, until ``stop`` is set. ``heartbeat`` is called on every turn (see the module doc);
        ``max_nap`` caps how long one turn sleeps (the heartbeat's ping interval), at most 1 s."""
        if heartbeat is not None:
            self._heartbeat = heartbeat
        self._max_nap = min(max_nap or 1.0, 1.0)
        sched = schedule.Scheduler()
        sched.every(max(1, round(self.poll_interval))).seconds.do(self.poll)
        sched.every(max(1, round(self.tick_interval))).seconds.do(self.tick)
        sched.every(max(1, round(self.refresh_interval))).seconds.do(self.refresh)
        for sink in self.sinks:
            sink.start()
        self._heartbeat()
        self.poll()  # at once, not one interval after start
        self.tick()
        while not self.stop.is_set():
            self._heartbeat()
            sched.run_pending()
            idle = sched.idle_seconds
            nap = min(idle if idle is not None else 1.0, self._max_nap)
            self.stop.wait(max(nap, 0.05))
        log.info("shutting down: finishing deliveries in progress")
        deadline = time.monotonic() + self.shutdown_grace
        for sink in self.sinks:
            sink.join(timeout=max(0.0, deadline - time.monotonic()))


def _note_attempt(st: SourceStatus, retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if exc is not None:
        st.last_error = str(exc)


class _stop_before_waiting_longer_than(tenacity.stop.stop_base):
    """Give up rather than sleep longer than ``seconds`` (a long Retry-After defers the next poll)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.upcoming_sleep > self.seconds


class _Interrupted(Exception):
    """Shutdown was requested while waiting to retry a poll."""


def _error_kind(e: SourceError) -> str:
    if isinstance(e, SourceAuthError):
        return "auth"
    if isinstance(e, SourceUnavailable):
        return "unavailable"
    return "bad_response"


class _wait_retry_after(tenacity.wait.wait_base):
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, fallback: tenacity.wait.wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self.fallback(retry_state))
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(wait, float(retry_after or 0))
