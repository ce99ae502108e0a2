"""Fault injection: the real pipeline against both simulators, one fault at a time.

Every scenario of :mod:`tests.drill.scenarios` runs the same script (five windows:
announce, reschedule, start, cancel, complete) with one fault injected where it hurts, and must end
with exactly one parent per window, every event told exactly once in its thread (the announcement by
the parent itself, each later event by one reply), every parent showing its window's final state,
and the ServiceNow cursor never ahead of what was committed. Time is injected: nothing here sleeps
for a Retry-After or a backoff (only a "slow" fault costs its timeout).

``pytest -v tests/test_faults.py`` prints the expected / delivered / duplicated / lost table at the
end; ``python -m bench.fault_table`` prints the same table on its own.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.daemon import RunState, SinkWorker
from connector.errors import SinkRetryableError
from connector.health import evaluate_health
from connector.servicenow.query import record_cursor
from connector.slack.render import render_parent
from connector.wiring import render_context
from tests.drill.drill import CHANNEL, PASSWORD, Drill
from tests.drill.ledger import Row, format_table
from tests.drill.scenarios import (
    SCENARIOS,
    SCRIPT_EXPECTED,
    pacing_burst,
    run_scenario,
    step_a,
    step_b,
)

pytestmark = pytest.mark.integration

FINAL_PHASE = {
    "CHG9000001": "scheduled",
    "CHG9000002": "in_progress",
    "CHG9000003": "cancelled",
    "CHG9000004": "completed",
    "CHG9000005": "scheduled",
}
ROWS: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    verbose = request.config.getoption("verbose") > 0  # (config.get_verbosity() is pytest 8+)
    if ROWS and reporter is not None and capture is not None and verbose:
        with capture.global_and_fixture_disabled():
            reporter.write_sep("-", "fault table (python -m bench.fault_table)")
            reporter.write_line(format_table(ROWS))


def _blocks(blocks: list[dict[str, object]]) -> list[dict[str, object]]:
    return [b for b in blocks if b.get("type") != "context"]


def assert_final_state(d: Drill) -> None:
    """Every parent shows what the store says, and the store says what the script did."""
    ctx = render_context(d.settings, d.app.store, CHANNEL)
    by_number = {t.window.number: t for t in d.app.store.tracked()}
    assert {n: by_number[n].phase.value for n in FINAL_PHASE} == FINAL_PHASE
    parents = {p.metadata["event_payload"]["id"].rsplit(":", 1)[1]: p for p in d.parents() if p.metadata}
    for number, tracked in by_number.items():
        parent = parents[tracked.window.sys_id]
        want = render_parent(tracked.window, tracked.phase, d.time.now, ctx(tracked.window))
        assert (parent.text, _blocks(parent.blocks)) == (want.text, _blocks(want.blocks)), number


def assert_cursor_at_end(d: Drill) -> None:
    last = max(record_cursor(r) for r in d.snow.records("change_request"))
    assert d.cursor() == last


@pytest.mark.parametrize("fault", list(SCENARIOS))
def test_fault_scenario(tmp_path: Path, fault: str) -> None:
    row, d = run_scenario(tmp_path, fault, **SCENARIOS[fault])
    try:
        ROWS.append(row)
        assert (row.windows, row.parents, row.expected) == (5, 5, 9), row
        assert (row.delivered, row.duplicated, row.lost) == (9, 0, 0), row
        assert d.outbox() == 0, row.notes
        assert not any("MOVED" in n for n in row.notes), row.notes
        assert_final_state(d)
        assert_cursor_at_end(d)
    finally:
        d.close()


# -- ServiceNow ---------------------------------------------------------------------------------------
def _problem_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("kind", ["401", "403"])
def test_auth_failure_is_logged_once_retried_slowly_and_holds_the_cursor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        cursor, depth = d.cursor(), d.outbox()
        if kind == "401":
            d.snow.password = "rotated-by-someone"
        else:
            d.snow.inject("403", count=3)
        d.snow.reset_requests()
        caplog.clear()
        caplog.set_level(logging.INFO)
        for _ in range(14):  # 14 polls a minute apart
            d.time.advance(59)
            d.poll()
        lines = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert len(lines) == 1, [r.getMessage() for r in lines]  # no line per poll
        assert lines[0].levelno == logging.ERROR
        assert ("check servicenow.username" if kind == "401" else "grant it read") in lines[0].getMessage()
        refused = [r for r in d.snow.requests if r.status in (401, 403)]
        assert 2 <= len(refused) <= 3  # one attempt per 5 minutes, not one per poll
        assert d.cursor() == cursor and d.outbox() == depth  # nothing moved
        healthy, reasons = evaluate_health(d.app.view.health_snapshot())
        assert not healthy and "User Not" in reasons[0]

        d.snow.password = PASSWORD
        d.time.advance(300)
        d.poll()
        d.drain()
        assert any("recovered" in r.getMessage() for r in caplog.records)
        row = d.ledger(kind, SCRIPT_EXPECTED)
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (5, 9, 0, 0)
        assert_cursor_at_end(d)


def test_long_retry_after_defers_the_next_poll_instead_of_blocking_the_loop(tmp_path: Path) -> None:
    """ServiceNow's rate limits count per hour: a Retry-After of 15 minutes must not be slept inside
    the main loop (no tick, no refresh meanwhile), and no request may go out before it is over."""
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        cursor = d.cursor()
        d.snow.inject("429", retry_after=900, path_contains="change_request")
        d.time.waits.clear()
        d.poll()
        assert max(d.time.waits, default=0) <= 60  # not 900 s inside one poll
        assert d.source_error() and "900" in str(d.source_error())
        assert d.cursor() == cursor
        d.snow.reset_requests()
        for _ in range(14):
            d.time.advance(60)
            d.poll()
        assert d.snow.requests == []  # honoured: nothing sent before the 15 minutes are over
        d.time.advance(60)
        d.poll()
        d.drain()
        assert d.source_error() is None
        row = d.ledger("429 900", SCRIPT_EXPECTED)
        assert (row.delivered, row.duplicated, row.lost) == (9, 0, 0)


def test_shutdown_during_a_retry_wait_sends_no_further_request(tmp_path: Path) -> None:
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        cursor = d.cursor()
        d.snow.inject("503", count=3, path_contains="change_request")
        d.snow.reset_requests()
        d.time.on_wait = lambda seconds: d.stop.set()  # SIGTERM arrives while waiting to retry
        d.poll()
        assert len([r for r in d.snow.requests if "change_request" in r.path]) == 1
        assert d.cursor() == cursor


def test_partial_sync_keeps_every_committed_page_and_nothing_beyond(tmp_path: Path) -> None:
    """Pages of 2: the second page fails. The cursor stays at the end of the first page (committed
    with its windows and events), never further; the next poll continues from there."""
    with Drill(tmp_path, page_size=2) as d:
        ids = [d.create() for _ in range(5)]
        d.snow.inject("503", count=3, path_contains="sys_id%3E" + ids[1])
        d.poll()
        assert d.source_error()
        first_page = record_cursor(next(r for r in d.snow.records("change_request") if r["sys_id"] == ids[1]))
        assert d.cursor() == first_page
        assert len(d.app.store.tracked()) == 2
        d.time.advance(60)
        d.poll()
        d.drain()
        row = d.ledger("partial", {n: ["announced"] for n in d.numbers.values()})
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (5, 5, 0, 0)
        assert_cursor_at_end(d)


# -- Slack ------------------------------------------------------------------------------------------
PERMANENT_FAULTS = {
    "channel_not_found": ("error", "check slack.channel"),
    "not_in_channel": ("member", "invite it"),
    "is_archived": ("archived", "unarchive it"),
    "invalid_auth": ("error", "check slack.token"),
    "token_revoked": ("error", "reinstall the app"),
    "missing_scope": ("error", "add it and reinstall"),
}


@pytest.mark.parametrize("error", list(PERMANENT_FAULTS))
def test_slack_permanent_error_no_storm_one_line_then_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: str
) -> None:
    how, hint = PERMANENT_FAULTS[error]
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        d.poll()
        depth = d.outbox()
        if how == "error":
            d.slack.inject("chat.postMessage", "error", count=4, error=error)
        else:
            d.slack.set_channel(CHANNEL, **{how: how == "archived"})
        caplog.clear()
        caplog.set_level(logging.INFO)
        d.slack.reset_calls()
        for _ in range(4):
            assert d.deliver() >= 60  # backs off for a minute or more: no retry storm
        assert len(d.slack.calls) == 4  # one request per pass, then it stops
        assert d.outbox() == depth  # everything stays queued
        lines = _problem_lines(caplog)
        assert len(lines) == 1 and error in lines[0] and hint in lines[0], lines
        healthy, reasons = evaluate_health(d.app.view.health_snapshot())
        assert not healthy and any(error in r for r in reasons)

        d.create()  # one failing sink never blocks polling
        d.poll()
        assert d.outbox() == depth + 1 and d.source_error() is None

        if how != "error":
            d.slack.set_channel(CHANNEL, **{how: how != "archived"})
        d.drain()
        expected = {**SCRIPT_EXPECTED, "CHG9000006": ["announced"]}
        row = d.ledger(error, expected)
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (6, 10, 0, 0)
        assert sum("delivery recovered" in r.getMessage() for r in caplog.records) == 1
        assert evaluate_health(d.app.view.health_snapshot())[0]


@pytest.mark.parametrize(
    ("fault", "kwargs"),
    [("html", {}), ("error", {"error": "fatal_error"}), ("error", {"error": "internal_error"})],
    ids=["html-200", "fatal_error", "internal_error"],
)
def test_slack_answer_that_is_not_a_refusal_is_an_unknown_outcome_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str, kwargs: dict[str, str]
) -> None:
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        d.poll()
        d.slack.inject("chat.postMessage", fault, **kwargs)
        caplog.clear()
        d.deliver()
        assert not [r for r in caplog.records if r.exc_info], "classified, not a traceback"
        assert any("outcome of a Slack post unknown" in line for line in _problem_lines(caplog))
        d.drain()
        row = d.ledger(fault, SCRIPT_EXPECTED)
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (5, 9, 0, 0)


@pytest.mark.parametrize("which", ["parent", "reply"])
def test_lost_response_is_looked_up_by_metadata_not_posted_again(tmp_path: Path, which: str) -> None:
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        d.poll()
        if which == "reply":
            d.slack.inject("chat.postMessage", "slow", delay=0.0)  # the new window's parent goes through
        d.slack.inject("chat.postMessage", "lost_response")
        d.deliver()
        assert d.outbox() > 0
        d.slack.reset_calls()
        d.deliver()
        lookups = [c.method for c in d.slack.calls if c.method.startswith("conversations.")]
        assert lookups == ["conversations.history" if which == "parent" else "conversations.replies"]
        row = d.ledger(which, SCRIPT_EXPECTED)
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (5, 9, 0, 0)


def test_retry_after_on_a_history_lookup_is_honoured(tmp_path: Path) -> None:
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        d.poll()
        d.slack.inject("chat.postMessage", "lost_response")
        d.deliver()
        d.slack.inject("conversations.history", "429", retry_after=4)
        d.time.waits.clear()
        d.deliver()
        assert d.time.waits == [4]  # waited as told, then looked again and found it
        assert d.outbox() == 0
        row = d.ledger("history 429", SCRIPT_EXPECTED)
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (5, 9, 0, 0)


def test_slack_timeout_below_one_second_is_honoured(tmp_path: Path) -> None:
    """``slack.timeout: 0.5`` used to become 0 (non-blocking sockets): every call failed at once."""
    with Drill(tmp_path, slack_timeout=0.5) as d:
        step_a(d)
        assert d.outbox() == 0 and len(d.parents()) == 4


def test_refused_parent_is_set_aside_listed_and_retried_when_the_ticket_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Drill(tmp_path) as d:
        step_b(d, step_a(d))
        d.poll()
        d.slack.inject("chat.postMessage", "error", error="msg_blocks_too_long")  # CHG9000005's parent
        caplog.clear()
        d.drain()
        d.drain()
        problems = d.app.store.problems()
        assert [(p.number, p.problems) for p in problems] == [
            ("CHG9000005", [f"CHG9000005: slack: Slack refused the parent message in {CHANNEL}: "
                            "msg_blocks_too_long"])
        ]  # fmt: skip
        assert len([line for line in _problem_lines(caplog) if "msg_blocks_too_long" in line]) == 1
        row = d.ledger("refused", SCRIPT_EXPECTED)
        assert (row.parents, row.delivered, row.lost) == (4, 8, 1)  # every other window flowed
        assert d.outbox() == 1  # its announcement waits for it

        sys_id = next(s for s, n in d.numbers.items() if n == "CHG9000005")
        d.update(sys_id, short_description="shorter title")  # the ticket changes: tried again
        d.poll()
        d.drain()
        assert d.app.store.problems() == []
        row = d.ledger("refused", SCRIPT_EXPECTED)
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (5, 9, 0, 0)


def test_shutdown_ends_a_delivery_pass_between_posts(tmp_path: Path) -> None:
    with Drill(tmp_path, post_interval=1.0) as d:
        for _ in range(6):
            d.create()
        d.poll()
        d.time.on_wait = lambda seconds: d.stop.set()  # SIGTERM while pacing the second post
        d.deliver()
        assert len(d.parents()) == 1
        states = d.app.store.messages(f"slack:{CHANNEL}")
        assert {m.state for m in states.values()} <= {"posted", "pending"}  # nothing left in flight
        d.stop.clear()
        d.time.on_wait = None
        d.drain()
        row = d.ledger("shutdown", {n: ["announced"] for n in d.numbers.values()})
        assert (row.parents, row.delivered, row.duplicated, row.lost) == (6, 6, 0, 0)


# -- pacing -------------------------------------------------------------------------------------------
def test_burst_is_paced_at_one_post_per_second_without_429(tmp_path: Path) -> None:
    row, d = pacing_burst(tmp_path, 20, post_interval=1.0)
    try:
        ROWS.append(row)
        assert (row.windows, row.parents, row.delivered, row.duplicated, row.lost) == (20, 20, 20, 0, 0)
        posts = [c for c in d.slack.calls if c.method == "chat.postMessage"]
        # one post per window: the parent is the announcement, no reply repeats it
        assert len(posts) == 20 and all(c.status == 200 for c in posts)
    finally:
        d.close()


def test_unpaced_burst_honours_retry_after_and_loses_nothing(tmp_path: Path) -> None:
    row, d = pacing_burst(tmp_path, 20, post_interval=0.0)
    try:
        ROWS.append(row)
        assert (row.windows, row.parents, row.delivered, row.duplicated, row.lost) == (20, 20, 20, 0, 0)
        limited = [c for c in d.slack.calls if c.status == 429]
        assert limited  # the simulator enforced 1/s ...
        assert len(d.time.waits) >= len(limited) and min(d.time.waits) >= 1  # ... and we waited as told
    finally:
        d.close()


# -- the sink worker ----------------------------------------------------------------------------------
def test_wakeups_do_not_cut_a_backoff_short() -> None:
    """Each poll wakes the sinks. A sink backing off (Retry-After, permanent error) must not be
    retried by those wake-ups: that was one request per poll instead of the backoff."""
    calls: list[datetime] = []
    second = threading.Event()
    first = threading.Event()

    def deliver(now: datetime) -> None:
        calls.append(now)
        first.set()
        if len(calls) > 1:
            second.set()
        raise SinkRetryableError("slow down", retry_after=30)

    stop = threading.Event()
    worker = SinkWorker("slack:test", deliver, stop, RunState(started_at=datetime.now(timezone.utc)))
    worker.start()
    try:
        assert first.wait(5)
        for _ in range(5):
            worker.wake()
        assert not second.wait(0.3)
    finally:
        stop.set()
        worker.join(2)
    assert len(calls) == 1


def test_wakeup_after_success_delivers_at_once() -> None:
    calls: list[datetime] = []
    ran = [threading.Event(), threading.Event()]

    def deliver(now: datetime) -> None:
        calls.append(now)
        ran[min(len(calls), 2) - 1].set()

    stop = threading.Event()
    worker = SinkWorker("slack:test", deliver, stop, RunState(started_at=datetime.now(timezone.utc)))
    worker.start()
    try:
        assert ran[0].wait(5)
        worker.wake()
        assert ran[1].wait(5)
    finally:
        stop.set()
        worker.join(2)


def test_shutdown_waits_for_all_sinks_together_not_one_after_another() -> None:
    """SIGTERM: exit within 10 s. With one worker per channel plus Alertmanager, giving each stuck
    sink its own grace period added up (4 sinks x 8 s); they share one now."""
    from connector.daemon import Daemon

    stop = threading.Event()
    release = threading.Event()
    shutdown_at: list[float] = []
    all_inside = threading.Barrier(4, action=lambda: (shutdown_at.append(time.monotonic()), stop.set()))

    def deliver(now: datetime) -> None:  # every sink mid-request when SIGTERM arrives
        all_inside.wait(5)
        release.wait(10)

    daemon = Daemon([], stop=stop, shutdown_grace=0.5)
    status = RunState(started_at=datetime.now(timezone.utc))
    daemon.sinks += [SinkWorker(f"stuck{i}", deliver, stop, status) for i in range(4)]
    try:
        daemon.run()
        took = time.monotonic() - shutdown_at[0]
    finally:
        release.set()
    assert took < 1.5, took  # one shared grace period, not 4 x 0.5 s


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("header", ["Retry-After", "retry-after"])
def test_retry_after_is_read_on_429_and_503_whatever_the_header_case(status: int, header: str) -> None:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.slack_response import SlackResponse

    from connector.slack.delivery import SlackSink
    from connector.slack.render import Rendered
    from connector.store.sqlite import Store

    class Client:
        def api_call(self, method: str, **kwargs: object) -> object:
            error = "ratelimited" if status == 429 else "service_unavailable"
            resp = SlackResponse(
                client=None,
                http_verb="POST",
                api_url=method,
                req_args={},
                data={"ok": False, "error": error},
                headers={header: "17"},
                status_code=status,
            )
            raise SlackApiError(error, resp)

    waits: list[float] = []
    sink = SlackSink(
        Client(),  # type: ignore[arg-type]
        Store(":memory:"),
        CHANNEL,
        lambda w: None,  # type: ignore[arg-type,return-value]
        wait=lambda s: waits.append(s) or False,  # type: ignore[func-returns-value]
        max_rate_limit_waits=1,
    )
    with pytest.raises(SinkRetryableError) as err:
        sink.api.post(Rendered("x", []), "id", "t", None, on_definite_failure=lambda: None)
    assert waits == ([17] if status == 429 else [])  # a 429 is waited out in the pass (once here)
    assert err.value.retry_after == 17  # and the sink worker waits at least that long before the next


def test_first_run_digest_whose_response_is_lost_is_posted_once(tmp_path: Path) -> None:
    with Drill(tmp_path, first_run="digest") as d:
        for _ in range(4):
            d.create(start_in=timedelta(hours=3))
        d.poll()
        d.slack.inject("chat.postMessage", "lost_response")
        d.deliver()
        d.drain()
        digests = [p for p in d.parents() if (p.metadata or {}).get("event_type") == "itsm_digest"]
        assert len(digests) == 1 and len(d.parents()) == 1  # no flood, no second digest


def test_after_a_restart_stale_parents_are_fixed_a_few_at_a_time(tmp_path: Path) -> None:
    """A crash between a reply and its parent's update leaves the parent showing an old state;
    the first passes after a start check every parent, but edit at most SWEEP_UPDATES per pass,
    after the pass's own work, so new events never wait behind a sweep."""
    from connector.slack.delivery import SWEEP_UPDATES
    from connector.wiring import build_connector

    with Drill(tmp_path) as d:
        for _ in range(SWEEP_UPDATES + 5):
            d.create()
        d.poll()
        d.drain()
        db = sqlite3.connect(d.settings.state.path)
        db.execute("UPDATE messages SET rendered = 'as if the update never happened'")
        db.commit()
        db.close()
        d.app.close()  # "restart"
        d.app = build_connector(
            d.settings, clock=d.time.clock, monotonic=d.time.monotonic, stop=d.stop, wait=d.time.wait
        )
        d.create()
        d.poll()
        d.slack.reset_calls()
        d.deliver()
        calls = [c.method for c in d.slack.calls]
        assert calls[0] == "chat.postMessage"  # the new window first (its parent is its announcement)
        assert calls.count("chat.postMessage") == 1
        assert calls.count("chat.update") == SWEEP_UPDATES
        d.slack.reset_calls()
        d.deliver()
        assert [c.method for c in d.slack.calls] == ["chat.update"] * 5
        d.slack.reset_calls()
        d.deliver()
        assert d.slack.calls == []  # all fixed: nothing left to check or edit
