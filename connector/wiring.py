"""Wiring: settings in, the whole connector out. The only place that knows every part, and the only
module the command line uses to build one (nothing else imports it).

:func:`build_connector` assembles, in one pass and in dependency order: the state store; one
ServiceNow client and :class:`~connector.sync.Syncer` per source; one
:class:`~connector.slack.feed.ChannelFeed` (sink, digest poster, pacer, render context) and one
:class:`~connector.daemon.SinkWorker` per channel; Alertmanager's silence delivery and worker when
configured; the daemon; the HTTP listener with the calendar feeds and the board, and the hook
listener with a hint queue for each source that takes hints (neither listener started: ``run``
starts them). It returns a :class:`Connector`, which only holds the parts and closes them.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from slack_sdk import WebClient

from connector import __version__
from connector.alertmanager.delivery import SilenceDelivery
from connector.apply import PollResult
from connector.board.feed import BoardFeed
from connector.board.site import BoardSite, warn_if_open
from connector.calendar import CalendarFeed
from connector.config import ServiceNowSettings, Settings
from connector.daemon import Daemon, RunState, SinkWorker, SourcePlan, utc_now
from connector.domain.events import Event
from connector.domain.routing import channels_for
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase
from connector.health import HealthServer
from connector.hooks.gate import REASONS, Gate, HookSource
from connector.hooks.queue import HintQueue
from connector.hooks.server import HookServer
from connector.inflight import InFlight
from connector.metrics import Metrics
from connector.refresh import RefreshRequests
from connector.replica import FencedSession, FencedSlackClient, elect, open_state
from connector.servicenow.client import ServiceNowSource
from connector.slack.api import Interrupted, sdk_logger
from connector.slack.context import render_context
from connector.slack.delivery import SlackSink
from connector.slack.digest import DigestPoster
from connector.slack.feed import ChannelFeed
from connector.store.api import StateStore
from connector.store.lock import StateLock
from connector.sync import Syncer
from connector.telemetry import HealthView, Telemetry

if TYPE_CHECKING:
    from connector.leader import Leadership


@dataclass
class Connector:
    """The assembled connector: its parts, and :meth:`close`. Behaviour lives in the parts."""

    settings: Settings
    store: StateStore
    daemon: Daemon
    metrics: Metrics
    telemetry: Telemetry
    view: HealthView
    calendar: CalendarFeed
    board: BoardFeed
    sources: list[ServiceNowSource]
    #: every channel a window can be routed to, by channel id (the default channel first)
    feeds: dict[str, ChannelFeed]
    silences: SilenceDelivery | None = None
    #: the HTTP listener (``health.enabled``), built here and started by ``run``
    health: HealthServer | None = None
    #: the state's lock (``run``, ``sync``), held from before the store was opened until it is closed
    state_lock: StateLock | None = None
    #: on PostgreSQL, this replica's leader election (``run`` starts it); None on SQLite
    leadership: Leadership | None = None
    #: the hook listener (``hooks.enabled``), built here and started by ``run``
    hooks: HookServer | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.health:
            self.health.stop()
        if self.hooks:
            self.hooks.stop()
        if self.leadership is not None:
            self.leadership.stop(release=True)
        for s in self.sources:
            s.close()
        self.store.close()
        if self.state_lock is not None:
            self.state_lock.release()


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


def _source(sn: ServiceNowSettings, in_flight: InFlight | None = None) -> ServiceNowSource:
    """A source's client as the daemon builds it (``check`` builds its own the same way)."""
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
        in_flight=in_flight,
    )


