"""Which windows a digest lists, and when a shift digest is due. Pure.

- :func:`digest_items`: the first-run digest: running windows, and scheduled ones starting soon;
- :func:`shift_items`: a shift handover: today's and tomorrow's windows in the channel's timezone;
- :func:`due_slot`: the configured local time whose digest is due now, if any.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from connector.domain.window import SUPPRESSING_PHASES, MaintenanceWindow, Phase


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


def shift_items(
    windows: list[tuple[MaintenanceWindow, Phase]], now: datetime, tz: ZoneInfo
) -> list[tuple[MaintenanceWindow, Phase]]:
    """Today's and tomorrow's windows in ``tz``: running, overrunning, upcoming (pure)."""
    today = now.astimezone(tz).date()
    days = {today, today + timedelta(days=1)}
    items = [
        (w, phase)
        for w, phase in windows
        if phase in SUPPRESSING_PHASES
        or (phase is Phase.SCHEDULED and w.planned_start is not None and _day(w.planned_start, tz) in days)
    ]
    return sorted(
        items, key=lambda i: (i[1] not in SUPPRESSING_PHASES, i[0].planned_start or now, i[0].number)
    )


def _day(dt: datetime, tz: ZoneInfo) -> date | None:
    """The local date of ``dt``; None for a date ``tz`` cannot show (year 9999 east of UTC)."""
    try:
        return dt.astimezone(tz).date()
    except OverflowError:
        return None


def due_slot(
    times: Sequence[str],
    tz: ZoneInfo,
    now: datetime,
    last: datetime | None,
    grace: timedelta = timedelta(hours=1),
) -> datetime | None:
    """The latest configured local time at or before ``now`` that has not been served (``last``) and is
    not older than ``grace`` (a digest hours late after an outage is noise), else ``None`` (pure)."""
    local = now.astimezone(tz)
    slots = [
        datetime.combine(day, time.fromisoformat(t), tzinfo=tz)
        for day in (local.date() - timedelta(days=1), local.date())
        for t in times
    ]
    past = [slot for slot in slots if slot <= local]
    if not past:
        return None
    slot = max(past)
    if (last is not None and slot <= last) or local - slot > grace:
        return None
    return slot
