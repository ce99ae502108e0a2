"""The state store's schema: each table and why it is needed to be exactly-once in effect, and the
migrations that build it, one script per version (``PRAGMA user_version`` counts those applied).

- ``windows``: each window as last seen and the phase last announced (the input of reconcile);
- ``cursors``: the incremental-sync bookmark per source, written in the same transaction as the
  windows and events that the fetched page produced;
- ``events`` + ``deliveries``: the outbox; one delivery row per (event, target). A delivery goes
  ``pending`` → ``inflight`` (committed *before* the request that is not idempotent) → ``done``.
  An ``inflight`` row found later means "outcome unknown": the sink must look before it re-posts;
- ``messages``: per window and target, the Slack message (``ts``) that is kept current;
- ``problems``: tickets that could not become windows, with the reason, for ``windows --problems``;
- ``silences``: Alertmanager silences per window;
- ``targets``: the channels that follow each window;
- ``meta``: the store's random id (namespaces event ids in Slack metadata) and small facts;
- ``seen``: the version (``sys_mod_count`` or a digest) last applied of each recently updated record,
  so the poll's lookback skips what it reads again (``connector.servicenow.lookback``); rows older
  than the lookback are dropped as new ones are written;
- ``leader_lease``: on PostgreSQL, the one lease replicas compete for: who holds it, until when, and
  its fencing token, which grows by one each time the lease changes hands; every write transaction of
  the leader checks it (``connector.leader``). On SQLite (one host) it stays empty.

``windows.settled_at`` (v5) is when a window stopped needing anything (``connector.store.retention``):
retention counts from it, and the calendar reads only windows that have not settled or settled lately.

The same migrations exist for PostgreSQL (:mod:`connector.store.pg_schema`), in the same order and
numbering: version *n* there makes the change version *n* makes here.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE windows (
        source TEXT NOT NULL, sys_id TEXT NOT NULL, number TEXT NOT NULL, phase TEXT NOT NULL,
        window TEXT NOT NULL, PRIMARY KEY (source, sys_id));
    CREATE TABLE cursors (
        source TEXT NOT NULL, name TEXT NOT NULL, updated_on TEXT NOT NULL, sys_id TEXT NOT NULL,
        PRIMARY KEY (source, name));
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, sys_id TEXT NOT NULL,
        kind TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE deliveries (
        event_id INTEGER NOT NULL REFERENCES events(id), target TEXT NOT NULL, state TEXT NOT NULL,
        ts TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (event_id, target));
    CREATE INDEX deliveries_open ON deliveries (target, state, event_id);
    CREATE TABLE messages (
        source TEXT NOT NULL, sys_id TEXT NOT NULL, target TEXT NOT NULL, ts TEXT, state TEXT NOT NULL,
        rendered TEXT, PRIMARY KEY (source, sys_id, target));
    CREATE TABLE problems (
        source TEXT NOT NULL, sys_id TEXT NOT NULL, number TEXT NOT NULL, problems TEXT NOT NULL,
        first_seen TEXT NOT NULL, PRIMARY KEY (source, sys_id));
    CREATE TABLE silences (
        source TEXT NOT NULL, sys_id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (source, sys_id));
    """,
    # 2: whether L1 was told about a window is recorded, not derived from its phase (a window first
    # seen already over is tracked but never announced)
    """
    ALTER TABLE windows ADD COLUMN announced INTEGER NOT NULL DEFAULT 0;
    UPDATE windows SET announced = (phase != 'pending');
    """,
    # 3: the channels that follow each window (routes can change), and per-channel one-off notes
    """
    CREATE TABLE targets (
        source TEXT NOT NULL, sys_id TEXT NOT NULL, targets TEXT NOT NULL, PRIMARY KEY (source, sys_id));
    INSERT OR REPLACE INTO targets(source, sys_id, targets)
        SELECT e.source, e.sys_id, json_array(d.target) FROM events e JOIN deliveries d ON d.event_id = e.id
        ORDER BY e.id;
    """,
    # 4: the versions applied of recently updated records, for the poll's lookback
    """
    CREATE TABLE seen (
        source TEXT NOT NULL, sys_id TEXT NOT NULL, updated_on TEXT NOT NULL, version TEXT NOT NULL,
        PRIMARY KEY (source, sys_id));
    CREATE INDEX seen_updated ON seen (source, updated_on);
    """,
    # 5: retention: when each window settled (NULL while it may still change), indexed, and the events
    # of a window found without reading them all (a window's rows are deleted together)
    """
    ALTER TABLE windows ADD COLUMN settled_at TEXT;
    UPDATE windows SET settled_at = CASE
        WHEN json_extract(window, '$.planned_end') IS NULL AND json_extract(window, '$.updated_on') IS NULL
        THEN NULL
        ELSE max(coalesce(json_extract(window, '$.planned_end'), ''),
                 coalesce(json_extract(window, '$.updated_on'), '')) END
        WHERE phase IN ('completed', 'cancelled', 'withdrawn', 'ended', 'pending');
    CREATE INDEX windows_settled ON windows (settled_at);
    CREATE INDEX events_window ON events (source, sys_id);
    """,
    # 6: the leader lease of replicas sharing one PostgreSQL state (unused on SQLite)
    """
    CREATE TABLE leader_lease (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL, expires_at TEXT NOT NULL,
        host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL);
    """,
]
