"""The pure Slack rendering layer: escaping, Block Kit limits, times in the display zone, both locales."""

from __future__ import annotations

import dataclasses
import json
import re
import string
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.models.blocks import Block

from connector.domain.events import Event, EventKind
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.slack.locale import CATALOGS
from connector.slack.mrkdwn import cut, escape_mrkdwn
from connector.slack.render import (
    BLOCKS_BUDGET,
    RenderContext,
    Rendered,
    format_range,
    format_time,
    render_digest,
    render_event,
    render_parent,
    slack_date,
)

UTC = timezone.utc
SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
URL = "https://example.service-now.com/change_request.do?sys_id=abc"
SILENCE_URL = "https://am.example.net/#/silences/5f1c"
NOW = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)  # 2026-11-27 02:30 KST
# 2026-11-27 02:00 KST, worked out by hand: 2026-11-26T17:00:00Z (`date -u -d @1795712400`).
START_EPOCH = 1795712400


def _w(**kw: Any) -> MaintenanceWindow:
    base: dict[str, Any] = {
        "source": "servicenow",
        "sys_id": "abc",
        "number": "CHG0000123",
        "title": "DB patch",
        "state": State.SCHEDULED,
        "planned_start": datetime(2026, 11, 26, 17, 0, tzinfo=UTC),
        "planned_end": datetime(2026, 11, 26, 19, 0, tzinfo=UTC),
        "cis": ("db01", "db02"),
        "assignment_group": "DBA Team",
        "assigned_to": "Kim Minsu",
        "url": URL,
    }
    return MaintenanceWindow(**{**base, **kw})


def _ctx(locale: str = "en", tz: ZoneInfo = SEOUL, **kw: Any) -> RenderContext:
    return RenderContext(locale, tz, **kw)


def _texts(node: Any, kind: str) -> Iterator[str]:
    """Every text of a text object of type ``kind`` anywhere in a block tree."""
    if isinstance(node, dict):
        if node.get("type") == kind and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from _texts(value, kind)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item, kind)


def _mrkdwn(r: Rendered) -> list[str]:
    return [r.text, *_texts(r.blocks, "mrkdwn")]


def _all_renders(w: MaintenanceWindow, ctx: RenderContext) -> Iterator[Rendered]:
    """Everything the renderer can make of ``w``: the parent in every phase, every reply, a digest."""
    for phase in Phase:
        yield render_parent(w, phase, NOW, ctx)
    previous = dataclasses.replace(w, planned_start=datetime(2026, 11, 26, 16, 0, tzinfo=UTC), cis=("zz",))
    for kind in EventKind:
        prev = previous if kind is EventKind.RESCHEDULED else None
        yield render_event(Event(kind, NOW, w, Phase.IN_PROGRESS, previous=prev), ctx)
    yield render_digest([(w, phase) for phase in Phase], NOW, ctx)


def _assert_within_limits(r: Rendered) -> None:
    assert 0 < len(r.text) <= 3000
    assert 0 < len(r.blocks) <= 50
    for block in r.blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()  # slack_sdk's own validators: header 150, section 3000, …
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
    for text in _mrkdwn(r):
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), "an escape entity was cut in half"
        assert not re.search("[<>]", ALLOWED_TOKEN.sub("", text)), "a <token> was cut in half"
    assert len(json.dumps(r.blocks, ensure_ascii=False)) <= BLOCKS_BUDGET


# --- catalogs ------------------------------------------------------------------------------------


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_locales_have_the_same_keys_and_placeholders() -> None:
    assert set(CATALOGS) == {"ko", "en"}
    assert CATALOGS["ko"].keys() == CATALOGS["en"].keys()
    for key, text in CATALOGS["en"].items():
        assert _placeholders(CATALOGS["ko"][key]) == _placeholders(text), key


def test_every_phase_and_event_kind_has_its_messages() -> None:
    for catalog in CATALOGS.values():
        for phase in Phase:
            assert f"badge.{phase.value}" in catalog and f"say.{phase.value}" in catalog
        for kind in EventKind:
            assert f"event.{kind.value}" in catalog


def test_unknown_locale_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="locale 'fr'"):
        RenderContext("fr", SEOUL)


