"""Raw Table API records → MaintenanceWindow, or problems naming the ticket and the source field."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connector.domain.window import MaintenanceWindow, Problem, State
from connector.servicenow.mapping import FieldMap, SourceMapping, StateMap
from connector.servicenow.normalize import MAX_TEXT, normalize_change

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BASE = "https://acme.service-now.com"
UTC = timezone.utc


def load_chg0000023() -> dict[str, Any]:
    path = FIXTURES / "servicenow_change_request_record_CHG0000023_ansible_sample.json"
    record: dict[str, Any] = json.loads(path.read_text())[0]
    return record


def scheduled(**overrides: Any) -> dict[str, Any]:
    """A scheduled change as the Table API returns it with display_value=false."""
    record: dict[str, Any] = {
        "sys_id": "1c741bd70b2322007518478d83673af3",
        "number": "CHG0040007",
        "short_description": "Core router firmware upgrade",
        "description": "Upgrade IOS-XE\r\nthen reload",
        "start_date": "2026-11-26 17:00:00",
        "end_date": "2026-11-26 19:00:00",
        "work_start": "",
        "work_end": "",
        "state": "-2",
        "cmdb_ci.name": "core-router-1",
        "assignment_group.name": "Network",
        "assigned_to.name": "Ada Lovelace",
        "type": "normal",
        "risk": "3",
        "priority": "2",
        "close_code": "",
        "sys_updated_on": "2026-11-20 08:30:00",
    }
    record.update(overrides)
    return record


def normalize(raw: dict[str, Any], mapping: SourceMapping | None = None) -> MaintenanceWindow | list[Problem]:
    return normalize_change(
        raw, source="servicenow", mapping=mapping or SourceMapping(), base_url=BASE, table="change_request"
    )


def window(raw: dict[str, Any], mapping: SourceMapping | None = None) -> MaintenanceWindow:
    w = normalize(raw, mapping)
    assert isinstance(w, MaintenanceWindow), w
    return w


def problems(raw: dict[str, Any], mapping: SourceMapping | None = None) -> list[Problem]:
    p = normalize(raw, mapping)
    assert isinstance(p, list), p
    return p


def test_real_fixture_chg0000023_normalizes() -> None:
    w = window(load_chg0000023())
    assert (w.number, w.sys_id, w.title, w.description) == (
        "CHG0000023",
        "70ad699e47410200e90d87e8dee4907d",
        "Decommission server",
        "Decommission a server",
    )
    assert w.state is State.CLOSED and w.raw_state == "3" and w.close_code == "successful"
    assert (w.planned_start, w.planned_end) == (None, None)  # a closed standard change without a plan
    assert w.actual_start == datetime(2015, 7, 6, 18, 17, 41, tzinfo=UTC)
    assert w.actual_end == datetime(2015, 7, 6, 18, 18, 34, tzinfo=UTC)
    assert w.updated_on == datetime(2015, 7, 6, 18, 18, 53, tzinfo=UTC)
    assert (w.type, w.risk, w.priority) == ("standard", "3", "4")
    assert w.cis == ()  # cmdb_ci is empty in the sample
    assert w.url == f"{BASE}/nav_to.do?uri=change_request.do?sys_id=70ad699e47410200e90d87e8dee4907d"
    assert w.source == "servicenow"


def test_scheduled_change_normalizes() -> None:
    w = window(scheduled())
    assert w.state is State.SCHEDULED
    assert w.planned_start == datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    assert w.planned_end == datetime(2026, 11, 26, 19, 0, tzinfo=UTC)
    assert (w.actual_start, w.actual_end) == (None, None)  # "" means not set
    assert w.cis == ("core-router-1",)
    assert (w.assignment_group, w.assigned_to) == ("Network", "Ada Lovelace")
    assert w.description == "Upgrade IOS-XE\nthen reload"


def test_display_value_all_objects_read_value_never_display_value() -> None:
    """display_value=all: the display value is in the user's zone and format and must not be used."""
    raw = {k: {"display_value": f"shown {v}", "value": v} for k, v in scheduled().items()}
    raw["start_date"] = {"display_value": "11/26/2026 09:00:00 AM", "value": "2026-11-26 17:00:00"}
    raw["state"] = {"display_value": "Scheduled", "value": "-2"}
    w = window(raw)
    assert w.planned_start == datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    assert w.state is State.SCHEDULED and w.title == "Core router firmware upgrade"


