"""``itsm-connector demo``: the real pipeline against the built-in simulators, on a scripted timeline.

Both simulators listen on loopback (ephemeral ports). The connector is built from a real config,
exactly as ``run`` builds it; only the clock is scripted, so an evening of change work plays out in
a second: a digest on first sync, then announce, reschedule, start, overrun, cancel and complete.
The channel is printed at the end as a reader would see it.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import DEFAULT_TOKEN, SlackSimulator
from connector.wiring import Connector, build_connector

CHANNEL = "C0MAINT01"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # 21:00 KST


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


def _changes(snow: ServiceNowSimulator) -> dict[str, str]:
    """Seed CIs and groups; returns CI name → sys_id."""
    cis = {}
    for name in ("web01", "db01", "db02", "core-sw01", "app01", "app02"):
        rec = snow.put_record("cmdb_ci", {"name": name})
        cis[name] = rec["sys_id"]
    snow.put_record("sys_user_group", {"sys_id": "a" * 32, "name": "DB운영팀"})
    snow.put_record("sys_user_group", {"sys_id": "b" * 32, "name": "Network Ops"})
    snow.put_record("sys_user", {"sys_id": "c" * 32, "name": "김민수"})
    return cis


def run_demo(*, locale: str = "ko", timezone: str = "Asia/Seoul", out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout  # at call time: a test may have replaced it
    clock = Clock(T0)
    with (
        ServiceNowSimulator(clock=clock) as snow,
        SlackSimulator() as slack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        cis = _changes(snow)
        settings = _settings(snow, slack, Path(tmp) / "state.db", locale, timezone)
        app = build_connector(settings, clock=clock)
        tz = ZoneInfo(timezone)

        def step(at: timedelta, what: str, action: Callable[[], None] | None = None) -> None:
            clock.now = T0 + at
            if action:
                action()
            app.daemon.poll()
            app.daemon.tick()
            for feed in app.feeds.values():
                feed.deliver(clock.now)
            print(f"[{clock.now.astimezone(tz):%m-%d %H:%M %Z}] {what}", file=out)

        _timeline(snow, cis, step)
        print("\n" + "=" * 30 + f" #{'maintenance'} as L1 sees it " + "=" * 30, file=out)
        print(slack.transcript(CHANNEL), file=out)
        _summary(app, slack, out)
        app.close()
    return 0


def _timeline(snow: ServiceNowSimulator, cis: dict[str, str], step: Callable[..., None]) -> None:
    grp_db, grp_net, user = "a" * 32, "b" * 32, "c" * 32
    running = snow.put_record(
        "change_request",
        make_change(
            "CHG0030000",
            short_description="웹 서버 보안 패치 (PM)",
            start=T0 - timedelta(hours=1),
            end=T0 + timedelta(hours=1),
            state="-1",
            cmdb_ci=cis["web01"],
            assignment_group=grp_db,
            work_start=(T0 - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        ),
    )
    step(timedelta(0), "first sync: one change already running → one digest message, no flood")

    pm = make_change(
        "CHG0030001",
        short_description="DB 서버 정기 점검 (PM) — <!channel> 알림 주의",
        start=T0 + timedelta(hours=5),
        end=T0 + timedelta(hours=7),
        cmdb_ci=cis["db01"],
        assignment_group=grp_db,
        assigned_to=user,
        description="Oracle RAC 노드 순차 재기동 & 패치 적용. <https://evil.example|click here>",
    )
    fw = make_change(
        "CHG0030002",
        short_description="Core switch firmware upgrade",
        start=T0 + timedelta(hours=6),
        end=T0 + timedelta(hours=8),
        cmdb_ci=cis["core-sw01"],
        assignment_group=grp_net,
        risk="2",
    )
    hot = make_change(
        "CHG0030003",
        short_description="긴급 애플리케이션 배포",
        start=T0 + timedelta(minutes=20),
        end=T0 + timedelta(minutes=40),
        cmdb_ci=cis["app01"],
        assignment_group=grp_db,
        type="emergency",
    )

    for n, rec in enumerate((pm, fw, hot), start=1):
        rec["sys_id"] = f"{n:032x}"

    def create() -> None:
        for rec in (pm, fw, hot):
            snow.put_record("change_request", rec)
        snow.put_record("task_ci", {"task": pm["sys_id"], "ci_item": cis["db02"]})

    step(
        timedelta(minutes=1),
        "three new changes → three parent messages, each one the window's announcement",
        create,
    )
    step(
        timedelta(minutes=10),
        "CHG0030001 moved one hour later → rescheduled",
        lambda: snow.update_record(
            "change_request",
            pm["sys_id"],
            start_date=_sn(T0 + timedelta(hours=6)),
            end_date=_sn(T0 + timedelta(hours=8)),
        ),
    )
    step(
        timedelta(minutes=12),
        "CHG0030002 cancelled",
        lambda: snow.update_record("change_request", fw["sys_id"], state="4"),
    )
    step(
        timedelta(minutes=20),
        "CHG0030003 planned start reached → started (no ticket change needed)",
        lambda: snow.update_record("change_request", hot["sys_id"], state="-1"),
    )
    step(timedelta(minutes=41), "CHG0030003 still in Implement after its planned end → overran")
    step(
        timedelta(minutes=50),
        "CHG0030000 finished and closed → completed",
        lambda: snow.update_record(
            "change_request",
            running["sys_id"],
            state="0",
            work_end=_sn(T0 + timedelta(minutes=50)),
            close_code="successful",
        ),
    )
    step(
        timedelta(minutes=55),
        "CHG0030003 closed → completed",
        lambda: snow.update_record(
            "change_request",
            hot["sys_id"],
            state="3",
            work_end=_sn(T0 + timedelta(minutes=55)),
            close_code="successful",
        ),
    )
    step(
        timedelta(hours=6),
        "CHG0030001 planned start reached → started",
        lambda: snow.update_record(
            "change_request", pm["sys_id"], state="-1", work_start=_sn(T0 + timedelta(hours=6))
        ),
    )
    step(
        timedelta(hours=7, minutes=30),
        "CHG0030001 work done and in Review → completed",
        lambda: snow.update_record(
            "change_request",
            pm["sys_id"],
            state="0",
            work_end=_sn(T0 + timedelta(hours=7, minutes=30)),
            close_code="successful",
        ),
    )


def _sn(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _summary(app: Connector, slack: SlackSimulator, out: TextIO) -> None:
    parents = slack.parents(CHANNEL)
    replies = sum(len(p.replies) for p in parents)
    depth, _ = app.store.outbox_stats(app.daemon.clock())
    print(
        f"\n{len(parents)} messages in the channel (1 digest + 1 per window), {replies} thread replies, "
        f"{depth} undelivered.",
        file=out,
    )
