"""The ServiceNow simulator's schema, and its records as the Table API shows them.

Records are stored as raw strings, a reference field holding the target's sys_id (``REFERENCES``).
:class:`RecordView` reads them: a field's raw value, dot-walked through references
(``assignment_group.name``); whether a (dot-walked) name is a field; and a record rendered as a
request asked (``sysparm_fields``, ``sysparm_display_value``, ``sysparm_exclude_reference_link``),
with display values as the API user (America/Los_Angeles, US format) sees them. It reads the
simulator's tables in place and takes no lock: the simulator calls it under its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

REFERENCES: dict[str, str] = {
    "cmdb_ci": "cmdb_ci",
    "ci_item": "cmdb_ci",
    "task": "change_request",
    "assignment_group": "sys_user_group",
    "assigned_to": "sys_user",
}
"""Reference field name -> target table. The stored value is the target's sys_id."""

SYSTEM_FIELDS = ("sys_id", "sys_created_on", "sys_updated_on", "sys_mod_count")
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "change_request": (
        "number", "short_description", "description", "type", "state", "approval", "active", "category",
        "start_date", "end_date", "work_start", "work_end", "cmdb_ci", "assignment_group", "assigned_to",
        "risk", "priority", "close_code", "close_notes",
    ),
    "task_ci": ("task", "ci_item"),
    "cmdb_ci": ("name",),
    "sys_user_group": ("name",),
    "sys_user": ("name", "user_name"),
}  # fmt: skip
"""Tables that exist from the start and their columns; put_record adds tables and columns."""

DISPLAY_ZONE = ZoneInfo("America/Los_Angeles")
DISPLAY_FORMAT = "%m/%d/%Y %I:%M:%S %p"
CHOICE_LABELS: dict[tuple[str, str], dict[str, str]] = {
    ("change_request", "state"): {
        "-5": "New", "-4": "Assess", "-3": "Authorize", "-2": "Scheduled",
        "-1": "Implement", "0": "Review", "3": "Closed", "4": "Canceled",
    },
    ("change_request", "type"): {"standard": "Standard", "normal": "Normal", "emergency": "Emergency"},
}  # fmt: skip

_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")

Tables = dict[str, dict[str, dict[str, str]]]
"""table -> sys_id -> the stored record (raw values)"""


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def check_strings(record: dict[str, str]) -> None:
    bad = sorted(name for name, value in record.items() if not isinstance(value, str))
    if bad:
        raise TypeError(f"ServiceNow raw values are strings; not strings: {', '.join(bad)}")


class RecordView:
    """Records as the API shows them; ``url`` gives the instance's base URL for reference links."""

    def __init__(self, tables: Tables, columns: dict[str, set[str]], url: Callable[[], str]) -> None:
        self._tables, self._columns, self._url = tables, columns, url

    def value_of(self, record: dict[str, str], name: str) -> str:
        """Raw value of a possibly dot-walked field, "" when anything on the way is missing."""
        head, dot, rest = name.partition(".")
        value = record.get(head, "")
        while dot and value:
            target = self._tables.get(REFERENCES.get(head, ""), {}).get(value)
            if target is None:
                return ""
            head, dot, rest = rest.partition(".")
            value = target.get(head, "")
        return value

    def is_field(self, table: str, name: str) -> bool:
        head, dot, rest = name.partition(".")
        if head not in self._columns.get(table, ()):
            return False
        return not dot or (head in REFERENCES and self.is_field(REFERENCES[head], rest))

    def renderer(self, table: str, params: dict[str, str]) -> Callable[[dict[str, str]], dict[str, Any]]:
        requested = [name.strip() for name in params.get("sysparm_fields", "").split(",") if name.strip()]
        fields = list(dict.fromkeys(name for name in requested if self.is_field(table, name)))
        columns = sorted(self._columns[table])
        mode = params.get("sysparm_display_value", "false").strip().lower()
        mode = mode if mode in ("true", "all") else "false"
        bare = truthy(params.get("sysparm_exclude_reference_link"))

        def render(record: dict[str, str]) -> dict[str, Any]:
            names = fields or [*record, *(name for name in columns if name not in record)]
            return {name: self._show(table, name, self.value_of(record, name), mode, bare) for name in names}

        return render

    def _show(self, table: str, name: str, raw: str, mode: str, bare: bool) -> Any:
        target = REFERENCES.get(name.rpartition(".")[2])
        link = None if target is None or bare or not raw else f"{self._url()}/api/now/table/{target}/{raw}"
        if mode == "false":
            return raw if link is None else {"link": link, "value": raw}
        shown = self._display_value(table, name, target, raw)
        if mode == "true":
            return shown if link is None else {"display_value": shown, "link": link}
        if link is None:
            return {"display_value": shown, "value": raw}
        return {"display_value": shown, "link": link, "value": raw}

    def _display_value(self, table: str, name: str, target: str | None, raw: str) -> str:
        if not raw:
            return ""
        if target is not None:
            row = self._tables.get(target, {}).get(raw, {})
            return row.get("name") or row.get("number") or ""
        if _DATETIME.fullmatch(raw):
            moment = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            return moment.astimezone(DISPLAY_ZONE).strftime(DISPLAY_FORMAT)
        return CHOICE_LABELS.get((table, name), {}).get(raw, raw)
