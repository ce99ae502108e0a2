"""What the running connector says about itself: metrics and the state other processes read
(:class:`Telemetry`), and the health snapshot and systemd status line (:class:`HealthView`).

``Telemetry`` is told the outcome of every poll and every delivery pass; it counts them in the
metrics and records, on change only, each source's last poll and each sink's state in the store,
so ``itsm-connector status`` can show them from another process. ``HealthView`` reads the daemon's
in-memory status for ``/healthz`` and ``STATUS=``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from connector.alertmanager.delivery import SilenceReport
from connector.daemon import Status
from connector.domain.window import Phase
from connector.health import HealthSnapshot
from connector.metrics import Metrics
from connector.store.sqlite import LastPoll, SinkState, Store
from connector.sync import PollResult


class Telemetry:
    def __init__(self, metrics: Metrics, store: Store, clock: Callable[[], datetime]) -> None:
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
            record = LastPoll(ok_at=now, error=None, error_at=None)
        else:
            self.metrics.poll_failed(source, kind or "unknown")
            previous = self._store.last_poll(source)
            record = LastPoll(ok_at=previous.ok_at if previous else None, error=error, error_at=now)
        with self._store.transaction():
            self._store.set_last_poll(source, record)

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
        self._sink_state[sink] = error
        with self._store.transaction():
            self._store.set_sink_state(sink, SinkState(error=error, since=self._clock()))

    def update_gauges(self, now: datetime) -> None:
        depth, age = self._store.outbox_stats(now)
        self.metrics.set_outbox(depth, age)
        self.metrics.set_windows(self._store.phase_counts())  # counted by SQLite: no window decoded
        self.metrics.set_problems(len(self._store.problems()))


class HealthView:
    def __init__(
        self, status: Status, store: Store, poll_interval: float, clock: Callable[[], datetime]
    ) -> None:
        self._status = status
        self._store = store
        self._poll_interval = poll_interval
        self._clock = clock

    def health_snapshot(self) -> HealthSnapshot:
        st = self._status
        oks = [s.last_ok_at for s in st.sources.values()]
        errors = [f"{name}: {s.last_error}" for name, s in st.sources.items() if s.last_error]
        slack_err = next((e for n, e in st.sink_errors.items() if n.startswith("slack") and e), None)
        return HealthSnapshot(
            poll_interval=self._poll_interval,
            last_poll_ok_at=None if any(o is None for o in oks) else min(o for o in oks if o is not None),
            started_at=st.started_at,
            last_poll_error="; ".join(errors) or None,
            slack_failing=slack_err,
            sources={
                n: {
                    "last_ok_at": s.last_ok_at.isoformat() if s.last_ok_at else None,
                    "last_error": s.last_error,
                }
                for n, s in st.sources.items()
            },
        )

    def status_line(self) -> str:
        """systemd's ``STATUS=``: last successful poll, active windows, outbox depth, what is failing."""
        now = self._clock()
        depth, _ = self._store.outbox_stats(now)
        active = sum(self._store.phase_counts().get(p.value, 0) for p in (Phase.IN_PROGRESS, Phase.OVERRUN))
        st = self._status
        oks = [s.last_ok_at for s in st.sources.values() if s.last_ok_at]
        last = f"{min(oks):%H:%M:%S}Z" if oks else "never"
        line = f"last poll ok {last}; {active} windows in progress; outbox {depth}"
        failing = [n for n, s in st.sources.items() if s.last_error]
        failing += [n for n, e in st.sink_errors.items() if e]
        return line + (f"; FAILING: {', '.join(failing)}" if failing else "")
