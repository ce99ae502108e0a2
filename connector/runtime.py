"""The assembled connector (``App``): the parts ``connector.wiring.build_app`` wired together, and what
the daemon's sink workers, the CLI and the health listener ask of them: a delivery pass per channel,
sink results, the calendar feed, the digest preview, gauges, the health snapshot and systemd's status.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.alertmanager.delivery import SilenceDelivery, SilenceReport
from connector.calendar import render_calendar
from connector.config import Settings
from connector.daemon import Daemon
from connector.domain.target import Target
from connector.domain.window import Phase
from connector.health import HealthServer, HealthSnapshot
from connector.metrics import Metrics
from connector.servicenow.client import ServiceNowSource
from connector.slack.delivery import DeliveryReport, SlackSink
from connector.slack.digest import DigestPoster, message_title
from connector.slack.render import render_digest
from connector.store.sqlite import Store

#: the logger name these lines had before App left connector.wiring (journal filters may match it)
log = logging.getLogger("connector.wiring")


@dataclass
class App:
    settings: Settings
    store: Store
    daemon: Daemon
    slack: SlackSink
    digest: DigestPoster
    metrics: Metrics
    sources: list[ServiceNowSource] = field(default_factory=list)
    health: HealthServer | None = None
    silences: SilenceDelivery | None = None
    #: every channel a window can be routed to: its sink and its digest poster (default first)
    channels: dict[str, tuple[SlackSink, DigestPoster]] = field(default_factory=dict)
    _touched: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    _touched_lock: threading.Lock = field(default_factory=threading.Lock)
    _sink_state: dict[str, str | None] = field(default_factory=dict)

    def touch(self, key: tuple[str, str]) -> None:
        """Another sink changed what a window's parent message shows (in every channel)."""
        with self._touched_lock:
            for channel in self.channels:
                self._touched.setdefault(channel, set()).add(key)

    def deliver_slack(self, now: datetime) -> DeliveryReport:
        """One delivery pass over every channel (the daemon runs one worker per channel instead)."""
        total = DeliveryReport()
        for channel in self.channels:
            r = self.deliver_channel(channel, now)
            total.posted, total.updated = total.posted + r.posted, total.updated + r.updated
            total.recovered += r.recovered
            total.poisoned += r.poisoned
        return total

    def deliver_channel(self, channel: str, now: datetime) -> DeliveryReport:
        sink, digest = self.channels[channel]
        digest.post_if_pending(now)
        digest.schedule_shift_digest(now)
        digest.post_if_pending(now)
        with self._touched_lock:
            touched = self._touched.pop(channel, set())
        try:
            report = sink.deliver(now, also_refresh=sorted(touched))
        except Exception:
            with self._touched_lock:
                self._touched.setdefault(channel, set()).update(touched)
            raise
        for result, n in (
            ("posted", report.posted),
            ("updated", report.updated),
            ("recovered", report.recovered),
            ("refused", len(report.poisoned)),
        ):
            self.metrics.delivery("slack", result, n)
        self.update_gauges(now)
        if report.posted or report.updated or report.recovered or report.poisoned:
            depth, _ = self.store.outbox_stats(now)
            log.info(
                "slack %s: posted %d, updated %d, recovered %d, refused %d; outbox %d",
                channel,
                report.posted,
                report.updated,
                report.recovered,
                len(report.poisoned),
                depth,
            )
        return report

    def sink_result(self, sink: str, result: object | None, error: str | None) -> None:
        """After each delivery pass of a sink worker: failures as metrics, and the sink's state in the
        store (on change only) so ``itsm-connector status`` can show it from another process."""
        if error is not None:
            self.metrics.delivery(sink.partition(":")[0], "error")  # "slack:C0123" counts as "slack"
        elif isinstance(result, SilenceReport):
            self.metrics.delivery(sink, "changed", result.changed)
            self.metrics.delivery(sink, "refused", result.problems)
        now = self.daemon.clock()
        if self._sink_state.get(sink, "") == error:
            return
        self._sink_state[sink] = error
        record = {"error": error, "since": now.isoformat()}
        with self.store.transaction():
            self.store.meta_set(f"sink:{sink}", json.dumps(record))

    def calendar(self, now: datetime, channel: str | None = None) -> bytes:
        """The iCalendar feed of every window, or of those ``channel`` follows."""
        counts = self.store.event_counts()
        target = Target.slack(channel) if channel else None
        items = [
            (t, counts.get(t.window.key, 0))
            for t in self.store.tracked()
            if target is None or target in (self.store.targets(t.window.key) or [])
        ]
        return render_calendar(items, now, name=f"Maintenance windows{f' ({channel})' if channel else ''}")

    def calendar_routes(self) -> dict[str, Callable[[], tuple[int, str, bytes]]]:
        """``/calendar.ics`` (all windows) and ``/calendar/<channel>.ics`` for the health listener."""
        ctype = "text/calendar; charset=utf-8"
        routes = {"/calendar.ics": lambda: (200, ctype, self.calendar(self.daemon.clock()))}
        for channel in self.channels:
            routes[f"/calendar/{channel}.ics"] = lambda ch=channel: (
                200,
                ctype,
                self.calendar(self.daemon.clock(), ch),
            )  # type: ignore[misc]
        return routes

    def digest_preview(self, channel: str, now: datetime) -> str:
        """The shift digest of ``channel`` at ``now``, as text (``itsm-connector digest --print``)."""
        _, digest = self.channels[channel]
        items = digest.items(now, "shift")
        ctx = digest.context_for(items)
        rendered = render_digest(items, now, ctx, title=message_title("shift", ctx.locale))
        return blocks_text(rendered.blocks) or rendered.text

    def update_gauges(self, now: datetime) -> None:
        depth, age = self.store.outbox_stats(now)
        self.metrics.set_outbox(depth, age)
        self.metrics.set_windows(self.store.phase_counts())  # counted by SQLite: no window decoded
        self.metrics.set_problems(len(self.store.problems()))

    def health_snapshot(self) -> HealthSnapshot:
        st = self.daemon.status
        oks = [s.last_ok_at for s in st.sources.values()]
        errors = [f"{name}: {s.last_error}" for name, s in st.sources.items() if s.last_error]
        slack_err = next((e for n, e in st.sink_errors.items() if n.startswith("slack") and e), None)
        return HealthSnapshot(
            poll_interval=self.daemon.poll_interval,
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
        now = self.daemon.clock()
        depth, _ = self.store.outbox_stats(now)
        active = sum(
            1 for t in self.store.tracked(open_only=True) if t.phase in (Phase.IN_PROGRESS, Phase.OVERRUN)
        )
        st = self.daemon.status
        oks = [s.last_ok_at for s in st.sources.values() if s.last_ok_at]
        last = f"{min(oks):%H:%M:%S}Z" if oks else "never"
        line = f"last poll ok {last}; {active} windows in progress; outbox {depth}"
        failing = [n for n, s in st.sources.items() if s.last_error]
        failing += [n for n, e in st.sink_errors.items() if e]
        return line + (f"; FAILING: {', '.join(failing)}" if failing else "")

    def close(self) -> None:
        if self.health:
            self.health.stop()
        for s in self.sources:
            s.close()
        self.store.close()


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    """The text a reader sees in Block Kit blocks, one line per block (for terminals)."""
    lines = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            lines.append(str(b["text"].get("text", "")))
        for el in b.get("elements", []) or []:
            if isinstance(el, dict) and "text" in el:
                lines.append(str(el["text"]))
    return "\n".join(lines)
