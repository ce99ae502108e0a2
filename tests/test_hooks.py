"""The pure parts of push (issue 14): the signature, the hint, the queue, the limits, and the rule
that a re-read older than what is stored is skipped. Times are given, never read."""

from __future__ import annotations

import logging

import pytest

from connector.hooks.hint import Hint, parse_hint
from connector.hooks.limits import RefusalLog, ReplayGuard, TokenBucket
from connector.hooks.queue import HintQueue
from connector.hooks.signature import check_bearer, check_signature, decode_mac, sign, timestamp_seconds
from connector.servicenow.lookback import is_older

KEY = "0123456789abcdef0123456789abcdef"
STAMP = "1700000000000"
BODY = b'{"table":"change_request","sys_id":"9d385017c611228701d22104cc95c371"}'
#: docs/push.md gives this vector to check the Business Rule against:
#: new CertificateEncryption().generateMac(gs.base64Encode(KEY), "HmacSHA256", STAMP + "." + BODY)
VECTOR = "qg7BXMDIqWn8vZa5B6fwq+nvevKQI98uz0viaSdmMeM="
NOW = 1_700_000_000.0


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- signature --------------------------------------------------------------------------------------
def test_the_signature_is_what_servicenow_computes() -> None:
    assert sign(KEY, STAMP, BODY) == f"v1={VECTOR}"
    for form in (VECTOR, f"v1={VECTOR}", f"sha256={VECTOR}", decode_mac(VECTOR).hex()):  # type: ignore[union-attr]
        assert check_signature(KEY, STAMP, form, BODY, now=NOW, window=300) is None, form


def test_hex_signatures_with_githubs_prefix_are_read() -> None:
    github = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert decode_mac(github) == bytes.fromhex(github[7:])


@pytest.mark.parametrize(
    ("stamp", "signature", "body", "now", "expected"),
    [
        (STAMP, VECTOR, BODY, NOW + 299, None),
        (STAMP, VECTOR, BODY, NOW - 299, None),  # the sender's clock is ahead: fine within the window
        ("1700000000", sign(KEY, "1700000000", BODY), BODY, NOW, None),  # seconds
        (STAMP, VECTOR, BODY, NOW + 301, "expired"),
        (STAMP, VECTOR, BODY + b" ", NOW, "unauthorized"),
        ("1700000000001", VECTOR, BODY, NOW, "unauthorized"),  # the timestamp is signed
        ("", VECTOR, BODY, NOW, "unauthorized"),
        (STAMP, "", BODY, NOW, "unauthorized"),
        (STAMP, "v1=not base64!", BODY, NOW, "unauthorized"),
        ("17e11", VECTOR, BODY, NOW, "unauthorized"),
        # a wrong signature on an old request says unauthorized: only a signed request learns more
        ("1600000000000", VECTOR, BODY, NOW, "unauthorized"),
    ],
)
def test_check_signature(stamp: str, signature: str, body: bytes, now: float, expected: str | None) -> None:
    assert check_signature(KEY, stamp, signature, body, now=now, window=300) == expected


def test_bearer() -> None:
    assert check_bearer(KEY, f"Bearer {KEY}") is None
    assert check_bearer(KEY, f"bearer  {KEY} ") is None
    for wrong in ("", KEY, f"Basic {KEY}", f"Bearer {KEY[:-1]}", "Bearer ", f"Bearer {KEY}x"):
        assert check_bearer(KEY, wrong) == "unauthorized", wrong


def test_timestamps() -> None:
    assert timestamp_seconds("1700000000123") == pytest.approx(1_700_000_000.123)
    assert timestamp_seconds("1700000000") == 1_700_000_000
    for bad in ("", "-1", "1e9", "١٧٠٠", "9" * 30, "12.5"):
        assert timestamp_seconds(bad) is None, bad


# -- the hint ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"table": "change_request", "sys_id": "abc123"}', Hint("abc123")),
        (
            b'{"table": "change_request", "sys_id": "abc", "state": "4", "short_description": "lie"}',
            Hint("abc"),
        ),
        (b'{"table": "task_ci", "sys_id": "row1", "task": "chg1"}', Hint("chg1", cis=True)),
        (b'{"table": "task_ci", "sys_id": "row1"}', None),  # the parent is what is read again
        (b'{"table": "incident", "sys_id": "abc"}', None),
        (b'{"sys_id": "abc"}', None),
        (b'{"table": "change_request", "sys_id": "a,b"}', None),  # would widen the IN query
        (b'{"table": "change_request", "sys_id": "a^ORactive=true"}', None),
        (b'{"table": "change_request", "sys_id": ""}', None),
        (b'{"table": "change_request", "sys_id": 7}', None),
        (b'["change_request", "abc"]', None),
        (b"\xff\xfe", None),
        (b"[" * 100_000, None),
    ],
)
def test_parse_hint(body: bytes, expected: Hint | None) -> None:
    assert parse_hint(body, "change_request") == expected


