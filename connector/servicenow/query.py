"""Encoded queries and the incremental-sync cursor for the ServiceNow Table API. Pure: no I/O, no clock.

Keyset paging: records are ordered by ``(sys_updated_on, sys_id)`` and each request asks for what comes
after the last record seen::

    <group>^sys_updated_on>X  ^NQ  <group>^sys_updated_on=X^sys_id>Y    (for every ^NQ group of the filter)

so a record edited while we page moves to the end instead of being skipped (offset paging's failure),
and records sharing the cursor's second (one-second granularity: ties are normal) are never missed.
Date-time literals are UTC ``YYYY-MM-DD HH:MM:SS``, which is how the instance compares them.
What the cursor alone misses (updates stamped at or before a position already read) is read again
by the poll's lookback: :mod:`connector.servicenow.lookback`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

SN_DATETIME = "YYYY-MM-DD HH:MM:SS"
_SN_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
_FIELD_RE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the ``(sys_updated_on, sys_id)`` order. ``sys_id == ""`` means "the whole second"."""

    updated_on: datetime
    sys_id: str

    def __post_init__(self) -> None:
        if self.updated_on.tzinfo is None:
            raise ValueError(f"Cursor.updated_on must be timezone-aware, got {self.updated_on!r}")
        object.__setattr__(self, "updated_on", self.updated_on.astimezone(timezone.utc))


def format_sn_datetime(dt: datetime) -> str:
    """``dt`` as a ServiceNow UTC literal, ``YYYY-MM-DD HH:MM:SS`` (sub-seconds dropped)."""
    if dt.tzinfo is None:
        raise ValueError(f"refusing to format a naive datetime ({dt!r}): every datetime here is UTC-aware")
    u = dt.astimezone(timezone.utc)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d} {u.hour:02d}:{u.minute:02d}:{u.second:02d}"


def parse_sn_datetime(s: str) -> datetime:
    """Parse a raw (``display_value=false``) ServiceNow date-time, which is always UTC."""
    if isinstance(s, str) and _SN_DATETIME_RE.fullmatch(s):
        try:
            # fromisoformat reads exactly this shape, ~20x faster than strptime (10,000s per sync)
            return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)
        except ValueError:
            pass  # matches the shape but is not a date (2026-02-30, 25:00:00)
    shown = s if len(str(s)) <= 80 else f"{str(s)[:77]}..."
    raise ValueError(f"cannot parse {shown!r} as {SN_DATETIME} (UTC)")


def record_cursor(
    raw: Mapping[str, Any], updated_field: str = "sys_updated_on", id_field: str = "sys_id"
) -> Cursor:
    """The cursor position of one raw record; ``ValueError`` names the field that is missing or bad."""
    sys_id = raw.get(id_field)
    if not isinstance(sys_id, str) or not sys_id:
        raise ValueError(f"record has no {id_field!r}")
    updated = raw.get(updated_field)
    if not isinstance(updated, str) or not updated:
        raise ValueError(f"record {sys_id} has no {updated_field!r}")
    try:
        return Cursor(parse_sn_datetime(updated), sys_id)
    except ValueError as e:
        raise ValueError(f"record {sys_id}: {updated_field}: {e}") from None


def split_groups(filter: str) -> list[str]:
    """The filter's ``^NQ`` groups (``^^`` is an escaped caret, not a separator); ``[]`` if empty.

    Raises ``ValueError`` for an ``ORDERBY`` (the cursor owns the order) or an empty group.
    """
    text = filter.strip()
    if not text:
        return []
    if "ORDERBY" in text:
        raise ValueError(
            "the filter must not contain ORDERBY: the connector orders by sys_updated_on, sys_id itself"
        )
    groups: list[str] = []
    start = i = 0
    while i < len(text):
        if text.startswith("^^", i):
            i += 2
        elif text.startswith("^NQ", i):
            groups.append(text[start:i])
            i = start = i + 3
        else:
            i += 1
    groups.append(text[start:])
    cleaned = [_clean_group(g) for g in groups]
    if any(not g for g in cleaned):
        raise ValueError(f"the filter {filter!r} has an empty ^NQ group")
    return cleaned


_TERM_SPLIT = re.compile(r"(?<!\^)\^(?!\^)")
#: a condition starts with its (lower-case, possibly dot-walked) field, then an operator: ``=``,
#: ``!=``, ``IN``, ``LIKE``, ``ISEMPTY``, ``ON`` ... (upper case or a symbol); ``OR`` joins it to the last
_TERM_FIELD = re.compile(r"(?:OR)?([a-z0-9_]+(?:\.[a-z0-9_]+)*)(?![a-z0-9_.])")


