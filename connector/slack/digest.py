"""Digests: one message listing windows, for the first sync and for shift handovers.

- First run: on a fresh state the first sync records every window silently and asks for a digest
  (``Store.set_digest_state(target, "pending")``) instead of a flood; a window listed there gets its own
  message at its next event.
- Shift digest: at each configured local time (``slack.channels[].digest_times``) the windows of
  today and tomorrow in the channel's timezone (running, overrunning, upcoming).

Either is posted once, with the same unknown-outcome protocol as every other post. The state kept by
``Store.digest_state`` is ``pending[:shift:<slot>]`` → ``inflight:…`` → ``done:…``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connector.domain.digest import digest_items, due_slot, shift_items
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.slack.delivery import SlackSink
from connector.slack.locale import message
from connector.slack.render import RenderContext, render_digest
from connector.store.api import StateStore

log = logging.getLogger(__name__)
DIGEST_TYPE = "itsm_digest"


class DigestPoster:
    def __init__(
        self,
        sink: SlackSink,
        store: StateStore,
        context: Callable[[MaintenanceWindow], RenderContext],
        *,
        horizon_hours: float,
        shift_times: Sequence[str] = (),
        tz: ZoneInfo | None = None,
    ) -> None:
        self.sink = sink
        self.store = store
        self.context = context
        self.horizon = timedelta(hours=horizon_hours)
        self.shift_times = list(shift_times)
        self.tz = tz or ZoneInfo("UTC")

    def windows(self) -> list[tuple[MaintenanceWindow, Phase]]:
        return routed_windows(self.store, self.sink.target)

    def items(self, now: datetime, kind: str) -> list[tuple[MaintenanceWindow, Phase]]:
        if kind == "shift":
            return shift_items(self.windows(), now, self.tz)
        return digest_items(self.windows(), now, self.horizon)

    def schedule_shift_digest(self, now: datetime) -> None:
        """Ask for a shift digest when one of the channel's digest times has come."""
        target = self.sink.target
        if not self.shift_times or self.store.digest_state(target).startswith(("pending", "inflight")):
            return
        slot = due_slot(self.shift_times, self.tz, now, self.store.digest_slot(target))
        if slot is not None:
            with self.store.transaction():
                self.store.set_digest_slot(target, slot)
                self.store.set_digest_state(target, f"pending:shift:{slot.isoformat()}")

    def post_if_pending(self, now: datetime) -> str | None:
        status, _, spec = self.store.digest_state(self.sink.target).partition(":")
        if status not in ("pending", "inflight"):
            return None
        kind = spec.partition(":")[0]
        ident = f"{self.store.store_id}:digest:{self.sink.target}:{spec}"
        if status == "inflight":
            found = self.sink.api.find(ident, None)
            if found:
                self._set(f"done:{found}")
                return found
        items = self.items(now, kind)
        if not items and kind != "shift":
            self._set("done:empty")
            log.info(
                "%s: first sync found no running or upcoming windows: no digest", self.sink.channel
            )
            return None
        self._set(f"inflight:{spec}")
        title = message_title(kind, self.context_for(items).locale)
        rendered = render_digest(items, now, self.context_for(items), title=title)
        for why in rendered.skipped:
            log.warning("%s (left out of the digest in %s)", why, self.sink.channel)
        ts = self.sink.api.post(
            rendered, ident, DIGEST_TYPE, None, on_definite_failure=lambda: self._set(f"pending:{spec}")
        )
        self._set(f"done:{ts}")
        log.info(
            "%s the %s digest in %s: %d windows",
            "printed (dry run)" if self.sink.dry_run else "posted",
            kind or "first-run",
            self.sink.channel,
            len(items),
        )
        return ts

    def preview(self, now: datetime) -> str:
        """The shift digest at ``now`` as text, for a terminal (``itsm-connector digest --print``)."""
        return shift_preview(self.store, self.sink.target, self.context, self.tz, now)

    def context_for(self, items: list[tuple[MaintenanceWindow, Phase]]) -> RenderContext:
        return context_for(self.context, items)

    def _set(self, value: str) -> None:
        with self.store.transaction():
            self.store.set_digest_state(self.sink.target, value)


def routed_windows(store: StateStore, target: Target) -> list[tuple[MaintenanceWindow, Phase]]:
    """Open windows routed to ``target``."""
    return [
        (t.window, t.phase) for t in store.tracked(open_only=True) if store.routed(t.window.key, target)
    ]


def context_for(
    context: Callable[[MaintenanceWindow], RenderContext], items: list[tuple[MaintenanceWindow, Phase]]
) -> RenderContext:
    """The channel's render context (the first item's, so its route's mention applies)."""
    if items:
        return context(items[0][0])
    placeholder = MaintenanceWindow(
        source="", sys_id="", number="", title="", state=State.SCHEDULED, planned_start=None, planned_end=None
    )
    return context(placeholder)


def shift_preview(
    store: StateStore,
    target: Target,
    context: Callable[[MaintenanceWindow], RenderContext],
    tz: ZoneInfo,
    now: datetime,
) -> str:
    """The shift digest of ``target`` at ``now`` as text: what ``digest --print`` shows. Reads the
    store only, so it needs neither Slack nor the daemon."""
    items = shift_items(routed_windows(store, target), now, tz)
    ctx = context_for(context, items)
    rendered = render_digest(items, now, ctx, title=message_title("shift", ctx.locale))
    return blocks_text(rendered.blocks) or rendered.text


def message_title(kind: str, locale: str) -> str | None:
    return message(locale, "digest.shift_title") if kind == "shift" else None


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    """The text a reader sees in Block Kit blocks, one line per block (for terminals)."""
    lines = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            lines.append(str(b["text"].get("text", "")))
        for el in b.get("elements", []) or []:
            if isinstance(el, dict) and "text" in el:
                lines.append(str(el["text"]))
    return "\n".join(lines)
