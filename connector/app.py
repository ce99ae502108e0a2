"""Wiring: settings in, a ready-to-run daemon out. The only place that knows every part."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk import WebClient

from connector import __version__
from connector.calendar import render_calendar
from connector.config import ServiceNowSettings, Settings
from connector.daemon import Daemon, SinkWorker, utc_now
from connector.domain.events import Event, EventKind
from connector.domain.window import MaintenanceWindow, Phase
from connector.health import HealthServer, HealthSnapshot
from connector.metrics import Metrics
from connector.routing import channels_for, route_for
from connector.sinks.digest import DigestPoster, message_title
from connector.sinks.silence_delivery import SilenceDelivery, SilenceReport
from connector.sinks.silence_plan import silence_url
from connector.sinks.slack import DeliveryReport, Interrupted, SlackSink, sdk_logger
from connector.sinks.slack_render import RenderContext, render_digest
from connector.source.servicenow import ServiceNowSource
from connector.store.sqlite import Store
from connector.sync import PollResult, Syncer

log = logging.getLogger(__name__)


class Pacer:
    """Spaces ``chat.postMessage`` calls to one channel (Slack allows about one per second)."""

    def __init__(self, interval: float, clock: Callable[[], float], wait: Callable[[float], bool]) -> None:
        self.interval = interval
        self._clock = clock
        self._wait = wait
        self._next = 0.0

    def __call__(self, method: str) -> None:
        if method != "chat.postMessage" or self.interval <= 0:
            return
        delay = self._next - self._clock()
        if delay > 0 and self._wait(delay):
            raise Interrupted("shutdown while pacing Slack posts")  # nothing sent; stays queued
        self._next = self._clock() + self.interval


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
        target = f"slack:{channel}" if channel else None
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


def render_context(
    settings: Settings, store: Store, channel: str | None = None
) -> Callable[[MaintenanceWindow], RenderContext]:
    """How a window is rendered in ``channel``: the channel's locale and timezone, the silence, and
    the mention of the route that sent the window there (for the events it names)."""
    am = settings.alertmanager
    ch = settings.slack.channel_settings(channel or settings.slack.channel)

    def context(w: MaintenanceWindow) -> RenderContext:
        sil = store.silences(w.key)
        sid = str(sil[0]["id"]) if sil else None
        url = silence_url(am, sid) if (am and sid) else None
        route = route_for(w, settings.routes)
        mention, mention_on = settings.slack.overrun_mention, frozenset({EventKind.OVERRAN})
        if route is not None and route.mention is not None:
            mention, mention_on = route.mention.text, frozenset(route.mention.on)
        return RenderContext(
            locale=ch.locale or settings.slack.locale,
            tz=ZoneInfo(ch.timezone or settings.slack.timezone),
            silence_id=sid,
            silence_url=url,
            mention=mention,
            mention_on=mention_on,
        )

    return context


def _source(sn: ServiceNowSettings) -> ServiceNowSource:
    return ServiceNowSource(
        url=sn.url,
        username=sn.username,
        password=sn.password.get_secret_value() if sn.password else "",
        table=sn.table,
        updated_field=sn.mapping.fields.updated_on,
        id_field=sn.mapping.fields.sys_id,
        api_version=sn.api_version,
        page_size=sn.page_size,
        timeout=sn.timeout,
        oauth_client_id=sn.oauth_client_id,
        oauth_client_secret=sn.oauth_client_secret.get_secret_value() if sn.oauth_client_secret else None,
    )


def build_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    monotonic: Callable[[], float] | None = None,
    stop: threading.Event | None = None,
    slack_client: Any | None = None,
    store: Store | None = None,
    wait: Callable[[float], bool] | None = None,
) -> App:
    """``wait(seconds)`` is every in-process wait (pacing, Retry-After, retry backoff): it returns
    True when shutdown was requested. Default: ``stop.wait``; tests pass one that moves a fake clock."""
    import time

    stop = stop or threading.Event()
    wait = wait or stop.wait
    sl = settings.slack
    store = store or Store(settings.state.path)
    metrics = Metrics(__version__, phases=[p.value for p in Phase])
    targets = [f"slack:{c}" for c in settings.all_channels]

    def targets_for(w: MaintenanceWindow) -> list[str]:
        return [f"slack:{c}" for c in channels_for(w, settings.routes, sl.channel)]

    def reminder_minutes(target: str) -> int | None:
        return sl.channel_settings(target.removeprefix("slack:")).reminder_minutes

    def on_event(e: Event) -> None:
        metrics.event(e.kind.value)

    touched: list[Callable[[tuple[str, str]], None]] = []  # App.touch, once the app exists

    def touch(key: tuple[str, str]) -> None:
        for t in touched:
            t(key)

    sources = [_source(sn) for sn in settings.all_sources]
    syncers = [
        Syncer(
            source,
            store,
            name=sn.name,
            base_url=sn.url,
            table=sn.table,
            filter=sn.filter,
            mapping=sn.mapping,
            targets=targets,
            first_run=sl.first_run,
            on_event=on_event,
            on_quiet_change=lambda key: touch(key),
            targets_for=targets_for,
            reminder_minutes=reminder_minutes,
        )
        for source, sn in zip(sources, settings.all_sources, strict=True)
    ]

    def on_poll(name: str, result: PollResult | None, error: str | None, kind: str | None) -> None:
        now = clock()
        previous = json.loads(store.meta_get(f"last_poll:{name}") or "{}")
        if result is not None:
            metrics.poll_succeeded(name, result.fetched, now)
            record = {"ok_at": now.isoformat(), "error": None}
        else:
            metrics.poll_failed(name, kind or "unknown")
            record = {"ok_at": previous.get("ok_at"), "error": error, "error_at": now.isoformat()}
        with store.transaction():
            store.meta_set(f"last_poll:{name}", json.dumps(record))

    daemon = Daemon(
        syncers,
        poll_interval=min(sn.poll_interval for sn in settings.all_sources),
        refresh_interval=min(sn.ci_refresh_interval for sn in settings.all_sources),
        stop=stop,
        clock=clock,
        on_poll=on_poll,
        sleep=None if wait == stop.wait else wait,  # the daemon's own retry sleep also pings
    )
    client = slack_client or WebClient(
        token=sl.token.get_secret_value() if sl.token else None,
        base_url=sl.base_url,
        timeout=sl.timeout,  # type: ignore[arg-type]  # annotated int; urllib takes float seconds
        retry_handlers=[],
        logger=sdk_logger(),
    )
    channels: dict[str, tuple[SlackSink, DigestPoster]] = {}
    for channel in settings.all_channels:
        pacer = Pacer(sl.post_interval, monotonic or time.monotonic, wait)
        context = render_context(settings, store, channel)
        sink = SlackSink(
            client, store, channel, context, pace=pacer, wait=wait, announce_in_thread=sl.announce_in_thread
        )
        cs = sl.channel_settings(channel)
        digest = DigestPoster(
            sink,
            store,
            context,
            horizon_hours=sl.digest_horizon_hours,
            shift_times=cs.digest_times,
            tz=ZoneInfo(cs.timezone or sl.timezone),
        )
        channels[channel] = (sink, digest)
    default_sink, default_digest = channels[sl.channel]
    app = App(
        settings, store, daemon, default_sink, default_digest, metrics, sources=sources, channels=channels
    )
    touched.append(app.touch)
    for channel in channels:
        daemon.sinks.append(
            SinkWorker(
                f"slack:{channel}",
                lambda now, ch=channel: app.deliver_channel(ch, now),  # type: ignore[misc]
                stop,
                daemon.status,
                clock=clock,
                on_result=app.sink_result,
            )
        )
    if settings.alertmanager is not None:
        app.silences = SilenceDelivery.from_settings(settings.alertmanager, store, on_change=app.touch)
        daemon.sinks.append(
            SinkWorker(
                "alertmanager",
                app.silences.deliver,
                stop,
                daemon.status,
                clock=clock,
                on_result=app.sink_result,
            )
        )
    return app
