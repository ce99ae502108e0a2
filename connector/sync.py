"""One source's sync: cursor → fetch → normalize → reconcile → commit (windows, events, cursor together).

Three jobs, each one short transaction per page so a crash loses nothing and repeats nothing:

- :meth:`Syncer.poll`: the incremental sync of changed tickets, plus new affected-CI rows;
- :meth:`Syncer.tick`: time-driven events (started, ended, overran) for open windows, no I/O;
- :meth:`Syncer.refresh`: the slower full check of open windows: affected CIs (editing ``task_ci``
  may not touch the change's ``sys_updated_on``) and membership (deleted or out of the filter).

Delivery is not done here: events go to the outbox and the sinks drain it on their own schedule.

The poll reads ahead (:mod:`connector.readahead`): other threads fetch and normalize the next pages
and ask ``task_ci`` about them, while this thread reconciles and commits the pages already read, in
order, each with its cursor. Only this thread touches the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal, Protocol

from connector.domain.events import Event, EventKind
from connector.domain.moments import FOREVER, next_moment, reminder_due
from connector.domain.reconcile import Tracked, reconcile
from connector.domain.routing import plan_route
from connector.domain.target import Target
from connector.domain.window import TERMINAL_PHASES, MaintenanceWindow, Problem
from connector.memory import release_after_catch_up
from connector.readahead import Normalized, PageReader, ReadPage
from connector.servicenow.lookback import Seen, lookback_start
from connector.servicenow.mapping import SourceMapping
from connector.servicenow.normalize import clean_text, normalize_change
from connector.servicenow.query import ChangePage, Cursor, format_sn_datetime, next_cursor
from connector.store.sqlite import Store

log = logging.getLogger(__name__)

#: A poll that read more tickets than this (several pages: a first sync, a catch-up) gives the memory
#: it used back before the daemon goes back to idling.
RELEASE_AFTER_TICKETS = 1000

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


class ChangeSource(Protocol):
    """What :class:`Syncer` needs from an ITSM (``connector.servicenow.client.ServiceNowSource``)."""

    def fetch_changes(
        self,
        filter: str,
        cursor: Cursor | None,
        fields: list[str],
        *,
        signpost: datetime,
        max_pages: int = ...,
        lookback: timedelta = ...,
    ) -> Iterable[ChangePage]: ...

    def fetch_by_ids(
        self, sys_ids: Sequence[str], fields: list[str], filter: str = ""
    ) -> list[dict[str, Any]]: ...

    def fetch_task_cis(
        self, *, task_ids: Sequence[str] | None = None, updated_since: Cursor | None = None
    ) -> list[tuple[str, str, Cursor]]: ...


@dataclass
class PollResult:
    fetched: int = 0
    changed: int = 0
    events: int = 0
    problems: int = 0
    first_sync: bool = False

    def add(self, other: PollResult) -> None:
        self.fetched += other.fetched
        self.changed += other.changed
        self.events += other.events
        self.problems += other.problems


class Syncer:
    def __init__(
        self,
        source: ChangeSource,
        store: Store,
        *,
        name: str,
        base_url: str,
        table: str,
        filter: str,
        mapping: SourceMapping,
        targets: Sequence[Target],
        first_run: str = "digest",
        on_event: Callable[[Event], None] | None = None,
        targets_for: Callable[[MaintenanceWindow], Sequence[Target]] | None = None,
        reminder_minutes: Callable[[Target], int | None] = lambda target: None,
        on_quiet_change: Callable[[tuple[str, str]], None] = lambda key: None,
        lookback: timedelta = timedelta(0),
    ) -> None:
        self.source = source
        self.store = store
        self.name = name
        self.base_url = base_url
        self.table = table
        self.filter = filter
        self.mapping = mapping
        self.fields = mapping.fields.fields()
        self.id_field = mapping.fields.sys_id
        self.lookback = lookback  # each poll reads again what changed this long before it started
        self.targets = list(targets)  # every channel (each gets its own first-run digest)
        self.first_run = first_run
        self._targets_for = targets_for or (lambda w: self.targets)
        self._reminder_minutes = reminder_minutes
        self.on_event = on_event or (lambda e: None)  # e.g. the events-by-kind metric
        # an announced window changed with no event (title, description, group...): its messages
        # must still be brought up to date
        self.on_quiet_change = on_quiet_change
        # The tick reads every open window only when one may have reached a start, end or reminder
        # time: until then nothing can change by time alone. None: not known yet (read them all).
        self._quiet_until: datetime | None = None

    # -- incremental poll -------------------------------------------------------------------------
    def poll(self, now: datetime, progress: Callable[[], None] = lambda: None) -> PollResult:
        """``progress`` is called after each committed page (the daemon's watchdog heartbeat), and
        while waiting for a page that is being read."""
        result = PollResult(first_sync=not self.store.first_sync_done(self.name))
        silent = result.first_sync and self.first_run != "announce"
        cursor = self.store.cursor(self.name)
        seen = self._seen(cursor, now)
        read = PageReader(
            changes=lambda: self.source.fetch_changes(
                self.filter, cursor, self.fields, signpost=now, lookback=self.lookback
            ),
            normalize=self._normalize,
            task_cis=self._task_cis,
            now=now,
            name=f"poll-{self.name}",
            id_field=self.id_field,
            seen=seen,
        ).ahead(on_wait=progress)
        with read:
            for page in read:
                with self.store.transaction():
                    known = self._known(page)
                    for raw, normalized in page.records:
                        result.add(
                            self._apply(raw, page.cis, now, silent=silent, normalized=normalized, known=known)
                        )
                    if seen is not None:
                        self.store.remember_seen(self.name, page.remember, format_sn_datetime(seen.floor))
                    self.store.set_cursor(self.name, page.cursor)
                progress()
        if result.first_sync:
            with self.store.transaction():
                self.store.mark_first_sync_done(self.name, now)
                if self.first_run == "digest":
                    for target in self.targets:
                        self.store.set_digest_state(target, "pending")
        result.add(self._poll_task_cis(now))
        if result.fetched > RELEASE_AFTER_TICKETS:
            release_after_catch_up()
        return result

    def _seen(self, cursor: Cursor | None, now: datetime) -> Seen | None:
        """The versions applied of the records this poll may read again (None: no lookback)."""
        if self.lookback <= timedelta(0):
            return None
        start = lookback_start(cursor, now, self.lookback)
        since = format_sn_datetime(start.updated_on) if start is not None else ""
        f = self.mapping.fields
        return Seen(
            self.store.seen_since(self.name, since), now - self.lookback, f.sys_id, f.updated_on, f.mod_count
        )

    def _known(self, page: ReadPage) -> _Known:
        """What the store holds about the page's tickets, in two queries instead of two per ticket."""
        ids = [w.sys_id for _, w in page.records if isinstance(w, MaintenanceWindow)]
        return _Known(self.store.tracked_among(self.name, ids), self.store.problems_among(self.name, ids))

    def _normalize(self, raw: Mapping[str, Any]) -> Normalized:
        return normalize_change(
            raw, source=self.name, mapping=self.mapping, base_url=self.base_url, table=self.table
        )

    def _apply(
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
            normalized = self._normalize(raw)
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
        return self._reconcile(w.key, w, now, silent=silent, into=res, prev=prev)

    def _reject(self, sys_id: str, problems: list[Problem], now: datetime) -> None:
        number = problems[0].number if problems else sys_id
        if self.store.set_problems(self.name, sys_id or number, number, problems, now):
            for p in problems:
                log.warning(
                    "rejected ticket %s (source %s): %s; other tickets keep flowing", p.number, self.name, p
                )

    def _reconcile(
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
            self._wake_tick_at(tracked, now)
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
            self._enqueue(batch, targets, now, state)
        if plan.moved and old is not None:
            now_in, was_in = (", ".join(map(str, t)) for t in (plan.targets, old))
            log.info("%s: now followed in %s (was %s)", tracked.window.number, now_in, was_in)
        if old != plan.targets:
            self.store.set_targets(key, plan.targets)

    def _enqueue(self, events: list[Event], targets: Sequence[Target], now: datetime, state: str) -> None:
        if not events or not targets:
            return
        self.store.enqueue(events, targets, now, state=state)
        for e in events:
            suffix = " [first sync: digest only]" if state == "skipped" else ""
            where = ", ".join(map(str, targets))
            log.info("%s: %s (%s) → %s%s", e.window.number, e.kind, e.phase, where, suffix)

    # -- affected CIs -------------------------------------------------------------------------------
    def _task_cis(self, task_ids: Sequence[str]) -> dict[str, list[str]]:
        """Each asked-about task's CI names (an empty list for a task with no ``task_ci`` row), cleaned
        like every other ticket text."""
        cis: dict[str, list[str]] = {t: [] for t in task_ids if t}
        for task, ci, _ in self.source.fetch_task_cis(task_ids=task_ids):
            if name := clean_text(ci):
                cis.setdefault(task, []).append(name)
        return cis

    def _poll_task_cis(self, now: datetime) -> PollResult:
        """New or edited ``task_ci`` rows since the last poll: one request when nothing changed."""
        cursor = self.store.cursor(self.name, "task_ci")
        if cursor is None:  # nothing to catch up on: the change sync fetched every window's CIs
            with self.store.transaction():
                self.store.set_cursor(self.name, Cursor(now, ""), "task_ci")
            return PollResult()
        rows = self.source.fetch_task_cis(updated_since=cursor)
        last = max((c for _, _, c in rows), default=None)
        touched = sorted({task for task, _, _ in rows})
        stored = (self.store.get_tracked((self.name, task)) for task in touched)  # not every open window
        affected = [t for t in stored if t is not None and t.phase not in TERMINAL_PHASES]
        res = PollResult()
        if affected:
            res = self._refresh_cis(affected, now)
        with self.store.transaction():
            self.store.set_cursor(self.name, next_cursor(cursor, last, now), "task_ci")
        return res

    def _refresh_cis(self, tracked: Sequence[Tracked], now: datetime) -> PollResult:
        cis = self._task_cis([t.window.sys_id for t in tracked])
        records = self.source.fetch_by_ids([t.window.sys_id for t in tracked], self.fields)
        res = PollResult()
        with self.store.transaction():
            for raw in records:
                res.add(self._apply(raw, cis, now))
        return res

    # -- time-driven events -------------------------------------------------------------------------
    def tick(self, now: datetime) -> PollResult:
        res = PollResult()
        if self._quiet_until is not None and now < self._quiet_until:
            return res  # no open window starts, ends or is due a reminder before then
        leads = self._reminder_leads()
        quiet_until = FOREVER
        with self.store.transaction():
            for t in self.store.tracked(open_only=True, source=self.name):
                self._reconcile(t.window.key, t.window, now, into=res, prev=t)
                if leads:
                    res.events += self._remind(t, now)
                quiet_until = min(quiet_until, next_moment(t.window, now, leads) or FOREVER)
        self._quiet_until = quiet_until
        return res

    def _reminder_leads(self) -> list[int]:
        return sorted({m for target in self.targets if (m := self._reminder_minutes(target))})

    def _wake_tick_at(self, t: Tracked, now: datetime) -> None:
        """A window was saved: the tick must not sleep past its next start, end or reminder time."""
        if self._quiet_until is None or t.phase in TERMINAL_PHASES:
            return
        moment = next_moment(t.window, now, self._reminder_leads())
        if moment is not None and moment < self._quiet_until:
            self._quiet_until = moment

    def _remind(self, t: Tracked, now: datetime) -> int:
        """A reminder in the thread N minutes before the planned start, in channels that want one."""
        w = t.window
        told = 0
        for target in self.store.targets(w.key) or []:
            if not reminder_due(t, now, self._reminder_minutes(target)):
                continue
            assert w.planned_start is not None  # a due reminder has a start
            if not self.store.reminded(target, w.key, w.planned_start):
                self.store.mark_reminded(target, w.key, w.planned_start, now)
                self._enqueue([Event(EventKind.REMINDER, now, w, t.phase)], [target], now, "pending")
                told += 1
        return told

    # -- slow full check ----------------------------------------------------------------------------
    def refresh(self, now: datetime) -> PollResult:
        """Re-read open windows: their CIs, and whether each still exists and matches the filter."""
        open_ = self.store.tracked(open_only=True, source=self.name)
        if not open_:
            return PollResult()
        ids = [t.window.sys_id for t in open_]
        found = self.source.fetch_by_ids(ids, [self.id_field], filter=self.filter)
        present = {str(r.get(self.id_field)) for r in found}
        res = self._refresh_cis([t for t in open_ if t.window.sys_id in present], now)
        missing = [i for i in ids if i not in present]
        if missing:
            outside = {str(r.get(self.id_field)): r for r in self.source.fetch_by_ids(missing, self.fields)}
            with self.store.transaction():
                for sys_id in missing:
                    self._leave(sys_id, outside.get(sys_id), now, res)
        return res

    def _leave(self, sys_id: str, raw: Mapping[str, Any] | None, now: datetime, res: PollResult) -> None:
        """A window that left the filter: finished tickets say so; the rest are withdrawn."""
        key = (self.name, sys_id)
        if raw is not None:
            w = normalize_change(
                raw, source=self.name, mapping=self.mapping, base_url=self.base_url, table=self.table
            )
            if isinstance(w, MaintenanceWindow):
                prev = self.store.get_tracked(key)
                cis = prev.window.cis if prev else ()
                candidate, _ = reconcile(prev, w.with_cis(cis), now)
                if candidate is not None and candidate.phase in TERMINAL_PHASES:
                    self._reconcile(key, w.with_cis(cis), now, into=res)
                    return
        prev = self.store.get_tracked(key)
        number = prev.window.number if prev is not None else sys_id
        log.info("%s left the change feed (%s): withdrawn", number, "out of the filter" if raw else "deleted")
        self._reconcile(key, None, now, into=res)
