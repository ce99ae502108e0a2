"""Isolation is correctness: a window reaches only the channels its route names.

Two ServiceNow instances (two customers), three channels, the real Alertmanager, and every lifecycle
step (announce, reschedule, start, overrun, close, reroute) interleaved in several orders. After every
cycle, every message in every channel must belong to a window that is or was routed there, and every
channel a window is routed to holds exactly one parent message for it.

The order of the audit that found the leak (issue 11) is the first case: silences created in the
same cycle as the announcement asked every channel to refresh the window, and a channel without a
parent posted one, routed there or not.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.cli.service import deliver_everywhere
from connector.config import Settings
from connector.domain.target import Target
from connector.simulators.servicenow import ServiceNowSimulator, format_snow_datetime, make_change
from connector.simulators.slack import SlackSimulator
from connector.wiring import Connector, build_connector
from tests.alertmanager_harness import RunningAlertmanager

pytestmark = pytest.mark.integration

ACME, GLOBEX, NETOPS = "C0ACME", "C0GLOBEX", "C0NETOPS"


@dataclass
class Ticket:
    """One change and the channels its route names, as the test (not the connector) reckons them."""

    snow: ServiceNowSimulator
    source: str
    number: str
    group: str
    sys_id: str = ""
    ever: set[str] = field(default_factory=set)  # every channel it was routed to so far

    def routed(self) -> set[str]:
        if self.source == "globex":
            return {GLOBEX}
        return {NETOPS, ACME} if self.group == "net" else {ACME}


def settings_for(acme: str, globex: str, slack: str, am: str, state: Path) -> Settings:
    return Settings.model_validate(
        {
            "sources": [
                {"name": "acme", "url": acme, "username": "admin", "password": "secret"},
                {"name": "globex", "url": globex, "username": "admin", "password": "secret"},
            ],
            "slack": {
                "token": "xoxb-simulator",
                "channel": ACME,
                "base_url": slack,
                "post_interval": 0,
                "first_run": "announce",
                "channels": [{"id": ACME}, {"id": GLOBEX}, {"id": NETOPS, "reminder_minutes": 30}],
            },
            "routes": [
                {"match": {"source": "acme", "assignment_group": "Network Ops"}, "channels": [NETOPS, ACME]},
                {"match": {"source": "acme"}, "channels": [ACME]},
                {"match": {"source": "globex"}, "channels": [GLOBEX]},
            ],
            "alertmanager": {"url": am},
            "state": {"path": state},
        }
    )


@pytest.fixture
def desk(
    tmp_path: Path, alertmanager: RunningAlertmanager
) -> Iterator[tuple[ServiceNowSimulator, ServiceNowSimulator, SlackSimulator, Connector]]:
    with (
        ServiceNowSimulator() as acme,
        ServiceNowSimulator() as globex,
        SlackSimulator() as slack,
    ):
        for ch in (ACME, GLOBEX, NETOPS):
            slack.add_channel(ch, ch.lower())
        for snow in (acme, globex):
            snow.put_record("sys_user_group", {"sys_id": "d" * 32, "name": "DB Team"})
            snow.put_record("sys_user_group", {"sys_id": "e" * 32, "name": "Network Ops"})
        settings = settings_for(acme.url, globex.url, slack.base_url, alertmanager.url, tmp_path / "s.db")
        app = build_connector(settings)
        yield acme, globex, slack, app
        app.close()


def cycle(app: Connector) -> None:
    """What ``run`` does between two polls, in the order of the audit: poll, tick, silences, Slack."""
    now = datetime.now(timezone.utc)
    app.daemon.poll()
    app.daemon.tick()
    assert app.silences is not None
    app.silences.deliver(now)
    deliver_everywhere(app, now)


def window_of(message_metadata: dict | None) -> tuple[str, str] | None:  # type: ignore[type-arg]
    """(source, sys_id) of a window's parent message, from the identity it carries in its metadata."""
    if not message_metadata or message_metadata.get("event_type") != "itsm_window":
        return None
    _, source, sys_id = str(message_metadata["event_payload"]["id"]).split(":")
    return source, sys_id