def build_connector(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
    slack_client: Any | None = None,
    store: StateStore | None = None,
    wait: Callable[[float], bool] | None = None,
    listen: bool = True,
) -> Connector:
    """``wait(seconds)`` is every in-process wait (pacing, Retry-After, retry backoff, the daemon's
    schedule): it returns True when shutdown was requested. Default: ``stop.wait``; tests pass one
    that moves a fake clock, with the ``clock`` (wall) and ``monotonic`` it moves.
    ``listen``: build the HTTP listener when ``health.enabled``, and the hook listener with a hint queue
    per source that takes hints when ``hooks.enabled`` (``run`` starts both).
    On PostgreSQL (``state.url``) the replica's leader election is built (not started): until it
    holds the lease, no worker polls or delivers (nor reads a hinted record)."""
    stop = stop or threading.Event()
    wait = wait or stop.wait
    sl = settings.slack
    store = store or open_state(settings.state)
    metrics = Metrics(
        __version__,
        phases=[p.value for p in Phase],
        sources=[sn.name for sn in settings.all_sources],
        sinks=["slack", *(["alertmanager"] if settings.alertmanager is not None else [])],
    )
    leadership: Leadership | None = None
    if settings.state.postgresql:

        def on_change(leader: bool) -> None:  # in the election's thread, after every part is built
            metrics.set_leader(leader)
            if leader:
                telemetry.forget()
                for feed in feeds.values():
                    feed.sink.forget()
                daemon.became_leader()

        leadership = elect(settings.state, store, on_change)
        metrics.set_leader(False, changed=False)
    active = leadership.is_leader if leadership is not None else (lambda: True)
    telemetry = Telemetry(metrics, store, clock)
    refreshes = RefreshRequests(store)
    state = RunState(started_at=clock())

    def targets_for(w: MaintenanceWindow) -> list[Target]:
        return [Target.slack(c) for c in channels_for(w, settings.routes, sl.channel)]

    def reminder_minutes(target: Target) -> int | None:
        return sl.channel_settings(target.id).reminder_minutes

    def on_event(e: Event) -> None:
        metrics.event(e.kind.value)

    in_flight = {sn.name: InFlight(monotonic) for sn in settings.all_sources}
    for name, requests in in_flight.items():
        metrics.watch_requests(name, requests.age)
    sources = [_source(sn, in_flight[sn.name]) for sn in settings.all_sources]
    syncers = [
        Syncer(
            source,
            store,
            name=sn.name,
            base_url=sn.url,
            table=sn.table,
            filter=sn.filter,
            mapping=sn.mapping,
            targets=[Target.slack(c) for c in settings.all_channels],
            first_run=sl.first_run,
            on_event=on_event,
            on_quiet_change=refreshes.request,
            targets_for=targets_for,
            reminder_minutes=reminder_minutes,
            lookback=timedelta(seconds=sn.lookback_seconds),
            poll_timer=functools.partial(metrics.poll_timer, sn.name),
        )
        for source, sn in zip(sources, settings.all_sources, strict=True)
    ]

    client = slack_client or WebClient(
        token=sl.token.get_secret_value() if sl.token else None,
        base_url=sl.base_url,
        timeout=sl.timeout,  # type: ignore[arg-type]  # annotated int; urllib takes float seconds
        retry_handlers=[],
        logger=sdk_logger(),
    )
    if leadership is not None:
        client = FencedSlackClient(client, leadership.guard)
    feeds: dict[str, ChannelFeed] = {}
    workers: list[SinkWorker] = []
    for channel in settings.all_channels:
        context = render_context(settings, store, channel)
        sink = SlackSink(
            client,
            store,
            channel,
            context,
            pace=Pacer(sl.post_interval, monotonic, wait),
            wait=wait,
            announce_in_thread=sl.announce_in_thread,
            observe=metrics.slack_request,
            on_shown=functools.partial(telemetry.shown, channel),
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
        feed = ChannelFeed(sink, digest, refreshes, metrics, after_pass=telemetry.update_gauges)
        feeds[channel] = feed
        workers.append(
            SinkWorker(
                str(sink.target),
                feed.deliver,
                stop,
                state,
                clock=clock,
                on_result=telemetry.sink_result,
                active=active,
            )
        )
    silences = None
    if settings.alertmanager is not None:
        session = FencedSession(leadership.guard) if leadership is not None else None
        silences = SilenceDelivery.from_settings(
            settings.alertmanager, store, on_change=refreshes.request, session=session
        )
        workers.append(
            SinkWorker(
                "alertmanager",
                silences.deliver,
                stop,
                state,
                clock=clock,
                on_result=telemetry.sink_result,
                active=active,
            )
        )
    retention = settings.state.retention
    hooks_on = listen and settings.hooks.enabled
    hints = {sn.name: HintQueue(monotonic) for sn in settings.hook_sources} if hooks_on else {}

    def on_reread(source: str, result: PollResult | None) -> None:
        if result is None:
            metrics.reread(source, False)
        else:
            counts = {"applied": result.fetched, "stale": result.stale, "absent": result.absent}
            metrics.reread(source, True, counts)

    daemon = Daemon(
        syncers,
        plans={
            sn.name: SourcePlan(sn.poll_interval, sn.ci_refresh_interval, sn.timeout)
            for sn in settings.all_sources
        },
        in_flight=in_flight,
        stop=stop,
        clock=clock,
        monotonic=monotonic,
        wait=wait,
        on_poll=telemetry.poll_result,
        state=state,
        sinks=workers,
        prune=lambda source, now, limit: store.prune(now - retention, limit=limit, source=source),
        active=active,
        hints=hints,
        on_reread=on_reread,
    )
    view = HealthView(daemon, store, leadership)
    calendar = CalendarFeed(store, clock)
    board = BoardFeed(store, settings, view.health_snapshot, clock)
    health = None
    if listen and settings.health.enabled:
        host, port = settings.health.address
        mounts = []
        if settings.health.board:
            token = settings.health.board_token
            secret = token.get_secret_value() if token else None
            mounts.append(BoardSite(board.data, feeds, secret))
            warn_if_open(host, settings.health.listen, secret)
        health = HealthServer(
            host,
            port,
            view.health_snapshot,
            metrics.registry,
            before_metrics=lambda: telemetry.update_gauges(clock()),
            extra_routes=calendar.routes(feeds),
            mounts=mounts,
        )
    hooks = _hooks(settings, hints, metrics, monotonic) if hooks_on else None
    return Connector(
        settings=settings,
        store=store,
        daemon=daemon,
        metrics=metrics,
        telemetry=telemetry,
        view=view,
        calendar=calendar,
        board=board,
        sources=sources,
        feeds=feeds,
        silences=silences,
        health=health,
        leadership=leadership,
        hooks=hooks,
    )


def _hooks(
    settings: Settings, queues: dict[str, HintQueue], metrics: Metrics, monotonic: Callable[[], float]
) -> HookServer:
    """The hook listener, for the sources that take hints (each with its queue)."""
    hs = settings.hooks
    sources = [
        HookSource(sn.name, sn.table, sn.hook_auth, sn.hook_secret.get_secret_value(), queues[sn.name])
        for sn in settings.hook_sources
        if sn.hook_secret is not None
    ]
    metrics.watch_hooks([s.name for s in sources], REASONS)
    gate = Gate(
        sources,
        rate=hs.rate_limit,
        burst=hs.burst,
        replay_window=hs.replay_window,
        on_accepted=metrics.hint_accepted,
        on_refused=metrics.hint_refused,
        monotonic=monotonic,
    )
    host, port = hs.address
    return HookServer(host, port, gate, tls=hs.tls_context())
