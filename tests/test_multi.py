"""One desk, many customers (issue 6): two ServiceNow instances, three channels, ordered routes.

Real HTTP to two ServiceNow simulators and one Slack simulator; the clock is injected.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from icalendar import Calendar

from connector.cli.service import deliver_everywhere
from connector.config import Settings
from connector.domain.routing import Route, RouteMatch, channels_for
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from connector.wiring import Connector, build_connector
from tests.support import Clock

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 0, 30, tzinfo=timezone.utc)  # 09:30 KST, 00:30 London, 19:30 New York
ACME, GLOBEX, NETOPS = "C0ACME", "C0GLOBEX", "C0NETOPS"



def group(snow: ServiceNowSimulator, sys_id: str, name: str) -> str:
    snow.put_record("sys_user_group", {"sys_id": sys_id, "name": name})
    return sys_id


@pytest.fixture
def desk(
    tmp_path: Path,
) -> Iterator[tuple[ServiceNowSimulator, ServiceNowSimulator, SlackSimulator, Clock, Connector]]:
    clock = Clock(T0)
    with (
        ServiceNowSimulator(clock=clock) as acme,
        ServiceNowSimulator(clock=clock) as globex,
        SlackSimulator() as slack,
    ):
        for ch, name in ((ACME, "acme-maint"), (GLOBEX, "globex-maint"), (NETOPS, "netops")):
            slack.add_channel(ch, name)
        settings = Settings.model_validate(
            {
                "sources": [
                    {"name": "acme", "url": acme.url, "username": "admin", "password": "secret"},
                    {"name": "globex", "url": globex.url, "username": "admin", "password": "secret"},
                ],
                "slack": {
                    "token": "xoxb-simulator",
                    "channel": ACME,
                    "base_url": slack.base_url,
                    "post_interval": 0,
                    "first_run": "announce",
                    "channels": [
                        {"id": ACME, "locale": "ko", "timezone": "Asia/Seoul", "digest_times": ["09:00"]},
                        {"id": GLOBEX, "locale": "en", "timezone": "Europe/London"},
                        {
                            "id": NETOPS,
                            "locale": "en",
                            "timezone": "America/New_York",
                            "reminder_minutes": 30,
                        },
                    ],
                },
                "routes": [
                    {
                        "name": "acme network",
                        "match": {"source": "acme", "assignment_group": "Network Ops"},
                        "channels": [NETOPS, ACME],
                    },
                    {"name": "acme", "match": {"source": "acme"}, "channels": [ACME]},
                    {
                        "name": "globex",
                        "match": {"source": "globex"},
                        "channels": [GLOBEX],
                        "mention": {"text": "<!subteam^S0L1>", "on": ["overran"]},
                    },
                ],
                "state": {"path": tmp_path / "state.db"},
            }
        )
        app = build_connector(settings, clock=clock)
        yield acme, globex, slack, clock, app
        app.close()


def cycle(app: Connector, clock: Clock, at: timedelta) -> None:
    clock.now = T0 + at
    app.daemon.poll()
    app.daemon.tick()
    deliver_everywhere(app, clock.now)


def numbers(slack: SlackSimulator, channel: str) -> list[str]:
    """The tickets that have a window message in ``channel`` (digests are not window messages)."""
    out = []
    for p in slack.parents(channel):
        header = next(b for b in p.blocks if b["type"] == "header")["text"]["text"]
        out += [w for w in header.split() if w.startswith("CHG")][:1]
    return sorted(out)


def thread(slack: SlackSimulator, channel: str, number: str):  # type: ignore[no-untyped-def]
    """The window message of ``number`` in ``channel`` (by its header, not a digest's list)."""
    return next(
        p
        for p in slack.parents(channel)
        if number in next(b for b in p.blocks if b["type"] == "header")["text"]["text"]
    )


def test_each_window_appears_exactly_where_its_rules_send_it(desk) -> None:  # type: ignore[no-untyped-def]
    acme, globex, slack, clock, app = desk
    db, net = group(acme, "a" * 32, "DB Team"), group(acme, "b" * 32, "Network Ops")
    app_team = group(globex, "c" * 32, "Connector Team")
    h = timedelta(hours=1)
    c1 = acme.put_record(
        "change_request",
        make_change(
            "CHG1000001", short_description="DB patch", start=T0 + 2 * h, end=T0 + 3 * h, assignment_group=db
        ),
    )
    c2 = acme.put_record(
        "change_request",
        make_change(
            "CHG1000002",
            short_description="Switch FW",
            start=T0 + 20 * h,
            end=T0 + 21 * h,
            assignment_group=net,
        ),
    )
    c3 = globex.put_record(
        "change_request",
        make_change(
            "CHG2000001",
            short_description="Connector deploy",
            start=T0 + 5 * h,
            end=T0 + 6 * h,
            assignment_group=app_team,
        ),
    )
    cycle(app, clock, timedelta(0))
    assert numbers(slack, ACME) == ["CHG1000001", "CHG1000002"]
    assert numbers(slack, NETOPS) == ["CHG1000002"]
    assert numbers(slack, GLOBEX) == ["CHG2000001"]
    # each channel in its own language and timezone
    assert "예정" in slack.parents(ACME)[0].text or "예정" in str(slack.parents(ACME)[0].blocks)
    assert "GMT" in str(slack.parents(GLOBEX)[0].blocks)  # Europe/London in November
    assert "EST" in str(slack.parents(NETOPS)[0].blocks)

    # kept current in every channel independently
    acme.update_record(
        "change_request", c2["sys_id"], start_date="2026-11-26 21:30:00", end_date="2026-11-26 22:30:00"
    )
    cycle(app, clock, timedelta(minutes=5))
    for ch in (ACME, NETOPS):
        t = thread(slack, ch, "CHG1000002")
        assert len(t.replies) == 1 and "🔁" in t.replies[0].text and t.edited >= 1

    # the route changes: CHG1000001 moves to Network Ops, CHG1000002 leaves it
    acme.update_record("change_request", c1["sys_id"], assignment_group=net)
    acme.update_record("change_request", c2["sys_id"], assignment_group=db)
    cycle(app, clock, timedelta(minutes=10))
    assert numbers(slack, NETOPS) == ["CHG1000001", "CHG1000002"]
    moved_out = thread(slack, NETOPS, "CHG1000002")
    assert "another channel" in moved_out.replies[-1].text  # withdrawal notice in the old channel
    assert numbers(slack, ACME) == ["CHG1000001", "CHG1000002"]  # still followed there, no second message

    # a reminder 30 minutes before start, only where it was asked for (NETOPS)
    cycle(app, clock, timedelta(hours=1, minutes=31))
    net_c1 = thread(slack, NETOPS, "CHG1000001")
    assert "Starts in 29 min" in net_c1.replies[-1].text
    acme_c1 = thread(slack, ACME, "CHG1000001")
    assert all("⏰" not in r.text for r in acme_c1.replies)

    # the globex route mentions the L1 group on overrun only
    globex.update_record("change_request", c3["sys_id"], state="-1")
    cycle(app, clock, timedelta(hours=6, minutes=1))
    replies = [r.text for r in thread(slack, GLOBEX, "CHG2000001").replies]
    assert replies[-1].startswith("<!subteam^S0L1>") and "Past planned end" in replies[-1]
    assert sum("<!subteam^S0L1>" in r for r in replies) == 1
    depth, _ = app.store.outbox_stats(clock.now)
    assert depth == 0


def test_digest_and_calendar_list_the_right_windows_at_a_fixed_now(desk) -> None:  # type: ignore[no-untyped-def]
    acme, globex, slack, clock, app = desk
    db = group(acme, "a" * 32, "DB Team")
    h = timedelta(hours=1)
    # 09:30 KST on the 26th: "today and tomorrow" in Seoul is the 26th and 27th
    acme.put_record(
        "change_request",
        make_change(
            "CHG1000010", short_description="today", start=T0 + 2 * h, end=T0 + 3 * h, assignment_group=db
        ),
    )
    acme.put_record(
        "change_request",
        make_change(
            "CHG1000011",
            short_description="tomorrow night KST",
            start=T0 + 38 * h,
            end=T0 + 39 * h,
            assignment_group=db,
        ),
    )
    acme.put_record(
        "change_request",
        make_change(
            "CHG1000012",
            short_description="in three days",
            start=T0 + 72 * h,
            end=T0 + 73 * h,
            assignment_group=db,
        ),
    )
    globex.put_record(
        "change_request",
        make_change("CHG2000010", short_description="globex", start=T0 + 4 * h, end=T0 + 5 * h),
    )
    cycle(app, clock, timedelta(0))

    acme_digest = app.feeds[ACME].digest_preview(clock.now)
    assert "CHG1000010" in acme_digest and "CHG1000011" in acme_digest
    assert "CHG1000012" not in acme_digest and "CHG2000010" not in acme_digest
    assert "KST" in acme_digest
    globex_digest = app.feeds[GLOBEX].digest_preview(clock.now)
    assert "CHG2000010" in globex_digest and "CHG1000010" not in globex_digest and "GMT" in globex_digest

    # the shift digest is posted by the daemon at 09:00 local, once per slot (T0 is 09:30 KST)
    shift = [p for p in slack.parents(ACME) if "교대" in p.text + str(p.blocks)]
    assert len(shift) == 1
    cycle(app, clock, timedelta(minutes=5))
    assert len([p for p in slack.parents(ACME) if "교대" in p.text + str(p.blocks)]) == 1

    def uids(ics: bytes) -> dict[str, str]:
        cal = Calendar.from_ical(ics)
        return {str(ev["summary"]).split()[0]: str(ev["status"]) for ev in cal.walk("VEVENT")}

    assert set(uids(app.calendar.render(clock.now, ACME))) == {"CHG1000010", "CHG1000011", "CHG1000012"}
    assert set(uids(app.calendar.render(clock.now, GLOBEX))) == {"CHG2000010"}
    everything = app.calendar.render(clock.now)
    assert set(uids(everything)) == {"CHG1000010", "CHG1000011", "CHG1000012", "CHG2000010"}
    before = {
        str(e["summary"]).split()[0]: int(e["sequence"])
        for e in Calendar.from_ical(everything).walk("VEVENT")
    }

    c = next(r for r in acme.records("change_request") if r["number"] == "CHG1000012")
    acme.update_record("change_request", c["sys_id"], state="4")
    cycle(app, clock, timedelta(minutes=10))
    after_cal = Calendar.from_ical(app.calendar.render(clock.now))
    after = {
        str(e["summary"]).split()[0]: (int(e["sequence"]), str(e["status"])) for e in after_cal.walk("VEVENT")
    }
    assert after["CHG1000012"] == (before["CHG1000012"] + 1, "CANCELLED")  # SEQUENCE bumped on change
    assert after["CHG1000010"][0] == before["CHG1000010"]


@pytest.mark.parametrize(
    ("group_name", "ci", "expected"),
    [
        ("Network Ops", "db01", ("C1", "C2")),
        ("network ops", "db01", ("C1", "C2")),  # case-insensitive
        ("DB", "core-sw01", ("C3",)),  # wildcard CI rule
        ("DB", "db01", ("DEFAULT",)),  # nothing matches: the default channel
    ],
)
def test_routes_are_ordered_first_match_wins(group_name: str, ci: str, expected: tuple[str, ...]) -> None:
    from connector.domain.window import MaintenanceWindow, State

    w = MaintenanceWindow(
        source="acme",
        sys_id="x",
        number="CHG1",
        title="t",
        state=State.SCHEDULED,
        planned_start=T0,
        planned_end=T0 + timedelta(hours=1),
        assignment_group=group_name,
        cis=(ci,),
    )
    routes = [
        Route(match=RouteMatch(assignment_group=["Network Ops"]), channels=["C1", "C2", "C1"]),
        Route(match=RouteMatch(ci=["core-sw*"]), channels=["C3"]),
        Route(match=RouteMatch(source=["globex"]), channels=["C4"]),
    ]
    assert channels_for(w, routes, "DEFAULT") == expected


def test_one_failing_source_does_not_hold_back_the_other(desk) -> None:  # type: ignore[no-untyped-def]
    acme, globex, slack, clock, app = desk
    acme.inject("401", count=100)  # acme's credentials are refused from now on
    globex.put_record(
        "change_request",
        make_change(
            "CHG2000020",
            short_description="globex works",
            start=T0 + timedelta(hours=3),
            end=T0 + timedelta(hours=4),
        ),
    )
    cycle(app, clock, timedelta(0))
    assert numbers(slack, GLOBEX) == ["CHG2000020"]
    st = app.daemon.state.sources
    assert st["acme"].last_error is not None and "401" in st["acme"].last_error
    assert st["globex"].last_error is None and st["globex"].last_ok_at == clock.now
    assert app.store.cursor("acme") is None  # nothing read, nothing advanced