def filter_fields(filter: str) -> list[str]:
    """The fields the filter's conditions name, once each, in order (``assignment_group.name``
    dot-walks included). ServiceNow drops a condition on a field the table does not have, which
    *widens* the result: ``check`` asks whether each of these exists. Raises like :func:`split_groups`."""
    fields: list[str] = []
    for group in split_groups(filter):
        for term in _TERM_SPLIT.split(group):
            match = _TERM_FIELD.match(term.strip())
            if match and match.end() < len(term.strip()):  # a field alone is no condition
                fields.append(match.group(1))
    return list(dict.fromkeys(fields))


def _clean_group(group: str) -> str:
    """Drop stray leading/trailing carets and the ``^EQ`` end marker the list view puts on copied queries."""
    g = group.strip()
    while True:
        before = g
        if g.startswith("^") and not g.startswith("^^"):
            g = g[1:]
        if g.endswith("^") and not g.endswith("^^"):
            g = g[:-1]
        if g == "EQ" or (g.endswith("^EQ") and not g.endswith("^^EQ")):
            g = g[:-2]
        if g == before:
            return g


def _and(group: str, condition: str) -> str:
    return f"{group}^{condition}" if group else condition


def _check_field(name: str) -> str:
    if not _FIELD_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a field name")
    return name


def build_change_query(
    filter: str, cursor: Cursor | None, updated_field: str = "sys_updated_on", id_field: str = "sys_id"
) -> str:
    """The user's filter, restricted to what comes after ``cursor``, ordered by the cursor's key."""
    upd, sid = _check_field(updated_field), _check_field(id_field)
    groups = split_groups(filter) or [""]
    if cursor is None:
        conditions = groups
    else:
        x = format_sn_datetime(cursor.updated_on)
        if cursor.sys_id:
            after = _writable_after(cursor.sys_id)
            conditions = [
                c for g in groups for c in (_and(g, f"{upd}>{x}"), _and(g, f"{upd}={x}^{sid}>{after}"))
            ]
        else:  # the whole second X again: nothing at X is assumed seen
            conditions = [_and(g, f"{upd}>={x}") for g in groups]
    return _and("^NQ".join(conditions), f"ORDERBY{upd}^ORDERBY{sid}")


def _writable_after(sys_id: str) -> str:
    """``sys_id``, or, when it holds a character an encoded query cannot carry (``^``, ``,``), the
    smallest string after it that can: the part before that character, then the character after it
    (``zz^bad`` -> ``zz_``). What is skipped between them shares that unwritable prefix, so it is a
    rejected ticket too (normalize refuses such ids); the cursor still moves past the record on which
    it stopped, instead of the query failing at every poll and every restart."""
    cut = min((i for i in (sys_id.find("^"), sys_id.find(",")) if i >= 0), default=-1)
    return sys_id if cut < 0 else sys_id[:cut] + chr(ord(sys_id[cut]) + 1)


def build_membership_query(filter: str, sys_ids: Sequence[str], id_field: str = "sys_id") -> str:
    """The user's filter AND ``sys_id`` in ``sys_ids`` (AND-ed into every ``^NQ`` group)."""
    sid = _check_field(id_field)
    if not sys_ids:
        raise ValueError("no sys_ids: an empty IN list would be ignored by the instance and match everything")
    for s in sys_ids:
        if not s or any(c in s for c in "^,"):
            raise ValueError(f"{s!r} cannot be used as a sys_id in an encoded query")
    condition = f"{sid}IN{','.join(sys_ids)}"
    return "^NQ".join(_and(g, condition) for g in split_groups(filter) or [""])


def next_cursor(current: Cursor | None, last_record: Cursor | None, signpost: datetime) -> Cursor | None:
    """Where the next cycle starts: after ``last_record``, but never past the cycle start.

    ``signpost`` is when this cycle started. Records in its second may still be written after we read
    that second, so the cursor is capped to ``Cursor(<signpost's whole second>, "")``: the next cycle
    reads that whole second again (reconcile makes the repeat harmless).
    """
    if signpost.tzinfo is None:
        raise ValueError(f"signpost must be timezone-aware, got {signpost!r}")
    cap = Cursor(signpost.replace(microsecond=0), "")
    candidates = [c for c in (current, last_record) if c is not None]
    if not candidates:
        return None
    return min(max(candidates), cap)


@dataclass(frozen=True)
class ChangePage:
    """One page of changed records as the source yields them, and everything the poll reads of it:
    the records, the cursor after them, and ``pages_left``, how many more pages the instance said
    there are (``X-Total-Count``; None when it did not say). ``pages_left`` is a hint only (rows come
    and go, ACLs filter): it lets the poll plan its ``task_ci`` questions."""

    records: list[dict[str, Any]]
    cursor: Cursor | None
    pages_left: int | None = None
