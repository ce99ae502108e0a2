"""Hostile tickets through the real pipeline (both simulators, time injected): one of them never
stops the others, and what they carry reaches Slack, logs and terminals harmlessly.

=========================================  ==========================================================
ticket                                     behaviour
=========================================  ==========================================================
a date outside 1970-01-01 – 2199-12-31     problem ticket (number, field); the others are posted
a window that cannot be rendered           its message is set aside and named; the others posted,
(saved by an earlier version)              the digest lists the others
a sys_id with ``^``, ``,``, CR/LF, or      problem ticket (number, ``sys_id``); the cursor moves past
longer than 64                             it, so the next poll (and a restart) goes on
a number with a newline, or 2 MB long      cleaned and capped at 40: one log line per record
CI names from ``task_ci`` with bidi,       cleaned like every other ticket text (Slack, silences)
NUL, ESC
control characters in stored text          escaped by every report command
=========================================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from connector.alertmanager.plan import plan_silences
from connector.alertmanager.settings import AlertmanagerSettings
from connector.cli.main import main
from connector.domain.events import Event, EventKind
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Problem, phase_at
from connector.logs import setup_logging
from connector.simulators.servicenow import make_change
from tests.drill.drill import CHANNEL, PASSWORD, TOKEN, USER, Drill

pytestmark = pytest.mark.integration

TARGET = Target.slack(CHANNEL)
FAR = datetime(9999, 12, 31, 15, 0, tzinfo=timezone.utc)  # Asia/Seoul (the drill's zone) overflows
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def posted_numbers(d: Drill) -> set[str]:
    return {n for p in d.parents() for n in d.numbers.values() if n in p.text}


def store_as_before(d: Drill, w: MaintenanceWindow, *, announce: bool = True) -> None:
    """Save ``w`` as a version without today's checks did (state from before an upgrade), followed
    in the drill's channel, with its announcement due (``announce``)."""
    store, now = d.app.store, d.time.now
    with store.transaction():
        t = Tracked(w, phase_at(w, now))
        store.save_tracked(t)
        store.set_targets(w.key, [TARGET])
        if announce:
            store.enqueue([Event(EventKind.ANNOUNCED, now, w, t.phase)], [TARGET], now)
    d.numbers[w.sys_id] = w.number


def hostile_copy(d: Drill, of: str, /, **changes: object) -> MaintenanceWindow:
    """A copy of the stored window of ``of`` with ``changes``."""
    good = d.app.store.get_tracked((d.source, of))
    assert good is not None
    return dataclasses.replace(good.window, **changes)  # type: ignore[arg-type]


def config_for(d: Drill, path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "servicenow": {"url": d.snow.url, "username": USER, "password": PASSWORD},
                "slack": {"token": TOKEN, "channel": CHANNEL, "base_url": d.slack.base_url},
                "state": {"path": str(d.settings.state.path)},
                "health": {"enabled": False},
            }
        )
    )
    return path


def test_a_date_out_of_range_is_a_problem_ticket_and_the_other_windows_are_posted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Drill(tmp_path) as d:
        hostile = d.create("far end", end_date="9999-12-31 15:00:00")  # first: its parent was first
        others = [d.create(f"w{i}") for i in range(5)]
        d.poll()
        d.drain()
        assert posted_numbers(d) == {d.numbers[s] for s in others}
        assert d.outbox() == 0
        [problem] = d.app.store.problems()
        assert problem.number == d.numbers[hostile] and problem.problems[0].startswith(
            f"{d.numbers[hostile]}: end_date: "
        )
        d.update(hostile, short_description="still far")
        d.poll()
        said = [r.getMessage() for r in caplog.records if d.numbers[hostile] in r.getMessage()]
        assert len(said) == 1 and "end_date" in said[0] and "2199-12-31" in said[0]


def test_a_window_that_cannot_be_rendered_is_set_aside_and_the_others_are_posted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Drill(tmp_path) as d:
        ids = [d.create(f"w{i}") for i in range(6)]
        d.poll()  # not delivered yet: the first window is spoiled before the pass
        with d.app.store.transaction():
            d.app.store.save_tracked(
                Tracked(hostile_copy(d, ids[0], planned_end=FAR), phase_at_now(d, ids[0]))
            )
        d.drain()
        assert posted_numbers(d) == {d.numbers[s] for s in ids[1:]}
        assert [p.number for p in d.app.store.problems()] == [d.numbers[ids[0]]]
        assert "cannot be rendered" in d.app.store.problems()[0].problems[0]
        for _ in range(3):
            d.deliver()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and d.numbers[ids[0]] in errors[0].getMessage()  # said once

        # A reply that cannot be rendered is set aside too; the next window's reply goes out.
        spoiled = hostile_copy(d, ids[1], planned_end=FAR)
        with d.app.store.transaction():
            d.app.store.save_tracked(Tracked(spoiled, phase_at(spoiled, d.time.now)))
            d.app.store.enqueue(
                [Event(EventKind.REMINDER, d.time.now, spoiled, phase_at(spoiled, d.time.now))],
                [TARGET],
                d.time.now,
            )
        d.reschedule(ids[2], 1)
        d.poll()
        d.drain()
        assert d.outbox() == 1  # only the announcement of the first: it waits for its parent
        replies = {n: p.replies for p in d.parents() for s, n in d.numbers.items() if n in p.text}
        assert len(replies[d.numbers[ids[2]]]) == 1 and replies[d.numbers[ids[1]]] == []
        assert d.numbers[ids[1]] in {p.number for p in d.app.store.problems()}


