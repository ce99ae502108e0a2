"""What the running connector says about itself: metrics and the state other processes read
(:class:`Telemetry`), and the health snapshot and systemd status line (:class:`HealthView`).

``Telemetry`` is told the outcome of every poll and every delivery pass; it counts them in the
metrics and records, on change only, each source's last poll and each sink's state in the store,
so ``itsm-connector status`` can show them from another process. ``HealthView`` reads the daemon's
in-memory status for ``/healthz`` and ``STATUS=``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from connector.alertmanager.delivery import SilenceReport
from connector.apply import PollResult
from connector.daemon import Daemon
from connector.domain.events import Event
from connector.domain.moments import news_at
from connector.domain.window import Phase
from connector.errors import StateInterrupted
from connector.health import HealthSnapshot
from connector.metrics import Metrics
from connector.store.api import LastPoll, SinkState, StateStore

if TYPE_CHECKING:
    from connector.leader import Leadership


class Telemetry:
    def __init__(self, metrics: Metrics, store: StateStore, clock: Callable[[], datetime]) -> None:
        self.metrics = metrics
        self._store = store
        self._clock = clock
        self._sink_state: dict[str, str | None] = {}

    def poll_result(
        self, source: str, result: PollResult | None, error: str | None, kind: str | None
    ) -> None:
        """After each poll of ``source``: the metrics, and its last poll in the store."""
        now = self._clock()
        if result is not None:
            self.metrics.poll_succeeded(source, result.fetched, now)
        else:
            self.metrics.poll_failed(source, kind or "unknown")
        try:
            with self._store.transaction():
                record = LastPoll(ok_at=now, error=None, error_at=None)
                if result is None:
                    previous = self._store.last_poll(source)
                    record = LastPoll(ok_at=previous.ok_at if previous else None, error=error, error_at=now)
                self._store.set_last_poll(source, record)
        except StateInterrupted:  # the state database is down or this replica lost the lease: said elsewhere
            pass

    def forget(self) -> None:
        """Write each sink's state at its next result (another replica may have written meanwhile)."""
        self._sink_state.clear()

    def sink_result(self, sink: str, result: object | None, error: str | None) -> None:
        """After each delivery pass of a sink worker: failures as metrics, and the sink's state in the
        store (on change only)."""
        if error is not None:
            self.metrics.delivery(sink.partition(":")[0], "error")  # "slack:C0123" counts as "slack"
        elif isinstance(result, SilenceReport):
            self.metrics.delivery(sink, "changed", result.changed)
            self.metrics.delivery(sink, "refused", result.problems)
        if self._sink_state.get(sink, "") == error:
            return
        try:
            with self._store.transaction():
                self._store.set_sink_state(sink, SinkState(error=error, since=self._clock()))
        except StateInterrupted:
            return  # written at the next change once the state database takes it
        self._sink_state[sink] = error

    def shown(self, channel: str, event: Event) -> None:
        """Slack accepted the message telling ``event`` in ``channel``: the latency L1 is promised,
        from the news (:func:`~connector.domain.moments.news_at`) to now."""
        seconds = (self._clock() - news_at(event)).total_seconds()
        self.metrics.shown(event.window.source, channel, seconds)

    def update_gauges(self, now: datetime) -> None:
        depth, age = self._store.outbox_stats(now)
        self.metrics.set_outbox(depth, age)
        self.metrics.set_windows(self._store.phase_counts())  # counted by SQLite: no window decoded
        self.metrics.set_problems(len(self._store.problems()))


class HealthView:
    """``/healthz`` and ``STATUS=`` from the daemon's in-memory status: each source by its own poll
    interval, ages on the daemon's monotonic clock (``Daemon.source_health``)."""

    def __init__(self, daemon: Daemon, store: StateStore, leadership: Leadership | None = None) -> None:
        self._daemon = daemon
        self._store = store
        self._leadership = leadership

    def health_snapshot(self) -> HealthSnapshot:
        st = self._daemon.state
        slack_err = next((e for n, e in st.sink_errors.items() if n.startswith("slack") and e), None)
        snap = HealthSnapshot(
            started_at=st.started_at,
            uptime=self._daemon.uptime(),
            sources=self._daemon.source_health(),
            slack_failing=slack_err,
        )
        lead = self._leadership
        if lead is None:
            return snap
        cur = lead.current
        leader = None
        if cur is not None and cur.expires_at is not None:
            leader = {"host": cur.host, "pid": cur.pid, "since": cur.since.isoformat(), "token": cur.token}
        return replace(
            snap,
            # a new leader's sources are judged from when it took over, not from its start
            uptime=min(snap.uptime, lead.leading_for()) if lead.is_leader() else snap.uptime,
            role=lead.role,
            leader=leader,
            state_error=None if lead.reachable() else (lead.error or "no answer yet"),
        )

    def role(self) -> str | None:
        return self._leadership.role if self._leadership is not None else None

    def status_line(self) -> str:
        """systemd's ``STATUS=``: last successful poll, active windows, outbox depth, what is failing."""
        now = self._daemon.clock()
        depth, _ = self._store.outbox_stats(now)
        active = sum(self._store.phase_counts().get(p.value, 0) for p in (Phase.IN_PROGRESS, Phase.OVERRUN))
        st = self._daemon.state
        oks = [s.last_ok_at for s in st.sources.values() if s.last_ok_at]
        last = f"{min(oks):%H:%M:%S}Z" if oks else "never"
        line = f"last poll ok {last}; {active} windows in progress; outbox {depth}"
        if self._leadership is not None:
            line = f"{self._leadership.role}; " + line
        failing = []
        for name, h in self._daemon.source_health().items():
            if h.hung():
                failing.append(f"{name} (no answer for {h.request_age:.0f}s)")
            elif h.error or h.broken:
                failing.append(name)
        failing += [n for n, e in st.sink_errors.items() if e]
        return line + (f"; FAILING: {', '.join(failing)}" if failing else "")
