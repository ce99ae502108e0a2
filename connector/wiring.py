"""Wiring: settings in, a ready-to-run daemon out. The only place that knows every part.

``build_app`` assembles an ``App`` (``connector.runtime``): sources, syncers, the daemon, one Slack
sink and digest poster per channel (each with its ``Pacer`` and ``render_context``), Alertmanager.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk import WebClient

from connector import __version__
from connector.alertmanager.delivery import SilenceDelivery
from connector.alertmanager.settings import silence_url
from connector.config import ServiceNowSettings, Settings
from connector.daemon import Daemon, SinkWorker, utc_now
from connector.domain.events import Event, EventKind
from connector.domain.routing import channels_for, route_for
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase
from connector.metrics import Metrics
from connector.runtime import App
from connector.servicenow.client import ServiceNowSource
from connector.slack.api import Interrupted, sdk_logger
from connector.slack.delivery import SlackSink
from connector.slack.digest import DigestPoster
from connector.slack.render import RenderContext
from connector.store.sqlite import Store
from connector.sync import PollResult, Syncer


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
    targets = [Target.slack(c) for c in settings.all_channels]

    def targets_for(w: MaintenanceWindow) -> list[Target]:
        return [Target.slack(c) for c in channels_for(w, settings.routes, sl.channel)]

    def reminder_minutes(target: Target) -> int | None:
        return sl.channel_settings(target.id).reminder_minutes

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
