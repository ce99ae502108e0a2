"""reconcile(previous, incoming, now) -> (tracked, events): the whole lifecycle decision, pure.

``previous`` is what we last told L1 about a window (the window as seen then, and the phase we
announced). ``incoming`` is what the source says now (``None``: deleted or out of the filter).
The same function serves ticket changes and the periodic tick (``incoming`` = the stored window), so
time-driven events (started, ended, overran) and ticket-driven ones follow one rule. Calling it again
with its own output yields no event: that is what makes replays and restarts safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connector.domain.events import ENTERED, Event, EventKind
from connector.domain.window import TERMINAL_PHASES, MaintenanceWindow, Phase, phase_at


@dataclass(frozen=True)
class Tracked:
    """What the store keeps for a window: the window as last seen, the phase last recorded, and
    whether L1 has been told about it. A window first seen already over is recorded but never
    announced, so its later edits stay quiet too. ``announced`` defaults to "the phase is past
    pending" for callers that build a state by hand."""

    window: MaintenanceWindow
    phase: Phase
    announced: bool = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.announced is None:
            object.__setattr__(self, "announced", self.phase is not Phase.PENDING)


def reconcile(
    previous: Tracked | None, incoming: MaintenanceWindow | None, now: datetime
) -> tuple[Tracked | None, list[Event]]:
    if incoming is None:
        return _withdraw(previous, now)
    phase = phase_at(incoming, now)
    if previous is None or not previous.announced:
        first = _first_announcement(incoming, phase, now)
        return Tracked(incoming, phase, announced=bool(first)), first
    tracked = Tracked(incoming, phase, announced=True)

    events: list[Event] = []
    if previous.phase in TERMINAL_PHASES and phase in TERMINAL_PHASES:
        # Closed stays closed; edits to a finished ticket are not news.
        return Tracked(incoming, previous.phase, announced=True), []
    if incoming.schedule() != previous.window.schedule() and phase not in TERMINAL_PHASES:
        events.append(Event(EventKind.RESCHEDULED, now, incoming, phase, previous=previous.window))
    if phase is not previous.phase:
        reopened = previous.phase in TERMINAL_PHASES or previous.phase is Phase.ENDED
        if phase is Phase.SCHEDULED and not reopened:
            pass  # moved back before its start by a reschedule: the reschedule reply says it
        elif phase is Phase.PENDING:
            pass  # sent back to New/Assess: keep the message, wait for it to be scheduled again
        else:
            events.append(Event(ENTERED[phase], now, incoming, phase))
    if phase is Phase.PENDING:
        return Tracked(incoming, previous.phase, announced=True), events
    return tracked, events


def _first_announcement(w: MaintenanceWindow, phase: Phase, now: datetime) -> list[Event]:
    """A window not yet announced is announced once it matters: scheduled or running."""
    if phase in (Phase.PENDING, Phase.ENDED) or phase in TERMINAL_PHASES:
        return []  # nothing to tell: it is not planned yet, or it is already over
    events = [Event(EventKind.ANNOUNCED, now, w, phase)]
    if phase is not Phase.SCHEDULED:
        events.append(Event(ENTERED[phase], now, w, phase))
    return events


def _withdraw(previous: Tracked | None, now: datetime) -> tuple[Tracked | None, list[Event]]:
    if previous is None:
        return None, []
    tracked = Tracked(previous.window, Phase.WITHDRAWN, announced=previous.announced)
    if not previous.announced or previous.phase in TERMINAL_PHASES:
        return tracked, []
    return tracked, [Event(EventKind.WITHDRAWN, now, previous.window, Phase.WITHDRAWN)]
