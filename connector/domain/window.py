"""The maintenance window: a frozen record of what the ITSM said, and its phase at a given time.

Nothing here does I/O or reads the clock: every function that depends on time takes ``now``.
All datetimes are timezone-aware UTC; they are converted only when rendered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum


class State(str, Enum):
    """A ticket's state, mapped from the source's raw value (ServiceNow defaults in config)."""

    NEW = "new"
    ASSESS = "assess"
    AUTHORIZE = "authorize"
    SCHEDULED = "scheduled"
    IMPLEMENT = "implement"
    REVIEW = "review"
    CLOSED = "closed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class Phase(str, Enum):
    """What L1 is told about a window. Computed by :func:`phase_at`, never taken from the ticket."""

    PENDING = "pending"  # not yet announceable (draft, being assessed)
    SCHEDULED = "scheduled"  # announced, not started
    IN_PROGRESS = "in_progress"  # work under way: alerts from its CIs are expected
    OVERRUN = "overrun"  # planned end passed, still in Implement, no actual end
    ENDED = "ended"  # planned end reached and work finished: alerts are live again
    COMPLETED = "completed"  # Review / Closed
    CANCELLED = "cancelled"
    WITHDRAWN = "withdrawn"  # no longer matches the filter, or deleted

    def __str__(self) -> str:
        return self.value


#: Phases after which nothing more is expected from the window.
TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.CANCELLED, Phase.WITHDRAWN})
#: Phases during which alerts from the window's CIs are expected.
SUPPRESSING_PHASES = frozenset({Phase.IN_PROGRESS, Phase.OVERRUN})
ANNOUNCEABLE_STATES = frozenset({State.AUTHORIZE, State.SCHEDULED, State.IMPLEMENT})

#: The dates a window may carry (UTC, both ends included). Outside, a date is a typo or a hostile
#: value: 9999-12-31 overflows once shown in Asia/Seoul, year 1 in America/*, and the silences and
#: reminders computed from it would overflow too. Such a ticket is a problem ticket.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2199, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
DATE_ATTRIBUTES = ("planned_start", "planned_end", "actual_start", "actual_end", "updated_on")


@dataclass(frozen=True)
class MaintenanceWindow:
    """One change ticket, normalized. Identity is ``(source, sys_id)``."""

    source: str
    sys_id: str
    number: str
    title: str
    state: State
    planned_start: datetime | None
    planned_end: datetime | None
    description: str = ""
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    cis: tuple[str, ...] = ()
    assignment_group: str = ""
    assigned_to: str = ""
    type: str = ""
    risk: str = ""
    priority: str = ""
    close_code: str = ""
    url: str = ""
    raw_state: str = ""
    updated_on: datetime | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.sys_id)

    def with_cis(self, cis: tuple[str, ...]) -> MaintenanceWindow:
        return dataclasses.replace(self, cis=tuple(sorted(set(cis))))

    def schedule(self) -> tuple[datetime | None, datetime | None, tuple[str, ...]]:
        """What L1 plans around: a change here is a reschedule."""
        return (self.planned_start, self.planned_end, self.cis)


def phase_at(w: MaintenanceWindow, now: datetime) -> Phase:
    """The phase of ``w`` at ``now``. Boundaries: ``start == now`` is in progress, ``end == now`` is over."""
    if w.state is State.CANCELLED:
        return Phase.CANCELLED
    if w.state in (State.REVIEW, State.CLOSED):
        return Phase.COMPLETED
    if w.state not in ANNOUNCEABLE_STATES or w.planned_start is None or w.planned_end is None:
        return Phase.PENDING
    if now >= w.planned_end:
        if w.state is State.IMPLEMENT and w.actual_end is None:
            return Phase.OVERRUN
        return Phase.ENDED
    if now >= w.planned_start or w.state is State.IMPLEMENT:
        return Phase.IN_PROGRESS
    return Phase.SCHEDULED


@dataclass(frozen=True)
class Problem:
    """Why a ticket could not become a window: names the ticket and the field."""

    number: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.number}: {self.field}: {self.message}"


def validate(w: MaintenanceWindow) -> list[Problem]:
    """Problems that stop ``w`` from being announced. Drafts without times are not problems."""
    problems: list[Problem] = []
    for attr in DATE_ATTRIBUTES:
        value: datetime | None = getattr(w, attr)
        if value is not None and not EARLIEST <= value <= LATEST:
            problems.append(
                Problem(
                    w.number,
                    attr,
                    f"{_utc(value)} UTC is outside the supported range "
                    f"{EARLIEST:%Y-%m-%d} to {_utc(LATEST)} UTC",
                )
            )
    if problems:
        return problems  # the checks below compare dates that cannot be trusted
    if w.state in ANNOUNCEABLE_STATES:
        if w.planned_start is None:
            problems.append(Problem(w.number, "planned_start", "missing on a scheduled change"))
        if w.planned_end is None:
            problems.append(Problem(w.number, "planned_end", "missing on a scheduled change"))
    if w.planned_start and w.planned_end and w.planned_end <= w.planned_start:
        problems.append(
            Problem(
                w.number,
                "planned_end",
                f"{w.planned_end:%Y-%m-%d %H:%M:%S} UTC is not after planned start "
                f"{w.planned_start:%Y-%m-%d %H:%M:%S} UTC",
            )
        )
    return problems


def _utc(dt: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, four-digit year included (``%Y`` gives ``1`` for year 1)."""
    return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
