"""One source's worker: its poll, tick and refresh on its own schedule, and the records its hints
name (``connector.hooks``), in its own thread.

Intervals are measured on the monotonic clock (a wall-clock step neither stops nor bunches the jobs);
the wall clock only dates what is recorded (``now`` for the sync, ``last_ok_at``). Every job is
contained: a :class:`SourceError` is the source's (retried, logged on transition), any other
exception is a bug, logged once with its traceback, shown in the health, and retried with backoff;
neither leaves this worker. A :class:`StateError` (the state database itself failed) is no source's:
it ends the worker and stops the daemon. The worker owns its :class:`Syncer`: no other thread polls, ticks or
refreshes that source, and the store's lock serialises its commits with the other workers'.

A source that takes hints has a :class:`~connector.hooks.queue.HintQueue`: the worker then idles on
the queue's ``ready`` event (set by a hint, and by the daemon at shutdown) instead of the daemon's
``wait``, and reads the hinted records again before its other due jobs, when a round is due. A
round that fails is dropped (logged on transition): the polls catch up, as for a lost hint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import tenacity

from connector.apply import PollResult
from connector.errors import (
    SourceAuthError,
    SourceError,
    SourceUnavailable,
    StateError,
    StateInterrupted,
)
from connector.health import SourceHealth
from connector.hooks.queue import HintQueue
from connector.hooks.rounds import HintRounds
from connector.inflight import InFlight
from connector.logs import TransitionLog
from connector.retry_after import StopBeforeWaitingLongerThan, WaitRetryAfter
from connector.sync import Syncer

log = logging.getLogger(__name__)

#: A worker busy in a job with no sign of life (its own, or a request of its source starting or
#: ending) for longer than its source's timeout plus this is stuck: the watchdog pings stop.
STUCK_MARGIN = 15.0
#: The longest wait before retrying a job that crashed (never shorter than the job's interval).
MAX_BACKOFF = 300.0
JOBS = ("poll", "tick", "refresh", "hints")
#: windows deleted after each refresh at most (retention): a few milliseconds of one transaction
PRUNE_BATCH = 200
#: seconds between looks whether a standby became the leader
STANDBY_RECHECK = 1.0
#: seconds before a job that the state database refused runs again (it may be back soon)
STATE_RETRY = 2.0


@dataclass(frozen=True)
class SourcePlan:
    """How one source is run: its own intervals (seconds), and how long one of its requests may take."""

    poll_interval: float = 60.0
    refresh_interval: float = 900.0
    timeout: float = 30.0


@dataclass
class SourceState:
    last_ok_at: datetime | None = None  # wall clock: shown, never used to measure an age
    last_ok_mono: float | None = None  # monotonic: what the health measures the age from
    last_error: str | None = None
    last_result: PollResult | None = None
    retry_at: datetime | None = None  # the source asked for more than a poll interval (Retry-After)
    crashed: dict[str, str] = field(default_factory=dict)  # job -> what went wrong (a bug), until it runs


class SourceWorker:
    def __init__(
        self,
        syncer: Syncer,
        plan: SourcePlan,
        state: SourceState,
        *,
        stop: threading.Event,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        wait: Callable[[float], bool],
        tick_interval: float,
        retry_attempts: int,
        on_poll: Callable[[str, PollResult | None, str | None, str | None], None],
        on_events: Callable[[], None],
        in_flight: InFlight | None = None,
        on_fatal: Callable[[StateError], None] = lambda e: None,
        prune: Callable[[str, datetime, int], int] | None = None,
        active: Callable[[], bool] = lambda: True,
        hints: HintQueue | None = None,
        on_reread: Callable[[str, PollResult | None], None] = lambda source, result: None,
    ) -> None:
        """``on_fatal``: the state database failed in this worker's thread (the daemon stops).
        ``prune(source, now, limit)``: retention, one batch after each refresh (``_refresh``)."""
        self.name, self.syncer, self.plan, self.state = syncer.name, syncer, plan, state
        self._active = active  # False on a standby replica: no job runs
        self._on_fatal = on_fatal
        self._prune = prune
        self.prune_batch = PRUNE_BATCH
        self._stop, self._clock, self._monotonic, self._wait = stop, clock, monotonic, wait
        self._retry_attempts = retry_attempts
        self._on_poll, self._on_events = on_poll, on_events
        self._in_flight = in_flight
        self._hints = None
        if hints is not None:
            self._hints = HintRounds(syncer, hints, clock=clock, on_reread=on_reread, on_events=on_events)
        self._intervals = {"poll": plan.poll_interval, "refresh": plan.refresh_interval}
        self._intervals["tick"] = tick_interval
        start = monotonic()
        self._due = {"poll": start, "tick": start, "refresh": start + plan.refresh_interval}
        self._failures = dict.fromkeys(JOBS, 0)
        self._state_failed: set[str] = set()
        self._not_before = start  # credentials refused, or a long Retry-After: no poll before this
        self._alive_at: float | None = None  # last sign of life while in a job; None: not in one
        what = f"ServiceNow source {self.name!r}"
        self._logs = {"poll": TransitionLog(log, what)}
        self._logs.update(
            {job: TransitionLog(log, f"{job} of {what}") for job in ("tick", "refresh", "hints")}
        )
        self._thread = threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True)
        self._polled = False  # "polling …" is said before the first request

    # -- the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """End the idle wait of a worker that takes hints (shutdown)."""
        if self._hints is not None:
            self._hints.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.run_pending()
            except StateError as e:  # not this source's: the state is unusable, the daemon stops
                self._on_fatal(e)
                return
            except Exception:  # the scheduling itself failed: a bug; never the end of this source
                log.exception("ServiceNow source %r: scheduling failed", self.name)
                delay = 1.0
            if self._hints is None:
                if self._wait(delay):
                    return
            else:
                self._hints.idle(delay)

    def run_pending(self) -> float:
        """Run the jobs that are due, hinted records first; return the seconds until the next one is.
        A standby runs none (its jobs stay due: the first turn after it becomes the leader runs them)
        and drops the hints it gets (the leader's polls catch up)."""
        hints = self._hints
        if not self._active():
            if hints is not None:
                hints.drop()
            return STANDBY_RECHECK
        at = hints.due_at() if hints is not None else None
        if hints is not None and at is not None and self._monotonic() >= at and not self._stop.is_set():
            self._contained("hints", hints.run)
        for job, run in (("poll", self.poll), ("tick", self.tick), ("refresh", self.refresh)):
            started = self._monotonic()
            if started >= self._due[job] and not self._stop.is_set():
                ok = run()
                self._due[job] = self._next(job, ok, started)
        hints_at = self._hints.due_at() if self._hints is not None else None
        due = min(self._due.values()) if hints_at is None else min(*self._due.values(), hints_at)
        return max(0.0, due - self._monotonic())

    def _next(self, job: str, ok: bool, started: float) -> float:
        interval, finished = self._intervals[job], self._monotonic()
        if job in self._state_failed:  # the state database refused: again soon, not in an interval
            self._state_failed.discard(job)
            return finished + STATE_RETRY
        if self._failures[job]:  # it crashed: back off
            return finished + max(interval, min(MAX_BACKOFF, interval * 2 ** (self._failures[job] - 1)))
        due = started + interval if ok else finished + interval  # a failed poll is not repeated at once
        return max(due, self._not_before) if job == "poll" else due

    def due_now(self) -> None:
        """Poll and tick at the next turn (this replica just became the leader)."""
        now = self._monotonic()
        self._due["poll"] = min(self._due["poll"], now)
        self._due["tick"] = min(self._due["tick"], now)

    # -- the jobs (also run one at a time by Daemon.poll/tick/refresh) ------------------------------
    def poll(self) -> bool:
        if self._monotonic() < self._not_before:
            return False  # credentials refused or the source asked us to wait: not yet
        return self._contained("poll", self._poll)

    def tick(self) -> bool:
        return self._contained("tick", self._tick)

    def refresh(self) -> bool:
        return self._contained("refresh", self._refresh)

    def _contained(self, job: str, run: Callable[[], bool]) -> bool:
        """Run one job; whatever it raises stays with this source."""
        self._alive()
        try:
            ok = run()
        except _Interrupted:
            return False  # shutdown while waiting to retry: nothing was committed
        except StateError:
            raise  # not contained: the daemon stops (``_run``), ``sync`` says it and exits
        except StateInterrupted as e:  # the state database is down, or this replica lost the lease
            self._state_failed.add(job)
            self._logs[job].failed(f"{e} (nothing was written)", level=logging.ERROR)
            if job == "poll":
                self.state.last_error = str(e)
                self._on_poll(self.name, None, str(e), "state")
            return False
        except Exception as e:
            if self._stop.is_set():
                log.debug("%s of %r ended by the shutdown", job, self.name, exc_info=True)
                return False
            self._failures[job] += 1
            reason = f"internal error in {job}: {type(e).__name__}"
            self.state.crashed[job] = reason
            self._logs[job].failed(reason, exc_info=e)
            if job == "poll":
                self.state.last_error = reason
                self._on_poll(self.name, None, reason, "internal")
            return False
        finally:
            self._alive_at = None
        self._failures[job] = 0
        if self.state.crashed.pop(job, None) is not None and job != "poll":
            self._logs[job].ok()
        return ok

    def _poll(self) -> bool:
        st, plan = self.state, self.plan
        longest = min(plan.poll_interval, 60.0)  # the longest wait inside one poll: the next is due
        if not self._polled:  # a first request may take a timeout or three: say what it waits for
            self._polled = True
            log.info("polling %s (%s, timeout %g s)…", self.name, self.syncer.base_url, plan.timeout)
        translog = self._logs["poll"]
        retrying = tenacity.Retrying(
            stop=tenacity.stop_any(
                tenacity.stop_after_attempt(self._retry_attempts),
                tenacity.stop_when_event_set(self._stop),
                StopBeforeWaitingLongerThan(longest),
            ),
            wait=WaitRetryAfter(tenacity.wait_exponential_jitter(initial=1, max=30)),
            retry=tenacity.retry_if_exception_type(SourceUnavailable),
            sleep=self._retry_wait,
            # /healthz names the cause while retrying; the log too, unless the outage is known already
            before_sleep=lambda rs: _note_attempt(
                st, rs, self.name, self._retry_attempts, tell=not translog.failing
            ),
            reraise=True,
        )
        try:
            result = retrying(self.syncer.poll, self._clock(), progress=self._alive)
        except SourceError as e:
            st.last_error = str(e)
            if isinstance(e, SourceAuthError):  # retried slowly, not every poll
                self._not_before = self._monotonic() + max(300.0, plan.poll_interval * 5)
            if e.retry_after is not None and e.retry_after > longest:  # honoured without blocking
                self._not_before = self._monotonic() + e.retry_after
                st.retry_at = self._clock() + timedelta(seconds=e.retry_after)
            self._logs["poll"].failed(str(e), level=logging.ERROR)
            self._on_poll(self.name, None, str(e), _error_kind(e))
            return False
        st.last_ok_at, st.last_ok_mono, st.last_result = self._clock(), self._monotonic(), result
        st.last_error, st.retry_at = None, None
        self._logs["poll"].ok()
        self._on_poll(self.name, result, None, None)
        if result.fetched or result.events:
            log.info(
                "poll %s: fetched %d, changed %d, events %d, rejected %d",
                self.name,
                result.fetched,
                result.changed,
                result.events,
                result.problems,
            )
        self._on_events()
        return True

    def _tick(self) -> bool:
        if self.syncer.tick(self._clock()).events:
            self._on_events()
        return True

    def _refresh(self) -> bool:
        try:
            self.syncer.refresh(self._clock())
        except SourceError as e:
            self._logs["refresh"].failed(f"{e} (will retry)", level=logging.WARNING)
            self._prune_batch()
            return False
        self._logs["refresh"].ok()
        self._on_events()
        self._prune_batch()
        return True

    def _prune_batch(self) -> None:
        """Retention: one small batch of this source's settled windows, its own short transaction, so
        the state stays bounded without a long pause (``connector.store.retention``)."""
        if self._prune is None:
            return
        self._alive()
        removed = self._prune(self.name, self._clock(), self.prune_batch)
        if removed:
            log.info(
                "retention: deleted %d windows of %r settled longer than state.retention ago",
                removed,
                self.name,
            )

    def _retry_wait(self, seconds: float) -> None:
        self._alive_at = None  # waiting is not being stuck
        stopped = self._wait(seconds)
        self._alive()
        if stopped or self._stop.is_set():
            raise _Interrupted  # not one more attempt (up to a request timeout) after SIGTERM

    # -- what the daemon watches --------------------------------------------------------------------
    def _alive(self) -> None:
        self._alive_at = self._monotonic()

    def request_age(self) -> float | None:
        """Seconds the oldest request of this source has waited for its answer (None: none waits)."""
        return self._in_flight.age() if self._in_flight is not None else None

    def stuck_for(self) -> float | None:
        """Seconds this worker has been silent in a job beyond its allowance (the source's timeout plus
        ``STUCK_MARGIN``), or None when it is not stuck. A dead thread is stuck for good."""
        if self._thread.ident is not None and not self._thread.is_alive() and not self._stop.is_set():
            return float("inf")
        alive_at = self._alive_at
        if alive_at is None:
            return None
        silent = self._monotonic() - alive_at
        if self._in_flight is not None:
            silent = min(silent, self._in_flight.quiet_for())
        return silent if silent > self.plan.timeout + STUCK_MARGIN else None

    def health(self, now: float) -> SourceHealth:
        st = self.state
        return SourceHealth(
            poll_interval=self.plan.poll_interval,
            ok_age=None if st.last_ok_mono is None else max(0.0, now - st.last_ok_mono),
            error=st.last_error,
            broken="; ".join(st.crashed.values()) or None,
            request_age=self.request_age(),
            timeout=self.plan.timeout,
            last_ok_at=st.last_ok_at,
        )


def _note_attempt(
    st: SourceState, retry_state: tenacity.RetryCallState, name: str, attempts: int, tell: bool
) -> None:
    """Before waiting to retry a poll: the cause for /healthz, and (``tell``) a line saying when the
    next attempt comes, so a source that does not answer is not silence for minutes."""
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if exc is None:
        return
    st.last_error = str(exc)
    if tell:
        log.info(
            "source %s: %s; retry %d of %d in %.1fs",
            name,
            exc,
            retry_state.attempt_number + 1,
            attempts,
            retry_state.upcoming_sleep,
        )


class _Interrupted(Exception):
    """Shutdown was requested while waiting to retry a poll."""


def _error_kind(e: SourceError) -> str:
    if isinstance(e, SourceAuthError):
        return "auth"
    if isinstance(e, SourceUnavailable):
        return "unavailable"
    return "bad_response"
