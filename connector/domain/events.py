"""Lifecycle events: what happened to a window, as told in its Slack thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from connector.domain.window import MaintenanceWindow, Phase


class EventKind(str, Enum):
    ANNOUNCED = "announced"
    RESCHEDULED = "rescheduled"
    STARTED = "started"
    ENDED = "ended"
    OVERRAN = "overran"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    WITHDRAWN = "withdrawn"
    # Per channel, not lifecycle: told only in the channels that asked for them.
    REMINDER = "reminder"  # N minutes before the planned start
    REROUTED = "rerouted"  # the routing rules now send this window elsewhere

    def __str__(self) -> str:
        return self.value


#: The event told when a window enters a phase.
ENTERED: dict[Phase, EventKind] = {
    Phase.SCHEDULED: EventKind.ANNOUNCED,
    Phase.IN_PROGRESS: EventKind.STARTED,
    Phase.OVERRUN: EventKind.OVERRAN,
    Phase.ENDED: EventKind.ENDED,
    Phase.COMPLETED: EventKind.COMPLETED,
    Phase.CANCELLED: EventKind.CANCELLED,
    Phase.WITHDRAWN: EventKind.WITHDRAWN,
}


@dataclass(frozen=True)
class Event:
    """One thing to tell. ``window`` is the window after the event; ``previous`` the one before
    (set for reschedules, so the reply can say what changed)."""

    kind: EventKind
    at: datetime
    window: MaintenanceWindow
    phase: Phase
    previous: MaintenanceWindow | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.window.key