# --- escaping and injection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<https://evil|click>", "&lt;https://evil|click&gt;"),
        ("R&D <@U123>", "R&amp;D &lt;@U123&gt;"),
        ("&amp;", "&amp;amp;"),
        ("*bold* _it_ ~s~ `c` \"q\" 'a'", "*bold* _it_ ~s~ `c` \"q\" 'a'"),  # nothing else is touched
        ("서버 점검 🛠️", "서버 점검 🛠️"),
    ],
)
def test_escape_mrkdwn(raw: str, escaped: str) -> None:
    assert escape_mrkdwn(raw) == escaped


INJECTIONS = ["<!channel>", "<!here>", "<@U123>", "<https://evil|click>", "&"]
TICKET_FIELDS = [
    "number", "title", "description", "assignment_group", "assigned_to", "type", "risk", "priority",
    "close_code", "source",
]  # fmt: skip
ALLOWED_TOKEN = re.compile(
    r"<(!date\^\d+\^\{date_short_pretty\} \{time\}\|[^<>|]+|https://[^<>|\s]+\|[^<>]+|!subteam\^S123)>"
)


@pytest.mark.parametrize("locale", ["ko", "en"])
@pytest.mark.parametrize("field", [*TICKET_FIELDS, "cis"])
def test_ticket_text_cannot_mention_or_link(field: str, locale: str) -> None:
    payload = f"X{field}X " + " ".join(INJECTIONS)
    value: Any = (payload, "db01 <!everyone>") if field == "cis" else payload
    w = _w(**{field: value}, state=State.CLOSED)
    ctx = _ctx(locale, silence_id="<!channel>&", silence_url=SILENCE_URL)
    seen = False
    for r in _all_renders(w, ctx):
        for text in _mrkdwn(r):
            for token in re.findall(r"<[^<>]*>", text):
                assert ALLOWED_TOKEN.fullmatch(token), f"{token!r} from {field}"
            for attack in ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil"):
                assert attack not in text
            assert "|click>" not in text  # the label of a link we did not make
            seen = seen or f"X{field}X &lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt;" in text
        assert set(_types(r.blocks)) <= {"header", "section", "context", "plain_text", "mrkdwn"}
    assert seen, f"{field} was never rendered"


def _types(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        yield node["type"]
        for value in node.values():
            yield from _types(value)
    elif isinstance(node, list):
        for item in node:
            yield from _types(item)


def test_header_is_plain_text_so_the_title_shows_as_written() -> None:
    r = render_parent(_w(title="R&D <!channel>"), Phase.SCHEDULED, NOW, _ctx())
    assert r.blocks[0]["text"] == {
        "type": "plain_text",
        "text": "🗓️ Scheduled · CHG0000123 · R&D <!channel>",
        "emoji": True,
    }
    assert "R&amp;D &lt;!channel&gt;" in r.text


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "https://x.example/a|<!channel>", "https://x.example/a b", ""],
)
def test_a_url_that_is_not_plain_http_is_not_linked(url: str) -> None:
    r = render_parent(_w(url=url), Phase.SCHEDULED, NOW, _ctx())
    assert "<!channel>" not in json.dumps(r.blocks) and "<!channel>" not in r.text
    assert "*Ticket:* CHG0000123" in r.blocks[2]["text"]["text"]


def test_ampersand_in_our_url_is_escaped_inside_the_link() -> None:
    r = render_parent(_w(url=URL + "&sysparm_view=x"), Phase.SCHEDULED, NOW, _ctx())
    assert f"<{URL}&amp;sysparm_view=x|CHG0000123>" in r.blocks[2]["text"]["text"]


# --- limits --------------------------------------------------------------------------------------

HUGE = _w(
    title="T" * 400,
    description=("A long line with & and <tags> and 한국어 and emoji 👩‍💻. " * 400)[:20_000],
    cis=tuple(f"ci-{i:03d}&<{'x' * 40}>" for i in range(500)),
    assignment_group="G&" * 300,
    assigned_to="A<" * 300,
    type="t" * 500,
    risk="r" * 500,
    priority="p" * 500,
    close_code="&" * 900,
)


@pytest.mark.parametrize("locale", ["ko", "en"])
@pytest.mark.parametrize(
    "w",
    [
        HUGE,
        dataclasses.replace(HUGE, description="&" * 20_000),
        dataclasses.replace(HUGE, description="👩‍💻" * 20_000),
    ],
    ids=["mixed", "ampersands", "emoji"],
)
def test_huge_tickets_stay_within_block_kit_limits(w: MaintenanceWindow, locale: str) -> None:
    for r in _all_renders(w, _ctx(locale, silence_id="s" * 3000, silence_url=SILENCE_URL)):
        _assert_within_limits(r)


