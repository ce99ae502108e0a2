"""The board's data (``/api/windows``): the store's windows in range, the view's settings and the
health snapshot, put through :func:`~connector.domain.board.select_board` and serialized.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from connector.board.document import Freshness, View, board_document
from connector.config import Settings
from connector.domain.board import AFTER, BEFORE, select_board
from connector.domain.target import Target
from connector.health import HealthSnapshot, evaluate_health
from connector.store.api import StateStore


class BoardFeed:
    """One read per request, at ``clock()``: no cache, so the board is never older than its answer."""

    def __init__(
        self,
        store: StateStore,
        settings: Settings,
        snapshot: Callable[[], HealthSnapshot],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._settings = settings
        self._snapshot = snapshot
        self._clock = clock

    def data(self, channel: str | None = None) -> dict[str, Any]:
        """The board of ``channel`` (``None``: every window, in the default channel's locale and zone)."""
        return board_data(self._store, self._settings, self._snapshot(), self._clock(), channel)


def board_data(
    store: StateStore, settings: Settings, snapshot: HealthSnapshot, now: datetime, channel: str | None
) -> dict[str, Any]:
    rows = store.windows_between(now - BEFORE, now + AFTER)
    if channel is not None:
        target = Target.slack(channel)
        rows = [r for r in rows if target in (r.targets or ())]
    silences = {
        r.tracked.window.key: [
            (datetime.fromisoformat(str(s["starts_at"])), datetime.fromisoformat(str(s["ends_at"])))
            for s in r.silences
        ]
        for r in rows
        if r.silences
    }
    board = select_board((r.tracked for r in rows), now, silences=silences)
    cs = settings.slack.channel_settings(channel or settings.slack.channel)
    view = View(
        channel=channel,
        locale=cs.locale or settings.slack.locale,
        timezone=cs.timezone or settings.slack.timezone,
        refresh_seconds=settings.health.board_refresh,
    )
    healthy, reasons = evaluate_health(snapshot)
    failing = {name: src.error for name, src in snapshot.sources.items() if src.error}
    return board_document(board, view, Freshness(healthy, reasons, failing))
