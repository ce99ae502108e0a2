"""Copying a state from one store to another (``itsm-connector state migrate``): every table but the
lease, row by row, in one transaction of the destination, keeping the state's id (the ids in Slack
metadata name it) and the events' ids (the replies' metadata name them)."""

from __future__ import annotations

from connector.store.queries import SqlStore

#: the tables and columns copied, parents before children
TABLES: dict[str, str] = {
    "meta": "key, value",
    "windows": 'source, sys_id, number, phase, "window", announced, settled_at',
    "cursors": "source, name, updated_on, sys_id",
    "events": "id, source, sys_id, kind, payload, created_at",
    "deliveries": "event_id, target, state, ts, attempts, last_error, updated_at",
    "messages": "source, sys_id, target, ts, state, rendered",
    "problems": "source, sys_id, number, problems, first_seen",
    "silences": "source, sys_id, data",
    "targets": "source, sys_id, targets",
    "seen": "source, sys_id, updated_on, version",
}


class NotEmpty(RuntimeError):
    """The destination already holds a state: copying into it would mix two."""


def copy_state(src: SqlStore, dst: SqlStore) -> dict[str, int]:
    """Copy ``src`` into ``dst`` (which must hold no window and no event); returns rows per table."""
    held = dst._q("SELECT (SELECT COUNT(*) FROM windows) + (SELECT COUNT(*) FROM events)")[0][0]
    if held:
        raise NotEmpty(f"{dst.location} already holds a state ({held} windows and events): not copying")
    counts: dict[str, int] = {}
    with dst.transaction():
        dst._exec("DELETE FROM meta")  # the new, empty state's own id: the copied one replaces it
        for table, columns in TABLES.items():
            rows = src._q(f"SELECT {columns} FROM {table}")
            if rows:
                marks = ",".join("?" * len(rows[0]))
                dst._execmany(f"INSERT INTO {table}({columns}) VALUES({marks})", rows)
            counts[table] = len(rows)
        dst.after_copy()
    dst._load_id()
    return counts
