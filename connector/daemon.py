"""The daemon: one worker thread per source and per sink, and a main loop that watches them.

Threads::

    main            the loop of :meth:`Daemon.run`: feeds the watchdog (``heartbeat``), nothing else
    source-<name>   one per source (:class:`~connector.source_worker.SourceWorker`): its poll every
                    ``poll_interval``, its tick every few seconds, its refresh every
                    ``ci_refresh_interval`` (each source's own settings), on the monotonic clock,
                    each refresh followed by one small batch of retention (``state.retention``);
                    and, woken by the hook listener, the records its hints name
    hooks-http…     the optional hook listener (``connector.hooks``): authenticates a hint, queues it
                    in its source's ``HintQueue``, wakes that source's worker; nothing more
    poll-<name>…    the read-ahead of a poll in progress (``connector.readahead``)
    sink-<name>     one per Slack channel and for Alertmanager (:class:`~connector.sink_worker.SinkWorker`):
                    drains the outbox, woken after each commit
    health-http     the optional listener (``connector.health``), reading snapshots only
    leader-lease    on PostgreSQL, the leader election (``connector.leader``): on a standby, the
                    source and sink workers idle until this replica holds the lease

A source that hangs (accepts the connection, never answers) holds only its own worker until its
``timeout`` (and retries) end the request: the other sources keep their schedules, the sinks keep
delivering. Nothing waits on a poll. The workers share the state store, whose lock serialises their
transactions; each worker alone touches its source's rows, cursor and ``Syncer``.

The watchdog means "the main loop turns and no worker is stuck". On every turn (at most ``max_nap``
apart) the loop calls ``heartbeat`` unless a source worker has been busy in a job with no sign of
life for longer than its source's ``timeout`` plus ``STUCK_MARGIN`` (a sign of life: the job began,
a page was read or committed, a retry wait began or ended, a request of that source started or
ended), or has died. A request that hangs until its timeout therefore does not stop the pings; one
that outlives its timeout, a deadlocked worker or a stuck main loop does, and systemd restarts the
service. SIGTERM sets ``stop``: workers end at their next wait (a retry wait is cut short, a request
in flight runs to its timeout or to the exit deadline of ``connector.signals``).

Every job is contained in its worker: an unexpected exception is logged once with its traceback,
shown in ``/healthz`` for that source, and retried with backoff; it never ends the process. Except a
failure of the state database itself (``StateError``, from any worker): the daemon stops, finishes
the deliveries in progress, and :meth:`Daemon.run` raises it for the command line to say and exit with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connector.apply import PollResult
from connector.errors import StateError
from connector.health import SourceHealth
from connector.hooks.queue import HintQueue
from connector.inflight import InFlight
from connector.sink_worker import SinkWorker, utc_now
from connector.source_worker import STUCK_MARGIN, SourcePlan, SourceState, SourceWorker
from connector.sync import Syncer

__all__ = ["Daemon", "RunState", "SinkWorker", "SourcePlan", "SourceState", "SourceWorker", "utc_now"]

log = logging.getLogger(__name__)

#: Of the shutdown grace, what the source workers get to finish a step (their commits are short; a
#: request in flight cannot be cut short, and every step commits atomically, so nothing is lost).
WORKER_GRACE = 1.0


@dataclass
class RunState:
    """What the running daemon knows of itself, in memory: each source's polling state, each sink's
    last error, and a fatal state failure. The workers write it; ``HealthView`` reads it."""

    started_at: datetime
    sources: dict[str, SourceState] = field(default_factory=dict)
    sink_errors: dict[str, str | None] = field(default_factory=dict)
    #: the state database failed (in any thread): the daemon stops and ``run`` raises it
    fatal: StateError | None = None


class Daemon:
    """``plans``: each source's intervals and timeout, by source name (a source without one gets
    ``SourcePlan()``). ``in_flight``: each source's requests under way (``connector.inflight``).
    ``wait(seconds)`` is every wait of the daemon's threads (retry backoff, idle until the next job,
    the main loop's nap) and returns True once shutdown was requested; tests pass a fake clock's.
    ``status`` is shared with the sink workers (they report into it); ``sinks`` are started with the
    loop and given ``shutdown_grace`` to finish the step in progress at shutdown. ``active()`` is
    False on a standby replica (``connector.leader``): its source workers then run no job.
    ``hints``: the hint queue of each source that takes hints (its worker idles on it, in real time)."""

    def __init__(
        self,
        syncers: list[Syncer],
        *,
        plans: Mapping[str, SourcePlan] | None = None,
        in_flight: Mapping[str, InFlight] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        tick_interval: float = 5.0,
        retry_attempts: int = 3,
        on_poll: Callable[[str, PollResult | None, str | None, str | None], None] = lambda s, r, e, k: None,
        heartbeat: Callable[[], None] = lambda: None,
        shutdown_grace: float = 8.0,
        state: RunState | None = None,
        sinks: Sequence[SinkWorker] = (),
        prune: Callable[[str, datetime, int], int] | None = None,
        active: Callable[[], bool] = lambda: True,
        hints: Mapping[str, HintQueue] | None = None,
        on_reread: Callable[[str, PollResult | None], None] = lambda s, r: None,
    ) -> None:
        """``prune(source, now, limit)``: retention; each source's worker deletes one small batch of its
        source's settled windows after each refresh (``SourceWorker.refresh``)."""
        self.syncers = syncers
        self.stop = stop or threading.Event()
        self.clock, self.monotonic = clock, monotonic
        self.shutdown_grace = shutdown_grace  # for the sinks to finish their step: all of them together
        self.state = state or RunState(started_at=clock())
        for s in syncers:
            self.state.sources.setdefault(s.name, SourceState())
        self.sinks = list(sinks)
        self._started = monotonic()
        self._wait = wait or self.stop.wait
        self._heartbeat = heartbeat
        self._stuck: set[str] = set()
        self.workers = {
            s.name: SourceWorker(
                s,
                (plans or {}).get(s.name, SourcePlan()),
                self.state.sources[s.name],
                stop=self.stop,
                clock=clock,
                monotonic=monotonic,
                wait=self._wait,
                tick_interval=tick_interval,
                retry_attempts=retry_attempts,
                on_poll=on_poll,
                on_events=self._wake_sinks,
                in_flight=(in_flight or {}).get(s.name),
                on_fatal=self._fatal,
                prune=prune,
                active=active,
                hints=(hints or {}).get(s.name),
                on_reread=on_reread,
            )
            for s in syncers
        }

    # -- one pass over every source, in the caller's thread (``itsm-connector sync``, tests) -------
    def poll(self) -> None:
        for w in self.workers.values():
            w.poll()
        self._wake_sinks()

    def tick(self) -> None:
        for w in self.workers.values():
            w.tick()

    def refresh(self) -> None:
        for w in self.workers.values():
            w.refresh()
        self._wake_sinks()

    def _fatal(self, e: StateError) -> None:
        """The state database failed in a worker: stop; :meth:`run` raises it once all have ended."""
        if self.state.fatal is None:
            self.state.fatal = e
        self.stop.set()

    def became_leader(self) -> None:
        """This replica just took the lease: every source polls at once, every sink delivers."""
        for w in self.workers.values():
            w.due_now()
        self._wake_sinks()

    def _wake_sinks(self) -> None:
        for s in self.sinks:
            s.wake()

    # -- health ---------------------------------------------------------------------------------------
    def uptime(self) -> float:
        return max(0.0, self.monotonic() - self._started)

    def source_health(self) -> dict[str, SourceHealth]:
        now = self.monotonic()
        return {name: w.health(now) for name, w in self.workers.items()}

    # -- the service ----------------------------------------------------------------------------------
    def run(self, heartbeat: Callable[[], None] | None = None, max_nap: float | None = None) -> None:
        """Start the workers and watch them until ``stop`` is set. ``heartbeat`` is called on every turn
        while no worker is stuck (see the module doc); ``max_nap`` caps a turn (the heartbeat's ping
        interval), at most 1 s."""
        if heartbeat is not None:
            self._heartbeat = heartbeat
        nap = min(max_nap or 1.0, 1.0)
        for sink in self.sinks:
            sink.start()
        self._heartbeat()
        for worker in self.workers.values():
            worker.start()
        while not self.stop.is_set():
            self.watch()
            if self._wait(nap):
                break
        log.info("shutting down: finishing deliveries in progress")
        for worker in self.workers.values():
            worker.wake()
        deadline = time.monotonic() + self.shutdown_grace
        for worker in self.workers.values():
            worker.join(timeout=max(0.0, min(WORKER_GRACE, deadline - time.monotonic())))
        for sink in self.sinks:
            sink.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.state.fatal is not None:
            raise self.state.fatal  # said by the command line, with its exit code

    def watch(self) -> None:
        """One turn of the main loop: the heartbeat, unless a source worker is stuck."""
        stuck = {name: s for name, w in self.workers.items() if (s := w.stuck_for()) is not None}
        for name in sorted(stuck.keys() - self._stuck):
            log.error(
                "ServiceNow source %r: its worker shows no sign of life for %.0fs (allowed: its timeout "
                "%gs + %gs): the watchdog is no longer fed, systemd restarts the service",
                name,
                stuck[name],
                self.workers[name].plan.timeout,
                STUCK_MARGIN,
            )
        for name in sorted(self._stuck - stuck.keys()):
            log.info("ServiceNow source %r: its worker is moving again", name)
        self._stuck = set(stuck)
        if not stuck:
            self._heartbeat()
