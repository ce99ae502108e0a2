"""Records for the ServiceNow simulator, as tests, the demo and benchmarks write them: a raw UTC
date-time (:func:`format_snow_datetime`) and a ``change_request`` with every column the simulator
knows (:func:`make_change`). Both are importable from :mod:`connector.simulators.servicenow` too.
"""

from __future__ import annotations

from datetime import datetime, timezone


def format_snow_datetime(moment: datetime | None) -> str:
    """A raw ServiceNow date-time: UTC ``YYYY-MM-DD HH:MM:SS``; naive means UTC; None gives ""."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def make_change(
    number: str,
    *,
    short_description: str,
    start: datetime | None,
    end: datetime | None,
    state: str = "-2",
    cmdb_ci: str = "",
    assignment_group: str = "",
    assigned_to: str = "",
    type: str = "normal",
    risk: str = "3",
    priority: str = "3",
    description: str = "",
    **extra: str,
) -> dict[str, str]:
    """A change_request record with raw values, ready for :meth:`ServiceNowSimulator.put_record`."""
    record = {
        "number": number,
        "short_description": short_description,
        "description": description,
        "type": type,
        "state": state,
        "approval": {"-5": "not requested", "-4": "not requested", "-3": "requested"}.get(state, "approved"),
        "active": "false" if state in ("3", "4") else "true",
        "category": "Other",
        "start_date": format_snow_datetime(start),
        "end_date": format_snow_datetime(end),
        "work_start": "",
        "work_end": "",
        "cmdb_ci": cmdb_ci,
        "assignment_group": assignment_group,
        "assigned_to": assigned_to,
        "risk": risk,
        "priority": priority,
        "close_code": "",
        "close_notes": "",
    }
    record.update(extra)
    return record
