"""Encoded queries and the cursor: exact query text, ^NQ distribution, the signpost cap, date-times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from connector.servicenow.query import (
    Cursor,
    build_change_query,
    build_membership_query,
    filter_fields,
    format_sn_datetime,
    next_cursor,
    parse_sn_datetime,
    record_cursor,
    split_groups,
)

UTC = timezone.utc
T = datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)
X = "2026-11-26 17:00:05"
ORDER = "^ORDERBYsys_updated_on^ORDERBYsys_id"


@pytest.mark.parametrize(
    ("filter", "cursor", "expected"),
    [
        pytest.param("", None, "ORDERBYsys_updated_on^ORDERBYsys_id", id="empty filter, first sync"),
        pytest.param("type=normal", None, "type=normal" + ORDER, id="filter, first sync"),
        pytest.param(
            "",
            Cursor(T, "abc"),
            f"sys_updated_on>{X}^NQsys_updated_on={X}^sys_id>abc" + ORDER,
            id="empty filter, keyset",
        ),
        pytest.param(
            "type=normal^assignment_group=g1",
            Cursor(T, "abc"),
            f"type=normal^assignment_group=g1^sys_updated_on>{X}"
            f"^NQtype=normal^assignment_group=g1^sys_updated_on={X}^sys_id>abc" + ORDER,
            id="AND filter, keyset",
        ),
        pytest.param(
            "type=normal^ORtype=emergency",
            Cursor(T, "abc"),
            f"type=normal^ORtype=emergency^sys_updated_on>{X}"
            f"^NQtype=normal^ORtype=emergency^sys_updated_on={X}^sys_id>abc" + ORDER,
            id="^OR binds inside the group",
        ),
        pytest.param(
            "type=normal^NQtype=emergency^risk=1",
            Cursor(T, "abc"),
            f"type=normal^sys_updated_on>{X}"
            f"^NQtype=normal^sys_updated_on={X}^sys_id>abc"
            f"^NQtype=emergency^risk=1^sys_updated_on>{X}"
            f"^NQtype=emergency^risk=1^sys_updated_on={X}^sys_id>abc" + ORDER,
            id="keyset distributed over every ^NQ group",
        ),
        pytest.param(
            "type=normal^NQtype=emergency",
            Cursor(T, ""),
            f"type=normal^sys_updated_on>={X}^NQtype=emergency^sys_updated_on>={X}" + ORDER,
            id="whole-second cursor (after the signpost cap)",
        ),
        pytest.param(
            "  ^active=true^EQ  ",
            None,
            "active=true" + ORDER,
            id="stray carets and the list view's ^EQ dropped",
        ),
        pytest.param(
            "short_descriptionLIKEa^^NQb",
            Cursor(T, "abc"),
            f"short_descriptionLIKEa^^NQb^sys_updated_on>{X}"
            f"^NQshort_descriptionLIKEa^^NQb^sys_updated_on={X}^sys_id>abc" + ORDER,
            id="escaped caret is not a group separator",
        ),
    ],
)
def test_build_change_query(filter: str, cursor: Cursor | None, expected: str) -> None:
    assert build_change_query(filter, cursor) == expected


def test_build_change_query_custom_fields() -> None:
    q = build_change_query("status=planned", Cursor(T, "SF-1"), "last_modified", "uid")
    assert q == (
        f"status=planned^last_modified>{X}^NQstatus=planned^last_modified={X}^uid>SF-1"
        "^ORDERBYlast_modified^ORDERBYuid"
    )


def test_cursor_in_other_zone_is_written_as_utc() -> None:
    seoul = datetime(2026, 11, 27, 2, 0, 5, tzinfo=ZoneInfo("Asia/Seoul"))
    assert build_change_query("", Cursor(seoul, "")) == f"sys_updated_on>={X}" + ORDER


@pytest.mark.parametrize(
    "filter",
    ["active=true^ORDERBYnumber", "ORDERBYDESCsys_updated_on", "a=1^NQb=2^ORDERBYc"],
)
def test_filter_with_orderby_is_rejected(filter: str) -> None:
    with pytest.raises(ValueError, match="ORDERBY"):
        build_change_query(filter, None)
    with pytest.raises(ValueError, match="ORDERBY"):
        build_membership_query(filter, ["a"])


@pytest.mark.parametrize("filter", ["a=1^NQ", "^NQa=1", "a=1^NQ^NQb=2"])
def test_empty_nq_group_is_rejected(filter: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        build_change_query(filter, None)


def test_split_groups() -> None:
    assert split_groups("") == []
    assert split_groups("a=1^ORb=2^NQc=3") == ["a=1^ORb=2", "c=3"]


@pytest.mark.parametrize(
    ("filter", "ids", "expected"),
    [
        ("", ["a", "b"], "sys_idINa,b"),
        ("active=true", ["a"], "active=true^sys_idINa"),
        ("type=normal^NQtype=emergency", ["a", "b"], "type=normal^sys_idINa,b^NQtype=emergency^sys_idINa,b"),
    ],
)
def test_build_membership_query(filter: str, ids: list[str], expected: str) -> None:
    assert build_membership_query(filter, ids) == expected


@pytest.mark.parametrize("ids", [[], [""], ["a,b"], ["a^b"]])
def test_membership_query_refuses_ids_that_would_widen_it(ids: list[str]) -> None:
    with pytest.raises(ValueError):
        build_membership_query("active=true", ids)


def c(second: int, sys_id: str = "") -> Cursor:
    return Cursor(datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC), sys_id)


SIGNPOST = datetime(2026, 1, 1, 0, 0, 30, 700_000, tzinfo=UTC)  # the cycle started at :30.7


@pytest.mark.parametrize(
    ("current", "last", "expected"),
    [
        pytest.param(None, None, None, id="nothing yet"),
        pytest.param(c(5, "a"), None, c(5, "a"), id="empty page keeps the cursor"),
        pytest.param(None, c(10, "b"), c(10, "b"), id="first page"),
        pytest.param(c(5, "a"), c(10, "b"), c(10, "b"), id="moves forward"),
        pytest.param(c(10, "b"), c(5, "a"), c(10, "b"), id="never backwards for an older record"),
        pytest.param(c(5, "a"), c(29, "z"), c(29, "z"), id="second before the signpost's is complete"),
        pytest.param(c(5, "a"), c(30, "b"), c(30, ""), id="signpost's second capped to the whole second"),
        pytest.param(c(5, "a"), c(45, "b"), c(30, ""), id="record edited during the cycle: capped"),
        pytest.param(c(40, "a"), None, c(30, ""), id="a cursor beyond the signpost comes back to it"),
    ],
)
def test_next_cursor_never_passes_the_signpost(
    current: Cursor | None, last: Cursor | None, expected: Cursor | None
) -> None:
    assert next_cursor(current, last, SIGNPOST) == expected


def test_next_cursor_rejects_naive_signpost() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_cursor(None, None, datetime(2026, 1, 1))


def test_cursor_orders_by_time_then_sys_id_and_normalises_to_utc() -> None:
    assert c(1, "b") < c(2, "a") and c(1, "a") < c(1, "b") and c(1, "") < c(1, "a")
    seoul = Cursor(datetime(2026, 1, 1, 9, 0, 1, tzinfo=ZoneInfo("Asia/Seoul")), "a")
    assert seoul == c(1, "a") and seoul.updated_on.tzinfo is UTC
    with pytest.raises(ValueError):
        Cursor(datetime(2026, 1, 1), "a")


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC), "2026-11-26 17:00:05"),
        (datetime(2026, 11, 27, 2, 0, 5, 999_999, tzinfo=ZoneInfo("Asia/Seoul")), "2026-11-26 17:00:05"),
        (datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-8))), "2026-01-01 08:00:00"),
        (datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC), "0005-01-02 03:04:05"),
    ],
)
def test_format_sn_datetime(dt: datetime, text: str) -> None:
    assert format_sn_datetime(dt) == text


def test_format_sn_datetime_rejects_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_sn_datetime(datetime(2026, 1, 1))


def test_parse_sn_datetime_is_utc() -> None:
    assert parse_sn_datetime("2026-11-26 17:00:05") == datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)
    assert parse_sn_datetime("2024-02-29 23:59:59").day == 29


@pytest.mark.parametrize(
    "text",
    [
        "31/12/2026 25:00",  # a display value in a user's format
        "06/01/2022 04:12:43",
        "2026-02-30 00:00:00",  # right shape, not a date
        "2026-01-01 24:00:00",
        "2026-01-01T00:00:00",
        "2026-01-01 00:00:00Z",
        "2026-01-01",
        " 2026-01-01 00:00:00",
        "",
    ],
)
def test_parse_sn_datetime_rejects_with_the_bad_text(text: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_sn_datetime(text)
    assert str(e.value) == f"cannot parse {text!r} as YYYY-MM-DD HH:MM:SS (UTC)"


def test_parse_error_shortens_huge_text() -> None:
    with pytest.raises(ValueError) as e:
        parse_sn_datetime("9" * 5000)
    assert len(str(e.value)) < 150


def test_record_cursor_names_the_bad_field() -> None:
    assert record_cursor({"sys_id": "a", "sys_updated_on": X}) == Cursor(T, "a")
    with pytest.raises(ValueError, match="sys_updated_on"):
        record_cursor({"sys_id": "a"})
    with pytest.raises(ValueError, match="'uid'"):
        record_cursor({"sys_id": "a", "sys_updated_on": X}, id_field="uid")
    with pytest.raises(ValueError, match="cannot parse"):
        record_cursor({"sys_id": "a", "sys_updated_on": "11/26/2026 09:00:05 AM"})


@pytest.mark.parametrize(
    ("filter", "fields"),
    [
        ("", []),
        ("active=true", ["active"]),
        ("assignment_group.name=DB^ORtypeINnormal,standard^NQcategory=PM^EQ",
         ["assignment_group.name", "type", "category"]),
        ("stateIN-2,-1^u_customerISEMPTY^short_descriptionLIKEa^^b",
         ["state", "u_customer", "short_description"]),
        ("sys_created_onONToday@javascript:gs.beginningOfToday()^active=true^active=false",
         ["sys_created_on", "active"]),
    ],
)  # fmt: skip
def test_filter_fields(filter: str, fields: list[str]) -> None:
    assert filter_fields(filter) == fields
