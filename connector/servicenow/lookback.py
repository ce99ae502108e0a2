"""The poll's lookback: every poll reads again what changed in the last ``lookback`` seconds, and
skips what it has already applied. Pure: no I/O, no clock.

The cursor ``(sys_updated_on, sys_id)`` alone misses an update stamped at or before a position already
read: a second update of a record in the same second, or a row committed late (a long transaction,
an import, an application node whose clock is a second behind). Both stay missed until the ticket
changes again. So the first request of a poll starts at :func:`lookback_start`, the earlier of the
cursor and ``signpost - lookback``, and the keyset continues after its last record as before: the
lookback is folded into the one query, and an idle poll is still one request (it returns only the
tickets changed in the last ``lookback`` seconds, usually none). The committed cursor never moves
back: a page's cursor is computed from the stored one, not from where the read started.

Records read again are skipped by their *version* (:func:`record_version`): ``sys_mod_count`` (which
every update increments), or, for a ServiceNow-style ITSM without it, a digest of the fields read.
A record is skipped only when the version it has now is the very one applied before; it is then not
normalized, not asked about in ``task_ci``, not written. The versions applied are kept (store table
``seen``) only for records updated at or after ``signpost - lookback``: older ones are never read
again, as every later start is later than that.

A late commit is caught when it is committed within ``lookback`` minus one poll interval of its
``sys_updated_on`` (measured on the connector's clock against the instance's: keep both on NTP).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.servicenow.query import Cursor, format_sn_datetime

#: the smallest default lookback: what a poll interval of 30 s or less still gets
MIN_DEFAULT_LOOKBACK = 60.0


def default_lookback(poll_interval: float) -> float:
    """Two poll intervals or 60 s, whichever is larger (``servicenow.lookback`` when not set)."""
    return max(2 * poll_interval, MIN_DEFAULT_LOOKBACK)


def lookback_start(cursor: Cursor | None, signpost: datetime, lookback: timedelta) -> Cursor | None:
    """Where a poll's first request starts: the cursor, or the whole second ``signpost - lookback``
    when that is earlier. ``None`` (no cursor: a first sync) reads everything anyway."""
    if cursor is None:
        return None
    if lookback <= timedelta(0):
        return cursor
    back = Cursor((signpost - lookback).replace(microsecond=0), "")
    return min(cursor, back)


def record_version(raw: Mapping[str, Any], mod_count_field: str) -> str:
    """What identifies this state of a record: ``m:<sys_mod_count>``, or ``d:<digest>`` of every field
    read when the record has no such field (the instance leaves out fields it does not have)."""
    count = raw.get(mod_count_field)
    if isinstance(count, Mapping):
        count = count.get("value")
    if count not in (None, ""):
        return f"m:{count}"
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return "d:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def is_older(
    raw: Mapping[str, Any],
    applied_version: str | None,
    applied_updated_on: str | None,
    *,
    updated_field: str = "sys_updated_on",
    mod_count_field: str = "sys_mod_count",
) -> bool:
    """True when ``raw`` is an older state of a record than the one applied (its version, and its
    ``sys_updated_on`` in SN format): a lower ``sys_mod_count`` when both have one, else an earlier
    ``sys_updated_on``. A hint's re-read that answers older than what is stored (a node or replica
    that lags) is skipped rather than undo a newer state."""
    version = record_version(raw, mod_count_field)
    if applied_version and applied_version.startswith("m:") and version.startswith("m:"):
        try:
            return int(version[2:]) < int(applied_version[2:])
        except ValueError:
            pass
    updated = raw.get(updated_field)
    if isinstance(updated, Mapping):
        updated = updated.get("value")
    if not applied_updated_on or not isinstance(updated, str) or not updated:
        return False
    return updated < applied_updated_on


Remember = tuple[str, str, str]
"""A record applied, to skip it when it is read again: ``(sys_id, sys_updated_on, version)``."""


@dataclass(frozen=True)
class Seen:
    """The versions already applied of the records a poll may read again, read from the store before
    the poll (``versions``: sys_id → version), and what to remember of the records it applies."""

    versions: Mapping[str, str]
    floor: datetime  # signpost - lookback: records updated before it are not read again
    id_field: str = "sys_id"
    updated_field: str = "sys_updated_on"
    mod_count_field: str = "sys_mod_count"

    def sort(self, records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Remember]]:
        """``(records to apply, what to remember once they are)``: a record whose version is the one
        already applied is left out; the rest are remembered when updated at or after ``floor``."""
        fresh: list[dict[str, Any]] = []
        remember: list[Remember] = []
        floor = format_sn_datetime(self.floor)
        for r in records:
            sys_id, updated = r.get(self.id_field), r.get(self.updated_field)
            if not isinstance(sys_id, str) or not sys_id or not isinstance(updated, str):
                fresh.append(r)  # normalize says what is wrong with it
                continue
            version = record_version(r, self.mod_count_field)
            if self.versions.get(sys_id) == version:
                continue
            fresh.append(r)
            if updated >= floor:
                remember.append((sys_id, updated, version))
        return fresh, remember
