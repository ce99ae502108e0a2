"""Time-driven events: a window starts, ends or overruns, and channels that want one get a reminder
before the start, all without any ticket change. No I/O but the store.

:class:`Ticker` reads the open windows only when one of them may have reached such a moment
(``domain.moments.next_moment``): until then nothing can change by time alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from connector.apply import Applier, PollResult
from connector.domain.events import Event, EventKind
from connector.domain.moments import FOREVER, next_moment, reminder_due
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import TERMINAL_PHASES
from connector.store.api import StateStore


class Ticker:
    def __init__(
        self,
        applier: Applier,
        store: StateStore,
        *,
        name: str,
        targets: Sequence[Target],
        reminder_minutes: Callable[[Target], int | None] = lambda target: None,
    ) -> None:
        self._applier = applier
        self.store = store
        self.name = name
        self.targets = list(targets)
        self._reminder_minutes = reminder_minutes
        # None: not known yet (read every open window at the next tick)
        self._quiet_until: datetime | None = None

    def tick(self, now: datetime) -> PollResult:
        res = PollResult()
        if self._quiet_until is not None and now < self._quiet_until:
            return res  # no open window starts, ends or is due a reminder before then
        leads = self._reminder_leads()
        quiet_until = FOREVER
        with self.store.transaction():
            for t in self.store.tracked(open_only=True, source=self.name):
                self._applier.reconcile(t.window.key, t.window, now, into=res, prev=t)
                if leads:
                    res.events += self._remind(t, now)
                quiet_until = min(quiet_until, next_moment(t.window, now, leads) or FOREVER)
        self._quiet_until = quiet_until
        return res

    def _reminder_leads(self) -> list[int]:
        return sorted({m for target in self.targets if (m := self._reminder_minutes(target))})

    def wake_at(self, t: Tracked, now: datetime) -> None:
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
                self._applier.enqueue([Event(EventKind.REMINDER, now, w, t.phase)], [target], now, "pending")
                told += 1
        return told
