"""ServiceNowSource against `responses`: the exact requests pysnow sends, paging, and classification."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

from connector.errors import (
    ConfigError,
    SourceAuthError,
    SourceBadResponse,
    SourceError,
    SourceUnavailable,
)
from connector.servicenow.client import ServiceNowSource
from connector.servicenow.query import Cursor

BASE = "https://acme.service-now.com"
V2 = f"{BASE}/api/now/v2/table/change_request"
V1 = f"{BASE}/api/now/v1/table/change_request"
TASK_CI = f"{BASE}/api/now/v2/table/task_ci"
PASSWORD = "pa55-W0rd-xyzzy"
UTC = timezone.utc
SIGNPOST = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
FIELDS = ["number", "state", "sys_updated_on", "sys_id"]


def rec(second: int, sys_id: str, number: str = "CHG0000001") -> dict[str, str]:
    return {
        "sys_id": sys_id,
        "number": number,
        "state": "-2",
        "sys_updated_on": f"2026-11-26 10:00:{second:02d}",
    }


def cur(second: int, sys_id: str) -> Cursor:
    return Cursor(datetime(2026, 11, 26, 10, 0, second, tzinfo=UTC), sys_id)


def link(*rels: str, offset: int = 0) -> dict[str, str]:
    parts = [f'<{V2}?sysparm_offset={offset}&sysparm_limit=3>;rel="{rel}"' for rel in rels]
    return {"Link": ",".join(parts)}


def params(call: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(call.request.url).query, keep_blank_values=True))


@pytest.fixture
def rs() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def source(**kwargs: Any) -> ServiceNowSource:
    options: dict[str, Any] = {"url": BASE, "username": "svc.connector", "password": PASSWORD, "page_size": 3}
    options.update(kwargs)
    return ServiceNowSource(**options)


def fetch(src: ServiceNowSource, cursor: Cursor | None = None, filter: str = "active=true") -> list[Any]:
    return [(p.records, p.cursor) for p in src.fetch_changes(filter, cursor, FIELDS, signpost=SIGNPOST)]


# -- the request -------------------------------------------------------------------------------------
def test_request_asks_for_raw_values_bare_references_and_only_the_fields(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": [rec(5, "b")]}, headers={"X-Total-Count": "1"})
    pages = fetch(source(), cur(1, "a"), filter="type=normal^NQtype=emergency")
    assert pages == [([rec(5, "b")], cur(5, "b"))]
    p = params(rs.calls[0])
    assert p["sysparm_display_value"] == "false"
    assert p["sysparm_exclude_reference_link"] == "true"
    assert p["sysparm_suppress_pagination_header"] == "false"
    assert p["sysparm_fields"] == "number,state,sys_updated_on,sys_id"
    assert (p["sysparm_limit"], p["sysparm_offset"]) == ("3", "0")
    assert p["sysparm_query"] == (
        "type=normal^sys_updated_on>2026-11-26 10:00:01"
        "^NQtype=normal^sys_updated_on=2026-11-26 10:00:01^sys_id>a"
        "^NQtype=emergency^sys_updated_on>2026-11-26 10:00:01"
        "^NQtype=emergency^sys_updated_on=2026-11-26 10:00:01^sys_id>a"
        "^ORDERBYsys_updated_on^ORDERBYsys_id"
    )
    assert rs.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert rs.calls[0].request.headers["Accept"] == "application/json"


def test_cursor_fields_are_always_requested(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": []})
    list(source().fetch_changes("", None, ["number"], signpost=SIGNPOST))
    assert params(rs.calls[0])["sysparm_fields"] == "number,sys_updated_on,sys_id"


# -- paging ------------------------------------------------------------------------------------------
def test_keyset_paging_follows_link_next_through_a_short_acl_filtered_page(
    rs: responses.RequestsMock,
) -> None:
    # limit 3, but ACLs hid two of the first three rows: one record and a Link rel="next"
    rs.get(
        V2, json={"result": [rec(1, "a")]}, headers={**link("first", "next", "last"), "X-Total-Count": "7"}
    )
    rs.get(
        V2, json={"result": [rec(2, "b"), rec(2, "c"), rec(3, "d")]}, headers=link("first", "next", "last")
    )
    rs.get(V2, json={"result": [rec(4, "e")]}, headers={"X-Total-Count": "1"})
    pages = fetch(source())
    assert pages == [
        ([rec(1, "a")], cur(1, "a")),
        ([rec(2, "b"), rec(2, "c"), rec(3, "d")], cur(3, "d")),
        ([rec(4, "e")], cur(4, "e")),
    ]
    queries = [params(c)["sysparm_query"] for c in rs.calls]
    assert queries[0] == "active=true^ORDERBYsys_updated_on^ORDERBYsys_id"
    assert "sys_updated_on=2026-11-26 10:00:01^sys_id>a" in queries[1]  # keyset, not offset
    assert "sys_updated_on=2026-11-26 10:00:03^sys_id>d" in queries[2]
    assert [params(c)["sysparm_offset"] for c in rs.calls] == ["0", "0", "0"]


def test_empty_page_with_more_to_come_moves_the_offset_on_the_same_keyset(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": []}, headers={"X-Total-Count": "5"})  # every row of the page hidden by ACLs
    rs.get(V2, json={"result": [rec(9, "z")]}, headers={"X-Total-Count": "5"})
    pages = fetch(source(), cur(1, "a"))
    assert pages == [([], cur(1, "a")), ([rec(9, "z")], cur(9, "z"))]
    assert [params(c)["sysparm_offset"] for c in rs.calls] == ["0", "3"]
    assert params(rs.calls[0])["sysparm_query"] == params(rs.calls[1])["sysparm_query"]


def test_short_last_page_without_next_is_the_end(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": [rec(1, "a")]}, headers={"X-Total-Count": "1"})
    assert len(fetch(source())) == 1 and len(rs.calls) == 1


def test_yielded_cursor_never_passes_the_signpost(rs: responses.RequestsMock) -> None:
    late = {"sys_id": "x", "number": "CHG1", "state": "-2", "sys_updated_on": "2026-11-27 00:00:07"}
    rs.get(V2, json={"result": [late]})
    assert fetch(source(), cur(1, "a")) == [([late], Cursor(SIGNPOST, ""))]


@pytest.mark.parametrize(
    ("api", "url", "kwargs"),
    [
        ("v2 answers 200 []", V2, {"json": {"result": []}}),
        (
            "v1 answers 404 No Record found",
            V1,
            {
                "status": 404,
                "json": {
                    "error": {
                        "message": "No Record found",
                        "detail": "Record doesn't exist or ACL restricts the record retrieval",
                    },
                    "status": "failure",
                },
            },
        ),
    ],
)
def test_empty_result_is_one_empty_page(rs: responses.RequestsMock, api: str, url: str, kwargs: Any) -> None:
    rs.get(url, **kwargs)
    rs.get(url, **kwargs)
    src = source(api_version="v1" if url == V1 else "v2")
    assert fetch(src, cur(1, "a")) == [([], cur(1, "a"))], api
    assert fetch(src) == [([], None)], api
    assert len(rs.calls) == 2


def test_v1_404_on_an_acl_emptied_page_mid_scan_is_not_the_end(rs: responses.RequestsMock) -> None:
    """v1 answers 404 (and no headers) when ACLs empty a page: the total seen before says go on."""
    not_found = {"error": {"message": "No Record found", "detail": "ACL"}, "status": "failure"}
    rs.get(V1, json={"result": []}, headers={"X-Total-Count": "10"})
    rs.get(V1, status=404, json=not_found)
    rs.get(V1, json={"result": [rec(9, "z")]}, headers={"X-Total-Count": "10"})
    rs.get(V1, status=404, json=not_found)
    pages = fetch(source(api_version="v1"), cur(1, "a"))
    assert pages[-2:] == [([rec(9, "z")], cur(9, "z")), ([], cur(9, "z"))]
    assert [params(c)["sysparm_offset"] for c in rs.calls] == ["0", "3", "6", "0"]


def test_v1_404_for_a_record_that_is_not_there_is_not_an_empty_list(rs: responses.RequestsMock) -> None:
    rs.get(
        V1,
        status=404,
        json={"error": {"message": "Not found", "detail": "no such path"}, "status": "failure"},
    )
    with pytest.raises(SourceBadResponse, match="HTTP 404"):
        fetch(source(api_version="v1"))


def test_pagination_loop_when_the_instance_repeats_the_page(rs: responses.RequestsMock) -> None:
    page = {"result": [rec(1, "a"), rec(1, "b")]}
    rs.get(V2, json=page, headers=link("next"))
    rs.get(V2, json=page, headers=link("next"))  # the cursor condition was ignored
    with pytest.raises(SourceBadResponse, match="pagination loop detected"):
        fetch(source())
    assert len(rs.calls) == 2


def test_pagination_loop_when_the_instance_ignores_the_keyset(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": [rec(1, "a"), rec(2, "b"), rec(3, "c")]}, headers=link("next"))
    rs.get(V2, json={"result": [rec(1, "a"), rec(2, "b"), rec(3, "c")]}, headers=link("next"))
    pages = source().fetch_changes("", None, FIELDS, signpost=SIGNPOST)
    assert next(pages).cursor == cur(3, "c")
    with pytest.raises(SourceBadResponse, match="pagination loop detected"):
        next(pages)


def test_records_out_of_order_are_not_trusted(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": [rec(5, "a"), rec(2, "b")]})
    with pytest.raises(SourceBadResponse, match="ORDERBY"):
        fetch(source())


def test_max_pages_stops_quietly_with_the_cursor_of_what_was_read(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": [rec(1, "a")]}, headers=link("next"))
    rs.get(V2, json={"result": [rec(2, "b")]}, headers=link("next"))
    pages = list(source().fetch_changes("", None, FIELDS, signpost=SIGNPOST, max_pages=2))
    assert [p.cursor for p in pages] == [cur(1, "a"), cur(2, "b")]


# -- classification ----------------------------------------------------------------------------------
ENVELOPE_401 = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}
ENVELOPE_403 = {
    "error": {"message": "User Not Authorized", "detail": "Failed API level ACL Validation"},
    "status": "failure",
}
HIBERNATING = "<html><head><title>Instance Hibernating</title></head><body>Sign in to wake</body></html>"

FAILURES: list[Any] = [
    pytest.param({"status": 401, "json": ENVELOPE_401}, SourceAuthError, "svc.connector", id="401"),
    pytest.param({"status": 403, "json": ENVELOPE_403}, SourceAuthError, "itil", id="403"),
    pytest.param(
        {"status": 429, "json": {"error": {"message": "Too Many Requests"}}, "headers": {"Retry-After": "7"}},
        SourceUnavailable,
        "rate limit",
        id="429+Retry-After",
    ),
    pytest.param(
        {"status": 503, "body": "", "headers": {"Retry-After": "30"}}, SourceUnavailable, "503", id="503"
    ),
    pytest.param(
        {"status": 500, "json": {"error": {"message": "boom"}}}, SourceUnavailable, "boom", id="500"
    ),
    pytest.param(
        {"status": 502, "body": "<html>502</html>", "content_type": "text/html"},
        SourceUnavailable,
        "HTML",
        id="502-html",
    ),
    pytest.param(
        {"body": HIBERNATING, "content_type": "text/html"}, SourceBadResponse, "hibernating", id="html-200"
    ),
    pytest.param(
        {"body": '{"result":[{"sys_id":"a","sys_updated_on":"2026-11-26 10:00:01"},{"sys_id":"b","sys'},
        SourceBadResponse,
        "truncated",
        id="truncated-json",
    ),
    pytest.param({"body": ""}, SourceBadResponse, "truncated or invalid JSON", id="empty-body"),
    pytest.param({"json": {"records": []}}, SourceBadResponse, "result", id="no-result-key"),
    pytest.param(
        {"json": {"error": {"message": "Invalid query", "detail": "bad field"}, "status": "failure"}},
        SourceBadResponse,
        "Invalid query",
        id="error-envelope-200",
    ),
    pytest.param(
        {"status": 400, "json": {"error": {"message": "Invalid table x"}, "status": "failure"}},
        SourceBadResponse,
        "Invalid table x",
        id="400-envelope",
    ),
    pytest.param(
        {"body": requests.ConnectionError("Connection refused")}, SourceUnavailable, "refused", id="refused"
    ),
    pytest.param(
        {"body": requests.ReadTimeout("read timed out")}, SourceUnavailable, "within 30s", id="timeout"
    ),
]


@pytest.mark.parametrize(("reply", "kind", "says"), FAILURES)
def test_failures_are_classified_once_and_never_show_the_password(
    rs: responses.RequestsMock, reply: dict[str, Any], kind: type[SourceError], says: str
) -> None:
    rs.get(V2, **reply)
    with pytest.raises(SourceError) as caught:
        fetch(source(timeout=30))
    e = caught.value
    assert type(e) is kind, e
    assert says in str(e)
    whole = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    assert PASSWORD not in whole and PASSWORD not in repr(e)


def test_retry_after_is_read_on_429_and_503(rs: responses.RequestsMock) -> None:
    rs.get(V2, status=429, headers={"Retry-After": "7"})
    rs.get(V2, status=503, headers={"Retry-After": "120"})
    rs.get(V2, status=500)
    for expected in (7.0, 120.0, None):
        with pytest.raises(SourceUnavailable) as e:
            fetch(source())
        assert e.value.retry_after == expected and e.value.retryable


def test_auth_error_says_what_to_fix() -> None:
    with responses.RequestsMock() as rs:
        rs.get(V2, status=401, json=ENVELOPE_401)
        with pytest.raises(SourceAuthError) as e:
            source().check()
    assert str(e.value) == (
        "ServiceNow rejected the credentials for user 'svc.connector' (HTTP 401: User Not Authenticated: "
        "Required to provide Auth information): check servicenow.username / the password"
    )
    assert not e.value.retryable


def test_a_server_echoing_the_password_is_redacted(rs: responses.RequestsMock) -> None:
    rs.get(V2, status=400, json={"error": {"message": f"bad login {PASSWORD}"}, "status": "failure"})
    with pytest.raises(SourceBadResponse) as e:
        fetch(source())
    assert PASSWORD not in str(e.value) and "********" in str(e.value)


def test_check_reads_one_record(rs: responses.RequestsMock) -> None:
    rs.get(V2, json={"result": [{"sys_id": "a"}]})
    source().check()
    p = params(rs.calls[0])
    assert (p["sysparm_limit"], p["sysparm_fields"]) == ("1", "sys_id")


def test_check_reports_a_hibernating_instance(rs: responses.RequestsMock) -> None:
    rs.get(V2, body=HIBERNATING, content_type="text/html")
    with pytest.raises(SourceBadResponse, match="hibernating"):
        source().check()


# -- membership and affected CIs ---------------------------------------------------------------------
def test_fetch_by_ids_chunks_of_100_with_the_filter(rs: responses.RequestsMock) -> None:
    ids = [f"id{i:03d}" for i in range(250)]
    for _ in range(3):
        rs.get(V2, json={"result": [{"sys_id": "id000"}]})
    found = source(page_size=500).fetch_by_ids(ids + ids[:5], ["sys_id"], filter="active=true")
    assert len(found) == 3
    queries = [params(c)["sysparm_query"] for c in rs.calls]
    assert queries[0] == "active=true^sys_idIN" + ",".join(ids[:100]) + "^ORDERBYsys_id"
    assert queries[2] == "active=true^sys_idIN" + ",".join(ids[200:]) + "^ORDERBYsys_id"


def test_fetch_by_ids_without_ids_sends_nothing(rs: responses.RequestsMock) -> None:
    assert source().fetch_by_ids([], ["sys_id"]) == []


def test_fetch_by_ids_failure_is_an_error_not_a_withdrawal(rs: responses.RequestsMock) -> None:
    rs.get(V2, body=HIBERNATING, content_type="text/html")
    with pytest.raises(SourceBadResponse):
        source().fetch_by_ids(["a"], ["sys_id"])


def test_fetch_task_cis_by_task_ids(rs: responses.RequestsMock) -> None:
    rows = [
        {
            "task": "t1",
            "ci_item.name": "core-router-1",
            "sys_updated_on": "2026-11-26 10:00:01",
            "sys_id": "r1",
        },
        {"task": "t1", "ci_item.name": "", "sys_updated_on": "2026-11-26 10:00:02", "sys_id": "r2"},
    ]
    rs.get(TASK_CI, json={"result": rows})
    assert source().fetch_task_cis(task_ids=["t1", "t2"]) == [
        ("t1", "core-router-1", cur(1, "r1")),
        ("t1", "", cur(2, "r2")),
    ]
    p = params(rs.calls[0])
    assert p["sysparm_query"] == "taskINt1,t2^ORDERBYsys_updated_on^ORDERBYsys_id"
    assert p["sysparm_fields"] == "task,ci_item.name,sys_updated_on,sys_id"


def test_fetch_task_cis_incrementally(rs: responses.RequestsMock) -> None:
    rs.get(TASK_CI, json={"result": []})
    assert source().fetch_task_cis(updated_since=cur(1, "r1")) == []
    assert params(rs.calls[0])["sysparm_query"] == (
        "sys_updated_on>2026-11-26 10:00:01^NQsys_updated_on=2026-11-26 10:00:01^sys_id>r1"
        "^ORDERBYsys_updated_on^ORDERBYsys_id"
    )


# -- configuration and OAuth -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "ftp://acme.service-now.com",
        "acme.service-now.com",
        "https://acme.service-now.com/api/now",
        "https://acme.service-now.com/?x=1",
        "http://127.0.0.1:notaport",
        f"https://svc:{PASSWORD}@acme.service-now.com",
    ],
)
def test_bad_url_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        source(url=url)
    assert PASSWORD not in str(e.value)


def test_simulator_url_with_port(rs: responses.RequestsMock) -> None:
    rs.get("http://127.0.0.1:8081/api/now/table/change_request", json={"result": []})
    source(url="http://127.0.0.1:8081/", api_version="").check()


def test_oauth_password_grant_then_bearer(rs: responses.RequestsMock) -> None:
    token = {
        "access_token": "acc-123",
        "refresh_token": "ref-456",
        "expires_in": 1800,
        "token_type": "Bearer",
    }
    rs.post(f"{BASE}/oauth_token.do", json=token)
    rs.get(V2, json={"result": []})
    rs.get(V2, json={"result": []})
    src = source(oauth_client_id="cid", oauth_client_secret="csecret")
    src.check()
    src.check()
    assert len([c for c in rs.calls if c.request.method == "POST"]) == 1  # token reused
    form = dict(parse_qsl(str(rs.calls[0].request.body)))
    assert form == {
        "grant_type": "password",
        "username": "svc.connector",
        "password": PASSWORD,
        "client_id": "cid",
        "client_secret": "csecret",
    }
    assert rs.calls[1].request.headers["Authorization"] == "Bearer acc-123"


def test_oauth_refused_is_an_auth_error_without_secrets(rs: responses.RequestsMock) -> None:
    rs.post(
        f"{BASE}/oauth_token.do",
        status=401,
        json={"error": "server_error", "error_description": "access_denied"},
    )
    with pytest.raises(SourceAuthError) as e:
        source(oauth_client_id="cid", oauth_client_secret="csecret-long").check()
    assert "oauth_client_id" in str(e.value)
    assert PASSWORD not in str(e.value) and "csecret-long" not in str(e.value)


# -- against the simulator over loopback ---------------------------------------------------------------
@pytest.mark.integration
def test_against_the_simulator_nothing_missed_nothing_repeated_failures_classified() -> None:
    from connector.servicenow.mapping import SourceMapping
    from connector.servicenow.normalize import normalize_change
    from connector.simulators.servicenow import ServiceNowSimulator, make_change

    mapping = SourceMapping()
    start = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    with ServiceNowSimulator(username="svc.connector", password=PASSWORD) as sim:
        router = sim.put_record("cmdb_ci", {"name": "core-router-1"})["sys_id"]
        ids = []
        for i in range(9):  # three records per second: ties on the cursor's second are the normal case
            change = make_change(
                f"CHG00400{i:02d}", short_description=f"change {i}", start=start, end=start.replace(hour=19),
                cmdb_ci=router, sys_updated_on=f"2026-11-26 08:00:0{i // 3}", sys_id=f"{i:032x}",
            )  # fmt: skip
            ids.append(sim.put_record("change_request", change)["sys_id"])
        sim.put_record("task_ci", {"task": ids[0], "ci_item": router})
        hidden = {ids[1], ids[2], ids[4]}  # ACLs, applied after the limit: short pages and an empty one
        sim.hidden = lambda table, row: row.get("sys_id") in hidden

        src = ServiceNowSource(url=sim.url, username="svc.connector", password=PASSWORD, page_size=2)
        fields = mapping.fields.fields()
        pages = list(src.fetch_changes("active=true", None, fields, signpost=SIGNPOST))
        by_page = [[ids.index(r["sys_id"]) for r in p.records] for p in pages]
        assert by_page == [[0], [], [3], [5], [6, 7], [8]]  # every visible record once, in cursor order
        cursor = pages[-1].cursor
        assert cursor == Cursor(datetime(2026, 11, 26, 8, 0, 2, tzinfo=UTC), ids[8])
        assert all(e.params.get("sysparm_display_value") == "false" for e in sim.requests)

        w = normalize_change(
            pages[0].records[0], source="sn", mapping=mapping, base_url=sim.url, table="change_request"
        )
        assert not isinstance(w, list) and w.cis == ("core-router-1",) and w.planned_start == start

        # an edit moves the record past the cursor: the next cycle gets exactly that record
        sim.update_record(
            "change_request", ids[0], short_description="edited", sys_updated_on="2026-11-26 08:00:05"
        )
        again = list(src.fetch_changes("active=true", cursor, fields, signpost=SIGNPOST))
        assert [r["sys_id"] for p in again for r in p.records] == [ids[0]]

        assert {r["sys_id"] for r in src.fetch_by_ids(ids[:4], ["sys_id"], filter="active=true")} == {
            ids[0],
            ids[3],
        }
        assert src.fetch_task_cis(task_ids=[ids[0]])[0][:2] == (ids[0], "core-router-1")

        faults = [
            ("html", SourceBadResponse),
            ("truncated", SourceBadResponse),
            ("401", SourceAuthError),
            ("503", SourceUnavailable),
            ("drop", SourceUnavailable),
        ]
        for fault, kind in faults:
            sim.inject(fault)
            with pytest.raises(kind) as e:
                list(src.fetch_changes("active=true", cursor, fields, signpost=SIGNPOST))
            assert PASSWORD not in str(e.value), fault
        sim.inject("429", retry_after=4)
        with pytest.raises(SourceUnavailable) as limited:
            src.check()
        assert limited.value.retry_after == 4.0
        src.check()  # and it recovers: no state was left behind by the failures
        src.close()

        v1 = ServiceNowSource(url=sim.url, username="svc.connector", password=PASSWORD, api_version="v1")
        nothing = list(v1.fetch_changes("number=NOPE", None, fields, signpost=SIGNPOST))
        assert [(p.records, p.cursor) for p in nothing] == [([], None)]
        wrong = ServiceNowSource(url=sim.url, username="svc.connector", password="wrong-password")
        with pytest.raises(SourceAuthError) as refused:
            wrong.check()
        assert "user 'svc.connector'" in str(refused.value) and "wrong-password" not in str(refused.value)