def test_reference_fields_as_value_objects_or_bare_strings() -> None:
    w = window(scheduled(**{"cmdb_ci.name": {"link": f"{BASE}/api/now/table/cmdb_ci/x", "value": "db-1"}}))
    assert w.cis == ("db-1",)
    assert window(scheduled(**{"cmdb_ci.name": "db-2"})).cis == ("db-2",)
    assert window(scheduled(**{"cmdb_ci.name": ""})).cis == ()


def test_change_management_api_typed_values_still_map() -> None:
    w = window(scheduled(state={"display_value": "Scheduled", "value": -2.0}, risk={"value": 3.0}))
    assert w.state is State.SCHEDULED and w.raw_state == "-2" and w.risk == "3"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"start_date": "31/12/2026 25:00"},
            "start_date",
            "cannot parse '31/12/2026 25:00' as YYYY-MM-DD HH:MM:SS (UTC)",
        ),
        (
            {"end_date": "11/26/2026 11:00:00 AM"},
            "end_date",
            "cannot parse '11/26/2026 11:00:00 AM' as YYYY-MM-DD HH:MM:SS (UTC)",
        ),
        ({"work_start": "2026-13-01 00:00:00"}, "work_start", "cannot parse"),
        ({"start_date": ""}, "start_date", "missing on a scheduled change"),
        ({"end_date": "2026-11-26 16:00:00"}, "end_date", "is not after planned start"),
        ({"end_date": "2026-11-26 17:00:00"}, "end_date", "is not after planned start"),
        ({"state": "7"}, "state", "unknown state value '7': add it to servicenow.mapping.states"),
        ({"state": ""}, "state", "missing state"),
        ({"number": ""}, "number", "missing"),
        ({"sys_id": ""}, "sys_id", "missing"),
    ],
)
def test_bad_tickets_give_problems_naming_number_and_field(
    overrides: dict[str, Any], field: str, message: str
) -> None:
    found = problems(scheduled(**overrides))
    assert [p.field for p in found] == [field]
    assert message in found[0].message
    expected_number = "CHG0040007" if field != "number" else "1c741bd70b2322007518478d83673af3"
    assert found[0].number == expected_number
    assert str(found[0]).startswith(f"{expected_number}: {field}: ")


def test_ticket_without_number_or_sys_id_is_unknown() -> None:
    raw = scheduled()
    del raw["number"], raw["sys_id"]
    found = problems(raw)
    assert {p.number for p in found} == {"(unknown)"}
    assert {p.field for p in found} == {"number", "sys_id"}


def test_every_problem_of_a_ticket_is_reported_once() -> None:
    found = problems(scheduled(start_date="soon", end_date=""))
    assert [(p.field, p.message.split(" ")[0]) for p in found] == [
        ("start_date", "cannot"),
        ("end_date", "missing"),
    ]


def test_unknown_state_lists_the_domain_states() -> None:
    (p,) = problems(scheduled(state="-6"))
    assert "new, assess, authorize, scheduled, implement, review, closed, cancelled" in p.message


def test_twenty_thousand_char_description_is_capped() -> None:
    w = window(scheduled(description="가" * 25_000, short_description="x" * 30_000))
    assert len(w.description) == MAX_TEXT and w.description.endswith("…")
    assert len(w.title) == MAX_TEXT
    assert window(scheduled(description="a" * MAX_TEXT)).description == "a" * MAX_TEXT


