"""The state store's interface: what the rest of the connector may ask of it, whichever database holds
the state (:class:`StateStore`), and the rows it hands out.

Two implementations share the queries (:class:`connector.store.base.SqlStore`) and the invariants of
:mod:`connector.store.schema`: :class:`connector.store.sqlite.Store` (one host, the default) and
:class:`connector.store.postgres.PostgresStore` (replicas sharing one state, with a leader lease whose
fencing token every write transaction checks). :func:`connector.store.open.open_store` picks one from
the ``state`` settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from connector.domain.events import Event
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import Problem
from connector.servicenow.query import Cursor
from connector.store.facts import LastPoll, SinkState

__all__ = [
    "Delivery",
    "LastPoll",
    "MessageRef",
    "NotRouted",
    "ProblemRow",
    "SinkState",
    "StateStore",
    "StoredWindow",
]


class NotRouted(RuntimeError):
    """A message was about to be recorded in a target the window's route does not name: a bug
    that would leak one customer's window into another's channel, refused by the store."""


@dataclass(frozen=True)
class Delivery:
    event_id: int
    target: Target
    state: str
    event: Event
    attempts: int

    @property
    def key(self) -> tuple[str, str]:
        return self.event.key


@dataclass(frozen=True)
class MessageRef:
    ts: str | None
    state: str  # "inflight" (post sent, outcome unknown) or "posted"
    rendered: str | None


@dataclass(frozen=True)
class ProblemRow:
    source: str
    sys_id: str
    number: str
    problems: list[str]
    first_seen: datetime


@dataclass(frozen=True)
class StoredWindow:
    """A window with what the board shows beside it: its channels and its silences."""

    tracked: Tracked
    targets: list[Target] | None  # None: never routed
    silences: list[dict[str, Any]]


class StateStore(Protocol):
    """The state as the connector uses it. Writes made inside :meth:`transaction` commit together
    or not at all; a write outside one commits alone."""

    #: random, per state: namespaces the ids put in Slack metadata
    store_id: str
    #: bumped by every local write of what the calendar shows (a reader that saw a value has not seen
    #: later writes of this process)
    generation: int

    @property
    def location(self) -> str:
        """Where the state lives, fit for a log line (a path, or a URL without its password)."""

    def transaction(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...
    def schema_version(self) -> int: ...

    # -- windows
    def get_tracked(self, key: tuple[str, str]) -> Tracked | None: ...
    def tracked_among(self, source: str, sys_ids: Sequence[str]) -> dict[str, Tracked]: ...
    def tracked(
        self, *, open_only: bool = False, source: str | None = None, settled_since: datetime | None = None
    ) -> list[Tracked]: ...
    def windows_between(self, since: datetime, until: datetime) -> list[StoredWindow]: ...
    def phase_counts(self) -> dict[str, int]: ...
    def save_tracked(self, t: Tracked) -> None: ...
    def targets(self, key: tuple[str, str]) -> list[Target] | None: ...
    def set_targets(self, key: tuple[str, str], targets: Sequence[Target]) -> None: ...
    def routed(self, key: tuple[str, str], target: Target) -> bool: ...
    def routed_among(self, target: Target, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def event_counts(self, settled_since: datetime | None = None) -> dict[tuple[str, str], int]: ...

    # -- cursors and the lookback
    def cursor(self, source: str, name: str = "changes") -> Cursor | None: ...
    def set_cursor(self, source: str, cursor: Cursor | None, name: str = "changes") -> None: ...
    def seen_since(self, source: str, updated_on: str) -> dict[str, str]: ...
    def seen_among(self, source: str, sys_ids: Sequence[str]) -> dict[str, str]: ...
    def remember_seen(self, source: str, rows: Sequence[tuple[str, str, str]], floor: str) -> None: ...

    # -- outbox
    def enqueue(
        self, events: Sequence[Event], targets: Sequence[Target], now: datetime, state: str = "pending"
    ) -> None: ...
    def open_deliveries(self, target: Target, limit: int = 1000) -> list[Delivery]: ...
    def mark_delivery(
        self,
        event_id: int,
        target: Target,
        state: str,
        now: datetime,
        *,
        ts: str | None = None,
        error: str | None = None,
    ) -> None: ...
    def delivered(self, target: Target) -> list[tuple[Event, str | None]]: ...
    def outbox_stats(self, now: datetime) -> tuple[int, float]: ...

    # -- messages
    def message(self, key: tuple[str, str], target: Target) -> MessageRef | None: ...
    def set_message(
        self, key: tuple[str, str], target: Target, *, ts: str | None, state: str, rendered: str | None = None
    ) -> None: ...
    def messages(self, target: Target) -> dict[tuple[str, str], MessageRef]: ...

    # -- problems
    def set_problems(
        self, source: str, sys_id: str, number: str, problems: Sequence[Problem], now: datetime
    ) -> bool: ...
    def problems_among(self, source: str, sys_ids: Sequence[str]) -> set[str]: ...
    def clear_problem(self, source: str, sys_id: str) -> bool: ...
    def problems(self) -> list[ProblemRow]: ...

    # -- retention (connector.store.retention)
    def prune(self, cutoff: datetime, *, limit: int = 200, source: str | None = None) -> int: ...

    # -- silences
    def silences(self, key: tuple[str, str]) -> list[dict[str, Any]]: ...
    def set_silences(self, key: tuple[str, str], data: Sequence[Mapping[str, Any]]) -> None: ...

    # -- facts (connector.store.facts)
    def last_poll(self, source: str) -> LastPoll | None: ...
    def set_last_poll(self, source: str, poll: LastPoll) -> None: ...
    def first_sync_done(self, source: str) -> bool: ...
    def mark_first_sync_done(self, source: str, at: datetime) -> None: ...
    def sink_state(self, sink: str) -> SinkState | None: ...
    def set_sink_state(self, sink: str, state: SinkState) -> None: ...
    def digest_state(self, target: Target) -> str: ...
    def set_digest_state(self, target: Target, state: str) -> None: ...
    def digest_slot(self, target: Target) -> datetime | None: ...
    def set_digest_slot(self, target: Target, slot: datetime) -> None: ...
    def reminded(self, target: Target, key: tuple[str, str], start: datetime) -> bool: ...
    def mark_reminded(self, target: Target, key: tuple[str, str], start: datetime, at: datetime) -> None: ...
