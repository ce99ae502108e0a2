"""The demo's evening of change work: the tickets (their text in the demo's locale) and what happens
to them, step by step, in the ServiceNow simulator. ``step(at, what, action)`` is the demo's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from connector.simulators.servicenow import ServiceNowSimulator, make_change

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # 21:00 KST
GROUP_DB, GROUP_NET, USER = "a" * 32, "b" * 32, "c" * 32

#: Ticket texts as a ServiceNow instance of each locale would hold them. CHG0030001 carries what a
#: ticket must never smuggle into Slack: a mention and a link (both arrive inert).
TEXTS = {
    "ko": {
        "web_patch": "웹 서버 보안 패치 (PM)",
        "db_pm": "DB 서버 정기 점검 (PM) — <!channel> 알림 주의",
        "db_pm_detail": "Oracle RAC 노드 순차 재기동 & 패치 적용. <https://evil.example|click here>",
        "fw": "코어 스위치 펌웨어 업그레이드",
        "hotfix": "긴급 애플리케이션 배포",
        "group_db": "DB운영팀",
        "group_net": "Network Ops",
        "user": "김민수",
    },
    "en": {
        "web_patch": "Web server security patch (PM)",
        "db_pm": "DB server maintenance (PM) — <!channel> heads-up",
        "db_pm_detail": "Rolling restart of the RAC nodes & patching. <https://evil.example|click here>",
        "fw": "Core switch firmware upgrade",
        "hotfix": "Emergency application deployment",
        "group_db": "DB Operations",
        "group_net": "Network Ops",
        "user": "Minsu Kim",
    },
}

Step = Callable[[timedelta, str, "Callable[[], None] | None"], None]


def seed(snow: ServiceNowSimulator, locale: str) -> dict[str, str]:
    """CIs, groups and a user; returns CI name → sys_id."""
    text = TEXTS[locale]
    cis = {}
    for name in ("web01", "db01", "db02", "core-sw01", "app01", "app02"):
        cis[name] = snow.put_record("cmdb_ci", {"name": name})["sys_id"]
    snow.put_record("sys_user_group", {"sys_id": GROUP_DB, "name": text["group_db"]})
    snow.put_record("sys_user_group", {"sys_id": GROUP_NET, "name": text["group_net"]})
    snow.put_record("sys_user", {"sys_id": USER, "name": text["user"]})
    return cis


def play(snow: ServiceNowSimulator, cis: dict[str, str], locale: str, step: Step) -> None:
    text = TEXTS[locale]
    running = snow.put_record(
        "change_request",
        make_change(
            "CHG0030000",
            short_description=text["web_patch"],
            start=T0 - timedelta(hours=1),
            end=T0 + timedelta(hours=1),
            state="-1",
            cmdb_ci=cis["web01"],
            assignment_group=GROUP_DB,
            work_start=_sn(T0 - timedelta(hours=1)),
        ),
    )
    step(timedelta(0), "first sync: one change already running → one digest message, no flood", None)

    pm = make_change(
        "CHG0030001",
        short_description=text["db_pm"],
        start=T0 + timedelta(hours=5),
        end=T0 + timedelta(hours=7),
        cmdb_ci=cis["db01"],
        assignment_group=GROUP_DB,
        assigned_to=USER,
        description=text["db_pm_detail"],
    )
    fw = make_change(
        "CHG0030002",
        short_description=text["fw"],
        start=T0 + timedelta(hours=6),
        end=T0 + timedelta(hours=8),
        cmdb_ci=cis["core-sw01"],
        assignment_group=GROUP_NET,
        risk="2",
    )
    hot = make_change(
        "CHG0030003",
        short_description=text["hotfix"],
        start=T0 + timedelta(minutes=20),
        end=T0 + timedelta(minutes=40),
        cmdb_ci=cis["app01"],
        assignment_group=GROUP_DB,
        type="emergency",
    )
    for n, rec in enumerate((pm, fw, hot), start=1):
        rec["sys_id"] = f"{n:032x}"

    def create() -> None:
        for rec in (pm, fw, hot):
            snow.put_record("change_request", rec)
        snow.put_record("task_ci", {"task": pm["sys_id"], "ci_item": cis["db02"]})

    def update(rec: dict[str, str], **fields: str) -> Callable[[], None]:
        def apply() -> None:
            snow.update_record("change_request", rec["sys_id"], **fields)

        return apply

    def done(at: timedelta) -> dict[str, str]:
        return {"work_end": _sn(T0 + at), "close_code": "successful"}

    step(
        timedelta(minutes=1),
        "three new changes → three parent messages, each one the window's announcement",
        create,
    )
    step(
        timedelta(minutes=10),
        "CHG0030001 moved one hour later → rescheduled",
        update(pm, start_date=_sn(T0 + timedelta(hours=6)), end_date=_sn(T0 + timedelta(hours=8))),
    )
    step(timedelta(minutes=12), "CHG0030002 cancelled", update(fw, state="4"))
    step(
        timedelta(minutes=20),
        "CHG0030003 planned start reached → started (no ticket change needed)",
        update(hot, state="-1"),
    )
    step(timedelta(minutes=41), "CHG0030003 still in Implement after its planned end → overran", None)
    step(
        timedelta(minutes=50),
        "CHG0030000 finished and closed → completed",
        update(running, state="0", **done(timedelta(minutes=50))),
    )
    step(
        timedelta(minutes=55),
        "CHG0030003 closed → completed",
        update(hot, state="3", **done(timedelta(minutes=55))),
    )
    step(
        timedelta(hours=6),
        "CHG0030001 planned start reached → started",
        update(pm, state="-1", work_start=_sn(T0 + timedelta(hours=6))),
    )
    step(
        timedelta(hours=7, minutes=30),
        "CHG0030001 work done and in Review → completed",
        update(pm, state="0", **done(timedelta(hours=7, minutes=30))),
    )


def _sn(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")
