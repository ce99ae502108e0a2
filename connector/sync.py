"""One source's sync: cursor → fetch → normalize → reconcile → commit (windows, events, cursor together).

The source's I/O steps, each one short transaction per page so a crash loses nothing and repeats
nothing; what a record means for the stored state is :class:`connector.apply.Applier`'s job:

- :meth:`Syncer.poll`: the incremental sync of changed tickets, plus new affected-CI rows;
- :meth:`Syncer.refresh`: the slower full check of open windows: affected CIs (editing ``task_ci``
  may not touch the change's ``sys_updated_on``) and membership (deleted or out of the filter);
- :meth:`Syncer.tick`: time-driven events, no I/O (:class:`connector.tick.Ticker`);
- :meth:`Syncer.reread`: the records ServiceNow hinted at (``connector.hooks``), read again by id
  and applied like a poll's, without moving its cursor.

Delivery is not done here: events go to the outbox and the sinks drain it on their own schedule.

The poll reads ahead (:mod:`connector.readahead`): other threads fetch and normalize the next pages
and ask ``task_ci`` about them, while this thread reconciles and commits the pages already read, in
order, each with its cursor. Only this thread touches the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any, Protocol

from connector.apply import Applier, PollResult, _Known
from connector.domain.events import Event
from connector.domain.reconcile import Tracked, reconcile
from connector.domain.target import Target
from connector.domain.window import TERMINAL_PHASES, MaintenanceWindow
from connector.hooks.hint import Hint
from connector.memory import release_after_catch_up
from connector.readahead import PageReader, ReadPage
from connector.servicenow.lookback import Remember, Seen, is_older, lookback_start, record_version
from connector.servicenow.mapping import SourceMapping
from connector.servicenow.normalize import clean_text
from connector.servicenow.query import ChangePage, Cursor, format_sn_datetime, next_cursor
from connector.store.api import StateStore
from connector.tick import Ticker

log = logging.getLogger(__name__)

#: A poll that read more tickets than this (several pages: a first sync, a catch-up) gives the memory
#: it used back before the daemon goes back to idling.
RELEASE_AFTER_TICKETS = 1000

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


class Syncer:
    def __init__(
        self,
        source: ChangeSource,
        store: StateStore,
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
        poll_timer: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.source = source
        self.store = store
        self.name = name
        self.base_url = base_url  # for the log: "polling acme (https://…)…"
        self.filter = filter
        self.mapping = mapping
        self.fields = mapping.fields.fields()
        self.id_field = mapping.fields.sys_id
        self.lookback = lookback  # each poll reads again what changed this long before it started
        self.targets = list(targets)  # every channel (each gets its own first-run digest)
        self.first_run = first_run
        self._poll_timer = poll_timer  # times each poll, failed or not (the poll-duration histogram)
        self.applier = Applier(
            store,
            name=name,
            base_url=base_url,
            table=table,
            mapping=mapping,
            targets_for=targets_for or (lambda w: self.targets),
            on_event=on_event or (lambda e: None),
            on_quiet_change=on_quiet_change,
            on_saved=lambda t, now: self.ticker.wake_at(t, now),
        )
        self.ticker = Ticker(
            self.applier, store, name=name, targets=self.targets, reminder_minutes=reminder_minutes
        )

    def tick(self, now: datetime) -> PollResult:
        """Time-driven events of this source's open windows (:class:`connector.tick.Ticker`)."""
        return self.ticker.tick(now)

    # -- incremental poll -------------------------------------------------------------------------
    def poll(self, now: datetime, progress: Callable[[], None] = lambda: None) -> PollResult:
        """``progress`` is called after each committed page (the daemon's watchdog heartbeat), and
        while waiting for a page that is being read."""
        with self._poll_timer():
            return self._poll(now, progress)

    def _poll(self, now: datetime, progress: Callable[[], None]) -> PollResult:
        result = PollResult(first_sync=not self.store.first_sync_done(self.name))
        silent = result.first_sync and self.first_run != "announce"
        cursor = self.store.cursor(self.name)
        seen = self._seen(cursor, now)
        read = PageReader(
            changes=lambda: self.source.fetch_changes(
                self.filter, cursor, self.fields, signpost=now, lookback=self.lookback
            ),
            normalize=self.applier.normalize,
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
                            self.applier.apply(
                                raw, page.cis, now, silent=silent, normalized=normalized, known=known
                            )
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

    # -- hints ----------------------------------------------------------------------------------------
    def reread(self, hinted: Sequence[Hint], now: datetime) -> PollResult:
        """Read the hinted records again (those matching the filter: one request per 100) and apply
        them like a poll's page, in one transaction; their ``task_ci`` rows too when the hint came
        from ``task_ci`` or the change is new here (else its stored CIs are kept: a ``task_ci`` edit
        sends its own hint, and the poll of ``task_ci`` rows catches a lost one). A record read
        older than the version applied is skipped. The cursor does not move; the versions applied
        are remembered, so the poll's lookback skips them. Before the first sync: nothing (the first
        sync reads everything)."""
        if not hinted or not self.store.first_sync_done(self.name):
            return PollResult()
        records = self.source.fetch_by_ids([h.sys_id for h in hinted], self.fields, filter=self.filter)
        f = self.mapping.fields
        by_id = {str(r.get(self.id_field) or ""): r for r in records}
        known = _Known(self.store.tracked_among(self.name, list(by_id)), set())
        want_cis = {h.sys_id for h in hinted if h.cis}
        cis = self._task_cis([i for i in by_id if i in want_cis or i not in known.stored])
        versions = self.store.seen_among(self.name, list(by_id))
        known.problems = self.store.problems_among(self.name, list(by_id))
        res = PollResult(absent=len({h.sys_id for h in hinted} - by_id.keys()))
        floor = format_sn_datetime(now - self.lookback)
        remember: list[Remember] = []
        with self.store.transaction():
            for sys_id, raw in by_id.items():
                stored = known.stored.get(sys_id)
                applied_on = stored.window.updated_on if stored is not None else None
                stamp = format_sn_datetime(applied_on) if applied_on is not None else None
                fields = {"updated_field": f.updated_on, "mod_count_field": f.mod_count}
                if is_older(raw, versions.get(sys_id), stamp, **fields):
                    res.stale += 1
                    continue
                res.add(self.applier.apply(raw, cis, now, known=known))
                updated = raw.get(f.updated_on)
                if self.lookback > timedelta(0) and isinstance(updated, str) and updated >= floor:
                    remember.append((sys_id, updated, record_version(raw, f.mod_count)))
            self.store.remember_seen(self.name, remember, floor)
        return res

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
            with self.store.transaction():  # a whole second, as next_cursor caps it: see its doc
                self.store.set_cursor(self.name, Cursor(now.replace(microsecond=0), ""), "task_ci")
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
                res.add(self.applier.apply(raw, cis, now))
        return res

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
            w = self.applier.normalize(raw)
            if isinstance(w, MaintenanceWindow):
                prev = self.store.get_tracked(key)
                cis = prev.window.cis if prev else ()
                candidate, _ = reconcile(prev, w.with_cis(cis), now)
                if candidate is not None and candidate.phase in TERMINAL_PHASES:
                    self.applier.reconcile(key, w.with_cis(cis), now, into=res)
                    return
        prev = self.store.get_tracked(key)
        number = prev.window.number if prev is not None else sys_id
        log.info("%s left the change feed (%s): withdrawn", number, "out of the filter" if raw else "deleted")
        self.applier.reconcile(key, None, now, into=res)
