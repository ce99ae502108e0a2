"""The calendar feed (RFC 5545): one VEVENT per window, so L1 can subscribe in their calendar.

:func:`render_calendar` is pure: windows and ``now`` in, bytes out; :class:`CalendarFeed` reads the
windows a feed shows from the store, and keeps each served feed until the store changes.
``SEQUENCE`` is the number of events told about the window, so it goes up on every change and
calendar clients replace the old copy; cancelled and withdrawn windows stay in the feed as
``STATUS:CANCELLED`` so subscribers see them disappear. Each window is rendered on its own: one that
cannot be (a CR/LF in its id, saved before ids were checked) is left out with a warning naming it,
and the feed goes on for the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import Phase
from connector.store.api import StateStore

log = logging.getLogger(__name__)

PRODID = "-//itsm-connector//maintenance windows//EN"
CANCELLED = frozenset({Phase.CANCELLED, Phase.WITHDRAWN})
_END = b"END:VCALENDAR\r\n"
#: how long a finished window stays in the feed (so the caller need not read older ones)
KEEP_FINISHED = timedelta(days=7)


def render_calendar(
    windows: Iterable[tuple[Tracked, int]],
    now: datetime,
    *,
    name: str = "Maintenance windows",
    keep_finished: timedelta = KEEP_FINISHED,
) -> bytes:
    """``windows``: each tracked window with its sequence number. Windows without planned times,
    never announced, or finished more than ``keep_finished`` ago are left out."""
    # Imported here, not at the top: icalendar adds ~3 MB to every daemon, and only the ones that
    # serve /calendar.ics (or run ``itsm-connector calendar``) ever render a feed.
    from icalendar import Calendar, Event

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", name)
    events: list[bytes] = []
    for tracked, sequence in sorted(
        windows, key=lambda i: (i[0].window.planned_start or now, i[0].window.number)
    ):
        w = tracked.window
        if not tracked.announced or w.planned_start is None or w.planned_end is None:
            continue
        if w.planned_end < now - keep_finished:
            continue
        try:
            events.append(_event(Event(), tracked, sequence, now))
        except Exception as e:  # any failure of one window: that window only
            log.warning("%s: left out of the calendar feed: %s", w.number, e)
    # Each event is rendered once, on its own, and put where icalendar puts components: before the end.
    head = bytes(cal.to_ical())
    assert head.endswith(_END), head[-40:]
    return head[: -len(_END)] + b"".join(events) + _END


def _event(ev: Any, tracked: Tracked, sequence: int, now: datetime) -> bytes:
    """One window's VEVENT, rendered: ``ev`` is an empty ``icalendar.Event``."""
    w = tracked.window
    ev.add("uid", f"{w.sys_id}@{w.source}.itsm-connector")
    ev.add("dtstamp", now)
    ev.add("dtstart", w.planned_start)
    ev.add("dtend", w.planned_end)
    ev.add("sequence", sequence)
    ev.add("summary", f"{w.number} {w.title}".strip())
    ev.add("status", "CANCELLED" if tracked.phase in CANCELLED else "CONFIRMED")
    lines = [f"Phase: {tracked.phase.value}"]
    if w.cis:
        lines.append("CIs: " + ", ".join(w.cis))
    if w.assignment_group:
        lines.append(f"Group: {w.assignment_group}")
    if w.url:
        lines.append(w.url)
        ev.add("url", w.url)
    ev.add("description", "\n".join(lines))
    if w.updated_on:
        ev.add("last-modified", w.updated_on)
    return bytes(ev.to_ical())


Route = Callable[[], tuple[int, str, bytes]]
CONTENT_TYPE = "text/calendar; charset=utf-8"
#: A served feed is rendered again when the store changed, or when it is this old (what time alone
#: changes in it: windows finished a week ago leave the feed).
MAX_AGE = timedelta(minutes=10)


class CalendarFeed:
    """The feed of every window, or of the windows routed to one channel, from the store."""

    def __init__(self, store: StateStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        #: the served feeds by channel (None: every window): (store generation, rendered at, body)
        self._served: dict[str | None, tuple[int, datetime, bytes]] = {}
        self._lock = threading.Lock()

    def render(self, now: datetime, channel: str | None = None) -> bytes:
        """Only the windows the feed can show are read: not those that settled before its horizon
        (``KEEP_FINISHED``), however many the state keeps (``state.retention``)."""
        since = now - KEEP_FINISHED
        counts = self._store.event_counts(settled_since=since)
        target = Target.slack(channel) if channel else None
        items = [
            (t, counts.get(t.window.key, 0))
            for t in self._store.tracked(settled_since=since)
            if target is None or target in (self._store.targets(t.window.key) or [])
        ]
        return render_calendar(items, now, name=f"Maintenance windows{f' ({channel})' if channel else ''}")

    def served(self, channel: str | None = None) -> bytes:
        """:meth:`render` as served: rendered once per change of the windows, their events or their
        channels (``Store.generation``), or after ``MAX_AGE``. One render at a time: clients asking
        meanwhile wait for it and get it (10,000 windows take seconds of CPU, and 32 clients
        rendering in turn starved the daemon's loop)."""
        with self._lock:
            generation, now = self._store.generation, self._clock()  # read before the store is
            cached = self._served.get(channel)
            if cached is not None and cached[0] == generation and now - cached[1] < MAX_AGE:
                return cached[2]
            body = self.render(now, channel)
            self._served[channel] = (generation, now, body)
            return body

    def routes(self, channels: Iterable[str]) -> dict[str, Route]:
        """``/calendar.ics`` (all windows) and ``/calendar/<channel>.ics``, for the HTTP listener."""
        routes: dict[str, Route] = {"/calendar.ics": lambda: (200, CONTENT_TYPE, self.served())}
        for channel in channels:
            routes[f"/calendar/{channel}.ics"] = lambda ch=channel: (  # type: ignore[misc]
                200,
                CONTENT_TYPE,
                self.served(ch),
            )
        return routes
