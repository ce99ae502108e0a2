"""Wiring: settings in, a ready-to-run daemon out. The only place that knows every part."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk import WebClient

from connector import __version__
from connector.config import Settings
from connector.daemon import Daemon, SinkWorker, utc_now
from connector.domain.window import MaintenanceWindow, Phase
from connector.health import HealthServer, HealthSnapshot
from connector.metrics import Metrics
from connector.sinks.digest import DigestPoster
from connector.sinks.silence_delivery import SilenceDelivery
from connector.sinks.silence_plan import silence_url
from connector.sinks.slack import DeliveryReport, SlackSink
from connector.sinks.slack_render import RenderContext
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
        if delay > 0:
            self._wait(delay)
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
    _touched: set[tuple[str, str]] = field(default_factory=set)
    _touched_lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, key: tuple[str, str]) -> None:
        """Another sink changed what a window's parent message shows."""
        with self._touched_lock:
            self._touched.add(key)

    def deliver_slack(self, now: datetime) -> DeliveryReport:
        self.digest.post_if_pending(now)
        with self._touched_lock:
            touched, self._touched = self._touched, set()
        try:
            report = self.slack.deliver(now, also_refresh=sorted(touched))
        except Exception:
            with self._touched_lock:
                self._touched |= touched
            raise
        for _ in range(report.posted):
            self.metrics.delivery("slack", "posted")
        for _ in range(report.updated):
            self.metrics.delivery("slack", "updated")
        self.update_gauges(now)
        return report

    def update_gauges(self, now: datetime) -> None:
        depth, age = self.store.outbox_stats(now)
        self.metrics.set_outbox(depth, age)
        counts: dict[str, int] = {}
        for t in self.store.tracked():
            counts[t.phase.value] = counts.get(t.phase.value, 0) + 1
        self.metrics.set_windows(counts)
        self.metrics.set_problems(len(self.store.problems()))

    def health_snapshot(self) -> HealthSnapshot:
        st = self.daemon.status
        oks = [s.last_ok_at for s in st.sources.values()]
        errors = [f"{name}: {s.last_error}" for name, s in st.sources.items() if s.last_error]
        slack_err = st.sink_errors.get("slack")
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
        now = self.daemon.clock()
        depth, _ = self.store.outbox_stats(now)
        active = sum(
            1 for t in self.store.tracked(open_only=True) if t.phase in (Phase.IN_PROGRESS, Phase.OVERRUN)
        )
        oks = [s.last_ok_at for s in self.daemon.status.sources.values() if s.last_ok_at]
        last = f"{min(oks):%H:%M:%S}Z" if oks else "never"
        return f"last poll ok {last}; {active} windows in progress; outbox {depth}"

    def close(self) -> None:
        if self.health:
            self.health.stop()
        for s in self.sources:
            s.close()
        self.store.close()


def render_context(settings: Settings, store: Store) -> Callable[[MaintenanceWindow], RenderContext]:
    am = settings.alertmanager

    def context(w: MaintenanceWindow) -> RenderContext:
        sil = store.silences(w.key)
        sid = str(sil[0]["id"]) if sil else None
        url = silence_url(am, sid) if (am and sid) else None
        return RenderContext(
            locale=settings.slack.locale,
            tz=settings.slack.tz,
            silence_id=sid,
            silence_url=url,
            mention=settings.slack.overrun_mention,
        )

    return context


def build_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    monotonic: Callable[[], float] | None = None,
    stop: threading.Event | None = None,
    slack_client: Any | None = None,
    store: Store | None = None,
) -> App:
    import time

    stop = stop or threading.Event()
    sn, sl = settings.primary_source, settings.slack
    store = store or Store(settings.state.path)
    source = ServiceNowSource(
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
    target = f"slack:{sl.channel}"
    syncer = Syncer(
        source,
        store,
        name=sn.name,
        base_url=sn.url,
        table=sn.table,
        filter=sn.filter,
        mapping=sn.mapping,
        targets=[target],
        first_run=sl.first_run,
    )
    metrics = Metrics(__version__, phases=[p.value for p in Phase])

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
        [syncer],
        poll_interval=sn.poll_interval,
        refresh_interval=sn.ci_refresh_interval,
        stop=stop,
        clock=clock,
        on_poll=on_poll,
    )
    client = slack_client or WebClient(
        token=sl.token.get_secret_value() if sl.token else None,
        base_url=sl.base_url,
        timeout=int(sl.timeout),
        retry_handlers=[],
    )
    pacer = Pacer(sl.post_interval, monotonic or time.monotonic, stop.wait)
    context = render_context(settings, store)
    slack = SlackSink(client, store, sl.channel, context, pace=pacer, wait=stop.wait)
    digest = DigestPoster(slack, store, context, horizon_hours=sl.digest_horizon_hours)
    app = App(settings, store, daemon, slack, digest, metrics, sources=[source])
    daemon.sinks.append(SinkWorker("slack", app.deliver_slack, stop, daemon.status, clock=clock))
    if settings.alertmanager is not None:
        app.silences = SilenceDelivery.from_settings(settings.alertmanager, store, on_change=app.touch)
        daemon.sinks.append(
            SinkWorker("alertmanager", app.silences.deliver, stop, daemon.status, clock=clock)
        )
    return app
