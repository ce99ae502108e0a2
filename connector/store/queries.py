"""The queries of the state store, written once for both databases (:class:`SqlStore`).

The SQL uses ``?`` placeholders and portable statements (``INSERT … ON CONFLICT … DO UPDATE``;
``"window"`` quoted, as PostgreSQL reserves the word). :mod:`connector.store.schema` says what each
table keeps and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from connector.domain.events import Event
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import TERMINAL_PHASES, Phase, Problem
from connector.servicenow.query import Cursor
from connector.store.api import Delivery, MessageRef, NotRouted, ProblemRow, StoredWindow
from connector.store.base import SAVE_WINDOW, SqlBase, _iso, _tracked
from connector.store.codec import event_from_dict, event_to_dict, window_to_dict
from connector.store.retention import Retention, settled_at


class SqlStore(SqlBase, Retention):
    # -- windows ----------------------------------------------------------------------------------
    def get_tracked(self, key: tuple[str, str]) -> Tracked | None:
        sql = 'SELECT "window", phase, announced FROM windows WHERE source=? AND sys_id=?'
        rows = self._windows_q(sql, key)
        return _tracked(*rows[0]) if rows else None

    def tracked_among(self, source: str, sys_ids: Sequence[str]) -> dict[str, Tracked]:
        """The stored windows of ``sys_ids``, by sys_id (a poll's page: one query instead of one each)."""
        found: dict[str, Tracked] = {}
        ids = list(dict.fromkeys(sys_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._windows_q(
                f'SELECT sys_id, "window", phase, announced FROM windows WHERE source=? '
                f"AND sys_id IN ({','.join('?' * len(chunk))})",
                (source, *chunk),
            )
            found.update((sys_id, _tracked(*rest)) for sys_id, *rest in rows)
        return found

    def tracked(
        self, *, open_only: bool = False, source: str | None = None, settled_since: datetime | None = None
    ) -> list[Tracked]:
        """``settled_since``: only the windows not settled, or settled since then (``retention``)."""
        sql, args = 'SELECT "window", phase, announced FROM windows', list[Any]()
        where = []
        if settled_since is not None:
            clause, more = self.settled_clause(settled_since)
            where.append(clause)
            args += more
        if open_only:
            where.append(f"phase NOT IN ({','.join('?' * len(TERMINAL_PHASES))})")
            args += [p.value for p in TERMINAL_PHASES]
        if source is not None:
            where.append("source=?")
            args.append(source)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_tracked(*row) for row in self._windows_q(sql, args)]

    #: the dialect's spelling of the window column, and its test that a window's planned time
    #: overlaps ``[since, until]`` (two parameters)
    _WINDOW_COLUMN: str
    _OVERLAPS: str

    def windows_between(self, since: datetime, until: datetime) -> list[StoredWindow]:
        """Windows whose planned time overlaps ``[since, until]``, and every window recorded as running
        whatever its times (an overrun): the board's read. The database picks them out of the JSON, so a
        store of years of windows decodes only those few; targets and silences come in the same query."""
        sql = (
            f"SELECT {self._WINDOW_COLUMN}, w.phase, w.announced, t.targets, s.data FROM windows w "
            "LEFT JOIN targets t ON t.source=w.source AND t.sys_id=w.sys_id "
            "LEFT JOIN silences s ON s.source=w.source AND s.sys_id=w.sys_id "
            f"WHERE w.phase IN (?, ?) OR ({self._OVERLAPS})"
        )
        args = (Phase.IN_PROGRESS.value, Phase.OVERRUN.value, _iso(since), _iso(until))
        return [
            StoredWindow(
                _tracked(window, phase, announced),
                [Target.parse(t) for t in json.loads(targets)] if targets else None,
                list(json.loads(silences)) if silences else [],
            )
            for window, phase, announced, targets, silences in self._windows_q(sql, args)
        ]

    def phase_counts(self) -> dict[str, int]:
        """Windows per phase, counted by the database: the metrics need no window decoded."""
        rows = self._windows_q("SELECT phase, COUNT(*) FROM windows GROUP BY phase")
        return {phase: n for phase, n in rows}

    def save_tracked(self, t: Tracked) -> None:
        """Inside a transaction the row is written before the next read or at commit (``_flush``)."""
        w = t.window
        data = json.dumps(window_to_dict(w))
        row = (*w.key, w.number, t.phase.value, int(t.announced), data, settled_at(t))
        with self._lock:
            self.generation += 1
            if self._depth:
                self._pending_windows.append(row)
                return
        self._x(SAVE_WINDOW, row)

    def targets(self, key: tuple[str, str]) -> list[Target] | None:
        """Where a window is delivered: the targets its current route names (``None``: never routed).
        This is the route decision as stored; every delivery, refresh, reminder and digest asks it."""
        rows = self._q("SELECT targets FROM targets WHERE source=? AND sys_id=?", key)
        return [Target.parse(t) for t in json.loads(rows[0][0])] if rows else None

    def set_targets(self, key: tuple[str, str], targets: Sequence[Target]) -> None:
        with self._lock:
            self.generation += 1
        self._x(
            "INSERT INTO targets(source, sys_id, targets) VALUES(?,?,?) "
            "ON CONFLICT(source, sys_id) DO UPDATE SET targets=excluded.targets",
            (*key, json.dumps([str(t) for t in targets])),
        )

    def routed(self, key: tuple[str, str], target: Target) -> bool:
        """Whether ``target`` is one of the targets the window's current route names."""
        return target in (self.targets(key) or ())

    def routed_among(self, target: Target, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of ``keys`` are routed to ``target`` (one query per 500 keys, not one each)."""
        found: set[tuple[str, str]] = set()
        wanted = list(dict.fromkeys(keys))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows = self._q(
                "SELECT source, sys_id, targets FROM targets WHERE "
                + " OR ".join(["(source=? AND sys_id=?)"] * len(chunk)),
                [v for key in chunk for v in key],
            )
            found.update((s, i) for s, i, ts in rows if str(target) in json.loads(ts))
        return found

    def event_counts(self, settled_since: datetime | None = None) -> dict[tuple[str, str], int]:
        """Events told per window (the calendar's SEQUENCE); ``settled_since`` as for :meth:`tracked`."""
        sql, args = "SELECT source, sys_id, COUNT(*) FROM events", list[Any]()
        if settled_since is not None:
            clause, args = self.settled_clause(settled_since)
            sql += f" WHERE (source, sys_id) IN (SELECT source, sys_id FROM windows WHERE {clause})"
        return {(s, i): n for s, i, n in self._q(sql + " GROUP BY 1, 2", args)}

    # -- cursors ----------------------------------------------------------------------------------
    def cursor(self, source: str, name: str = "changes") -> Cursor | None:
        rows = self._q("SELECT updated_on, sys_id FROM cursors WHERE source=? AND name=?", (source, name))
        return Cursor(datetime.fromisoformat(rows[0][0]), rows[0][1]) if rows else None

    def set_cursor(self, source: str, cursor: Cursor | None, name: str = "changes") -> None:
        if cursor is None:
            return
        self._x(
            "INSERT INTO cursors(source, name, updated_on, sys_id) VALUES(?,?,?,?) ON CONFLICT(source, name) "
            "DO UPDATE SET updated_on=excluded.updated_on, sys_id=excluded.sys_id",
            (source, name, _iso(cursor.updated_on), cursor.sys_id),
        )

    # -- versions applied (the poll's lookback) ----------------------------------------------------
    def seen_since(self, source: str, updated_on: str) -> dict[str, str]:
        """sys_id → version applied, of the records updated at or after ``updated_on`` (SN format)."""
        rows = self._q(
            "SELECT sys_id, version FROM seen WHERE source=? AND updated_on>=?", (source, updated_on)
        )
        return {sys_id: version for sys_id, version in rows}

    def seen_among(self, source: str, sys_ids: Sequence[str]) -> dict[str, str]:
        """sys_id → version applied, of those of ``sys_ids`` that were updated recently (a hint's re-read)."""
        found: dict[str, str] = {}
        ids = list(dict.fromkeys(sys_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT sys_id, version FROM seen WHERE source=? AND sys_id IN ({marks})"
            found.update(self._q(sql, (source, *chunk)))
        return found

    def remember_seen(self, source: str, rows: Sequence[tuple[str, str, str]], floor: str) -> None:
        """Record ``(sys_id, updated_on, version)`` as applied; forget the rows updated before
        ``floor``, which no poll reads again."""
        if not rows:
            return
        with self.transaction():
            self._exec("DELETE FROM seen WHERE source=? AND updated_on<?", (source, floor))
            self._execmany(
                "INSERT INTO seen(source, sys_id, updated_on, version) VALUES(?,?,?,?) "
                "ON CONFLICT(source, sys_id) DO UPDATE SET updated_on=excluded.updated_on, "
                "version=excluded.version",
                [(source, *row) for row in rows],
            )

    # -- outbox -----------------------------------------------------------------------------------
    def enqueue(
        self, events: Sequence[Event], targets: Sequence[Target], now: datetime, state: str = "pending"
    ) -> None:
        with self.transaction():
            self.generation += 1
            for e in events:
                event_id = self._insert_id(
                    "INSERT INTO events(source, sys_id, kind, payload, created_at) VALUES(?,?,?,?,?)",
                    (*e.key, e.kind.value, json.dumps(event_to_dict(e)), _iso(now)),
                )
                for target in targets:
                    self._exec(
                        "INSERT INTO deliveries(event_id, target, state, updated_at) VALUES(?,?,?,?)",
                        (event_id, str(target), state, _iso(now)),
                    )

    def open_deliveries(self, target: Target, limit: int = 1000) -> list[Delivery]:
        rows = self._q(
            "SELECT d.event_id, d.state, d.attempts, e.payload FROM deliveries d "
            "JOIN events e ON e.id=d.event_id "
            "WHERE d.target=? AND d.state IN ('pending','inflight') ORDER BY d.event_id LIMIT ?",
            (str(target), limit),
        )
        return [Delivery(i, target, s, event_from_dict(json.loads(p)), a) for i, s, a, p in rows]

    def mark_delivery(
        self,
        event_id: int,
        target: Target,
        state: str,
        now: datetime,
        *,
        ts: str | None = None,
        error: str | None = None,
    ) -> None:
        self._x(
            "UPDATE deliveries SET state=?, ts=COALESCE(?, ts), last_error=?, updated_at=?, "
            "attempts=attempts + (CASE WHEN ?='inflight' THEN 1 ELSE 0 END) WHERE event_id=? AND target=?",
            (state, ts, error, _iso(now), state, event_id, str(target)),
        )

    def delivered(self, target: Target) -> list[tuple[Event, str | None]]:
        rows = self._q(
            "SELECT e.payload, d.ts FROM deliveries d JOIN events e ON e.id=d.event_id "
            "WHERE d.target=? AND d.state='done' ORDER BY d.event_id",
            (str(target),),
        )
        return [(event_from_dict(json.loads(p)), ts) for p, ts in rows]

    def outbox_stats(self, now: datetime) -> tuple[int, float]:
        """(undelivered deliveries, age in seconds of the oldest one)."""
        n, oldest = self._q(
            "SELECT COUNT(*), MIN(e.created_at) FROM deliveries d JOIN events e ON e.id=d.event_id "
            "WHERE d.state IN ('pending','inflight')"
        )[0]
        age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
        return int(n), max(age, 0.0)

    # -- messages ---------------------------------------------------------------------------------
    def message(self, key: tuple[str, str], target: Target) -> MessageRef | None:
        rows = self._q(
            "SELECT ts, state, rendered FROM messages WHERE source=? AND sys_id=? AND target=?",
            (*key, str(target)),
        )
        return MessageRef(*rows[0]) if rows else None

    def set_message(
        self, key: tuple[str, str], target: Target, *, ts: str | None, state: str, rendered: str | None = None
    ) -> None:
        """Record a window's message in ``target``. A message can only be sent (``inflight``) or be
        there (``posted``) in a target the window is routed to: the store refuses anything else, so
        no code path can put one customer's window into another customer's channel."""
        if state in ("inflight", "posted") and not self.routed(key, target):
            raise NotRouted(f"window {key[0]}/{key[1]} is not routed to {target}: not recording a message")
        self._x(
            "INSERT INTO messages(source, sys_id, target, ts, state, rendered) VALUES(?,?,?,?,?,?) "
            "ON CONFLICT(source, sys_id, target) DO UPDATE SET ts=excluded.ts, state=excluded.state, "
            "rendered=COALESCE(excluded.rendered, messages.rendered)",
            (*key, str(target), ts, state, rendered),
        )

    def messages(self, target: Target) -> dict[tuple[str, str], MessageRef]:
        rows = self._q(
            "SELECT source, sys_id, ts, state, rendered FROM messages WHERE target=?", (str(target),)
        )
        return {(s, i): MessageRef(ts, st, r) for s, i, ts, st, r in rows}

    # -- problems ---------------------------------------------------------------------------------
    def set_problems(
        self, source: str, sys_id: str, number: str, problems: Sequence[Problem], now: datetime
    ) -> bool:
        """Record a rejected ticket; True when this is new or different (so it is logged once)."""
        text = json.dumps(sorted(str(p) for p in problems), ensure_ascii=False)
        rows = self._q("SELECT problems FROM problems WHERE source=? AND sys_id=?", (source, sys_id))
        if rows and rows[0][0] == text:
            return False
        self._x(
            "INSERT INTO problems(source, sys_id, number, problems, first_seen) VALUES(?,?,?,?,?) "
            "ON CONFLICT(source, sys_id) DO UPDATE SET number=excluded.number, problems=excluded.problems",
            (source, sys_id, number, text, _iso(now)),
        )
        return True

    def problems_among(self, source: str, sys_ids: Sequence[str]) -> set[str]:
        """Which of ``sys_ids`` have a recorded problem (so only those need :meth:`clear_problem`)."""
        found: set[str] = set()
        ids = list(dict.fromkeys(sys_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._q(
                f"SELECT sys_id FROM problems WHERE source=? AND sys_id IN ({','.join('?' * len(chunk))})",
                (source, *chunk),
            )
            found.update(r[0] for r in rows)
        return found

    def clear_problem(self, source: str, sys_id: str) -> bool:
        return self._x("DELETE FROM problems WHERE source=? AND sys_id=?", (source, sys_id)).rowcount > 0

    def problems(self) -> list[ProblemRow]:
        rows = self._q("SELECT source, sys_id, number, problems, first_seen FROM problems ORDER BY number")
        return [ProblemRow(s, i, n, json.loads(p), datetime.fromisoformat(f)) for s, i, n, p, f in rows]

    # -- silences ---------------------------------------------------------------------------------
    def silences(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        rows = self._q("SELECT data FROM silences WHERE source=? AND sys_id=?", key)
        return list(json.loads(rows[0][0])) if rows else []

    def set_silences(self, key: tuple[str, str], data: Sequence[Mapping[str, Any]]) -> None:
        self._x(
            "INSERT INTO silences(source, sys_id, data) VALUES(?,?,?) "
            "ON CONFLICT(source, sys_id) DO UPDATE SET data=excluded.data",
            (*key, json.dumps(list(data))),
        )
