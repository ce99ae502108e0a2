"""The fault drills' scenarios: the same script (``step_a``, ``step_b``) with one fault injected where it
hurts, then the outbox drained and the row tallied (``drill_ledger``). ``SCENARIOS`` is the fault table's
list; ``pacing_burst`` runs many new windows against Slack's simulated post rate limit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from connector.simulators.servicenow import format_snow_datetime
from tests.drill.drill import CHANNEL, PASSWORD, Drill
from tests.drill.ledger import Row

# -- the script every scenario runs ------------------------------------------------------------------
#: What the script must leave in each window's thread, in order.
SCRIPT_EXPECTED: dict[str, list[str]] = {
    "CHG9000001": ["announced", "rescheduled"],
    "CHG9000002": ["announced", "started"],
    "CHG9000003": ["announced", "cancelled"],
    "CHG9000004": ["announced", "completed"],
    "CHG9000005": ["announced"],
}


def step_a(d: Drill) -> list[str]:
    """Four windows announced, cleanly."""
    ids = [d.create() for _ in range(4)]
    d.poll()
    d.drain()
    return ids


def step_b(d: Drill, ids: list[str]) -> None:
    """A reschedule, a start, a cancellation, a completion and a new window: in the source only."""
    d.reschedule(ids[0], 3)
    d.update(ids[1], state="-1", work_start=format_snow_datetime(d.time.now))
    d.update(ids[2], state="4", active="false")
    d.update(ids[3], state="0", close_code="successful")
    d.create()


Inject = Callable[[Drill], None]


def run_scenario(
    state_dir: Path,
    fault: str,
    *,
    before_poll: Inject | None = None,
    heal: Inject | None = None,
    before_deliver: Inject | None = None,
    fix: Inject | None = None,
    failing_passes: int = 0,
    drill_args: dict[str, Any] | None = None,
) -> tuple[Row, Drill]:
    """The script with one fault. ``before_poll`` injects a ServiceNow fault before step B is polled
    (the first poll may fail; ``heal`` then repairs the source; later polls must catch up);
    ``before_deliver`` injects a Slack fault before step B is delivered; ``fix`` runs after
    ``failing_passes`` delivery passes.
    The drill is returned open (the caller closes it) so tests can look further."""
    d = Drill(state_dir, **(drill_args or {}))
    try:
        ids = step_a(d)
        step_b(d, ids)
        notes: list[str] = []
        cursor_before = d.cursor()
        if before_poll is not None:
            before_poll(d)
        d.poll()
        if d.source_error():
            moved = d.cursor() != cursor_before
            notes.append(f"poll failed: cursor {'MOVED' if moved else 'held'}")
            deferred = d.app.daemon.state.sources[d.source].retry_at
            if deferred is not None:
                notes.append(f"next poll deferred {(deferred - d.time.now).total_seconds():.0f}s")
        if heal is not None:
            heal(d)
        for _ in range(5):
            if not d.source_error():
                break
            d.time.advance(600)  # past any auth back-off or Retry-After
            d.poll()
        if before_deliver is not None:
            before_deliver(d)
        for _ in range(failing_passes):
            d.deliver()
        if failing_passes:
            notes.append(f"{failing_passes} passes refused, outbox kept {d.outbox()}")
        if fix is not None:
            fix(d)
        passes = d.drain()
        waits = [w for w in d.time.waits if w >= 1]
        if waits:
            notes.append("waited " + ", ".join(f"{w:.0f}s" for w in waits[:4]))
        lookups = sum(1 for c in d.slack.calls if c.method.startswith("conversations."))
        if lookups:
            notes.append(f"{lookups} metadata lookup{'s' if lookups > 1 else ''}")
        row = d.ledger(fault, SCRIPT_EXPECTED)
        row.notes = [*notes, f"drained in {passes} pass{'es' if passes > 1 else ''}"]
        if d.outbox():
            row.notes.append(f"outbox NOT empty: {d.outbox()}")
        return row, d
    except BaseException:
        d.close()
        raise


def _sn(kind: str, count: int = 1, **kw: Any) -> Inject:
    return lambda d: d.snow.inject(kind, count=count, path_contains="change_request", **kw)


def _sl(method: str, kind: str, count: int = 1, **kw: Any) -> Inject:
    return lambda d: d.slack.inject(method, kind, count=count, **kw)


def _then(*steps: Inject) -> Inject:
    def run(d: Drill) -> None:
        for s in steps:
            s(d)

    return run


def _password(value: str) -> Inject:
    def run(d: Drill) -> None:
        d.snow.password = value

    return run


def _channel(**state: bool) -> Inject:
    return lambda d: d.slack.set_channel(CHANNEL, **state)


#: fault name -> run_scenario keyword arguments
SCENARIOS: dict[str, dict[str, Any]] = {
    "none (baseline)": {},
    "SN 429 + Retry-After 7": {"before_poll": _sn("429", retry_after=7)},
    "SN 429 + Retry-After 120": {"before_poll": _sn("429", retry_after=120)},
    "SN 500 x3": {"before_poll": _sn("500", 3)},
    "SN 502 (HTML) x3": {"before_poll": _sn("502", 3)},
    "SN 503 + Retry-After 5": {"before_poll": _sn("503", retry_after=5)},
    "SN slow > timeout x3": {
        "before_poll": _sn("slow", 3, delay=0.6),
        "drill_args": {"sn_timeout": 0.3},
    },
    "SN dropped connection x3": {"before_poll": _sn("drop", 3)},
    "SN HTML 200 (hibernating)": {"before_poll": _sn("html")},
    "SN truncated JSON": {"before_poll": _sn("truncated")},
    "SN 401 (password changed)": {"before_poll": _password("rotated-elsewhere"), "heal": _password(PASSWORD)},
    "SN 403 (ACL)": {"before_poll": _sn("403", 2)},
    "SN task_ci 503 x3": {
        "before_poll": lambda d: d.snow.inject("503", count=3, path_contains="task_ci"),
    },
    "Slack 429 + Retry-After 3": {"before_deliver": _sl("chat.postMessage", "429", retry_after=3)},
    "Slack 500 on post": {"before_deliver": _sl("chat.postMessage", "500")},
    "Slack 503 on post x3": {"before_deliver": _sl("chat.postMessage", "503", 3)},
    "Slack 500 on update": {"before_deliver": _sl("chat.update", "500", 2)},
    "Slack dropped connection": {"before_deliver": _sl("chat.postMessage", "drop", 2)},
    "Slack slow > timeout": {
        "before_deliver": _sl("chat.postMessage", "slow", delay=1.5),
        "drill_args": {"slack_timeout": 0.5},
    },
    "Slack HTML 200": {"before_deliver": _sl("chat.postMessage", "html")},
    "Slack fatal_error (HTTP 200)": {"before_deliver": _sl("chat.postMessage", "error", error="fatal_error")},
    "Slack lost response: parent": {"before_deliver": _sl("chat.postMessage", "lost_response")},
    "Slack lost response: reply": {
        "before_deliver": _then(
            _sl("chat.postMessage", "slow", delay=0.0), _sl("chat.postMessage", "lost_response")
        ),
    },
    "Slack lost response: every post": {"before_deliver": _sl("chat.postMessage", "lost_response", 6)},
    "Slack 429 on history lookup": {
        "before_deliver": _then(
            _sl("chat.postMessage", "lost_response"), _sl("conversations.history", "429", retry_after=2)
        ),
    },
    "Slack channel_not_found": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="channel_not_found"),
        "failing_passes": 3,
    },
    "Slack not_in_channel": {
        "before_deliver": _channel(member=False),
        "failing_passes": 3,
        "fix": _channel(member=True),
    },
    "Slack is_archived": {
        "before_deliver": _channel(archived=True),
        "failing_passes": 3,
        "fix": _channel(archived=False),
    },
    "Slack invalid_auth": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="invalid_auth"),
        "failing_passes": 3,
    },
    "Slack token_revoked": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="token_revoked"),
        "failing_passes": 3,
    },
    "Slack missing_scope": {
        "before_deliver": _sl("chat.postMessage", "error", 3, error="missing_scope"),
        "failing_passes": 3,
    },
}


def pacing_burst(state_dir: Path, windows: int = 20, *, post_interval: float = 1.0) -> tuple[Row, Drill]:
    """``windows`` new windows at once against Slack's 1 post/s/channel limit (simulated)."""
    d = Drill(state_dir, post_interval=post_interval, post_rate=1.0)
    try:
        for _ in range(windows):
            d.create()
        d.poll()
        start = d.time.mono
        passes = d.drain()
        calls = d.slack.calls
        posts = [c for c in calls if c.method == "chat.postMessage"]
        limited = sum(1 for c in posts if c.status == 429)
        expected = {n: ["announced"] for n in d.numbers.values()}
        row = d.ledger(f"Slack pacing: {windows} windows, interval {post_interval:g}s", expected)
        row.notes = [
            f"{len(posts) - limited} posts in {d.time.mono - start:.0f}s simulated",
            f"{limited} x 429",
            f"drained in {passes} pass{'es' if passes > 1 else ''}",
        ]
        return row, d
    except BaseException:
        d.close()
        raise
