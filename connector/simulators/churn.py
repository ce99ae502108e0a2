"""Tickets that keep changing, for ``itsm-connector simulate``: a few changes seeded around now, then
one change at a time (created, rescheduled, started, completed, cancelled), so a newcomer watching
``run`` sees updates arrive. Works on the ServiceNow simulator's records; time comes from ``clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.snow_fixtures import format_snow_datetime

TITLES = {
    "ko": ["DB 서버 정기 점검 (PM)", "웹 서버 보안 패치", "코어 스위치 펌웨어 업그레이드",
           "로드밸런서 인증서 교체", "애플리케이션 배포", "백업 서버 디스크 증설", "DB 인덱스 재구성"],
    "en": ["DB server maintenance (PM)", "Web server security patch", "Core switch firmware upgrade",
           "Load balancer certificate renewal", "Application deployment", "Backup server disk expansion",
           "DB index rebuild"],
}  # fmt: skip
GROUPS = {"ko": ("DB운영팀", "Network Ops"), "en": ("DB Operations", "Network Ops")}
CIS = ("db01", "db02", "web01", "core-sw01", "lb01", "app01", "backup01")
#: the order changes come in; one with nothing to act on creates a new change instead
ACTIONS = ("new", "reschedule", "start", "complete", "new", "cancel")


@dataclass
class _Ticket:
    number: str
    sys_id: str
    state: str  # ServiceNow's raw state: -2 scheduled, -1 implement, 0 review, 4 cancelled
    start: datetime
    end: datetime


class Churn:
    def __init__(
        self,
        snow: ServiceNowSimulator,
        locale: str,
        tz: ZoneInfo,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._snow = snow
        self._locale = locale
        self._tz = tz
        self._clock = clock
        self._tickets: list[_Ticket] = []
        self._cis: dict[str, str] = {}
        self._groups: list[str] = []
        self._steps = 0

    def seed(self) -> list[str]:
        """CIs, two groups and four changes around now: one running, one starting soon, one tonight
        with two CIs, one tomorrow. Returns one line per change."""
        snow = self._snow
        self._cis = {ci: snow.put_record("cmdb_ci", {"name": ci})["sys_id"] for ci in CIS}
        groups = GROUPS[self._locale]
        self._groups = [snow.put_record("sys_user_group", {"name": g})["sys_id"] for g in groups]
        now = self._clock().replace(second=0, microsecond=0)
        hour = timedelta(hours=1)
        self._create(now - hour / 2, now + hour * 1.5, state="-1", cis=["db01"])
        self._create(now + hour / 3, now + hour * 1.3, cis=["web01"])
        self._create(now + hour * 3, now + hour * 5, cis=["db01", "db02"])
        self._create(now + hour * 24, now + hour * 26, cis=["core-sw01"])
        return [self._describe(t, "running" if t.state == "-1" else "scheduled") for t in self._tickets]

    def step(self) -> str:
        """Apply the next change; returns what happened, naming the ticket."""
        action = ACTIONS[self._steps % len(ACTIONS)]
        self._steps += 1
        now = self._clock().replace(microsecond=0)
        scheduled = [t for t in self._tickets if t.state == "-2"]
        running = [t for t in self._tickets if t.state == "-1"]
        if action == "reschedule" and scheduled:
            t = max(scheduled, key=lambda t: t.start)
            t.start, t.end = t.start + timedelta(minutes=30), t.end + timedelta(minutes=30)
            self._update(t, start_date=format_snow_datetime(t.start), end_date=format_snow_datetime(t.end))
            return self._describe(t, "rescheduled 30 minutes later")
        if action == "start" and scheduled:
            t = min(scheduled, key=lambda t: t.start)
            t.state = "-1"
            self._update(t, state="-1", work_start=format_snow_datetime(now))
            return self._describe(t, "started (state Implement)")
        if action == "complete" and running:
            t = min(running, key=lambda t: t.start)
            t.state = "0"
            self._update(t, state="0", work_end=format_snow_datetime(now), close_code="successful")
            return self._describe(t, "completed (state Review)")
        if action == "cancel" and len(scheduled) > 1:
            t = max(scheduled, key=lambda t: t.start)
            t.state = "4"
            self._update(t, state="4", active="false")
            return self._describe(t, "cancelled")
        start = now.replace(second=0) + timedelta(minutes=30 + 15 * (self._steps % 5))
        t = self._create(start, start + timedelta(hours=1), cis=[CIS[self._steps % len(CIS)]])
        return self._describe(t, "created")

    # -- records ---------------------------------------------------------------------------------
    def _create(self, start: datetime, end: datetime, *, cis: list[str], state: str = "-2") -> _Ticket:
        n = len(self._tickets)
        number = f"CHG00{40001 + n}"
        extra = {"work_start": format_snow_datetime(start)} if state == "-1" else {}
        record = self._snow.put_record(
            "change_request",
            make_change(
                number,
                short_description=TITLES[self._locale][n % len(TITLES[self._locale])],
                start=start,
                end=end,
                state=state,
                cmdb_ci=self._cis[cis[0]],
                assignment_group=self._groups[n % len(self._groups)],
                **extra,
            ),
        )
        for ci in cis[1:]:
            self._snow.put_record("task_ci", {"task": record["sys_id"], "ci_item": self._cis[ci]})
        ticket = _Ticket(number, record["sys_id"], state, start, end)
        self._tickets.append(ticket)
        return ticket

    def _update(self, t: _Ticket, **fields: str) -> None:
        self._snow.update_record("change_request", t.sys_id, **fields)

    def _describe(self, t: _Ticket, what: str) -> str:
        start, end = t.start.astimezone(self._tz), t.end.astimezone(self._tz)
        return f"{t.number} {what}: {start:%m-%d %H:%M}–{end:%H:%M %Z}"