def test_huge_ticket_points_to_the_full_text_and_counts_the_cis() -> None:
    r = render_parent(HUGE, Phase.SCHEDULED, NOW, _ctx())
    description = r.blocks[3]["text"]["text"]
    assert description.startswith("A long line with &amp; and &lt;tags&gt;")
    assert description.endswith(f"… (full text: <{URL}|CHG0000123>)")
    assert "+480 more" in r.blocks[2]["text"]["text"]
    assert "+497 more" in r.blocks[1]["text"]["text"]  # the sentence names three


def test_digest_of_many_windows_stays_within_limits_and_counts_the_rest() -> None:
    items = [(dataclasses.replace(HUGE, number=f"CHG{i:07d}"), Phase.SCHEDULED) for i in range(300)]
    r = render_digest(items, NOW, _ctx())
    _assert_within_limits(r)
    shown = sum(b["type"] == "section" for b in r.blocks)
    assert 0 < shown < 300
    assert r.blocks[-1]["elements"][0]["text"] == f"… and {300 - shown} more"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        # The prefix is 28 code points but 29 UTF-16 units (🗓 is outside the BMP): we count units, the
        # stricter of the two ways Slack might count.
        ("x" * 200, "🗓️ Scheduled · CHG0000123 · " + "x" * 120 + "…"),
        ("x" * 122, "🗓️ Scheduled · CHG0000123 · " + "x" * 120 + "…"),
        ("x" * 121, "🗓️ Scheduled · CHG0000123 · " + "x" * 121),
        ("👩‍💻" * 60, "🗓️ Scheduled · CHG0000123 · " + "👩‍💻" * 24 + "…"),  # never half an emoji
        ("x" + "👩‍💻" * 60, "🗓️ Scheduled · CHG0000123 · x" + "👩‍💻" * 23 + "…"),
        ("🇰🇷" * 60, "🗓️ Scheduled · CHG0000123 · " + "🇰🇷" * 30 + "…"),  # never half a flag
        ("x" + "🇰🇷" * 60, "🗓️ Scheduled · CHG0000123 · x" + "🇰🇷" * 29 + "…"),
    ],
)
def test_header_truncates_at_150(title: str, expected: str) -> None:
    header = render_parent(_w(title=title), Phase.SCHEDULED, NOW, _ctx()).blocks[0]["text"]["text"]
    assert header == expected
    assert len(header.encode("utf-16-le")) // 2 <= 150


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("ab <https://x.example/a|CHG1> cd", 12, "ab…"),  # not inside a link we made
        ("ab <!date^1^{time}|02:00 KST>", 20, "ab…"),
        ("ab &amp;&lt;", 9, "ab &amp;…"),
        ("ab &amp;&lt;", 8, "ab…"),  # not inside an entity
        ("e\u0301" * 4, 4, "e\u0301…"),  # not between a letter and its accent
        ("가\u11a8" * 4, 4, "가\u11a8…"),  # not between jamo
        ("ab👍🏽", 4, "ab…"),  # not between an emoji and its skin tone (👍 counts 2)
    ],
)
def test_cut_never_breaks_tokens_entities_or_characters(text: str, limit: int, expected: str) -> None:
    assert cut(text, limit) == expected


def test_header_fills_to_exactly_150() -> None:
    header = render_parent(_w(title="y" * 500), Phase.SCHEDULED, NOW, _ctx()).blocks[0]["text"]["text"]
    assert len(header.encode("utf-16-le")) // 2 == 150 and header.endswith("y…")


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "tz", "expected"),
    [
        (datetime(2026, 11, 26, 17, 0, tzinfo=UTC), SEOUL, "2026-11-27 02:00 KST"),
        (datetime(2026, 11, 26, 17, 0, tzinfo=UTC), ZoneInfo("UTC"), "2026-11-26 17:00 UTC"),
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), NEW_YORK, "2026-11-01 01:30 EDT"),  # before fall-back
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), NEW_YORK, "2026-11-01 01:30 EST"),  # the second 01:30
        (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), NEW_YORK, "2026-03-08 03:00 EDT"),  # 02:00 never happened
        (datetime(2026, 11, 26, 17, 0, tzinfo=UTC), ZoneInfo("Asia/Ho_Chi_Minh"), "2026-11-27 00:00 UTC+07"),
        (datetime(2026, 11, 26, 17, 0, tzinfo=UTC), ZoneInfo("Asia/Kathmandu"), "2026-11-26 22:45 UTC+05:45"),
        (datetime(2026, 11, 26, 17, 0, tzinfo=UTC), ZoneInfo("America/Sao_Paulo"), "2026-11-26 14:00 UTC-03"),
        (datetime(2026, 11, 27, 2, 0, tzinfo=SEOUL), ZoneInfo("UTC"), "2026-11-26 17:00 UTC"),
    ],
)
def test_format_time(instant: datetime, tz: ZoneInfo, expected: str) -> None:
    assert format_time(instant, _ctx(tz=tz)) == expected


