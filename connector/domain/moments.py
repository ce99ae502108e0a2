"""The moments at which time alone changes what is told about a window. Pure.

A window's phase changes at its planned start and end (see ``phase_at``); a channel that wants a
reminder is told N minutes before the start. Between two such moments nothing changes by time
alone, so the tick can sleep until the next one. :func:`news_at` says when what an event tells
became true: the start of the latency that L1 is promised.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from connector.domain.events import Event, EventKind
from connector.domain.reconcile import Tracked
from connector.domain.window import MaintenanceWindow, Phase, phase_at

FOREVER = datetime.max.replace(tzinfo=timezone.utc)


def next_moment(w: MaintenanceWindow, now: datetime, reminder_leads: Sequence[int]) -> datetime | None:
    """The first moment after ``now`` at which time alone can change what is told about ``w``: its
    planned start or end, or a reminder that many minutes before the start."""
    moments = [w.planned_start, w.planned_end]
    if w.planned_start is not None:
        moments += [w.planned_start - timedelta(minutes=m) for m in reminder_leads]
    return min((m for m in moments if m is not None and m > now), default=None)


def reminder_due(t: Tracked, now: datetime, minutes: int | None) -> bool:
    """Whether a channel that wants a reminder ``minutes`` before the start should have it at ``now``:
    the window was announced and has not started yet, and the reminder time has come."""
    w = t.window
    if not minutes or not t.announced or w.planned_start is None:
        return False
    return phase_at(w, now) is Phase.SCHEDULED and now >= w.planned_start - timedelta(minutes=minutes)


def news_at(e: Event) -> datetime:
    """When what ``e`` tells became true, never after the connector produced it (``e.at``): the
    ticket's update (``updated_on``); for a start, end or overrun that time alone brought, the
    planned start or end when that came later; for a reminder, a reroute or a withdrawal (no update
    of the record says when), the moment the connector produced it."""
    w = e.window
    moment = w.updated_on or e.at
    if e.kind in (EventKind.REMINDER, EventKind.REROUTED, EventKind.WITHDRAWN):
        moment = e.at
    brought_by_time = {
        EventKind.STARTED: w.planned_start,
        EventKind.ENDED: w.planned_end,
        EventKind.OVERRAN: w.planned_end,
    }
    due = brought_by_time.get(e.kind)
    if due is not None and due <= e.at:
        moment = max(moment, due)
    return min(moment, e.at)
