"""Applying what a source says about one ticket to the stored state: normalize, reconcile against
what is stored, save, route and enqueue the events. The I/O-free core of a poll, shared by the poll,
the refresh of open windows, the time-driven tick and any re-read of a ticket.

:class:`Applier` works inside the caller's store transaction; it never calls the source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from connector.domain.events import Event
from connector.domain.reconcile import Tracked, reconcile
from connector.domain.routing import plan_route
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Problem
from connector.readahead import Normalized
from connector.servicenow.mapping import SourceMapping
from connector.servicenow.normalize import normalize_change
from connector.store.api import StateStore

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    fetched: int = 0
    changed: int = 0
    events: int = 0
    problems: int = 0
    first_sync: bool = False
    stale: int = 0  # read again older than what is stored (a hint's re-read): skipped
    absent: int = 0  # hinted but not found (deleted, or outside the filter)

    def add(self, other: PollResult) -> None:
        self.fetched += other.fetched
        self.changed += other.changed
        self.events += other.events
        self.problems += other.problems
        self.stale += other.stale
        self.absent += other.absent


class _Unread(Enum):
    """``prev`` was not read from the store yet: whoever needs it reads it (a sentinel, since
    ``None`` means "read, and not stored")."""

    UNREAD = "not read from the store yet"



@dataclass
class _Known:
    """A page's tickets as stored when its transaction began: their windows and which have a recorded
    problem. A ticket met again in the same page (``done``) is read one by one, as it was just saved."""

    stored: dict[str, Tracked]
    problems: set[str]
    done: set[str] = field(default_factory=set)


class Applier:
    def __init__(
        self,
        store: StateStore,
        *,
        name: str,
        base_url: str,
        table: str,
        mapping: SourceMapping,
        targets_for: Callable[[MaintenanceWindow], Sequence[Target]],
        on_event: Callable[[Event], None] = lambda e: None,
        on_quiet_change: Callable[[tuple[str, str]], None] = lambda key: None,
        on_saved: Callable[[Tracked, datetime], None] = lambda t, now: None,
    ) -> None:
        """``on_event``: each event (e.g. the events-by-kind metric); ``on_quiet_change``: an announced
        window changed with no event (title, description, group...), so its messages must still be
        brought up to date; ``on_saved``: a window was saved (the tick must not sleep past it)."""
        self.store = store
        self.name = name
        self.base_url = base_url
        self.table = table
        self.mapping = mapping
        self.id_field = mapping.fields.sys_id
        self._targets_for = targets_for
        self.on_event = on_event
        self.on_quiet_change = on_quiet_change
        self._on_saved = on_saved

    def normalize(self, raw: Mapping[str, Any]) -> Normalized:
        return normalize_change(
            raw, source=self.name, mapping=self.mapping, base_url=self.base_url, table=self.table
        )

    def apply(
        self,
        raw: Mapping[str, Any],
        cis: Mapping[str, list[str]],
        now: datetime,
        *,
        silent: bool = False,
        normalized: MaintenanceWindow | list[Problem] | None = None,
        known: _Known | None = None,
    ) -> PollResult:
        """``cis``: the ``task_ci`` CIs of the tickets that were asked about; one that was not asked
        about (a finished ticket) keeps the CIs it was last shown with. ``known``: the stored state
        of the page's tickets, read at once (see :class:`_Known`)."""
        res = PollResult(fetched=1)
        if normalized is None:
            normalized = self.normalize(raw)
        sys_id = str(raw.get(self.id_field) or "")
        if isinstance(normalized, list):
            if known is not None:  # stored as a problem now: met again in this page, it is read again
                known.done.update((sys_id, sys_id.strip()))
            self._reject(sys_id, normalized, now)
            res.problems = 1
            return res
        prev: Tracked | Literal[_Unread.UNREAD] | None = _Unread.UNREAD
        fresh = known is not None and normalized.sys_id not in known.done  # read before this page's saves
        if fresh:
            assert known is not None
            prev = known.stored.get(normalized.sys_id)
            known.done.add(normalized.sys_id)
        if normalized.sys_id in cis:
            extra = tuple(cis[normalized.sys_id])
        else:
            if prev is _Unread.UNREAD:
                prev = self.store.get_tracked(normalized.key)
            extra = prev.window.cis if prev is not None else ()
        w = normalized.with_cis(normalized.cis + extra) if extra else normalized  # cis: 0 or 1 from normalize
        may_have_problem = not fresh or (known is not None and w.sys_id in known.problems)
        if may_have_problem and self.store.clear_problem(self.name, w.sys_id):
            log.info("%s: accepted now (its earlier problem is fixed)", w.number)
        return self.reconcile(w.key, w, now, silent=silent, into=res, prev=prev)

    def _reject(self, sys_id: str, problems: list[Problem], now: datetime) -> None:
        number = problems[0].number if problems else sys_id
        if self.store.set_problems(self.name, sys_id or number, number, problems, now):
            for p in problems:
                log.warning(
                    "rejected ticket %s (source %s): %s; other tickets keep flowing", p.number, self.name, p
                )

    def reconcile(
        self,
        key: tuple[str, str],
        w: MaintenanceWindow | None,
        now: datetime,
        *,
        silent: bool = False,
        into: PollResult | None = None,
        prev: Tracked | Literal[_Unread.UNREAD] | None = _Unread.UNREAD,
    ) -> PollResult:
        """``prev``: the stored state, when the caller has already read it."""
        res = into or PollResult()
        if prev is _Unread.UNREAD:
            prev = self.store.get_tracked(key)
        tracked, events = reconcile(prev, w, now)
        if tracked is not None and (prev is None or tracked != prev):
            self.store.save_tracked(tracked)
            res.changed += 1
            self._on_saved(tracked, now)
            if tracked.announced and not events:
                self.on_quiet_change(key)
        if tracked is not None and tracked.announced:
            self._route(tracked, events, now, silent=silent)
        for e in events:
            self.on_event(e)
        res.events += len(events)
        return res

    def _route(self, tracked: Tracked, events: list[Event], now: datetime, *, silent: bool) -> None:
        """Enqueue ``events`` where the window's route sends them (see ``plan_route``) and store
        the route decision when it changed."""
        key = tracked.window.key
        old = self.store.targets(key)
        plan = plan_route(tracked, events, old, self._targets_for(tracked.window), now)
        state = "skipped" if silent else "pending"
        for batch, targets in plan.sends:
            self.enqueue(batch, targets, now, state)
        if plan.moved and old is not None:
            now_in, was_in = (", ".join(map(str, t)) for t in (plan.targets, old))
            log.info("%s: now followed in %s (was %s)", tracked.window.number, now_in, was_in)
        if old != plan.targets:
            self.store.set_targets(key, plan.targets)

    def enqueue(self, events: list[Event], targets: Sequence[Target], now: datetime, state: str) -> None:
        if not events or not targets:
            return
        self.store.enqueue(events, targets, now, state=state)
        for e in events:
            suffix = " [first sync: digest only]" if state == "skipped" else ""
            where = ", ".join(map(str, targets))
            log.info("%s: %s (%s) → %s%s", e.window.number, e.kind, e.phase, where, suffix)
