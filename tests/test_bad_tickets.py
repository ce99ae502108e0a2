"""Strange tickets get defined behaviour, and never stop the others.

Through the real pipeline (both simulators, time injected):

=====================================  ===============================================================
ticket                                 behaviour
=====================================  ===============================================================
scheduled, no planned start or end     rejected: logged once (number and field), ``windows --problems``
planned end before planned start       rejected, the same way
unparseable date                       rejected, naming the field and the text
unknown state value                    rejected, saying which config key maps it
draft (New) without dates              not a problem: tracked silently until it is scheduled
20,000-character description           announced; cut at 500 characters with a link to the ticket
emoji and Korean                       announced, text intact
``<!channel>``, ``<@U123>``, links      shown as text in every field: no mention, no link
in every text field
a good window edited into a bad one    keeps its last good version; listed as a problem until fixed
deleted                                withdrawn (at the next refresh of open windows)
moved out of the filter                withdrawn; closed or cancelled out of the filter: said so
=====================================  ===============================================================

A rejected ticket is retried whenever it changes; fixed, it is announced like any other.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.simulators.slack import SimMessage
from tests.drill.drill import CHANNEL, PASSWORD, TOKEN, USER, Drill

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
INJECTION = "<!channel> <@U123> <https://evil.example|click> & <#C999>"
FORBIDDEN = ("<!channel>", "<@U123>", "<https://evil", "<#C999>")


def mrkdwn(node: object) -> str:
    """Every text Slack parses as mrkdwn in a block tree (plain_text never mentions or links)."""
    if isinstance(node, list):
        return "\n".join(mrkdwn(n) for n in node)
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            return str(node.get("text", ""))
        return "\n".join(mrkdwn(v) for v in node.values())
    return ""


def parsed_text(m: SimMessage) -> str:
    return m.text + "\n" + mrkdwn(m.blocks)


def by_number(d: Drill) -> dict[str, SimMessage]:
    out = {}
    for p in d.parents():
        sys_id = ((p.metadata or {}).get("event_payload") or {}).get("id", "").rsplit(":", 1)[-1]
        if sys_id in d.numbers:
            out[d.numbers[sys_id]] = p
    return out


def problems_cli(d: Drill, tmp_path: Path) -> str:
    """``itsm-connector windows --problems`` against the drill's state database."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "servicenow": {"url": d.snow.url, "username": USER, "password": PASSWORD},
                "slack": {"token": TOKEN, "channel": CHANNEL, "base_url": d.slack.base_url},
                "state": {"path": str(d.settings.state.path)},
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "connector", "windows", "--problems", "-c", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


REJECTED: dict[str, tuple[dict[str, str], str, str]] = {
    # title: (fields, field named, words in the reason)
    "no start": ({"start_date": ""}, "start_date", "missing on a scheduled change"),
    "no end": ({"end_date": ""}, "end_date", "missing on a scheduled change"),
    "end before start": (
        {"start_date": "2026-11-28 05:00:00", "end_date": "2026-11-28 03:00:00"},
        "end_date",
        "is not after planned start",
    ),
    "impossible date": ({"start_date": "2026-02-30 10:00:00"}, "start_date", "cannot parse '2026-02-30"),
    "display-format date": ({"end_date": "11/28/2026 03:00:00 AM"}, "end_date", "YYYY-MM-DD HH:MM:SS"),
    "unknown state": ({"state": "7"}, "state", "servicenow.mapping.states"),
}


def test_rejected_tickets_are_logged_once_listed_and_retried_when_they_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with Drill(tmp_path / "drill") as d:
        good_before = d.create("good before")
        bad = {title: d.create(title, **fields) for title, (fields, _, _) in REJECTED.items()}
        good_after = d.create("good after")
        draft = d.create("draft", state="-5", start_date="", end_date="")
        d.poll()
        d.drain()

        parents = by_number(d)
        assert set(parents) == {d.numbers[good_before], d.numbers[good_after]}  # the others flowed
        lines = warnings(caplog)
        for title, (_, field, words) in REJECTED.items():
            number = d.numbers[bad[title]]
            mine = [line for line in lines if number in line]
            assert len(mine) == 1 and field in mine[0] and words in mine[0], (title, mine)
        assert not [line for line in lines if d.numbers[draft] in line]  # a draft is not a problem

        listed = problems_cli(d, tmp_path)
        for title, (_, field, _) in REJECTED.items():
            assert f"{d.numbers[bad[title]]}: {field}: " in listed, (title, listed)

        # The same problem again (another field edited, another poll): not logged again.
        caplog.clear()
        d.update(bad["no start"], short_description="still no start")
        d.poll()
        d.poll()
        assert not warnings(caplog)

        # Fixed: retried because it changed, accepted, announced; the problem is gone.
        d.update(bad["no start"], start_date="2026-11-27 11:00:00")
        d.update(bad["unknown state"], state="-2")
        d.poll()
        d.drain()
        fixed = {d.numbers[bad["no start"]], d.numbers[bad["unknown state"]]}
        assert fixed <= set(by_number(d))
        assert any("accepted now" in r.getMessage() for r in caplog.records)
        still = {p.number for p in d.app.store.problems()}
        assert still == {d.numbers[bad[t]] for t in REJECTED} - fixed


