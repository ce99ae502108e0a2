"""Hostile values in ticket fields, one function at a time: dates out of range, ids that are not ids,
numbers that forge log lines, control and bidi characters. Each is either a problem ticket or shown
safely; none stops anything else. (Through the real pipeline: ``test_hostile_tickets``.)"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector import logs
from connector.calendar import render_calendar
from connector.domain.reconcile import Tracked
from connector.domain.window import MaintenanceWindow, Phase, Problem, State
from connector.logs import setup_logging
from connector.servicenow import normalize as normalize_module
from connector.servicenow.mapping import SourceMapping
from connector.servicenow.normalize import clean_text, normalize_change
from connector.servicenow.query import Cursor, build_change_query
from connector.slack.render import RenderContext, render_digest

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FORGED = "CHG1\n2026-11-26T12:00:00.000Z ERROR connector.sync: forged"
CONTROLS = "\r\n\u2028\u2029\u0085\x00\x1b[31m\u202e\x7f"


def record(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "sys_id": "1c741bd70b2322007518478d83673af3",
        "number": "CHG0040007",
        "short_description": "Core router firmware upgrade",
        "start_date": "2026-11-26 17:00:00",
        "end_date": "2026-11-26 19:00:00",
        "state": "-2",
        "sys_updated_on": "2026-11-20 08:30:00",
    }
    raw.update(overrides)
    return raw


def normalize(raw: dict[str, Any]) -> MaintenanceWindow | list[Problem]:
    return normalize_change(
        raw, source="sn", mapping=SourceMapping(), base_url="https://x.example", table="change_request"
    )


def window(**overrides: Any) -> MaintenanceWindow:
    fields: dict[str, Any] = {
        "source": "sn",
        "sys_id": "a1",
        "number": "CHG1",
        "title": "t",
        "state": State.SCHEDULED,
        "planned_start": NOW + timedelta(hours=1),
        "planned_end": NOW + timedelta(hours=3),
    }
    fields.update(overrides)
    return MaintenanceWindow(**fields)


# -- dates ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("end_date", "9999-12-31 15:00:00"),  # overflows when shown in Asia/Seoul
        ("start_date", "0001-01-01 00:00:00"),  # overflows in America/*
        ("start_date", "1969-12-31 23:59:59"),
        ("end_date", "2200-01-01 00:00:00"),
        ("work_start", "0001-01-01 00:00:00"),
        ("sys_updated_on", "9999-12-31 23:59:59"),
    ],
)
def test_a_date_outside_the_supported_range_makes_a_problem_ticket(field: str, value: str) -> None:
    problems = normalize(record(**{field: value}))
    assert isinstance(problems, list)
    assert [(p.number, p.field) for p in problems] == [("CHG0040007", field)]
    assert "1970-01-01" in problems[0].message and "2199-12-31" in problems[0].message


def test_the_ends_of_the_range_are_accepted() -> None:
    w = normalize(record(start_date="1970-01-01 00:00:00", end_date="2199-12-31 23:59:59"))
    assert isinstance(w, MaintenanceWindow)


# -- ids --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sys_id",
    ["zz^bad", "a,b", "ab\r\ncd", "ab\ncd", "a b", "a/b", "é1", "x" * 65, "a\x00b", "ab\u202ecd"],
)
def test_an_id_outside_the_safe_charset_makes_a_problem_ticket(sys_id: str) -> None:
    problems = normalize(record(sys_id=sys_id))
    assert isinstance(problems, list)
    assert [(p.number, p.field) for p in problems] == [("CHG0040007", "sys_id")]
    assert "A-Za-z0-9" in problems[0].message


@pytest.mark.parametrize("sys_id", ["1c741bd70b2322007518478d83673af3", "a", "AZaz09_.:-", "x" * 64])
def test_safe_ids_are_accepted(sys_id: str) -> None:
    w = normalize(record(sys_id=sys_id))
    assert isinstance(w, MaintenanceWindow) and w.sys_id == sys_id


def test_a_bad_id_without_a_number_is_named_safely() -> None:
    problems = normalize(record(sys_id="ab\r\n" + "x" * 2_000_000, number=""))
    assert isinstance(problems, list)
    assert all(p.number.isprintable() and len(p.number) <= normalize_module.MAX_NUMBER for p in problems)


@pytest.mark.parametrize("sys_id", ["zz^bad,id", "zz,bad", "a^^b"])
def test_a_stored_cursor_on_a_bad_id_still_moves_past_it(sys_id: str) -> None:
    """A cursor saved on a rejected record (the cursor moves past every record, rejected or not)
    gives a query that continues after it instead of raising on every restart."""
    query = build_change_query("active=true", Cursor(NOW, sys_id))
    after = query.split("sys_id>", 1)[1].split("^", 1)[0]
    assert after > sys_id and "^" not in after and "," not in after
    assert after.startswith(sys_id[: min(sys_id.index(c) for c in "^," if c in sys_id)])


# -- numbers and log lines --------------------------------------------------------------------------
def test_the_number_is_cleaned_and_capped() -> None:
    w = normalize(record(number=FORGED))
    assert isinstance(w, MaintenanceWindow)
    assert "\n" not in w.number and w.number.startswith("CHG1 2026")
    w = normalize(record(number="CHG" + "9" * 2_000_000))
    assert isinstance(w, MaintenanceWindow) and len(w.number) == normalize_module.MAX_NUMBER == 40


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logs.clear_secrets()


@pytest.mark.usefixtures("_restore_logging")
@pytest.mark.parametrize("fmt", ["text", "journal", "json"])
def test_log_formatters_escape_line_breaks_and_controls_instead_of_splitting(fmt: str) -> None:
    out = io.StringIO()
    setup_logging("INFO", fmt, out, environ={})
    logging.getLogger("connector.sync").warning("rejected ticket %s%s", FORGED, CONTROLS)
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # one record, one line
    assert text.splitlines() == [text[:-1]]  # no U+2028, U+2029, U+0085 either
    line = text[:-1]
    assert all(c.isprintable() for c in line), ascii(line)
    if fmt == "json":
        assert json.loads(line)["msg"] == f"rejected ticket {FORGED}{CONTROLS}"
    else:
        assert "CHG1\\n2026-11-26T12:00:00.000Z ERROR" in line and "\\u2028\\u2029\\u0085" in line


@pytest.mark.usefixtures("_restore_logging")
def test_a_traceback_keeps_its_own_lines_but_escapes_the_rest() -> None:
    out = io.StringIO()
    setup_logging("INFO", "journal", out, environ={})
    try:
        raise ValueError("bad\u2028value")
    except ValueError:
        logging.getLogger("connector.sync").exception("cycle failed")
    lines = out.getvalue().split("\n")[:-1]
    assert lines[0] == "<3>connector.sync: cycle failed" and lines[-1] == "<3>ValueError: bad\\u2028value"
    assert all(line.startswith("<3>") for line in lines)


def test_escape_controls() -> None:
    escape_controls = logs.escape_controls
    assert escape_controls("a\nb\u202ec\x1b 점검 🔧👩\u200d💻") == "a\\nb\\u202ec\\u001b 점검 🔧👩\u200d💻"
    assert escape_controls("a\nb\tc", keep="\n") == "a\nb\\tc"


# -- cleaning -----------------------------------------------------------------------------------------
def test_clean_text_turns_every_line_break_into_a_space_on_one_line() -> None:
    assert clean_text("a\u2028b\u2029c\u0085d\r\ne") == "a b c d e"
    assert clean_text("a\u2028b", multiline=True) == "a\nb"
    assert clean_text("db\u202e01\x00\x1b[31m") == "db01[31m"


# -- one bad window in a digest or a calendar ----------------------------------------------------------
def test_one_window_that_cannot_be_rendered_is_left_out_of_the_digest() -> None:
    ctx = RenderContext(locale="en", tz=ZoneInfo("Asia/Seoul"))
    far = datetime(9999, 12, 31, 15, 0, tzinfo=UTC)
    bad = window(sys_id="bad", number="CHG0BAD", planned_end=far)
    items = [(bad, Phase.SCHEDULED)] + [
        (window(sys_id=f"w{i}", number=f"CHG{i}"), Phase.SCHEDULED) for i in range(5)
    ]
    r = render_digest(items, NOW, ctx)
    assert all(f"CHG{i}" in r.text for i in range(5)) and "CHG0BAD" not in r.text
    assert [s.split(":")[0] for s in getattr(r, "skipped", ["?"])] == ["CHG0BAD"]
    assert "OverflowError" in r.skipped[0]


def test_one_window_that_cannot_be_rendered_is_left_out_of_the_calendar(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = window(sys_id="ab\r\ncd", number="CHG0BAD", url="https://x.example/?sys_id=ab\r\ncd")
    good = window(sys_id="good", number="CHG0GOOD", url="https://x.example/?sys_id=good")
    feed = render_calendar([(Tracked(bad, Phase.SCHEDULED), 1), (Tracked(good, Phase.SCHEDULED), 1)], NOW)
    assert b"CHG0GOOD" in feed and b"CHG0BAD" not in feed
    assert any("CHG0BAD" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