def phase_at_now(d: Drill, sys_id: str):  # type: ignore[no-untyped-def]
    t = d.app.store.get_tracked((d.source, sys_id))
    assert t is not None
    return t.phase


def test_the_digest_leaves_out_a_window_that_cannot_be_rendered(tmp_path: Path) -> None:
    with Drill(tmp_path, first_run="digest") as d:
        ids = [d.create(f"w{i}") for i in range(5)]
        d.poll()  # the first sync: recorded silently, a digest asked for
        store_as_before(
            d, hostile_copy(d, ids[0], sys_id="0" * 32, number="CHG0HOSTILE", planned_end=FAR), announce=False
        )
        d.drain()
        [digest] = d.parents()
        assert all(d.numbers[s] in digest.text for s in ids) and "CHG0HOSTILE" not in digest.text
        preview = d.app.feeds[CHANNEL].digest_preview(d.time.now)  # `itsm-connector digest`
        assert all(d.numbers[s] in preview for s in ids) and "CHG0HOSTILE" not in preview


def test_bad_ids_are_problem_tickets_and_the_cursor_moves_past_them(tmp_path: Path) -> None:
    with Drill(tmp_path) as d:
        start = d.time.now + timedelta(days=1)
        bad = {"zz^bad,id": "CHG0BAD1", "zz\r\nbad": "CHG0BAD2", "y" * 65: "CHG0BAD3"}
        for sys_id, number in bad.items():
            d.snow.put_record(
                "change_request",
                make_change(
                    number,
                    short_description="bad id",
                    start=start,
                    end=start + timedelta(hours=2),
                    sys_id=sys_id,
                ),
            )
        good = [d.create(f"w{i}") for i in range(5)]
        d.poll()
        d.drain()
        assert d.source_error() is None and posted_numbers(d) == {d.numbers[s] for s in good}
        problems = {p.number: p.problems for p in d.app.store.problems()}
        assert set(problems) == set(bad.values())
        assert all(ps[0].startswith(f"{n}: sys_id: ") for n, ps in problems.items())
        assert d.cursor().sys_id == "zz^bad,id"  # the last record read: the next query starts after it
        d.poll()
        later = d.create("later")
        d.poll()
        d.drain()
        assert d.source_error() is None and d.numbers[later] in posted_numbers(d)
        assert d.app.calendar.render(d.time.now).count(b"BEGIN:VEVENT") == 6


def test_a_forged_number_stays_on_its_own_log_line(tmp_path: Path) -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", out, environ={})
    with Drill(tmp_path) as d:
        start = d.time.now + timedelta(days=1)
        for i, number in enumerate(
            ["CHG1\n2026-11-26T12:00:00.000Z ERROR connector.sync: forged", "C" * 2_000_000]
        ):
            d.snow.put_record(
                "change_request",
                make_change(number, short_description="x", start=start, end=None, sys_id=f"f{i}"),
            )
        d.poll()
    lines = out.getvalue().splitlines()
    assert len([line for line in lines if "rejected ticket" in line]) == 2
    assert all(re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z [A-Z]+ ", line) for line in lines), lines
    assert not [line for line in lines if "forged" in line and "rejected ticket" not in line]
    assert max(len(line) for line in lines) < 1000


def test_ci_names_from_task_ci_are_cleaned_like_every_other_ticket_text(tmp_path: Path) -> None:
    with Drill(tmp_path) as d:
        ci = d.snow.put_record("cmdb_ci", {"name": "db\u202e01\x00\x1b[31m"})["sys_id"]
        sys_id = d.create("with a hostile CI")
        d.snow.put_record("task_ci", {"task": sys_id, "ci_item": ci})
        d.poll()
        d.drain()
        t = d.app.store.get_tracked((d.source, sys_id))
        assert t is not None and t.window.cis == ("db01[31m",)
        [parent] = d.parents()
        assert not RAW.search(parent.text + str(parent.blocks))
        specs, _ = plan_silences(
            t.window, t.phase, d.time.now, AlertmanagerSettings(url="http://127.0.0.1:9")
        )
        assert specs and not RAW.search(str([m for s in specs for m in s.matchers]))


@pytest.mark.parametrize(
    "command",
    [
        ["windows"],
        ["windows", "--json"],
        ["windows", "--problems"],
        ["windows", "--problems", "--json"],
        ["status"],
        ["digest"],
        ["calendar"],
    ],
)
def test_report_commands_escape_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    hostile = "evil\x1b[2J\u202etxt.exe\x00\nforged line"
    with Drill(tmp_path / "drill") as d:
        soon = datetime.now(timezone.utc) + timedelta(hours=1)  # the commands read the real clock
        sys_id = d.create("fine", start_in=soon - d.time.now)
        d.poll()
        d.drain()
        store_as_before(
            d,
            hostile_copy(
                d, sys_id, sys_id="h1", number="CHG\x1b[31mX", title=hostile, cis=(hostile,), planned_end=FAR
            ),
        )
        d.drain()
        with d.app.store.transaction():
            problem = Problem("CHG\u202eY", "end_date", hostile)
            d.app.store.set_problems(d.source, "h2\r\n", "CHG\u202eY", [problem], d.time.now)
        config = str(config_for(d, tmp_path / "config.yaml"))
        capsys.readouterr()
        main([*command, "-c", config])
        out = capsys.readouterr().out
    assert "evil" in out or "CHG" in out  # the hostile window or problem is shown
    text = out.replace("\r\n", "\n") if command == ["calendar"] else out
    assert not RAW.search(text), ascii(out)
    if "--json" in command:
        json.loads(out)
    else:
        assert "forged line" not in [line.strip() for line in out.splitlines()]