@pytest.mark.parametrize(
    ("start", "end", "tz", "expected"),
    [
        (
            datetime(2026, 11, 26, 17, tzinfo=UTC),
            datetime(2026, 11, 26, 19, tzinfo=UTC),
            SEOUL,
            "2026-11-27 02:00–04:00 KST",
        ),
        (
            datetime(2026, 11, 26, 14, tzinfo=UTC),
            datetime(2026, 11, 26, 16, tzinfo=UTC),
            SEOUL,
            "2026-11-26 23:00 KST – 2026-11-27 01:00 KST",
        ),
        (
            datetime(2026, 11, 26, 14, tzinfo=UTC),
            datetime(2026, 11, 26, 16, tzinfo=UTC),
            ZoneInfo("UTC"),
            "2026-11-26 14:00–16:00 UTC",
        ),
        # New York falls back on 2026-11-01: same date, but the offset changed, so both are spelled out.
        (
            datetime(2026, 11, 1, 5, tzinfo=UTC),
            datetime(2026, 11, 1, 7, tzinfo=UTC),
            NEW_YORK,
            "2026-11-01 01:00 EDT – 2026-11-01 02:00 EST",
        ),
        (
            datetime(2026, 3, 8, 6, tzinfo=UTC),
            datetime(2026, 3, 8, 8, tzinfo=UTC),
            NEW_YORK,
            "2026-03-08 01:00 EST – 2026-03-08 04:00 EDT",
        ),
        (
            datetime(2026, 11, 2, 5, tzinfo=UTC),
            datetime(2026, 11, 2, 7, tzinfo=UTC),
            NEW_YORK,
            "2026-11-02 00:00–02:00 EST",
        ),
    ],
)
def test_format_range(start: datetime, end: datetime, tz: ZoneInfo, expected: str) -> None:
    assert format_range(start, end, _ctx(tz=tz)) == expected


@pytest.mark.parametrize("tz", [SEOUL, ZoneInfo("UTC"), NEW_YORK])
def test_slack_date_carries_the_epoch_and_a_display_fallback(tz: ZoneInfo) -> None:
    token = slack_date(datetime(2026, 11, 26, 17, 0, tzinfo=UTC), _ctx(tz=tz))
    match = re.fullmatch(r"<!date\^(\d+)\^\{date_short_pretty\} \{time\}\|(.+)>", token)
    assert match is not None
    assert int(match[1]) == START_EPOCH  # the same instant whatever the display zone
    assert match[2] == format_time(datetime(2026, 11, 26, 17, 0, tzinfo=UTC), _ctx(tz=tz))


def test_slack_date_in_seoul_matches_the_brief() -> None:
    assert slack_date(datetime(2026, 11, 27, 2, 0, tzinfo=SEOUL), _ctx()) == (
        "<!date^1795712400^{date_short_pretty} {time}|2026-11-27 02:00 KST>"
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 11, 27, 2, 0), _ctx())


def test_parent_shows_planned_window_in_display_zone_and_as_reader_local_tokens() -> None:
    details = render_parent(_w(), Phase.SCHEDULED, NOW, _ctx("ko")).blocks[2]["text"]["text"]
    assert details.startswith("*계획 일정:* 2026-11-27 02:00–04:00 KST (내 시간대: <!date^1795712400^")
    assert f"<!date^{START_EPOCH + 7200}^{{date_short_pretty}} {{time}}|2026-11-27 04:00 KST>" in details


# --- phases, both locales ------------------------------------------------------------------------