def test_long_unicode_and_injected_text_is_shown_safely(tmp_path: Path) -> None:
    with Drill(tmp_path) as d:
        ci = d.snow.put_record("cmdb_ci", {"name": f"db01 {INJECTION}"})["sys_id"]
        ci2 = d.snow.put_record("cmdb_ci", {"name": "웹서버-02 🖥️"})["sys_id"]
        group = d.snow.put_record("sys_user_group", {"name": f"DB운영팀 {INJECTION}"})["sys_id"]
        user = d.snow.put_record("sys_user", {"name": f"김민수 {INJECTION}", "user_name": "kms"})["sys_id"]
        long_text = ("점검 절차 🔧 " + INJECTION + " ") * 400  # > 20,000 characters
        assert len(long_text) > 20_000
        injected = d.create(
            f"DB 정기 점검 🔧👩‍💻 {INJECTION}",
            description=long_text,
            cmdb_ci=ci,
            assignment_group=group,
            assigned_to=user,
            type=f"normal {INJECTION}",
            risk=INJECTION,
            priority=INJECTION,
        )
        d.snow.put_record("task_ci", {"task": injected, "ci_item": ci2})
        d.poll()
        d.reschedule(injected, 2)  # a reply that quotes the window again
        d.update(injected, state="-1")
        d.poll()
        d.drain()
        d.update(injected, state="0", close_code=INJECTION)
        d.poll()
        d.drain()

        assert d.outbox() == 0 and d.app.store.problems() == []  # Slack accepted every message
        parent = by_number(d)[d.numbers[injected]]
        messages = [parent, *parent.replies]
        assert len(parent.replies) == 3  # rescheduled, started, completed (the parent announced it)
        for m in messages:
            text = parsed_text(m)
            for token in FORBIDDEN:
                assert token not in text, (token, text[:500])
        shown = parsed_text(parent)
        assert "&lt;!channel&gt;" in shown and "&lt;@U123&gt;" in shown  # visible, as text
        header = parent.blocks[0]["text"]
        assert header["type"] == "plain_text" and "DB 정기 점검 🔧👩‍💻" in header["text"]
        assert "웹서버-02 🖥️" in shown and "김민수" in shown and "DB운영팀" in shown
        description = next(b for b in parent.blocks[3:] if b.get("type") == "section")["text"]["text"]
        assert len(description) < 1_000 and "점검 절차 🔧" in description  # cut, with a link to the rest
        assert d.snow.url in description
        assert len(str(parent.blocks)) < 13_000


def test_a_good_window_edited_into_a_bad_one_keeps_its_last_good_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Drill(tmp_path) as d:
        sys_id = d.create("good")
        d.poll()
        d.drain()
        before = d.app.store.tracked()[0]
        d.update(sys_id, start_date="2026-11-29 05:00:00", end_date="2026-11-29 04:00:00")
        d.poll()
        d.drain()
        after = d.app.store.tracked()[0]
        assert after.window.schedule() == before.window.schedule() and after.phase == before.phase
        assert [p.number for p in d.app.store.problems()] == [d.numbers[sys_id]]
        assert by_number(d)[d.numbers[sys_id]].replies == []  # nothing told about the bad edit
        d.update(sys_id, end_date="2026-11-29 07:00:00")
        d.poll()
        d.drain()
        assert d.app.store.problems() == []
        replies = by_number(d)[d.numbers[sys_id]].replies
        assert len(replies) == 1 and "rescheduled" in replies[0].text.lower()


@pytest.mark.parametrize(
    ("leave", "final"),
    [
        ("deleted", "withdrawn"),
        ("out of the filter", "withdrawn"),
        ("closed out of the filter", "completed"),
        ("cancelled out of the filter", "cancelled"),
    ],
)
def test_a_ticket_that_leaves_the_feed_is_withdrawn_or_finished(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, leave: str, final: str
) -> None:
    caplog.set_level(logging.INFO)
    with Drill(tmp_path, filter="active=true^type=normal") as d:
        sys_id, other = d.create("leaving"), d.create("staying")
        d.poll()
        d.drain()
        number = d.numbers[sys_id]
        changes: dict[str, Any] = {
            "out of the filter": {"type": "standard"},
            "closed out of the filter": {"state": "3", "active": "false", "close_code": "successful"},
            "cancelled out of the filter": {"state": "4", "active": "false"},
        }
        if leave == "deleted":
            d.snow.delete_record("change_request", sys_id)
        else:
            d.update(sys_id, **changes[leave])
        d.poll()  # the feed no longer returns it: nothing happens yet
        assert d.app.store.get_tracked((d.source, sys_id)).phase.value == "scheduled"
        d.app.daemon.refresh()
        d.drain()
        tracked = d.app.store.get_tracked((d.source, sys_id))
        assert tracked.phase.value == final
        replies = by_number(d)[number].replies
        assert [r.text.lower().count(final[:6]) > 0 for r in replies] == [True], [r.text for r in replies]
        assert by_number(d)[d.numbers[other]].replies == []  # the other window is untouched
        if final == "withdrawn":
            assert any(number in r.getMessage() and "left" in r.getMessage() for r in caplog.records)
