"""The connector's exceptions, grouped by what the caller does about them.

Library errors (pysnow, requests, slack_sdk, sqlite3) are translated into these once, at the adapter
boundary (``raise SourceUnavailable(...) from err``); nothing above an adapter catches a library error.
No message ever contains a password, token or client secret.

Hierarchy::

    ConnectorError
    ├── ConfigError ............... fix the configuration; exit code 2; never retried
    ├── SourceError ............... the ITSM could not be read this cycle: the cursor stays where it was
    │   ├── SourceAuthError ....... credentials or ACLs: log once, health turns bad, retry slowly
    │   ├── SourceUnavailable ..... 429, 5xx, timeouts, refused or reset connections: retry with backoff,
    │   │                           waiting at least ``retry_after`` seconds when the server said so
    │   └── SourceBadResponse ..... an answer that cannot be trusted (HTML login page, truncated JSON,
    │                               error envelope, pagination loop): an error, never "no changes"
    ├── SinkError ................. a delivery failed: the event stays queued in the outbox
    │   ├── SinkPermanentError .... someone must fix something (channel, token, scope): no retry storm
    │   └── SinkRetryableError .... rate limit, 5xx, timeout, unknown outcome: retry, honouring
    │                               ``retry_after``
    ├── StateError ................ the state database cannot be used (disk full, damaged, read-only,
    │                               deleted or replaced while running): the process stops; exit code 4
    │                               when an operator must act (``operator``), else 1 (it may pass)
    ├── StateLocked ............... another process holds the state database: exit code 3
    └── StateInterrupted .......... the shared state (PostgreSQL) refused a write for now: nothing was
        │                           done; the worker retries, the process goes on
        ├── StateUnavailable ...... the state database cannot be reached (PostgreSQL down, network):
        │                           no replica polls or posts until it is back
        └── NotLeader ............. this replica does not hold the lease (or no longer does): the
                                    write was refused under the fencing token; it steps down

``retryable`` says whether the same call may succeed soon without anyone changing anything; it is
what a tenacity ``retry_if_exception`` predicate reads. ``retry_after`` (seconds) is ``None`` unless
the remote side asked for a delay.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    retryable: bool = False
    retry_after: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ConnectorError):
    """The configuration is wrong. ``problems`` lists every problem, each named by its dotted key."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n  ".join([self.message, *self.problems])


class SourceError(ConnectorError):
    """The ITSM could not be read."""


class SourceAuthError(SourceError):
    """The ITSM rejected the credentials (401) or the user may not read the table (403)."""


class SourceUnavailable(SourceError):
    """The ITSM is overloaded, down or unreachable; the same request should work later."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable


class SourceBadResponse(SourceError):
    """The ITSM answered, but not with something we can trust as the complete answer."""

    retryable = True


class SinkError(ConnectorError):
    """A sink (Slack, Alertmanager) could not deliver."""


class SinkPermanentError(SinkError):
    """Delivery cannot succeed until someone changes something; the message says what."""


class SinkRetryableError(SinkError):
    """Delivery failed for now; the same call should work later."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StateError(ConnectorError):
    """The state database cannot be used; the message says what happened and what to do.

    ``operator``: only someone can fix it (a damaged, read-only, deleted or replaced database): exit
    code 4, and systemd does not restart the service (``RestartPreventExitStatus=4``). Otherwise (a
    full disk, an I/O error, a database kept locked) it may pass by itself: exit code 1, restarted."""

    def __init__(self, message: str, *, operator: bool) -> None:
        super().__init__(message)
        self.operator = operator

    @property
    def exit_code(self) -> int:
        return 4 if self.operator else 1


class StateLocked(ConnectorError):
    """Another process holds the state database's lock (``connector.store.lock``): exit code 3."""

    exit_code = 3


class StateInterrupted(ConnectorError):
    """The shared state refused a write for now (``connector.store.postgres``): the transaction left
    no trace; the worker that tried retries, and the process goes on."""

    retryable = True


class StateUnavailable(StateInterrupted):
    """The state database cannot be reached (it is down, restarting, or the network to it is)."""


class NotLeader(StateInterrupted):
    """This replica does not hold the leader lease: a write (or an outside effect) was refused. The
    fencing token it holds is older than the lease's, or the lease expired while it was paused."""
