"""The first-run digest: one message listing what is running and upcoming, instead of a flood.

On a fresh state (or a new channel), the first sync records every window silently and asks for a
digest (``meta digest:<target> = pending``). This posts it once, with the same unknown-outcome
protocol as every other post, then normal operation takes over: a window listed here gets its own
message at its next event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from connector.domain.window import SUPPRESSING_PHASES, MaintenanceWindow, Phase
from connector.sinks.slack import SlackSink
from connector.sinks.slack_render import RenderContext, render_digest
from connector.store.sqlite import Store

log = logging.getLogger(__name__)
DIGEST_TYPE = "itsm_digest"


def digest_items(
    windows: list[tuple[MaintenanceWindow, Phase]], now: datetime, horizon: timedelta
) -> list[tuple[MaintenanceWindow, Phase]]:
    """Running windows, and scheduled ones starting within ``horizon`` (pure)."""
    items = []
    for w, phase in windows:
        if phase in SUPPRESSING_PHASES or (
            phase is Phase.SCHEDULED and w.planned_start is not None and w.planned_start <= now + horizon
        ):
            items.append((w, phase))
    return sorted(
        items, key=lambda i: (i[1] not in SUPPRESSING_PHASES, i[0].planned_start or now, i[0].number)
    )


class DigestPoster:
    def __init__(
        self,
        sink: SlackSink,
        store: Store,
        context: Callable[[MaintenanceWindow], RenderContext],
        *,
        horizon_hours: float,
    ) -> None:
        self.sink = sink
        self.store = store
        self.context = context
        self.horizon = timedelta(hours=horizon_hours)
        self.key = f"digest:{sink.target}"

    def post_if_pending(self, now: datetime) -> str | None:
        state = self.store.meta_get(self.key)
        if state not in ("pending", "inflight"):
            return None
        ident = f"{self.store.store_id}:{self.key}"
        if state == "inflight":
            found = self.sink.find(ident, None)
            if found:
                self._set(f"done:{found}")
                return found
        items = digest_items(
            [(t.window, t.phase) for t in self.store.tracked(open_only=True)], now, self.horizon
        )
        ctx = self.context(items[0][0]) if items else None
        if ctx is None:
            self._set("done:empty")
            log.info("first sync found no running or upcoming windows: no digest posted")
            return None
        self._set("inflight")
        rendered = render_digest(items, now, ctx)
        ts = self.sink.post(
            rendered, ident, DIGEST_TYPE, None, on_definite_failure=lambda: self._set("pending")
        )
        self._set(f"done:{ts}")
        log.info("posted the first-run digest: %d windows", len(items))
        return ts

    def _set(self, value: str) -> None:
        with self.store.transaction():
            self.store.meta_set(self.key, value)
