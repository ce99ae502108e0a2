"""Leader election for replicas sharing one PostgreSQL state: a lease with a fencing token.

Any number of replicas run with the same config; the one that holds the lease row of
``leader_lease`` (``connector.store.pg_schema``) is the **leader** and does everything: polls, posts,
creates silences. The others are **standbys**: they poll nothing and post nothing; every
``renew_seconds`` they look whether the lease lapsed and take it over when it did.

* The lease is one row: ``holder`` (host:pid:random — unique per process start, so a restarted
  process never inherits a token it did not check), ``expires_at`` on the server's clock, and
  ``token``, which grows by one each time the lease changes hands. Acquiring and renewing are one
  upsert that succeeds only for the holder or once the lease expired (``ACQUIRE``).
* **Fencing**: every write transaction of the store checks, ``FOR SHARE``, that the row still names
  this holder with this token and has not expired (:class:`~connector.store.postgres.PostgresStore`
  calls :meth:`Leadership.fence`). A leader paused (SIGSTOP, swap, a network partition) past its lease
  wakes up unable to mark a post in flight, move a cursor or record a silence.
* **Before an outside effect** (a Slack call, an Alertmanager request: they cannot check a token),
  :meth:`Leadership.guard` checks the lease as this process last renewed it, on the monotonic clock:
  valid until ``lease_seconds`` after the start of the last successful renewal, less a margin — which
  is before the server lets anyone else take it. A process that was paused notices here at once,
  before its other threads resume any request.
* No session advisory lock decides leadership: a paused process keeps its TCP session alive (the
  kernel answers keepalives), so such a lock would keep a SIGSTOPped leader in place for good. The
  lease row decides; advisory locks only serialise the migrations.

Default timing: lease 10 s, renewed every 3 s: a standby takes over at most ~13 s after the leader
died, and a renewal can fail twice before the leader steps down.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from connector.errors import NotLeader
from connector.store.postgres import describe

log = logging.getLogger(__name__)

LEASE = "connector"
#: of the lease, what the leader keeps as a margin (clock rates, the time a request takes to leave):
#: this much of it, at most 1 s
MARGIN = 0.1

ACQUIRE = """
INSERT INTO leader_lease AS l (name, holder, token, expires_at, host, pid, since)
VALUES (%(name)s, %(me)s, 1, now() + make_interval(secs => %(lease)s), %(host)s, %(pid)s, now())
ON CONFLICT (name) DO UPDATE
   SET token = l.token + (l.holder <> EXCLUDED.holder)::int,
       since = CASE WHEN l.holder = EXCLUDED.holder THEN l.since ELSE now() END,
       holder = EXCLUDED.holder, host = EXCLUDED.host, pid = EXCLUDED.pid,
       expires_at = EXCLUDED.expires_at
 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING token, since, expires_at