# -- the queue --------------------------------------------------------------------------------------
def test_a_burst_for_one_record_is_one_read_and_rounds_are_paced() -> None:
    clock = Clock()
    q = HintQueue(clock, gather=0.05, pace=1.0)
    assert q.due_at() is None and q.take() == []
    for _ in range(100):
        assert q.add(Hint("a"))
    assert q.ready.is_set() and len(q) == 1
    assert q.due_at() == pytest.approx(100.05)
    assert q.take() == []  # gathering
    clock.t = 100.05
    assert q.take() == [Hint("a")]
    q.add(Hint("a"))
    q.add(Hint("b", cis=True))
    q.add(Hint("a", cis=True))  # a task_ci hint for a pending change: its CIs too
    clock.t = 100.5
    assert q.take() == []  # paced: one round a second
    assert q.due_at() == pytest.approx(101.05)
    clock.t = 101.05
    assert q.take() == [Hint("a", cis=True), Hint("b", cis=True)]


def test_a_full_queue_refuses_new_records_but_coalesces_known_ones() -> None:
    q = HintQueue(Clock(), capacity=2)
    assert q.add(Hint("a")) and q.add(Hint("b"))
    assert not q.add(Hint("c"))
    assert q.add(Hint("a"))
    assert q.clear() == 2 and len(q) == 0


def test_a_hundred_records_in_a_second_make_two_rounds() -> None:
    clock = Clock(0.0)
    q = HintQueue(clock)
    rounds = []
    for i in range(100):
        clock.t = i / 100
        q.add(Hint(f"r{i}"))
        at = q.due_at()
        if at is not None and clock.t >= at:
            rounds.append(len(q.take()))
    clock.t = 2.0
    rounds.append(len(q.take()))
    assert rounds == [6, 94]


# -- limits -----------------------------------------------------------------------------------------
def test_token_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, monotonic=clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    clock.t += 0.5
    assert [bucket.allow() for _ in range(2)] == [True, False]


def test_replay_guard_forgets_after_the_window() -> None:
    guard = ReplayGuard(window=300)
    assert guard.first_time(b"s", NOW, now=NOW)
    assert not guard.first_time(b"s", NOW, now=NOW + 299)
    assert guard.first_time(b"s", NOW, now=NOW + 301)  # its timestamp is refused as expired by then


def test_refusals_are_logged_once_per_kind_then_summarised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "connector.hooks")
    clock = Clock()
    refusals = RefusalLog(clock, every=600)
    for _ in range(5):
        refusals.refused("acme", "unauthorized", 401, "10.0.0.9")
    refusals.refused("acme", "too_large", 413, "10.0.0.9")
    refusals.refused("globex", "unauthorized", 401, "10.0.0.9")
    assert len(caplog.records) == 3
    clock.t += 601
    refusals.refused("acme", "unauthorized", 401, "10.0.0.8")
    assert len(caplog.records) == 4
    assert "5 more hints for source 'acme' refused (unauthorized)" in caplog.records[-1].getMessage()


# -- a re-read older than what is stored ------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "version", "updated", "older"),
    [
        ({"sys_mod_count": "4", "sys_updated_on": "2026-01-01 10:00:00"}, "m:5", "2026-01-01 10:00:00", True),
        (
            {"sys_mod_count": "5", "sys_updated_on": "2026-01-01 10:00:00"},
            "m:5",
            "2026-01-01 10:00:00",
            False,
        ),
        (
            {"sys_mod_count": "6", "sys_updated_on": "2026-01-01 09:59:59"},
            "m:5",
            "2026-01-01 10:00:00",
            False,
        ),
        ({"sys_mod_count": "6", "sys_updated_on": "2026-01-01 09:00:00"}, None, "2026-01-01 10:00:00", True),
        ({"sys_updated_on": "2026-01-01 10:00:01"}, None, "2026-01-01 10:00:00", False),
        ({"sys_updated_on": ""}, None, "2026-01-01 10:00:00", False),  # normalize says what is wrong
        ({"sys_updated_on": "2026-01-01 09:00:00"}, None, None, False),  # nothing stored
    ],
)
def test_is_older(raw: dict[str, str], version: str | None, updated: str | None, older: bool) -> None:
    assert is_older(raw, version, updated) is older
