"""What the wall board shows at ``now``: pure selection, no I/O, no clock.

:func:`select_board` takes stored windows (with their silences) and returns the rows of the timeline —
every announced window overlapping ``[now - before, now + after]``, plus any window still running
whatever its planned times (an overrun that began yesterday is what the desk must see) — grouped and
ordered, and the two short lists above the timeline: *in progress now* and *starting soon*.

The phase shown is :func:`~connector.domain.window.phase_at` at ``now``, not the phase last recorded,
so the board is right between two ticks of the daemon; only a withdrawal (known from the source, not
from the ticket) is taken from the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.domain.reconcile import Tracked
from connector.domain.window import SUPPRESSING_PHASES, MaintenanceWindow, Phase, phase_at

BEFORE = timedelta(hours=4)
AFTER = timedelta(hours=48)
SOON = timedelta(hours=2)


class SilenceState:
    """Whether an Alertmanager silence covers the window at ``now``."""

    NONE = "none"
    ACTIVE = "active"  # in force now
    PLANNED = "planned"  # created, starts later


@dataclass(frozen=True)
class BoardItem:
    """One row of the timeline. ``bar_start``/``bar_end`` is what is drawn: the planned window, and
    for an overrun up to ``now`` (the work is still going)."""

    window: MaintenanceWindow
    phase: Phase
    group: str
    bar_start: datetime
    bar_end: datetime
    silence: str = SilenceState.NONE

    @property
    def key(self) -> tuple[str, str]:
        return self.window.key


@dataclass(frozen=True)
class Board:
    now: datetime
    since: datetime
    until: datetime
    rows: list[BoardItem]  # grouped (groups in name order), then by start, then ticket number
    running: list[BoardItem]  # in progress or overrunning now, ending first
    starting: list[BoardItem]  # scheduled to start within ``soon``, starting first

    def groups(self) -> list[tuple[str, list[BoardItem]]]:
        """``rows`` split into their groups, in order."""
        out: list[tuple[str, list[BoardItem]]] = []
        for item in self.rows:
            if not out or out[-1][0] != item.group:
                out.append((item.group, []))
            out[-1][1].append(item)
        return out


def silence_state(spans: Sequence[tuple[datetime, datetime]], now: datetime) -> str:
    """``spans``: (starts_at, ends_at) of each stored silence of a window."""
    if not spans:
        return SilenceState.NONE
    if any(start <= now < end for start, end in spans):
        return SilenceState.ACTIVE
    if any(now < start for start, _ in spans):
        return SilenceState.PLANNED
    return SilenceState.NONE


def shown_phase(t: Tracked, now: datetime) -> Phase:
    if t.phase is Phase.WITHDRAWN:
        return Phase.WITHDRAWN
    return phase_at(t.window, now)


def select_board(
    windows: Iterable[Tracked],
    now: datetime,
    *,
    before: timedelta = BEFORE,
    after: timedelta = AFTER,
    soon: timedelta = SOON,
    group_of: Callable[[MaintenanceWindow], str] = lambda w: w.source,
    silences: Mapping[tuple[str, str], Sequence[tuple[datetime, datetime]]] | None = None,
) -> Board:
    """The board at ``now`` showing ``[now - before, now + after]``. Windows never announced (drafts,
    or first seen already over) and windows without planned times are left out, as in Slack."""
    since, until = now - before, now + after
    silences = silences or {}
    rows: list[BoardItem] = []
    for t in windows:
        w = t.window
        if not t.announced or w.planned_start is None or w.planned_end is None:
            continue
        phase = shown_phase(t, now)
        if phase is Phase.PENDING:
            continue  # sent back to draft: Slack keeps the old message, the board shows nothing planned
        if phase not in SUPPRESSING_PHASES and (w.planned_end <= since or w.planned_start >= until):
            continue
        bar_end = max(w.planned_end, now) if phase is Phase.OVERRUN else w.planned_end
        rows.append(
            BoardItem(
                window=w,
                phase=phase,
                group=group_of(w),
                bar_start=w.planned_start,
                bar_end=bar_end,
                silence=silence_state(silences.get(w.key, ()), now),
            )
        )
    rows.sort(key=lambda i: (i.group, i.bar_start, i.window.number, i.key))
    running = sorted(
        (i for i in rows if i.phase in SUPPRESSING_PHASES),
        key=lambda i: (i.window.planned_end or now, i.window.number),
    )
    starting = sorted(
        (i for i in rows if i.phase is Phase.SCHEDULED and i.bar_start < now + soon),
        key=lambda i: (i.bar_start, i.window.number),
    )
    return Board(now=now, since=since, until=until, rows=rows, running=running, starting=starting)