def test_control_and_bidi_characters_are_stripped_emoji_and_korean_kept() -> None:
    w = window(
        scheduled(
            short_description="DB\x00 점검\u202e 🛠️ 👩\u200d💻\nnow",
            description="line1\r\nline2\x07\tend",
            **{"assignment_group.name": "Net\x1bwork"},
        )
    )
    assert w.title == "DB 점검 🛠️ 👩\u200d💻 now"  # one line; the zero-width joiner stays
    assert w.description == "line1\nline2\tend"
    assert w.assignment_group == "Network"


def test_mention_text_is_kept_verbatim_for_the_renderer_to_escape() -> None:
    w = window(scheduled(short_description="<!channel> <@U123> <https://evil|click>"))
    assert w.title == "<!channel> <@U123> <https://evil|click>"


SERVICE_FLOW = SourceMapping(
    fields=FieldMap(
        number="ticket_no",
        title="summary",
        description="details",
        planned_start="window_start",
        planned_end="window_end",
        actual_start="started_at",
        actual_end="finished_at",
        state="status",
        cmdb_ci="primary_asset",
        assignment_group="team",
        assigned_to="owner",
        type="kind",
        risk="risk_level",
        priority="urgency",
        close_code="outcome",
        updated_on="last_modified",
        sys_id="uid",
    ),
    states=StateMap.model_validate(
        {"draft": "new", "planned": "scheduled", "in_work": "implement", "done": "closed"}
    ),
)


def service_flow_record(**overrides: str) -> dict[str, str]:
    record = {
        "uid": "sf-000042",
        "ticket_no": "SF-42",
        "summary": "Storage array firmware",
        "details": "Rolling upgrade",
        "window_start": "2026-12-01 01:00:00",
        "window_end": "2026-12-01 03:00:00",
        "started_at": "",
        "finished_at": "",
        "status": "planned",
        "primary_asset": "san-a",
        "team": "Storage",
        "owner": "Grace",
        "kind": "normal",
        "risk_level": "moderate",
        "urgency": "P3",
        "outcome": "",
        "last_modified": "2026-11-20 00:00:00",
    }
    record.update(overrides)
    return record


def test_custom_service_flow_mapping_needs_no_code_change() -> None:
    w = window(service_flow_record(), SERVICE_FLOW)
    assert (w.number, w.sys_id, w.title, w.state, w.raw_state) == (
        "SF-42",
        "sf-000042",
        "Storage array firmware",
        State.SCHEDULED,
        "planned",
    )
    assert w.planned_end == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert (w.cis, w.assignment_group, w.risk) == (("san-a",), "Storage", "moderate")
    assert w.url == f"{BASE}/nav_to.do?uri=change_request.do?sys_id=sf-000042"
    # ServiceNow's numeric states mean nothing here, and problems name Service Flow's fields
    assert [p.field for p in problems(service_flow_record(status="-2"), SERVICE_FLOW)] == ["status"]
    assert [
        p.field for p in problems(service_flow_record(window_end="2026-12-01 00:00:00"), SERVICE_FLOW)
    ] == ["window_end"]


def test_mapping_fields_list_and_config_typos() -> None:
    assert "cmdb_ci.name" in FieldMap().fields() and "sys_updated_on" in FieldMap().fields()
    assert SERVICE_FLOW.fields.fields()[:3] == ["ticket_no", "summary", "details"]
    with pytest.raises(ValidationError, match="extra"):
        SourceMapping.model_validate({"fields": {"titel": "summary"}})
    with pytest.raises(ValidationError):
        SourceMapping.model_validate({"states": {"9": "canceled"}})
    with pytest.raises(ValidationError, match="not a field name"):
        FieldMap(title="short description")
    # YAML reads an unquoted -5 as an int; it is still the raw value "-5"
    assert SourceMapping.model_validate({"states": {-5: "new"}}).states.values == {"-5": State.NEW}
    assert StateMap().values["4"] is State.CANCELLED
