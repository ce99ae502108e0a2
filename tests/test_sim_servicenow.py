"""The ServiceNow Table API simulator, driven over real HTTP with requests and pysnow."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pysnow
import pytest
import requests

from connector.simulators.servicenow import RequestLogEntry, ServiceNowSimulator, make_change

AUTH = ("admin", "secret")
T0 = datetime(2024, 6, 10, 10, 0, tzinfo=timezone.utc)
CHANGES = "/api/now/v2/table/change_request"
NOT_FOUND = {
    "error": {
        "message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval",
    },
    "status": "failure",
}
UNAUTHENTICATED = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def get(sim: ServiceNowSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(sim.url + path, params=params, auth=AUTH, timeout=5)


def numbers(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["number"] for row in response.json()["result"]]


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator(clock=FakeClock(T0)) as simulator:
        yield simulator


def add_changes(sim: ServiceNowSimulator, count: int) -> list[dict[str, str]]:
    return [
        sim.put_record(
            "change_request", make_change(f"CHG{i:07d}", short_description=f"c{i}", start=T0, end=None)
        )
        for i in range(count)
    ]


# --- a small, read-only world for the query tests ------------------------------------------------


def sys_id(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture(scope="module")
def world() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator(clock=FakeClock(T0)) as simulator:
        network = simulator.put_record("sys_user_group", {"sys_id": sys_id(101), "name": "Network"})["sys_id"]
        dba = simulator.put_record("sys_user_group", {"sys_id": sys_id(102), "name": "DBA"})["sys_id"]
        router = simulator.put_record("cmdb_ci", {"sys_id": sys_id(201), "name": "core-router-1"})["sys_id"]
        rows = {  # number: (state, short_description, start, priority, group, ci)
            1: ("-2", "Router firmware upgrade", T0, "1", network, router),
            2: ("-1", "Database failover", T0 + timedelta(days=1), "2", dba, ""),
            3: ("3", "Certificate rotation", None, "3", "", ""),
            4: ("4", "router reboot", T0 + timedelta(days=2), "4", network, router),
            5: ("-5", "Switch replacement", T0 + timedelta(days=3), "3", dba, ""),
        }
        for n in (3, 1, 5, 2, 4):  # insertion order differs from sys_id order on purpose
            state, title, start, priority, group, ci = rows[n]
            change = make_change(
                f"CHG{n}", short_description=title, start=start, end=None, state=state, priority=priority,
                assignment_group=group, cmdb_ci=ci, sys_id=sys_id(n),
            )  # fmt: skip
            simulator.put_record("change_request", change)
        simulator.put_record("task_ci", {"task": sys_id(1), "ci_item": router})
        yield simulator


@pytest.mark.integration
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("", [1, 2, 3, 4, 5], id="no-query-sorted-by-sys_id"),
        pytest.param("state=-2", [1], id="eq"),
        pytest.param("state!=3", [1, 2, 4, 5], id="ne"),
        pytest.param("state>-2", [2, 3, 4], id="gt-numeric"),
        pytest.param("start_date>=2024-06-11 10:00:00", [2, 4, 5], id="ge-datetime-skips-empty"),
        pytest.param("start_date<2024-06-11 10:00:00", [1], id="lt"),
        pytest.param("start_date<=2024-06-11 10:00:00", [1, 2], id="le"),
        pytest.param("short_descriptionLIKEROUTER", [1, 4], id="like-case-insensitive"),
        pytest.param("short_descriptionNOT LIKErouter", [2, 3, 5], id="not-like"),
        pytest.param("short_descriptionSTARTSWITHrouter", [1, 4], id="startswith"),
        pytest.param("short_descriptionENDSWITHrotation", [3], id="endswith"),
        pytest.param("numberINCHG2,CHG5", [2, 5], id="in"),
        pytest.param("stateNOT IN3,4", [1, 2, 5], id="not-in"),
        pytest.param("start_dateISEMPTY", [3], id="isempty"),
        pytest.param("start_dateISNOTEMPTY", [1, 2, 4, 5], id="isnotempty"),
        pytest.param("start_dateBETWEEN2024-06-11 00:00:00@2024-06-12 23:59:59", [2, 4], id="between"),
        pytest.param(f"assignment_group!={sys_id(101)}", [2, 5], id="ne-does-not-match-empty"),
        pytest.param("priority=3^state=3^ORstate=-1", [3], id="or-binds-tighter-than-and"),
        pytest.param("priority=1^NQstate=3^ORstate=-5^priority=3", [1, 3, 5], id="nq-groups"),
        pytest.param("ORDERBYDESCstart_date", [5, 4, 2, 1, 3], id="orderbydesc-empty-last"),
        pytest.param("ORDERBYstate", [5, 1, 2, 3, 4], id="orderby-numeric"),
        pytest.param("ORDERBYassignment_group.name^ORDERBYDESCnumber", [3, 5, 2, 4, 1], id="two-orderbys"),
        pytest.param("ORDERBYpriority^state!=3", [1, 2, 5, 4], id="orderby-first"),
        pytest.param("assignment_group.name=Network", [1, 4], id="dot-walk"),
        pytest.param("cmdb_ci.nameSTARTSWITHcore^state=4", [4], id="dot-walk-and"),
        pytest.param("nmber=CHG9", [1, 2, 3, 4, 5], id="unknown-field-ignored"),
        pytest.param("nmber=CHG9^ORstate=3", [3], id="unknown-field-dropped-from-or"),
        pytest.param("state=-2^EQ", [1], id="eq-terminator"),
    ],
)
def test_encoded_query(world: ServiceNowSimulator, query: str, expected: list[int]) -> None:
    assert numbers(get(world, CHANGES, sysparm_query=query)) == [f"CHG{n}" for n in expected]


@pytest.mark.integration
def test_name_value_params_stand_in_for_sysparm_query(world: ServiceNowSimulator) -> None:
    assert numbers(get(world, CHANGES, priority="3", state="-5")) == ["CHG5"]


@pytest.mark.integration
def test_invalid_query_can_return_no_rows(sim: ServiceNowSimulator) -> None:
    add_changes(sim, 2)
    assert len(numbers(get(sim, CHANGES, sysparm_query="nmber=x"))) == 2
    sim.invalid_query_returns_no_rows = True
    assert numbers(get(sim, CHANGES, sysparm_query="nmber=x")) == []
    assert len(numbers(get(sim, CHANGES, sysparm_query="number!=x"))) == 2


@pytest.mark.integration
def test_keyset_paging_visits_every_record_once_in_order(sim: ServiceNowSimulator) -> None:
    clock = FakeClock(T0)
    sim.clock = clock
    for i in range(23):
        clock.now = T0 + timedelta(seconds=i // 8)  # three timestamps shared by many records
        sim.put_record("change_request", make_change(f"CHG{i}", short_description="x", start=None, end=None))
    order = "ORDERBYsys_updated_on^ORDERBYsys_id"
    seen: list[tuple[str, str]] = []
    query = order
    while True:
        response = get(
            sim, CHANGES, sysparm_query=query, sysparm_limit=5, sysparm_fields="sys_id,sys_updated_on"
        )
        page = [(row["sys_updated_on"], row["sys_id"]) for row in response.json()["result"]]
        if not page:
            break
        seen += page
        stamp, last = page[-1]
        query = f"sys_updated_on>{stamp}^NQsys_updated_on={stamp}^sys_id>{last}^{order}"
    expected = sorted((row["sys_updated_on"], row["sys_id"]) for row in sim.records("change_request"))
    assert seen == expected
    assert len({sys_id for _, sys_id in seen}) == 23


# --- paging headers, versions, errors --------------------------------------------------------


def offsets(response: requests.Response) -> dict[str, int]:
    found = {}
    for rel, link in response.links.items():
        match = re.search(r"[?&]sysparm_offset=(\d+)", link["url"])
        assert match is not None
        found[rel] = int(match[1])
    return found


@pytest.mark.integration
def test_link_and_total_count_headers(sim: ServiceNowSimulator) -> None:
    add_changes(sim, 25)
    response = get(sim, CHANGES, sysparm_query="stateIN-2,-1", sysparm_limit=10, sysparm_offset=10)
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert response.headers["X-Total-Count"] == "25"
    assert len(response.json()["result"]) == 10
    assert offsets(response) == {"first": 0, "prev": 0, "next": 20, "last": 20}
    for link in response.links.values():
        assert link["url"].startswith(sim.url + CHANGES + "?")
        assert "sysparm_query=stateIN-2%2C-1" in link["url"] and "sysparm_limit=10" in link["url"]
    last = requests.get(response.links["last"]["url"], auth=AUTH, timeout=5)
    assert len(last.json()["result"]) == 5 and "next" not in last.links

    seen: list[str] = []
    url: str | None = f"{sim.url}{CHANGES}?sysparm_limit=7"
    while url:
        page = requests.get(url, auth=AUTH, timeout=5)
        seen += numbers(page)
        url = page.links.get("next", {}).get("url")
    assert sorted(seen) == sorted(row["number"] for row in sim.records("change_request"))
    assert len(seen) == 25


@pytest.mark.integration
def test_headers_left_out_when_one_page_or_asked(sim: ServiceNowSimulator) -> None:
    add_changes(sim, 3)
    one_page = get(sim, CHANGES, sysparm_limit=3)
    assert "Link" not in one_page.headers and one_page.headers["X-Total-Count"] == "3"
    quiet = get(
        sim, CHANGES, sysparm_limit=1, sysparm_no_count="true", sysparm_suppress_pagination_header="true"
    )
    assert "Link" not in quiet.headers and "X-Total-Count" not in quiet.headers
    assert len(quiet.json()["result"]) == 1


@pytest.mark.integration
def test_empty_result_is_404_on_v1_only(sim: ServiceNowSimulator) -> None:
    add_changes(sim, 1)
    v1 = get(sim, "/api/now/v1/table/change_request", sysparm_query="number=nope")
    assert v1.status_code == 404 and v1.json() == NOT_FOUND
    for path in (CHANGES, "/api/now/table/change_request"):
        response = get(sim, path, sysparm_query="number=nope")
        assert response.status_code == 200 and response.json() == {"result": []}
    assert numbers(get(sim, "/api/now/v1/table/change_request")) == ["CHG0000000"]


@pytest.mark.integration
def test_single_record(sim: ServiceNowSimulator) -> None:
    (change,) = add_changes(sim, 1)
    response = get(sim, f"{CHANGES}/{change['sys_id']}", sysparm_fields="number,state")
    assert response.json() == {"result": {"number": "CHG0000000", "state": "-2"}}
    missing = get(sim, f"{CHANGES}/{'0' * 32}")
    assert missing.status_code == 404 and missing.json() == NOT_FOUND


@pytest.mark.integration
def test_request_errors(sim: ServiceNowSimulator) -> None:
    negative = get(sim, CHANGES, sysparm_offset=-1)
    assert negative.status_code == 400
    assert negative.json() == {
        "error": {"detail": "Negative offset is not supported", "message": "offset is -1"},
        "status": "failure",
    }
    unknown = get(sim, "/api/now/table/change_requestt")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": {"message": "Invalid table change_requestt", "detail": None},
        "status": "failure",
    }


@pytest.mark.integration
def test_auth(sim: ServiceNowSimulator) -> None:
    add_changes(sim, 1)
    for auth in (None, ("admin", "wrong")):
        response = requests.get(sim.url + CHANGES, auth=auth, timeout=5)
        assert response.status_code == 401 and response.json() == UNAUTHENTICATED
    bearer = {"Authorization": "Bearer tok-1"}
    assert requests.get(sim.url + CHANGES, headers=bearer, timeout=5).status_code == 401
    sim.bearer_tokens.add("tok-1")
    assert requests.get(sim.url + CHANGES, headers=bearer, timeout=5).status_code == 200

    form = {
        "grant_type": "password",
        "client_id": "c",
        "client_secret": "s",
        "username": "admin",
        "password": "x",
    }
    assert requests.post(sim.url + "/oauth_token.do", data=form, timeout=5).status_code == 401
    token = requests.post(sim.url + "/oauth_token.do", data={**form, "password": "secret"}, timeout=5).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 1800 and token["refresh_token"]
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert numbers(requests.get(sim.url + CHANGES, headers=headers, timeout=5)) == ["CHG0000000"]


# --- ACLs and rendering ------------------------------------------------------------------


@pytest.mark.integration
def test_acl_hiding_happens_after_limit(sim: ServiceNowSimulator) -> None:
    changes = add_changes(sim, 10)
    ordered = sorted(changes, key=lambda change: change["sys_id"])
    secret = {ordered[0]["number"], ordered[3]["number"]}
    sim.hidden = lambda table, record: table == "change_request" and record["number"] in secret
    first = get(sim, CHANGES, sysparm_limit=5)
    assert len(first.json()["result"]) == 3  # short page, yet more pages follow
    assert first.headers["X-Total-Count"] == "10" and "next" in first.links
    assert len(get(sim, CHANGES, sysparm_limit=5, sysparm_offset=5).json()["result"]) == 5
    assert get(sim, f"{CHANGES}/{ordered[0]['sys_id']}").status_code == 404


@pytest.mark.integration
def test_dot_walked_fields(world: ServiceNowSimulator) -> None:
    response = get(
        world,
        CHANGES,
        sysparm_query="number=CHG1",
        sysparm_fields="number,assignment_group.name,cmdb_ci.name,bogus",
    )
    assert response.json()["result"] == [
        {"number": "CHG1", "assignment_group.name": "Network", "cmdb_ci.name": "core-router-1"}
    ]
    affected = get(
        world, "/api/now/table/task_ci", sysparm_query=f"task={sys_id(1)}", sysparm_fields="ci_item.name"
    )
    assert affected.json()["result"] == [{"ci_item.name": "core-router-1"}]


@pytest.mark.integration
def test_reference_links(world: ServiceNowSimulator) -> None:
    params = {"sysparm_query": "numberINCHG1,CHG3", "sysparm_fields": "number,assignment_group"}
    linked = get(world, CHANGES, **params).json()["result"]
    link = f"{world.url}/api/now/table/sys_user_group/{sys_id(101)}"
    assert linked == [
        {"number": "CHG1", "assignment_group": {"link": link, "value": sys_id(101)}},
        {"number": "CHG3", "assignment_group": ""},
    ]
    bare = get(world, CHANGES, sysparm_exclude_reference_link="true", **params).json()["result"]
    assert bare == [
        {"number": "CHG1", "assignment_group": sys_id(101)},
        {"number": "CHG3", "assignment_group": ""},
    ]


@pytest.mark.integration
def test_display_values_use_the_users_zone(world: ServiceNowSimulator) -> None:
    params = {"sysparm_query": "number=CHG1", "sysparm_fields": "start_date,state,assignment_group,end_date"}
    (shown,) = get(world, CHANGES, sysparm_display_value="true", **params).json()["result"]
    link = f"{world.url}/api/now/table/sys_user_group/{sys_id(101)}"
    assert shown == {  # 10:00 UTC is 03:00 in Los Angeles (PDT)
        "start_date": "06/10/2024 03:00:00 AM",
        "state": "Scheduled",
        "assignment_group": {"display_value": "Network", "link": link},
        "end_date": "",
    }
    (both,) = get(world, CHANGES, sysparm_display_value="all", **params).json()["result"]
    assert both["start_date"] == {"display_value": "06/10/2024 03:00:00 AM", "value": "2024-06-10 10:00:00"}
    assert both["assignment_group"] == {"display_value": "Network", "link": link, "value": sys_id(101)}


@pytest.mark.integration
def test_full_records_have_every_column(world: ServiceNowSimulator) -> None:
    rows = get(world, CHANGES).json()["result"]
    assert {row["sys_id"] for row in rows} == {sys_id(n) for n in range(1, 6)}
    assert all(set(row) == set(rows[0]) for row in rows)
    assert {"start_date", "sys_updated_on", "sys_mod_count", "close_code"} <= set(rows[0])


# --- faults and observation ----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fault", "retry_after", "status", "retry_header", "error"),
    [
        ("429", None, 429, "1", "Too Many Requests"),
        ("429", 7, 429, "7", "Too Many Requests"),
        ("500", None, 500, None, "Internal Server Error"),
        ("503", None, 503, None, "Service Unavailable"),
        ("503", 30, 503, "30", "Service Unavailable"),
        ("401", None, 401, None, "User Not Authenticated"),
        ("403", None, 403, None, "User Not Authorized"),
    ],
)
def test_status_faults(
    sim: ServiceNowSimulator,
    fault: str,
    retry_after: int | None,
    status: int,
    retry_header: str | None,
    error: str,
) -> None:
    sim.inject(fault, retry_after=retry_after)
    response = get(sim, CHANGES)
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_header
    assert response.json()["error"]["message"] == error and response.json()["status"] == "failure"
    assert get(sim, CHANGES).status_code == 200  # consumed


@pytest.mark.integration
def test_html_faults(sim: ServiceNowSimulator) -> None:
    sim.inject("502")
    sim.inject("html")
    gateway = get(sim, CHANGES)
    assert gateway.status_code == 502 and gateway.headers["Content-Type"].startswith("text/html")
    page = get(sim, CHANGES)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Hibernating" in page.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(page.text)


@pytest.mark.integration
def test_truncated_body(sim: ServiceNowSimulator) -> None:
    add_changes(sim, 3)
    whole = get(sim, CHANGES).content
    sim.inject("truncated")
    cut = get(sim, CHANGES)
    assert cut.status_code == 200
    assert cut.content == whole[: len(whole) // 2]
    assert cut.headers["Content-Length"] == str(len(cut.content))
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)


@pytest.mark.integration
def test_slow_and_drop(sim: ServiceNowSimulator) -> None:
    sim.inject("slow", delay=0.2)
    started = time.monotonic()
    assert get(sim, CHANGES).status_code == 200
    assert time.monotonic() - started >= 0.2
    sim.inject("drop")
    with pytest.raises(requests.ConnectionError):
        get(sim, CHANGES)
    assert [entry.status for entry in sim.requests] == [200, 0]
    assert get(sim, CHANGES).status_code == 200


@pytest.mark.integration
def test_faults_are_fifo_per_matching_path(sim: ServiceNowSimulator) -> None:
    sim.inject("500", count=2, path_contains="task_ci")
    sim.inject("503")
    assert get(sim, CHANGES).status_code == 503  # the 500s do not match this path
    task_ci = "/api/now/table/task_ci"
    assert [get(sim, task_ci).status_code for _ in range(3)] == [500, 500, 200]
    assert get(sim, CHANGES).status_code == 200
    with pytest.raises(ValueError):
        sim.inject("418")


@pytest.mark.integration
def test_requests_are_recorded(sim: ServiceNowSimulator) -> None:
    get(sim, CHANGES, sysparm_limit=5, sysparm_query="active=true")
    requests.get(sim.url + CHANGES, timeout=5)
    assert sim.requests == [
        RequestLogEntry("GET", CHANGES, {"sysparm_limit": "5", "sysparm_query": "active=true"}, 200),
        RequestLogEntry("GET", CHANGES, {}, 401),
    ]
    sim.reset_requests()
    assert sim.requests == []


@pytest.mark.integration
def test_concurrent_requests(sim: ServiceNowSimulator) -> None:
    add_changes(sim, 50)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda i: get(sim, CHANGES, sysparm_offset=i).status_code, range(40)))
    assert statuses == [200] * 40 and len(sim.requests) == 40


@pytest.mark.integration
def test_ten_thousand_records_page_quickly(sim: ServiceNowSimulator) -> None:
    for i in range(10_000):
        sim.put_record(
            "change_request", {"number": f"CHG{i:07d}", "sys_updated_on": f"2024-06-10 10:{i % 60:02d}:00"}
        )
    started = time.monotonic()
    response = get(
        sim,
        CHANGES,
        sysparm_query="sys_updated_on>2024-06-10 10:30:00^NQsys_updated_on=2024-06-10 10:30:00"
        "^ORDERBYsys_updated_on",
        sysparm_limit=1000,
    )
    assert time.monotonic() - started < 1.0
    assert response.headers["X-Total-Count"] == str(sum(1 for i in range(10_000) if i % 60 >= 30))
    assert len(response.json()["result"]) == 1000


# --- pysnow interoperability -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "buffered"])
def test_pysnow_reads_the_simulator(world: ServiceNowSimulator, stream: bool) -> None:
    client = pysnow.Client(
        host=world.url.removeprefix("http://"), use_ssl=False, user=AUTH[0], password=AUTH[1]
    )
    resource = client.resource(api_path="/table/change_request", base_path="/api/now/v2")
    response = resource.get(
        query="stateIN-2,-1,-5^ORDERBYnumber", limit=2, offset=1, fields=["number", "state"], stream=stream
    )
    assert list(response.all()) == [{"number": "CHG2", "state": "-1"}, {"number": "CHG5", "state": "-5"}]
    nothing = resource.get(query="number=nope", stream=stream)
    assert list(nothing.all()) == []


# --- the data API, no HTTP -------------------------------------------------------------------------


def test_put_update_delete_records() -> None:
    clock = FakeClock(T0)
    sim = ServiceNowSimulator(clock=clock)
    first = sim.put_record("change_request", {"number": "CHG1"})
    assert re.fullmatch(r"[0-9a-f]{32}", first["sys_id"])
    assert (first["sys_created_on"], first["sys_updated_on"], first["sys_mod_count"]) == (
        "2024-06-10 10:00:00", "2024-06-10 10:00:00", "0",
    )  # fmt: skip
    clock.now = T0 + timedelta(minutes=1)
    replaced = sim.put_record("change_request", {"sys_id": first["sys_id"], "number": "CHG1b"})
    assert replaced["sys_created_on"] == "2024-06-10 10:00:00"
    assert (replaced["sys_updated_on"], replaced["sys_mod_count"]) == ("2024-06-10 10:01:00", "1")
    explicit = sim.put_record("change_request", {"number": "CHG2", "sys_updated_on": "2020-01-01 00:00:00"})
    assert explicit["sys_updated_on"] == "2020-01-01 00:00:00"
    clock.now = T0 + timedelta(minutes=2)
    updated = sim.update_record("change_request", first["sys_id"], state="3")
    assert (updated["state"], updated["sys_updated_on"], updated["sys_mod_count"]) == (
        "3",
        "2024-06-10 10:02:00",
        "2",
    )
    assert updated["number"] == "CHG1b"
    sim.delete_record("change_request", explicit["sys_id"])
    assert [row["number"] for row in sim.records("change_request")] == ["CHG1b"]
    sim.records("change_request")[0]["number"] = "mutated"
    assert sim.records("change_request")[0]["number"] == "CHG1b"
    with pytest.raises(KeyError):
        sim.update_record("change_request", "missing", state="3")
    with pytest.raises(TypeError):
        sim.put_record("change_request", {"number": 5})  # type: ignore[dict-item]


def test_make_change() -> None:
    start = datetime(2024, 6, 10, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    change = make_change("CHG7", short_description="Patch", start=start, end=None, state="3", u_custom="x")
    assert change["start_date"] == "2024-06-10 10:00:00" and change["end_date"] == ""
    assert (change["state"], change["active"], change["type"], change["u_custom"]) == (
        "3",
        "false",
        "normal",
        "x",
    )
    assert {"work_start", "work_end", "close_code", "close_notes", "approval", "category"} <= set(change)
    assert all(isinstance(value, str) for value in change.values())


def test_url_needs_start() -> None:
    with pytest.raises(RuntimeError):
        _ = ServiceNowSimulator().url
