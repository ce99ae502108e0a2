"""One raw ticket → a :class:`MaintenanceWindow`, or the problems that stop it. Pure: no I/O, no clock.

Only raw values are read (``sysparm_display_value=false``): date-times are UTC ``YYYY-MM-DD HH:MM:SS``.
Display values are in the API user's time zone and date format and are never parsed. A field may come
as a bare string, ``{"value": ...}`` (reference with link) or ``{"display_value": ..., "value": ...}``
(``display_value=all``): ``value`` is what counts.

Ticket text is cleaned (control and bidi-override characters removed) and capped, but not escaped:
escaping for Slack is the renderer's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connector.domain.window import MaintenanceWindow, Problem, State, validate
from connector.servicenow.mapping import SourceMapping
from connector.servicenow.query import parse_sn_datetime

MAX_TEXT = 20_000
UNKNOWN = "(unknown)"
STATES_KEY = "servicenow.mapping.states"

# C0/C1 controls except tab and newline, DEL, and the bidi embeddings/overrides/isolates that can make a
# ticket title read backwards. Zero-width joiners stay: emoji sequences need them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"\s*[\r\n\t]+\s*")


def raw_value(v: Any) -> str | None:
    """The raw value of one field as text; ``None`` when absent. Reference objects give their ``value``."""
    if type(v) is str:  # nearly every value (raw values, bare references): skip the ABC check below
        return v
    if isinstance(v, Mapping):
        v = v.get("value")
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return v if isinstance(v, str) else str(v)


def clean_text(text: str, *, multiline: bool = False) -> str:
    """Remove control characters, normalise line breaks, cap at ``MAX_TEXT`` characters."""
    if text.isprintable():  # the usual case: no control, bidi or line-break character to handle
        text = text.strip()
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = text.strip() if multiline else _LINE_BREAKS.sub(" ", text).strip()
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return text


def normalize_change(
    raw: Mapping[str, Any], *, source: str, mapping: SourceMapping, base_url: str, table: str
) -> MaintenanceWindow | list[Problem]:
    """Normalize one Table API record; every problem names the ticket and the field in the source."""
    f = mapping.fields

    def get(name: str) -> str:
        v = raw.get(name)
        return v if type(v) is str else raw_value(v) or ""

    sys_id, number = get(f.sys_id).strip(), get(f.number).strip()
    label = number or sys_id or UNKNOWN
    problems: list[Problem] = []
    if not sys_id:
        problems.append(Problem(label, f.sys_id, "missing: the ticket cannot be tracked without it"))
    if not number:
        problems.append(Problem(label, f.number, "missing"))

    def date(field: str) -> datetime | None:
        text = get(field).strip()
        if not text:
            return None
        try:
            return parse_sn_datetime(text)
        except ValueError as e:
            problems.append(Problem(label, field, str(e)))
            return None

    dates = {
        attr: date(getattr(f, attr))
        for attr in ("planned_start", "planned_end", "actual_start", "actual_end")
    }
    updated_on = date(f.updated_on)

    raw_state = get(f.state).strip()
    state = mapping.states.values.get(raw_state)
    if state is None:
        known = ", ".join(s.value for s in State)
        what = f"unknown state value {raw_state!r}" if raw_state else "missing state"
        problems.append(
            Problem(label, f.state, f"{what}: add it to {STATES_KEY} (mapped to one of: {known})")
        )

    if state is None:
        return problems
    ci = clean_text(get(f.cmdb_ci))
    window = MaintenanceWindow(
        source=source,
        sys_id=sys_id,
        number=number,
        title=clean_text(get(f.title)),
        state=state,
        planned_start=dates["planned_start"],
        planned_end=dates["planned_end"],
        description=clean_text(get(f.description), multiline=True),
        actual_start=dates["actual_start"],
        actual_end=dates["actual_end"],
        cis=(ci,) if ci else (),
        assignment_group=clean_text(get(f.assignment_group)),
        assigned_to=clean_text(get(f.assigned_to)),
        type=clean_text(get(f.type)),
        risk=clean_text(get(f.risk)),
        priority=clean_text(get(f.priority)),
        close_code=clean_text(get(f.close_code)),
        url=f"{base_url.rstrip('/')}/nav_to.do?uri={table}.do?sys_id={sys_id}",
        raw_state=raw_state,
        updated_on=updated_on,
    )
    # The domain's checks name its own attributes; report the field as the source calls it, once.
    reported = {p.field for p in problems}
    for p in validate(window):
        field = getattr(f, p.field, p.field)
        if field not in reported:
            problems.append(Problem(label, field, p.message))
    return problems or window
