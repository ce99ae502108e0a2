"""``/api/windows`` version 1: a :class:`~connector.domain.board.Board` as a JSON-ready dict.

Pure: the board, the view (channel, locale, timezone) and the health verdict in, a dict out. The
format is documented in docs/board.md; a change that breaks a reader bumps ``VERSION``. Instants are
ISO 8601 UTC (for placing bars); every time a person reads also comes as a label in the view's
timezone (``*_label``), so the page needs no timezone database of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from connector.board.text import catalog
from connector.domain.board import Board, BoardItem

VERSION = 1


@dataclass(frozen=True)
class View:
    """Whose board: one channel (``None``: every window) in its locale and timezone."""

    channel: str | None
    locale: str
    timezone: str
    refresh_seconds: float = 15.0


@dataclass(frozen=True)
class Freshness:
    """Whether the data behind the board can be trusted now (from the health snapshot)."""

    healthy: bool
    reasons: Sequence[str] = ()
    failing_sources: Mapping[str, str] = field(default_factory=dict)  # source name -> its last error

    @property
    def stale(self) -> bool:
        return not self.healthy or bool(self.failing_sources)


def _utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _label(value: datetime, now: datetime, tz: ZoneInfo) -> str:
    """``HH:MM`` on the view's today, ``MM-DD HH:MM`` on another day."""
    local = value.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return f"{local.hour:02d}:{local.minute:02d}"
    return f"{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"


def _id(item: BoardItem) -> str:
    return f"{item.window.source}:{item.window.sys_id}"


def _window(item: BoardItem, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    w = item.window
    return {
        "id": _id(item),
        "number": w.number,
        "title": w.title,
        "url": w.url or None,
        "source": w.source,
        "phase": item.phase.value,
        "cis": list(w.cis),
        "group": w.assignment_group or None,
        "silence": item.silence,
        "start": _utc(w.planned_start),
        "end": _utc(w.planned_end),
        "bar_end": _utc(item.bar_end),
        "start_label": _label(item.bar_start, now, tz),
        "end_label": _label(w.planned_end, now, tz) if w.planned_end else None,
        "actual_start": _utc(w.actual_start),
        "actual_end": _utc(w.actual_end),
    }


def _ticks(board: Board, tz: ZoneInfo) -> list[dict[str, Any]]:
    """One tick per local hour in the range; ``day`` is set on local midnight (and on the first)."""
    first = board.since.astimezone(tz).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    ticks: list[dict[str, Any]] = []
    at = first.astimezone(timezone.utc)
    while at < board.until:
        local = at.astimezone(tz)
        day = f"{local:%m-%d}" if local.hour == 0 or not ticks else None
        ticks.append({"at": _utc(at), "label": f"{local:%H:%M}", "day": day})
        at += timedelta(hours=1)  # in UTC: a DST change gives a 23- or 25-hour local day, not a gap
    return ticks


def board_document(board: Board, view: View, freshness: Freshness) -> dict[str, Any]:
    tz = ZoneInfo(view.timezone)
    now = board.now
    text = catalog(view.locale)
    reasons = list(freshness.reasons)
    reasons += [
        text["stale.source"].format(source=name, error=error)
        for name, error in sorted(freshness.failing_sources.items())
    ]
    return {
        "version": VERSION,
        "now": _utc(now),
        "now_label": _label(now, now, tz),
        "range": {"from": _utc(board.since), "to": _utc(board.until)},
        "range_label": {"from": _label(board.since, now, tz), "to": _label(board.until, now, tz)},
        "view": {
            "channel": view.channel,
            "locale": view.locale,
            "timezone": view.timezone,
            "tz_name": now.astimezone(tz).tzname() or view.timezone,
        },
        "refresh_seconds": view.refresh_seconds,
        "health": {"ok": not freshness.stale, "reasons": reasons},
        "text": text,
        "ticks": _ticks(board, tz),
        "groups": [
            {"name": name, "windows": [_window(i, now, tz) for i in items]} for name, items in board.groups()
        ],
        "running": [_id(i) for i in board.running],
        "starting": [_id(i) for i in board.starting],
    }