def check_isolation(slack: SlackSimulator, tickets: list[Ticket], app: Connector) -> None:
    by_key = {(t.source, t.sys_id): t for t in tickets}
    for channel in (ACME, GLOBEX, NETOPS):
        parents: dict[tuple[str, str], int] = {}
        for p in slack.parents(channel):
            key = window_of(p.metadata)
            if key is None:
                continue  # a digest
            t = by_key[key]
            assert channel in t.ever, f"{t.number} ({t.source}) was posted in {channel}, routed {t.ever}"
            parents[key] = parents.get(key, 0) + 1
        for key, n in parents.items():
            assert n == 1, f"{by_key[key].number} has {n} parent messages in {channel}"
        for t in tickets:
            if channel in t.routed():
                assert parents.get((t.source, t.sys_id)) == 1, f"{t.number} has no parent in {channel}"
    for t in tickets:  # the stored route decision agrees with the rules
        assert set(app.store.targets((t.source, t.sys_id)) or []) == {Target.slack(c) for c in t.routed()}


def scripts(now: datetime) -> list[tuple[str, str, str, list[tuple[str, dict[str, str]]]]]:
    """(source, number, group, steps): each step is (name, fields to write); a ticket's own steps keep
    their order, the tickets' steps are interleaved by the test."""
    h = timedelta(hours=1)

    def when(start: timedelta, end: timedelta) -> dict[str, str]:
        return {"start_date": format_snow_datetime(now + start), "end_date": format_snow_datetime(now + end)}

    closed = {"state": "3", "close_code": "successful", "work_end": format_snow_datetime(now)}
    return [
        ("acme", "CHG0030001", "db", [("reschedule", when(3 * h, 4 * h)), ("start", {"state": "-1",
            **when(-h / 6, h)}), ("close", closed)]),
        ("acme", "CHG0030002", "net", [("overrun", {"state": "-1", **when(-2 * h, -h / 60)}),
            ("close", closed)]),
        ("acme", "CHG0030003", "db", [("reroute", {"assignment_group": "e" * 32}),
            ("start", {"state": "-1", **when(-h / 6, h)}), ("reroute", {"assignment_group": "d" * 32})]),
        ("globex", "CHG0040001", "db", [("reschedule", when(5 * h, 6 * h)), ("cancel", {"state": "4"})]),
        ("globex", "CHG0040002", "net", [("start", {"state": "-1", **when(-h / 6, h)}),
            ("overrun", when(-2 * h, -h / 60))]),
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_every_message_is_in_a_channel_its_window_is_routed_to(desk, seed: int | None) -> None:  # type: ignore[no-untyped-def]
    acme, globex, slack, app = desk
    now = datetime.now(timezone.utc).replace(microsecond=0)
    groups = {"db": "d" * 32, "net": "e" * 32}
    tickets: list[Ticket] = []
    steps: list[tuple[Ticket, Callable[[], None]]] = []
    for i, (source, number, group, script) in enumerate(scripts(now)):
        snow = acme if source == "acme" else globex
        t = Ticket(snow, source, number, group)
        ci = snow.put_record("cmdb_ci", {"name": f"host{i}"})
        rec = snow.put_record(
            "change_request",
            make_change(
                number,
                short_description=f"work on host{i}",
                start=now + timedelta(hours=2),
                end=now + timedelta(hours=3),
                cmdb_ci=ci["sys_id"],
                assignment_group=groups[group],
            ),
        )
        t.sys_id = rec["sys_id"]
        tickets.append(t)
        for _name, fields in script:

            def step(t: Ticket = t, fields: dict[str, str] = fields) -> None:
                t.snow.update_record("change_request", t.sys_id, **fields)
                if "assignment_group" in fields:
                    t.group = "net" if fields["assignment_group"] == groups["net"] else "db"

            steps.append((t, step))
    # the audit's order: everything announced (and silenced) in the first cycle
    for t in tickets:
        t.ever |= t.routed()
    cycle(app)
    check_isolation(slack, tickets, app)
    if seed is not None:  # interleave the tickets' steps, each ticket's own steps in order
        rng = random.Random(seed)
        queues = {id(t): [s for tt, s in steps if tt is t] for t in tickets}
        order = []
        while any(queues.values()):
            t = rng.choice([t for t in tickets if queues[id(t)]])
            order.append((t, queues[id(t)].pop(0)))
        steps = order
    for t, step in steps:
        step()
        t.ever |= t.routed()
        cycle(app)
        check_isolation(slack, tickets, app)
    cycle(app)  # a quiet cycle changes nothing
    check_isolation(slack, tickets, app)
    depth, _ = app.store.outbox_stats(datetime.now(timezone.utc))
    assert depth == 0
