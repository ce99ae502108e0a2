"""The state store on PostgreSQL (psycopg 3, no ORM): replicas on several hosts share one state, and
one of them, the leader, writes it.

The queries are :class:`connector.store.base.SqlStore`'s (shared with SQLite, ``?`` turned into
``%s``); this module holds the plumbing:

* one connection in autocommit mode; a transaction is an explicit ``BEGIN`` … ``COMMIT`` under the
  store's lock (the workers' transactions are serialised as on SQLite). A write outside a
  transaction gets one of its own, so every write passes the fence below;
* **the fence**: once :attr:`fence` is set (``connector.leader`` does it on a replica of a group),
  every transaction begins by checking, ``FOR SHARE``, that the lease row still names this replica
  with the same token and has not expired on the server's clock. Zero rows: the transaction is rolled
  back and :class:`~connector.errors.NotLeader` raised — a leader that was paused past its lease
  cannot mark a post in flight, move a cursor or record a silence. ``FOR SHARE`` makes a takeover wait
  until such a transaction has committed;
* migrations: :mod:`connector.store.pg_schema`, each version in one transaction under
  ``pg_advisory_xact_lock``;
* a lost connection (the server restarted, the network) is :class:`~connector.errors.StateUnavailable`;
  the next transaction connects again. The session's ``idle_in_transaction_session_timeout`` ends a
  transaction left open by a paused process, so its ``FOR SHARE`` cannot block a takeover for long.

The password never appears in :attr:`location` (what logs and ``status`` show).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from connector.errors import NotLeader, StateError, StateUnavailable
from connector.store.pg_schema import MIGRATION_LOCK, PG_MIGRATIONS, SCHEMA_VERSION_TABLE
from connector.store.queries import SqlStore

log = logging.getLogger(__name__)

#: (lease name, holder, token) as the leader holds them, or None when it holds no lease
Fence = Callable[[], "tuple[str, str, int] | None"]

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

FENCE_SQL = (
    "SELECT 1 FROM leader_lease WHERE name=? AND holder=? AND token=? AND expires_at > now() FOR SHARE"
)


def safe_url(url: str) -> str:
    """``url`` without a password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """The shared SQL's ``?`` placeholders in psycopg's style (no query has a literal ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def connect_args(
    url: str,
    password: str | None,
    *,
    timeout: float,
    application_name: str,
    idle_in_tx: float,
    schema: str | None = None,
    lock_timeout: float = 10.0,
) -> dict[str, Any]:
    """What :func:`psycopg.connect` gets, for every connection of a replica: autocommit, TCP
    keepalives short enough that a dead server is noticed in ~25 s (not Linux's two hours), and
    server-side timeouts so that a paused client cannot hold a lock for long."""
    options = (
        f"-c idle_in_transaction_session_timeout={int(idle_in_tx * 1000)} "
        f"-c statement_timeout=30000 -c lock_timeout={int(lock_timeout * 1000)}"
    )
    if schema is not None:
        options += f" -c search_path={schema}"
    args: dict[str, Any] = {
        "conninfo": url,
        "autocommit": True,
        "connect_timeout": max(2, int(timeout)),
        "application_name": application_name,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
        "options": options,
    }
    if password is not None:
        args["password"] = password
    return args


def describe(e: psycopg.Error) -> str:
    """The first line of a psycopg error, e.g. "connection refused" (never a password: libpq does not
    put one in its messages)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class PostgresStore(SqlStore):
    """``url``: ``postgresql://user@host:port/dbname`` (no password: ``password`` is given apart).
    ``schema``: the PostgreSQL schema that holds the tables (created if missing; default: the
    role's ``search_path``, usually ``public``). ``migrate=False``: for the commands that only read
    (nothing is created or migrated)."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        connect_timeout: float = 5.0,
        idle_in_transaction_timeout: float = 10.0,
        application_name: str = "itsm-connector",
        schema: str | None = None,
        migrate: bool = True,
    ) -> None:
        if schema is not None and not SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"not a plain PostgreSQL schema name: {schema!r}")
        self.url = url
        self.schema = schema
        self._args = connect_args(
            url,
            password,
            timeout=connect_timeout,
            application_name=application_name,
            idle_in_tx=idle_in_transaction_timeout,
            schema=schema,
        )
        self._setup()
        #: set by the leader election: every transaction then checks the lease (see the module doc)
        self.fence: Fence | None = None
        #: statements sent since this store was opened (bench/ha reports them per idle cycle)
        self.statements = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._connection()
        if migrate:
            self._migrate()
            self._load_id()
        else:  # a command that only reads: it checks the schema itself (``schema_version``)
            self.store_id = ""

    @property
    def location(self) -> str:
        return safe_url(self.url)

    # -- the connection -----------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self._depth:  # never silently continue a transaction on a new connection
            raise StateUnavailable(f"state database {self.location}: connection lost in a transaction")
        try:
            self._conn = psycopg.connect(**self._args)
        except psycopg.Error as e:
            raise StateUnavailable(f"state database {self.location} unavailable: {describe(e)}") from None
        return self._conn

    def _failed(self, e: psycopg.Error) -> StateUnavailable:
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed):
            self._conn = None
        return StateUnavailable(f"state database {self.location} unavailable: {describe(e)}")

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._lock:
            conn = self._connection()
            self.statements += 1
            try:
                if not args:  # sent as it is: a script of several statements (a migration) may be
                    return conn.execute(sql)
                return conn.execute(_pg(sql), args)
            except psycopg.OperationalError as e:
                raise self._failed(e) from None

    def _execmany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            conn = self._connection()
            self.statements += 1
            try:
                conn.cursor().executemany(_pg(sql), rows)
            except psycopg.OperationalError as e:
                raise self._failed(e) from None

    def _insert_id(self, sql: str, args: Sequence[Any]) -> int:
        row = self._exec(sql + " RETURNING id", args).fetchone()
        return int(row[0])

    # -- transactions -------------------------------------------------------------------------------
    def _begin(self) -> None:
        fence = self.fence() if self.fence is not None else None
        if self.fence is not None and fence is None:
            raise NotLeader("not the leader: this replica holds no lease, the write is refused")
        self._exec("BEGIN")
        if fence is None:
            return
        try:
            held = self._exec(FENCE_SQL, fence).fetchone()
        except BaseException:
            self._rollback()
            raise
        if held is None:
            self._rollback()
            raise NotLeader(
                f"not the leader any more: the lease {fence[0]!r} no longer holds token {fence[2]} for this "
                "replica (it expired or another replica took it over); the write is refused"
            )

    def _commit(self) -> None:
        self._exec("COMMIT")

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.broken or conn.closed:
            return  # the server rolled it back when the connection ended
        try:
            self.statements += 1
            conn.execute("ROLLBACK")
        except psycopg.Error as e:
            log.debug("rollback failed: %s", describe(e))
            self._failed(e)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- migrations ---------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Each missing version in its own transaction, under the migration lock, rechecked inside
        it: replicas that start together apply each version once."""
        while True:
            with self.transaction():
                self._exec("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                if self.schema is not None:
                    self._exec(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                self._exec(SCHEMA_VERSION_TABLE)
                version = self._exec("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
                if version > len(PG_MIGRATIONS):
                    raise StateError(
                        f"the state database {self.location} is schema v{version}, newer than this "
                        "program: it was written by a newer release. Run that release on every replica",
                        operator=True,
                    )
                if version == len(PG_MIGRATIONS):
                    return
                self._exec(PG_MIGRATIONS[version])  # no parameters: several statements in one go
                self._exec("INSERT INTO schema_version(version) VALUES(?)", (version + 1,))
                log.info("state database %s: migrated to schema v%d", self.location, version + 1)

    def after_copy(self) -> None:
        """The events' id sequence continues after the ids copied in (never reused: Slack metadata)."""
        self._exec(
            "SELECT setval(pg_get_serial_sequence('events', 'id'), GREATEST(COALESCE(MAX(id), 0), 1), "
            "MAX(id) IS NOT NULL) FROM events"
        )

    def lease(self, name: str = "connector") -> tuple[str, int, datetime, datetime, int] | None:
        """(host, pid, since, expires_at, token) of the leader lease, or None if never held."""
        rows = self._q("SELECT host, pid, since, expires_at, token FROM leader_lease WHERE name=?", (name,))
        return (rows[0][0], int(rows[0][1]), rows[0][2], rows[0][3], int(rows[0][4])) if rows else None

    def schema_version(self) -> int:
        return int(self._q("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0])

    # -- what only PostgreSQL's dialect says --------------------------------------------------------
    #: the server reads the planned times out of the window's JSON
    _WINDOW_COLUMN = 'w."window"'
    _OVERLAPS = (
        """(w."window"::json->>'planned_end')::timestamptz >= ?::timestamptz AND """
        """(w."window"::json->>'planned_start')::timestamptz <= ?::timestamptz"""
    )

