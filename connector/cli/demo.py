"""``itsm-connector demo``: the real pipeline against the built-in simulators, on a scripted timeline.

Both simulators listen on loopback (ephemeral ports). The connector is built from a real config,
exactly as ``run`` builds it; only the clock is scripted, so an evening of change work
(:mod:`connector.cli.demo_timeline`) plays out in a second: a digest on first sync, then announce,
reschedule, start, overrun, cancel and complete. Under each step: the Alertmanager silences the
windows would get (the pure planner, with the defaults of an ``alertmanager:`` section). At the end,
the channel as a reader sees it in Slack (:mod:`connector.simulators.slack_view`).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from connector.alertmanager.plan import SilenceSpec, plan_silences
from connector.alertmanager.settings import AlertmanagerSettings
from connector.cli.demo_timeline import T0, play, seed
from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator
from connector.simulators.slack import DEFAULT_TOKEN, SlackSimulator
from connector.store.api import StateStore
from connector.wiring import Connector, build_connector

CHANNEL = "C0MAINT01"
#: what the demo plans silences with: an ``alertmanager:`` section with only its URL, all defaults
SILENCE_DEFAULTS = AlertmanagerSettings(url="http://127.0.0.1:9093")


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _settings(
    snow: ServiceNowSimulator, slack: SlackSimulator, state: Path, locale: str, tz: str
) -> Settings:
    return Settings.model_validate(
        {
            "servicenow": {
                "url": snow.url,
                "username": "admin",
                "password": "secret",
                "filter": "type!=standard^ORtype=standard",
                "poll_interval": 5,
                "page_size": 50,
            },
            "slack": {
                "token": DEFAULT_TOKEN,
                "channel": CHANNEL,
                "base_url": slack.base_url,
                "locale": locale,
                "timezone": tz,
                "post_interval": 0,
                "first_run": "digest",
            },
            "state": {"path": state},
        }
    )


def run_demo(*, locale: str = "ko", timezone: str = "Asia/Seoul", out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout  # at call time: a test may have replaced it
    clock = Clock(T0)
    tz = ZoneInfo(timezone)
    with (
        ServiceNowSimulator(clock=clock) as snow,
        SlackSimulator() as slack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        cis = seed(snow, locale)
        settings = _settings(snow, slack, Path(tmp) / "state.db", locale, timezone)
        app = build_connector(settings, clock=clock)
        silences = SilencePreview(app.store, tz)
        print(
            "A scripted evening against the ServiceNow and Slack simulators; under each step, what\n"
            "Alertmanager would get (an `alertmanager:` section with its defaults; none is configured).\n",
            file=out,
        )

        def step(at: timedelta, what: str, action: Callable[[], None] | None) -> None:
            clock.now = T0 + at
            if action:
                action()
            app.daemon.poll()
            app.daemon.tick()
            for feed in app.feeds.values():
                feed.deliver(clock.now)
            print(f"[{clock.now.astimezone(tz):%m-%d %H:%M %Z}] {what}", file=out)
            for line in silences.changes(clock.now):
                print(f"      alertmanager: {line}", file=out)

        play(snow, cis, locale, step)
        print("\n" + "=" * 30 + " #maintenance as L1 sees it in Slack " + "=" * 30, file=out)
        print(slack.seen(CHANNEL, tz), file=out)
        _summary(app, slack, out)
        app.close()
    return 0


class SilencePreview:
    """The silences each window would have, step by step, told as changes (new, moved, expired)."""

    def __init__(self, store: StateStore, tz: ZoneInfo) -> None:
        self._store = store
        self._tz = tz
        self._planned: dict[str, list[SilenceSpec]] = {}

    def changes(self, now: datetime) -> list[str]:
        lines = []
        for t in self._store.tracked():
            number = t.window.number
            specs, _ = plan_silences(t.window, t.phase, now, SILENCE_DEFAULTS)
            before = self._planned.get(number, [])
            if specs == before:
                continue
            self._planned[number] = specs
            if not specs:
                cis = ", ".join(t.window.cis)
                lines.append(f"{number}: silence expired, alerts from {cis} are live again")
            for spec in specs:
                matchers = ", ".join(str(m) for m in spec.matchers)
                state = "active" if spec.starts_at <= now else "pending"
                verb = "silence" if not before else "silence now"
                lines.append(f"{number}: {verb} {{{matchers}}} {self._span(spec)} ({state})")
        return lines

    def _span(self, spec: SilenceSpec) -> str:
        start, end = spec.starts_at.astimezone(self._tz), spec.ends_at.astimezone(self._tz)
        return f"{start:%m-%d %H:%M}–{end:%H:%M %Z}"


def _summary(app: Connector, slack: SlackSimulator, out: TextIO) -> None:
    parents = slack.parents(CHANNEL)
    replies = sum(len(p.replies) for p in parents)
    depth, _ = app.store.outbox_stats(app.daemon.clock())
    print(
        f"{len(parents)} messages in the channel (1 digest + 1 per window), {replies} thread replies, "
        f"{depth} undelivered.",
        file=out,
    )
    print(
        "Next: `itsm-connector simulate` starts these simulators with tickets that keep changing and writes "
        "a config for them: try `check`, `sync`, `run` and `status` against it (README, Install).",
        file=out,
    )
