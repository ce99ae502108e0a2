"""One source's rounds of hinted records, run by its worker (``connector.source_worker``): take
what the :class:`~connector.hooks.queue.HintQueue` has due, read it again (``Syncer.reread``), log
and count. A round whose read fails is dropped, logged on transition: the polls catch up, as they do
for a hint that never came."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from connector.errors import SourceError
from connector.hooks.queue import HintQueue
from connector.logs import TransitionLog
from connector.sync import PollResult, Syncer

log = logging.getLogger(__name__)


class HintRounds:
    def __init__(
        self,
        syncer: Syncer,
        queue: HintQueue,
        *,
        clock: Callable[[], datetime],
        on_reread: Callable[[str, PollResult | None], None],
        on_events: Callable[[], None],
    ) -> None:
        self.syncer, self.queue = syncer, queue
        self._clock, self._on_reread, self._on_events = clock, on_reread, on_events
        what = f"re-reading the hinted records of ServiceNow source {syncer.name!r}"
        self._log = TransitionLog(log, what, level=logging.WARNING)

    def due_at(self) -> float | None:
        return self.queue.due_at()

    def idle(self, seconds: float) -> None:
        """Wait until a hint comes (or :meth:`wake`), at most ``seconds``; a hint arriving after the
        wait ended is in the queue and seen by the next turn."""
        self.queue.ready.wait(seconds)
        self.queue.ready.clear()

    def wake(self) -> None:
        self.queue.ready.set()

    def drop(self) -> None:
        """A standby replica: the hints it got are not its to read (the leader's polls catch up)."""
        if dropped := self.queue.clear():
            log.debug("hints %s: %d dropped (a standby replica)", self.syncer.name, dropped)

    def run(self) -> bool:
        """One round, if one is due; False when its read failed."""
        hinted = self.queue.take()
        if not hinted:
            return True
        name = self.syncer.name
        try:
            result = self.syncer.reread(hinted, self._clock())
        except SourceError as e:
            self._log.failed(f"{e} (dropped; the polls catch up)")
            self._on_reread(name, None)
            return False
        self._log.ok()
        self._on_reread(name, result)
        r = result
        log.log(
            logging.INFO if r.changed or r.events or r.problems else logging.DEBUG,
            "hints %s: %d records read again: changed %d, events %d, rejected %d, older than stored %d, "
            "absent %d",
            name, len(hinted), r.changed, r.events, r.problems, r.stale, r.absent,
        )  # fmt: skip
        self._on_events()
        return True
