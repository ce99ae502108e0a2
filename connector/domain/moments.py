"""The moments at which time alone changes what is told about a window. Pure.

A window's phase changes at its planned start and end (see ``phase_at``); a channel that wants a
reminder is told N minutes before the start. Between two such moments nothing changes by time
alone, so the tick can sleep until the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

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
