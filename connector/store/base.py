"""The plumbing of the state store that both databases share (:class:`SqlBase`): transactions,
the window write buffer, the ``meta`` facts. The queries are :class:`connector.store.queries.SqlStore`'s.

Each database's store provides the rest: a connection, how a transaction begins (PostgreSQL checks
the fencing token there) and ends, and how an insert returns its id. :mod:`connector.store.schema`
says what each table keeps and why; the invariants hold on both: the cursor and what its page
produced are written in one transaction, a post is marked ``inflight`` (committed) before the
request that is not idempotent.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from connector.domain.reconcile import Tracked
from connector.domain.window import Phase
from connector.store.codec import window_from_dict
from connector.store.facts import Facts

SAVE_WINDOW = (
    'INSERT INTO windows(source, sys_id, number, phase, announced, "window", settled_at) '
    "VALUES(?,?,?,?,?,?,?) ON CONFLICT(source, sys_id) DO UPDATE SET number=excluded.number, "
    'phase=excluded.phase, announced=excluded.announced, "window"=excluded."window", '
    "settled_at=excluded.settled_at"
)


def _tracked(window: str, phase: str, announced: int) -> Tracked:
    return Tracked(window_from_dict(json.loads(window)), Phase(phase), announced=bool(announced))


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


class SqlBase(Facts):
    """The plumbing both databases share; a subclass provides ``_exec``, ``_execmany``,
    ``_insert_id``, ``_begin``, ``_commit``, ``_rollback``, ``close`` and ``location``, and calls
    :meth:`_setup` once connected."""

    store_id: str

    def _setup(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._pending_windows: list[tuple[Any, ...]] = []  # saved in this transaction, not yet written
        #: bumped by every write of a window, an event or a window's channels (what the calendar
        #: shows), before it is committed: a reader that saw a value has not seen later writes
        self.generation = 0

    def _load_id(self) -> None:
        self.store_id = self._meta_get("store_id") or self._init_id()

    # -- plumbing (the subclass's) ------------------------------------------------------------------
    @property
    def location(self) -> str:
        raise NotImplementedError

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders); the lock is held. Returns a cursor."""
        raise NotImplementedError

    def _execmany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _insert_id(self, sql: str, args: Sequence[Any]) -> int:
        """Run an INSERT into a table with an ``id`` column; return the new row's id."""
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def after_copy(self) -> None:
        """After rows were copied in with their ids (``connector.store.copy``): nothing on SQLite."""

    # -- transactions -------------------------------------------------------------------------------
    def _init_id(self) -> str:
        """A new state's id; replicas that open a new state together agree on the first one written."""
        with self.transaction():
            self._exec(
                "INSERT INTO meta(key, value) VALUES('store_id', ?) ON CONFLICT(key) DO NOTHING",
                (uuid.uuid4().hex[:12],),
            )
        sid = self._meta_get("store_id")
        assert sid is not None
        return sid

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit. Nested use joins the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield
                self._flush()
            except BaseException:
                self._pending_windows.clear()
                self._rollback()
                raise
            else:
                self._commit()
            finally:
                self._depth = 0

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._exec(sql, args).fetchall())

    def _windows_q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read of the windows table: it sees every window saved before it (``save_tracked``)."""
        with self._lock:
            self._flush()
            return list(self._exec(sql, args).fetchall())

    def _flush(self) -> None:
        """Write the windows saved in this transaction so far: one ``executemany`` per page of a poll,
        not one statement per ticket (each statement lets go of the GIL, and with the read-ahead
        threads busy, getting it back cost more than the write)."""
        if self._pending_windows:
            rows, self._pending_windows = self._pending_windows, []
            self._execmany(SAVE_WINDOW, rows)

    def _x(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """One write: inside the current transaction, or in one of its own."""
        with self.transaction():
            return self._exec(sql, args)

    def _meta_get(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def _meta_set(self, key: str, value: str) -> None:
        self._x(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )
