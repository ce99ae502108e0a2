"""Which source fields and state values mean what: configuration, with ServiceNow's defaults.

A ServiceNow-style ITSM with other names ("Service Flow": ``summary``, ``window_start``, state
``"planned"``) is a config change, not a code change. Unknown keys are errors, so a typo in the
config is reported instead of silently falling back to a default.

In YAML (``servicenow.mapping``)::

    fields: {title: summary, planned_start: window_start}
    states: {"-5": new, "-2": scheduled, "7": implement}     # replaces the default table
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.domain.window import State

_FIELD_RE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")

DEFAULT_STATES: dict[str, State] = {
    "-5": State.NEW,
    "-4": State.ASSESS,
    "-3": State.AUTHORIZE,
    "-2": State.SCHEDULED,
    "-1": State.IMPLEMENT,
    "0": State.REVIEW,
    "3": State.CLOSED,
    "4": State.CANCELLED,
}


class FieldMap(BaseModel):
    """Window attribute → source field (raw values; ``a.b`` is a dot-walk through a reference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: str = "number"
    title: str = "short_description"
    description: str = "description"
    planned_start: str = "start_date"
    planned_end: str = "end_date"
    actual_start: str = "work_start"
    actual_end: str = "work_end"
    state: str = "state"
    cmdb_ci: str = "cmdb_ci.name"
    assignment_group: str = "assignment_group.name"
    assigned_to: str = "assigned_to.name"
    type: str = "type"
    risk: str = "risk"
    priority: str = "priority"
    close_code: str = "close_code"
    updated_on: str = "sys_updated_on"
    sys_id: str = "sys_id"
    # incremented by every update: the poll's lookback skips a record read again at the version it
    # applied (an ITSM without it: records are compared by a digest of their fields instead)
    mod_count: str = "sys_mod_count"

    @field_validator("*")
    @classmethod
    def _field_name(cls, v: str) -> str:
        if not _FIELD_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a field name (letters, digits, _ and . for a dot-walk)")
        return v

    def fields(self) -> list[str]:
        """The ``sysparm_fields`` list: every mapped field once, in declaration order."""
        return list(dict.fromkeys(getattr(self, name) for name in type(self).model_fields))


class StateMap(BaseModel):
    """Raw state value → :class:`State`. Written in config as the mapping itself (``values:`` optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: dict[str, State] = Field(default_factory=lambda: dict(DEFAULT_STATES))

    @model_validator(mode="before")
    @classmethod
    def _bare_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and data and set(data) != {"values"}:
            data = {"values": data}
        if isinstance(data, dict) and isinstance(data.get("values"), dict):
            # YAML reads an unquoted -5 as an int key; the raw value is the string "-5".
            data = {**data, "values": {str(k): v for k, v in data["values"].items()}}
        return data


class SourceMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: FieldMap = Field(default_factory=FieldMap)
    states: StateMap = Field(default_factory=StateMap)