PHASE_SAYS = {
    Phase.PENDING: ("Not scheduled yet", "아직 일정이 확정되지 않았습니다"),
    Phase.SCHEDULED: (
        "Alerts from db01, db02 between *2026-11-27 02:00 and 04:00 KST* are expected from this planned "
        "work: acknowledge them, do not escalate.",
        "*2026-11-27 02:00부터 04:00 KST까지* db01, db02에서 발생하는 알림은 예정된 작업으로 인한 것입니다. "
        "확인(ack)만 하고 에스컬레이션하지 마세요.",
    ),
    Phase.IN_PROGRESS: ("now expected *until 2026-11-27 04:00 KST*", "2026-11-27 04:00 KST까지*"),
    Phase.OVERRUN: (
        "past its planned end (2026-11-27 04:00 KST).* Alerts from db01, db02 are still expected — "
        "check with DBA Team before escalating.",
        "에스컬레이션하기 전에 DBA Team에 확인하세요.",
    ),
    Phase.ENDED: ("Alerts from db01, db02 are live again: treat them as real.", "실제 상황입니다"),
    Phase.COMPLETED: (
        "*Work completed (successful &amp; clean).* Alerts from db01",
        "(종료 코드: successful",
    ),
    Phase.CANCELLED: ("*Change cancelled.* Alerts from db01, db02 are live again", "취소되었습니다"),
    Phase.WITHDRAWN: ("(deleted or out of the filter)", "필터에서 제외됨"),
}
BADGES = {
    Phase.SCHEDULED: ("🗓️ Scheduled", "🗓️ 예정"),
    Phase.IN_PROGRESS: ("🔧 In progress", "🔧 진행 중"),
    Phase.OVERRUN: ("⚠️ Overrun", "⚠️ 초과"),
    Phase.ENDED: ("✅ Ended", "✅ 종료"),
    Phase.COMPLETED: ("✅ Completed", "✅ 완료"),
    Phase.CANCELLED: ("🚫 Cancelled", "🚫 취소"),
    Phase.WITHDRAWN: ("↩️ Withdrawn", "↩️ 철회"),
}


@pytest.mark.parametrize(("locale", "index"), [("en", 0), ("ko", 1)])
@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_renders_in_both_locales(phase: Phase, locale: str, index: int) -> None:
    w = _w(close_code="successful & clean")
    r = render_parent(w, phase, NOW, _ctx(locale))
    _assert_within_limits(r)
    if phase in BADGES:
        assert r.blocks[0]["text"]["text"].startswith(f"{BADGES[phase][index]} · CHG0000123 · DB patch")
    assert PHASE_SAYS[phase][index] in r.blocks[1]["text"]["text"]
    assert PHASE_SAYS[phase][index] in r.text
    for text in _mrkdwn(r):
        assert "{" not in re.sub(r"<!date\^[^>]*>", "", text), "an unfilled placeholder"
    updated = "Updated 2026-11-27 02:30 KST" if locale == "en" else "2026-11-27 02:30 KST 업데이트"
    assert r.blocks[-1]["elements"][0]["text"] == updated


def test_emoji_and_korean_titles_survive() -> None:
    title = "서버 점검 🛠️ 👩‍💻 DB & 네트워크"
    r = render_parent(_w(title=title), Phase.IN_PROGRESS, NOW, _ctx("ko"))
    assert r.blocks[0]["text"]["text"] == f"🔧 진행 중 · CHG0000123 · {title}"
    assert "서버 점검 🛠️ 👩‍💻 DB &amp; 네트워크" in r.text


@pytest.mark.parametrize(
    ("silence_id", "silence_url", "line"),
    [
        ("5f1c", SILENCE_URL, f"*Alertmanager silence:* <{SILENCE_URL}|5f1c>"),
        ("5f1c", None, "*Alertmanager silence:* 5f1c"),
        (None, SILENCE_URL, None),
    ],
)
def test_silence_line(silence_id: str | None, silence_url: str | None, line: str | None) -> None:
    ctx = _ctx(silence_id=silence_id, silence_url=silence_url)
    details = render_parent(_w(), Phase.IN_PROGRESS, NOW, ctx).blocks[2]["text"]["text"]
    if line is None:
        assert "silence" not in details
    else:
        assert line in details.split("\n")


