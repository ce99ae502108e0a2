"""Retention: the state keeps a window ``state.retention`` (default 90 days) after it settled, then
deletes it with its events, deliveries, messages, targets, silences and reminder marks.

A window has *settled* when nothing more is expected of it: it is finished (completed, cancelled,
withdrawn, ended) or was never announced (pending); it settled at the later of its planned end and
its ticket's last update (``settled_at``, NULL for the others). It is deleted once that moment, and its
last event told, are older than the cutoff, and no delivery of it is still open.

Deleting one is safe: the poll reads only tickets changed since its cursor, and the refresh only open
windows, so a deleted window comes back only if its ticket changes; it is then first seen already
over and tracked without a word (``reconcile``). Event ids are ``AUTOINCREMENT``: never reused, so
the ids in Slack metadata stay unique.

Deleting runs off the hot path: each source's worker deletes one small batch of its own windows after
each refresh (``SourceWorker``), each batch its own short transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any, Protocol

from connector.domain.reconcile import Tracked
from connector.domain.window import TERMINAL_PHASES, Phase

#: the phases of a window nothing more is expected of
SETTLED_PHASES = TERMINAL_PHASES | {Phase.ENDED, Phase.PENDING}
_SETTLED = tuple(p.value for p in SETTLED_PHASES)

# Plain ``?`` placeholders, in order, and no untyped ``? IS NULL``: the same SQL runs on PostgreSQL.
_DUE = (
    "SELECT source, sys_id FROM windows w WHERE settled_at < ? {source}"
    "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.source = w.source AND e.sys_id = w.sys_id "
    "    AND e.created_at >= ?) "
    "AND NOT EXISTS (SELECT 1 FROM events e JOIN deliveries d ON d.event_id = e.id "
    "    WHERE e.source = w.source AND e.sys_id = w.sys_id AND d.state IN ('pending', 'inflight')) "
    "ORDER BY settled_at LIMIT ?"
)
_DELETE = (
    "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE source = ? AND sys_id = ?)",
    "DELETE FROM events WHERE source = ? AND sys_id = ?",
    "DELETE FROM messages WHERE source = ? AND sys_id = ?",
    "DELETE FROM targets WHERE source = ? AND sys_id = ?",
    "DELETE FROM silences WHERE source = ? AND sys_id = ?",
    "DELETE FROM windows WHERE source = ? AND sys_id = ?",
)
# A reminder mark (``reminded:<target>:<source>:<sys_id>:<planned start>``, set to when it was sent) is
# read only until its window starts: one sent before the cutoff is never read again. (substr, not a
# range of keys: PostgreSQL's collation may not order ':' before ';'.)
_OLD_REMINDERS = "DELETE FROM meta WHERE substr(key, 1, 9) = 'reminded:' AND value < ?"


def settled_at(t: Tracked) -> str | None:
    """When ``t`` settled (UTC ISO, as ``settled_at`` stores it), or None while it may still change."""
    if t.phase not in SETTLED_PHASES:
        return None
    moments = [m for m in (t.window.planned_end, t.window.updated_on) if m is not None]
    return _iso(max(moments)) if moments else None


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


class _Store(Protocol):
    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def _x(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def transaction(self) -> AbstractContextManager[None]: ...


class Retention:
    """The store's retention queries (:class:`connector.store.queries.SqlStore` mixes them in: both
    databases run them)."""

    def prune(self: _Store, cutoff: datetime, *, limit: int = 200, source: str | None = None) -> int:
        """Delete up to ``limit`` windows (of ``source``, or of any) that settled before ``cutoff`` (see
        the module doc), in one transaction; returns how many. Call again while it returns ``limit``."""
        # ``Store.generation`` (the served calendar's cache) is not bumped: retention is at least the
        # feed's 7 days, so no window deleted here was in it.
        with self.transaction():
            args: list[Any] = [_iso(cutoff), *([source] if source is not None else []), _iso(cutoff), limit]
            keys = self._q(_DUE.format(source="AND source = ? " if source is not None else ""), args)
            for key in keys:
                for sql in _DELETE:
                    self._x(sql, key)
            self._x(_OLD_REMINDERS, (_iso(cutoff),))
        return len(keys)

    @staticmethod
    def settled_clause(since: datetime) -> tuple[str, list[Any]]:
        """SQL on ``windows``: the windows that have not settled, or settled at or after ``since``."""
        return "(settled_at IS NULL OR settled_at >= ?)", [_iso(since)]
