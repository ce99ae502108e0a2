"""End to end: the real pipeline (pysnow → store → slack_sdk) over loopback HTTP to both simulators.

The clock is injected; nothing sleeps. This is issue 2's acceptance: a change goes
announce → reschedule → start → complete with exactly one parent message and every event told once
in its thread, times right in Asia/Seoul. The parent message is the announcement (the root of the
thread); each later event is one reply. With ``slack.announce_in_thread`` the announcement is also a
reply, as first built.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connector.cli.service import deliver_everywhere
from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import DEFAULT_TOKEN, SlackSimulator
from connector.wiring import Connector, build_connector
from tests.support import Clock

pytestmark = pytest.mark.integration

CHANNEL = "C0MAINT01"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)



@pytest.fixture(params=[False], ids=["parent-announces"])
def env(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[ServiceNowSimulator, SlackSimulator, Clock, Connector]]:
    clock = Clock(T0)
    with ServiceNowSimulator(clock=clock) as snow, SlackSimulator() as slack:
        slack_settings = {"locale": "en", "timezone": "Asia/Seoul", "announce_in_thread": request.param}
        app = build_connector(settings_for(snow, slack, tmp_path, "announce", **slack_settings), clock=clock)
        yield snow, slack, clock, app
        app.close()


def settings_for(
    snow: ServiceNowSimulator,
    slack: SlackSimulator,
    tmp_path: Path,
    first_run: str,
    *,
    routes: list[dict[str, Any]] | None = None,
    **slack_settings: Any,
) -> Settings:
    """Both simulators, no pacing (the clock is injected), and what the test adds."""
    return Settings.model_validate(
        {
            "servicenow": {"url": snow.url, "username": "admin", "password": "secret", "poll_interval": 5},
            "slack": {
                "token": DEFAULT_TOKEN,
                "channel": CHANNEL,
                "base_url": slack.base_url,
                "post_interval": 0,
                "first_run": first_run,
                **slack_settings,
            },
            **({"routes": routes} if routes is not None else {}),
            "state": {"path": tmp_path / "state.db"},
        }
    )


def cycle(app: Connector, clock: Clock, at: timedelta) -> None:
    clock.now = T0 + at
    app.daemon.poll()
    app.daemon.tick()
    deliver_everywhere(app, clock.now)


def _delivered(app: Connector) -> list[tuple[str, str]]:
    """(event kind, Slack ts) of every delivered event, in order."""
    rows = app.store._q(
        "SELECT e.kind, d.ts FROM deliveries d JOIN events e ON e.id=d.event_id "
        "WHERE d.state='done' ORDER BY e.id"
    )
    return [(str(k), str(t)) for k, t in rows]


def mrkdwn(node: object) -> str:
    """Every mrkdwn text in a block tree (plain_text never parses mentions)."""
    if isinstance(node, list):
        return "".join(mrkdwn(n) for n in node)
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            return str(node.get("text", ""))
        return "".join(mrkdwn(v) for v in node.values())
    return ""


def sn(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("env", [False, True], ids=["parent-announces", "announce-in-thread"], indirect=True)
def test_change_lifecycle_one_parent_one_reply_per_event(
    env: tuple[ServiceNowSimulator, SlackSimulator, Clock, Connector],
) -> None:
    snow, slack, clock, app = env
    in_thread = app.settings.slack.announce_in_thread
    told = ["announced"] if in_thread else []  # what the thread says beyond the parent
    ci = snow.put_record("cmdb_ci", {"name": "db01"})
    ci2 = snow.put_record("cmdb_ci", {"name": "db02"})
    # 02:00–04:00 KST on the 27th
    rec = snow.put_record(
        "change_request",
        make_change(
            "CHG0040001",
            short_description="DB patch <!channel>",
            start=datetime(2026, 11, 26, 17, 0, tzinfo=timezone.utc),
            end=datetime(2026, 11, 26, 19, 0, tzinfo=timezone.utc),
            cmdb_ci=ci["sys_id"],
        ),
    )
    snow.put_record("task_ci", {"task": rec["sys_id"], "ci_item": ci2["sys_id"]})
    cycle(app, clock, timedelta(0))
    cycle(app, clock, timedelta(minutes=1))  # nothing changed: nothing new
    parents = slack.parents(CHANNEL)
    assert len(parents) == 1 and len(parents[0].replies) == len(told)
    assert all(word in r.text.lower() for word, r in zip(told, parents[0].replies, strict=True))
    # the announcement is delivered once: by the parent itself, or also as a reply
    (announced_ts,) = [ts for kind, ts in _delivered(app) if kind == "announced"]
    assert announced_ts == (parents[0].replies[0].ts if in_thread else parents[0].ts)
    assert "2026-11-27 02:00" in parents[0].text + str(parents[0].blocks)
    assert "KST" in str(parents[0].blocks)
    assert "<!channel>" not in parents[0].text + mrkdwn(parents[0].blocks)  # plain_text header cannot mention
    assert "db02" in str(parents[0].blocks)  # affected CI from task_ci

    # rescheduled to 03:00–05:00 KST
    snow.update_record(
        "change_request", rec["sys_id"], start_date="2026-11-26 18:00:00", end_date="2026-11-26 20:00:00"
    )
    cycle(app, clock, timedelta(minutes=2))
    replies = slack.parents(CHANNEL)[0].replies
    assert len(replies) == len(told) + 1
    assert "02:00" in replies[-1].text and "03:00" in replies[-1].text

    cycle(app, clock, timedelta(hours=6))  # 18:00 UTC = planned start: started by the tick alone
    snow.update_record("change_request", rec["sys_id"], state="-1", work_start="2026-11-26 18:00:00")
    cycle(app, clock, timedelta(hours=6, minutes=5))
    snow.update_record(
        "change_request", rec["sys_id"], state="0", work_end="2026-11-26 19:30:00", close_code="successful"
    )
    cycle(app, clock, timedelta(hours=7, minutes=30))
    cycle(app, clock, timedelta(hours=7, minutes=31))

    parents = slack.parents(CHANNEL)
    assert len(parents) == 1
    kinds = [r.text.lower() for r in parents[0].replies]
    words = [*told, "rescheduled", "started", "completed"]
    assert len(kinds) == len(words), kinds
    for word, reply in zip(words, kinds, strict=True):
        assert word in reply
    assert [kind for kind, _ in _delivered(app)] == ["announced", "rescheduled", "started", "completed"]
    assert parents[0].edited >= 3  # kept current in place
    depth, _ = app.store.outbox_stats(clock.now)
    assert depth == 0


def test_first_run_digest_then_normal_operation(tmp_path: Path) -> None:
    clock = Clock(T0)
    with ServiceNowSimulator(clock=clock) as snow, SlackSimulator() as slack:
        for i in range(12):
            snow.put_record(
                "change_request",
                make_change(
                    f"CHG00500{i:02d}",
                    short_description=f"PM {i}",
                    start=T0 + timedelta(hours=i + 1),
                    end=T0 + timedelta(hours=i + 2),
                ),
            )
        app = build_connector(settings_for(snow, slack, tmp_path, "digest"), clock=clock)
        cycle(app, clock, timedelta(0))
        assert len(slack.parents(CHANNEL)) == 1  # one digest, no flood
        cycle(app, clock, timedelta(hours=1))  # CHG0050000 starts → its own message appears
        parents = slack.parents(CHANNEL)
        assert len(parents) == 2 and len(parents[1].replies) == 1
        assert "CHG0050000" in parents[1].text + str(parents[1].blocks)
        app.close()


def test_an_edit_without_an_event_still_updates_the_parent(
    env: tuple[ServiceNowSimulator, SlackSimulator, Clock, Connector],
) -> None:
    snow, slack, clock, app = env
    rec = snow.put_record(
        "change_request",
        make_change(
            "CHG0040009",
            short_description="Old title",
            start=T0 + timedelta(hours=5),
            end=T0 + timedelta(hours=6),
        ),
    )
    cycle(app, clock, timedelta(0))
    snow.update_record("change_request", rec["sys_id"], short_description="New title & more")
    cycle(app, clock, timedelta(minutes=1))
    parent = slack.parents(CHANNEL)[0]
    assert "New title" in str(parent.blocks) and parent.edited >= 1
    assert len(parent.replies) == 0  # not an event: no thread reply (the parent is the announcement)


def test_an_announcement_that_mentions_someone_is_still_a_reply(tmp_path: Path) -> None:
    """A route that mentions a group on ``announced`` must notify it: a parent post would, but the
    thread is where the desk looks for who was called; the reply carries the mention."""
    clock = Clock(T0)
    with ServiceNowSimulator(clock=clock) as snow, SlackSimulator() as slack:
        routes = [
            {
                "match": {"type": "emergency"},
                "channels": [CHANNEL],
                "mention": {"text": "<!subteam^S0DBA>", "on": ["announced"]},
            },
            {"channels": [CHANNEL]},
        ]
        settings = settings_for(snow, slack, tmp_path, "announce", routes=routes, locale="en")
        app = build_connector(settings, clock=clock)
        start, end = T0 + timedelta(hours=5), T0 + timedelta(hours=6)
        snow.put_record(
            "change_request",
            make_change(
                "CHG0040101", short_description="DB", start=start, end=end, type="emergency"
            ),
        )
        os_change = make_change("CHG0040102", short_description="OS", start=start, end=end)
        snow.put_record("change_request", os_change)
        cycle(app, clock, timedelta(0))
        by_number = {
            n: p for p in slack.parents(CHANNEL) for n in ("CHG0040101", "CHG0040102") if n in p.text
        }
        mentioned, plain = by_number["CHG0040101"], by_number["CHG0040102"]
        assert [r.text.split(" · ")[0] for r in mentioned.replies] == ["<!subteam^S0DBA> CHG0040101"]
        assert plain.replies == []
        app.close()


def test_a_window_announced_again_after_a_withdrawal_says_so_in_its_thread(
    env: tuple[ServiceNowSimulator, SlackSimulator, Clock, Connector],
) -> None:
    snow, slack, clock, app = env
    rec = snow.put_record(
        "change_request",
        make_change(
            "CHG0040201", short_description="PM", start=T0 + timedelta(hours=5), end=T0 + timedelta(hours=6)
        ),
    )
    cycle(app, clock, timedelta(0))
    snow.update_record("change_request", rec["sys_id"], state="4")  # cancelled
    cycle(app, clock, timedelta(minutes=1))
    snow.update_record("change_request", rec["sys_id"], state="-2")  # scheduled again
    cycle(app, clock, timedelta(minutes=2))
    (parent,) = slack.parents(CHANNEL)
    kinds = [r.text.lower() for r in parent.replies]
    assert len(kinds) == 2 and "cancelled" in kinds[0] and "announced" in kinds[1], kinds