"""
CURRENT = "SELECT holder, host, pid, token, since, expires_at FROM leader_lease WHERE name = %(name)s"
RELEASE = "UPDATE leader_lease SET expires_at = now() WHERE name = %(name)s AND holder = %(me)s"


@dataclass(frozen=True)
class LeaseInfo:
    """The lease as last read: who leads, since when, until when (server times)."""

    holder: str
    host: str
    pid: int
    token: int
    since: datetime
    expires_at: datetime


def read_lease(conn: psycopg.Connection[Any], name: str = LEASE) -> LeaseInfo | None:
    row = conn.execute(CURRENT, {"name": name}).fetchone()
    return LeaseInfo(*row) if row else None


class Leadership:
    """This replica's side of the election. :meth:`start` runs :meth:`step` in a thread every
    ``renew`` seconds; ``on_change(leader)`` is called (in that thread) on every change of role.
    ``fenced=False`` turns fencing off — **for the tests only**, which show that without it a paused
    leader posts twice."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        lease: float = 10.0,
        renew: float = 3.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] = lambda leader: None,
        fenced: bool = True,
        name: str = LEASE,
    ) -> None:
        self.name = name
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.me = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
        self.lease, self.renew = lease, renew
        self.fenced = fenced
        self._connect = connect
        self._monotonic = monotonic
        self._on_change = on_change
        self._conn: psycopg.Connection[Any] | None = None
        self._leader = False  # as announced (on_change); is_leader() also checks the lease's time
        self._token: int | None = None
        self._valid_until = 0.0
        self._last_ok: float | None = None  # monotonic time of the last round the database answered
        self._error: str | None = None
        self.since: datetime | None = None  # when this replica became leader (server time)
        self.current: LeaseInfo | None = None  # the lease as last read
        self.changes = 0
        self._promoted_at = 0.0  # monotonic time this replica last became the leader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the rest of the connector asks -----------------------------------------------------
    def is_leader(self) -> bool:
        """True while this replica holds a lease that, as far as it knows, has not lapsed."""
        return self._monotonic() < self._valid_until

    def fence(self) -> tuple[str, str, int] | None:
        """(lease, holder, token) for the store's fence, or None when not the leader."""
        token = self._token
        return (self.name, self.me, token) if token is not None and self.is_leader() else None

    def guard(self) -> None:
        """Raise :class:`NotLeader` unless this replica may act now (before each outside request)."""
        if self.fenced and not self.is_leader():
            raise NotLeader("not the leader (the lease lapsed or was never held): no request is sent")

    @property
    def role(self) -> str:
        return "leader" if self.is_leader() else "standby"

    def reachable(self) -> bool:
        """Whether the state database answered one of the last three rounds."""
        last = self._last_ok
        return last is not None and self._monotonic() - last <= 3 * self.renew + 1

    @property
    def error(self) -> str | None:
        return self._error

    # -- one round -------------------------------------------------------------------------------
    def step(self) -> bool:
        """Acquire or renew the lease once; returns whether this replica leads now."""
        started = self._monotonic()
        try:
            conn = self._connection()
            row = conn.execute(
                ACQUIRE,
                {"name": self.name, "me": self.me, "lease": self.lease, "host": self.host, "pid": self.pid},
            ).fetchone()
            current = read_lease(conn, self.name) if row is None else None
        except (psycopg.Error, OSError) as e:
            self._lost_connection(e)
            self._settle()
            return self.is_leader()
        self._last_ok = self._monotonic()
        if self._error is not None:
            log.info("leader election: the state database answers again")
            self._error = None
        if row is not None:
            token, since, expires_at = int(row[0]), row[1], row[2]
            if self._leader and self._token is not None and token != self._token:
                self._announce(False, f"the lease changed hands meanwhile (token {self._token} → {token})")
            self._token, self.since = token, since
            self._valid_until = started + self.lease - min(1.0, MARGIN * self.lease)
            self.current = LeaseInfo(self.me, self.host, self.pid, token, since, expires_at)
        else:
            self._valid_until = 0.0
            self.current = current
        self._settle(lost_to=current)
        return self.is_leader()

    def _settle(self, lost_to: LeaseInfo | None = None) -> None:
        """Announce a change of role, if there was one."""
        now_leader = self.is_leader()
        if now_leader and not self._leader:
            self._announce(True, f"holds the lease, token {self._token}")
        elif self._leader and not now_leader:
            if lost_to is not None and lost_to.holder != self.me:
                why = f"the lease is held by {lost_to.host} (pid {lost_to.pid}, token {lost_to.token})"
            elif self._error is not None:
                why = f"the lease lapsed: the state database cannot be reached ({self._error})"
            else:
                why = "the lease lapsed before it was renewed (was this process paused?)"
            self._announce(False, why)

    def leading_for(self) -> float:
        """Seconds since this replica last became the leader (its sources' health counts from there)."""
        return max(0.0, self._monotonic() - self._promoted_at)

    def _announce(self, leader: bool, why: str) -> None:
        self._leader = leader
        self.changes += 1
        if leader:
            self._promoted_at = self._monotonic()
        if leader:
            log.warning("leader election: this replica (%s) is now the LEADER: %s", self.me, why)
        else:
            log.warning("leader election: this replica (%s) steps down to STANDBY: %s", self.me, why)
        try:
            self._on_change(leader)
        except Exception:
            log.exception("leader election: reacting to the change of role failed")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _lost_connection(self, e: BaseException) -> None:
        reason = describe(e) if isinstance(e, psycopg.Error) else str(e)
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self._conn = None
        if self._error != reason:
            left = max(0.0, self._valid_until - self._monotonic())
            if self.is_leader():
                log.error(
                    "leader election: cannot renew the lease (%s); still leading for %.0fs unless it is "
                    "renewed",
                    reason,
                    left,
                )
            else:
                log.error("leader election: cannot reach the state database (%s)", reason)
        self._error = reason

    # -- the thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a bug: keep electing
                log.exception("leader election: a round failed")
            # the next round: on time, or when the lease would lapse (to step down at that moment)
            delay = self.renew
            if self._leader:
                delay = min(delay, max(0.05, self._valid_until - self._monotonic()))
            if self._stop.wait(delay):
                return

    def stop(self, release: bool = True) -> None:
        """Stop the thread; ``release``: let the lease go now, so a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if release and self.is_leader():
            try:
                self._connection().execute(RELEASE, {"name": self.name, "me": self.me})
                log.info("leader election: lease released for a standby to take over")
            except psycopg.Error as e:
                log.warning("leader election: could not release the lease (%s)", describe(e))
            self._leader, self._token, self._valid_until = False, None, 0.0
        if self._conn is not None:
            self._conn.close()
            self._conn = None
