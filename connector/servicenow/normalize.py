"""One raw ticket → a :class:`MaintenanceWindow`, or the problems that stop it. Pure: no I/O, no clock.

Only raw values are read (``sysparm_display_value=false``): date-times are UTC ``YYYY-MM-DD HH:MM:SS``.
Display values are in the API user's time zone and date format and are never parsed. A field may come
as a bare string, ``{"value": ...}`` (reference with link) or ``{"display_value": ..., "value": ...}``
(``display_value=all``): ``value`` is what counts.

Every string taken from a ticket goes through :func:`clean_text` (here, and for ``task_ci`` CI names
in :mod:`connector.sync`): control and bidi-override characters removed, line breaks made spaces
(kept as newlines in the description), capped. It is not escaped: escaping for Slack is the
renderer's job, for logs and terminals :func:`connector.logs.escape_controls`.

Limits (a ticket outside them is a problem ticket, named by number and field): the record id
(``sys_id``) is 1 to 64 of ``A-Z a-z 0-9 _ . : -`` (ServiceNow's are 32 hex digits): it goes into
encoded queries, URLs, Slack metadata and calendar UIDs; dates are within
:data:`~connector.domain.window.EARLIEST` to :data:`~connector.domain.window.LATEST`. The number is
cleaned and cut at :data:`MAX_NUMBER` characters.
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
MAX_NUMBER = 40
MAX_ID = 64
UNKNOWN = "(unknown)"
STATES_KEY = "servicenow.mapping.states"

# C0/C1 controls except tab and newline, DEL, and the bidi embeddings/overrides/isolates that can make a
# ticket title read backwards. Zero-width joiners stay: emoji sequences need them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"\s*[\r\n\t\x85\u2028\u2029]+\s*")
_NEWLINES = re.compile(r"[\x85\u2028\u2029]")
_SAFE_ID = re.compile(f"[A-Za-z0-9_.:-]{{1,{MAX_ID}}}", re.ASCII)
ID_RULE = f"1 to {MAX_ID} of A-Za-z0-9_.:- (ServiceNow's are 32 hex digits)"


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


def clean_text(text: str, *, multiline: bool = False, limit: int = MAX_TEXT) -> str:
    """Remove control characters, normalise line breaks (U+0085, U+2028, U+2029 too), cap at ``limit``
    characters. The one cleaning of every string that came from a ticket, whatever its field."""
    if len(text) > 4 * limit:
        text = text[: 4 * limit]  # a 2 MB field is not scanned whole to keep ~20 characters of it
    if text.isprintable():  # the usual case: no control, bidi or line-break character to handle
        text = text.strip()
        return text if len(text) <= limit else text[: limit - 1] + "…"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _NEWLINES.sub("\n", text) if multiline else _LINE_BREAKS.sub(" ", text)
    text = _CONTROL.sub("", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def normalize_change(
    raw: Mapping[str, Any], *, source: str, mapping: SourceMapping, base_url: str, table: str
) -> MaintenanceWindow | list[Problem]:
    """Normalize one Table API record; every problem names the ticket and the field in the source."""
    f = mapping.fields

    def get(name: str) -> str:
        v = raw.get(name)
        return v if type(v) is str else raw_value(v) or ""

    sys_id, number = get(f.sys_id).strip(), clean_text(get(f.number), limit=MAX_NUMBER)
    label = number or clean_text(sys_id, limit=MAX_NUMBER) or UNKNOWN
    problems: list[Problem] = []
    if not sys_id:
        problems.append(Problem(label, f.sys_id, "missing: the ticket cannot be tracked without it"))
    elif not _SAFE_ID.fullmatch(sys_id):
        shown = sys_id if len(sys_id) <= MAX_ID else sys_id[:MAX_ID] + "…"
        problems.append(Problem(label, f.sys_id, f"{shown!r} is not a record id: expected {ID_RULE}"))
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