def test_actual_times_when_present() -> None:
    started = _w(actual_start=datetime(2026, 11, 26, 17, 5, tzinfo=UTC))
    both = dataclasses.replace(started, actual_end=datetime(2026, 11, 26, 18, 50, tzinfo=UTC))
    assert "*Actual:* started 2026-11-27 02:05 KST" in _details(started)
    assert "*Actual:* 2026-11-27 02:05–03:50 KST" in _details(both)
    assert "Actual" not in _details(_w())


def _details(w: MaintenanceWindow) -> str:
    text: str = render_parent(w, Phase.IN_PROGRESS, NOW, _ctx()).blocks[2]["text"]["text"]
    return text


def test_window_without_times_or_cis_still_renders() -> None:
    w = _w(planned_start=None, planned_end=None, cis=(), assignment_group="", assigned_to="")
    for locale in ("en", "ko"):
        for r in _all_renders(w, _ctx(locale)):
            _assert_within_limits(r)
    overrun = render_parent(w, Phase.OVERRUN, NOW, _ctx()).blocks[1]["text"]["text"]
    assert "its systems (no CI listed)" in overrun and "check with the change owner" in overrun


# --- thread replies ------------------------------------------------------------------------------


def _at(h: int, m: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, h, m, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "before", "after", "expected"),
    [
        (
            "en",
            {},
            {"planned_start": _at(18), "planned_end": _at(20)},
            "🔁 Rescheduled: 2026-11-27 02:00–04:00 KST → 03:00–05:00 KST",
        ),
        (
            "en",
            {},
            {"planned_start": _at(17, day=27), "planned_end": _at(19, day=27)},
            "🔁 Rescheduled: 2026-11-27 02:00–04:00 KST → 2026-11-28 02:00–04:00 KST",
        ),
        ("en", {"cis": ("db01", "web01")}, {"cis": ("db02", "web01")}, "🔁 Rescheduled: CIs +db02 −db01"),
        (
            "ko",
            {"cis": ("db01",)},
            {"cis": ("db02",), "planned_end": _at(21)},
            "🔁 일정 변경: 2026-11-27 02:00–04:00 KST → 02:00–06:00 KST; 대상 CI +db02 −db01",
        ),
    ],
)
def test_rescheduled_reply_names_old_and_new(
    locale: str, before: dict[str, Any], after: dict[str, Any], expected: str
) -> None:
    old, new = _w(**before), _w(**{**before, **after})
    r = render_event(Event(EventKind.RESCHEDULED, NOW, new, Phase.SCHEDULED, previous=old), _ctx(locale))
    assert r.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": expected}}]
    assert r.text == f"CHG0000123 · {expected}"


def test_rescheduled_reply_caps_a_long_ci_diff() -> None:
    old, new = _w(cis=()), _w(cis=tuple(f"h{i:02d}" for i in range(25)))
    r = render_event(Event(EventKind.RESCHEDULED, NOW, new, Phase.SCHEDULED, previous=old), _ctx())
    assert r.text.endswith("CIs +h00 +h01 +h02 +h03 +h04 +h05 +h06 +h07 +h08 +h09 +15 more")


W_STARTED = _w(state=State.IMPLEMENT, actual_start=_at(17, 5), close_code="Successful")


@pytest.mark.parametrize(
    ("kind", "w", "en", "ko"),
    [
        (
            EventKind.ANNOUNCED,
            _w(),
            "📣 Announced: 2026-11-27 02:00–04:00 KST; CIs: db01, db02",
            "📣 작업 공지",
        ),
        (
            EventKind.STARTED,
            W_STARTED,
            "🔧 Started — alerts from db01, db02 expected until 2026-11-27 04:00 KST",
            "🔧 작업 시작 — 2026-11-27 04:00 KST까지 db01, db02에서",
        ),
        (
            EventKind.OVERRAN,
            W_STARTED,
            "⚠️ Past planned end 2026-11-27 04:00 KST, still in progress — check with DBA Team",
            "⚠️ 계획된 종료 시각(2026-11-27 04:00 KST)이 지났지만 아직 진행 중입니다",
        ),
        (EventKind.ENDED, W_STARTED, "✅ Ended — alerts from db01, db02 are live again", "✅ 작업 종료"),
        (
            EventKind.COMPLETED,
            W_STARTED,
            "✅ Completed (Successful) — alerts from db01, db02 are live again",
            "✅ 작업 완료 (종료 코드: Successful)",
        ),
        (
            EventKind.CANCELLED,
            _w(planned_start=_at(20)),
            "🚫 Cancelled — the work will not take place",
            "진행되지 않습니다",
        ),
        (
            EventKind.CANCELLED,
            W_STARTED,
            "🚫 Cancelled — alerts from db01, db02 are live again",
            "실제 상황입니다",
        ),
        (
            EventKind.WITHDRAWN,
            _w(planned_start=_at(20), planned_end=_at(21)),
            "↩️ Withdrawn — no longer in the change feed (deleted or out of the filter)",
            "↩️ 철회 — 변경 피드에서 더 이상 보이지 않습니다",
        ),
        (
            EventKind.WITHDRAWN,
            W_STARTED,
            "(deleted or out of the filter); alerts from db01, db02 are live again",
            "실제 상황입니다",
        ),
    ],
)
def test_event_replies(kind: EventKind, w: MaintenanceWindow, en: str, ko: str) -> None:
    for locale, expected in (("en", en), ("ko", ko)):
        r = render_event(Event(kind, NOW, w, Phase.IN_PROGRESS), _ctx(locale))
        assert expected in r.blocks[0]["text"]["text"], locale
        assert r.text.startswith("CHG0000123 · ")
        assert len(r.blocks) == 1 and r.blocks[0]["type"] == "section"
    if kind is EventKind.WITHDRAWN and w is not W_STARTED:
        assert "live again" not in render_event(Event(kind, NOW, w, Phase.WITHDRAWN), _ctx()).text


@pytest.mark.parametrize("kind", list(EventKind))
def test_mention_only_where_configured(kind: EventKind) -> None:
    mention = "<!subteam^S123>"
    r = render_event(Event(kind, NOW, W_STARTED, Phase.OVERRUN), _ctx(mention=mention))
    block = r.blocks[0]["text"]["text"]
    if kind is EventKind.OVERRAN:
        assert r.text.startswith(f"{mention} CHG0000123 · ⚠️") and block.startswith(f"{mention} ⚠️")
    else:
        assert mention not in r.text and mention not in block
    assert "<!subteam" not in render_event(Event(kind, NOW, W_STARTED, Phase.OVERRUN), _ctx()).text


# --- digest --------------------------------------------------------------------------------------


def test_digest_lists_running_first_then_upcoming_by_start() -> None:
    items = [
        (_w(number="CHG-LATER", planned_start=_at(22), planned_end=_at(23)), Phase.SCHEDULED),
        (_w(number="CHG-DONE"), Phase.COMPLETED),
        (_w(number="CHG-SOON", planned_start=_at(20), planned_end=_at(21)), Phase.SCHEDULED),
        (_w(number="CHG-RUN"), Phase.IN_PROGRESS),
        (_w(number="CHG-OVER", planned_start=_at(10), planned_end=_at(11)), Phase.OVERRUN),
    ]
    r = render_digest(items, NOW, _ctx(), title="Night shift")
    _assert_within_limits(r)
    order = [re.search(r"\|(CHG-[A-Z]+)>", b["text"]["text"])[1] for b in r.blocks if b["type"] == "section"]  # type: ignore[index]
    assert order == ["CHG-OVER", "CHG-RUN", "CHG-SOON", "CHG-LATER", "CHG-DONE"]
    assert r.blocks[0]["text"]["text"] == "Night shift"
    assert r.blocks[1]["elements"][0]["text"] == "As of 2026-11-27 02:30 KST · in progress 2 · upcoming 2"
    assert r.text.startswith("*Night shift* — As of 2026-11-27 02:30 KST")
    assert "more" not in json.dumps(r.blocks)


def test_digest_caps_the_list_and_says_how_many_more() -> None:
    items = [(_w(number=f"CHG{i:07d}"), Phase.SCHEDULED) for i in range(100)]
    r = render_digest(items, NOW, _ctx("ko"))
    _assert_within_limits(r)
    shown = sum(b["type"] == "section" for b in r.blocks)
    assert shown == 40
    assert r.blocks[-1]["elements"][0]["text"] == "… 외 60건"


def test_empty_digest() -> None:
    r = render_digest([], NOW, _ctx("ko"))
    assert r.blocks[0]["text"]["text"] == "유지보수 작업 현황"
    assert r.blocks[2]["text"]["text"] == "알릴 유지보수 작업이 없습니다."
