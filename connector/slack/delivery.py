"""The Slack sink: one living parent message per window, one thread reply per event.

The parent message is the announcement: when a window's parent is first posted, its pending
``announced`` event is recorded as delivered by that very message (same ``ts``), not posted again
as a reply that would repeat it. Slack takes about one post per second per channel, so on a patch
night that halves the time until every window is in the channel and keeps the replies that are
news (started, overran) from queuing behind copies of the parents. Only an announcement that
mentions someone (a route's ``mention.on: [announced]``) is still a reply, so that the mention
notifies; a window announced again later (reopened) gets an ``announced`` reply in its thread; and
``slack.announce_in_thread: true`` posts the reply for every announcement, as before.

Delivery is exactly-once in effect. ``chat.update`` is idempotent; ``chat.postMessage`` is not and
Slack has no idempotency key, so every post carries its identity in message metadata and follows:

1. mark the post ``inflight`` and commit (before the request);
2. post; on success store the ``ts`` and mark it done;
3. if the outcome is unknown (timeout, dropped connection, 5xx, ``internal_error``/``fatal_error``, an
   answer that is not JSON, or a crash before step 2 committed), the row stays ``inflight``; before
   posting it again, look for it in the channel (``conversations.history`` / ``conversations.replies``
   with ``include_all_metadata``).

Local state stays the source of truth: Slack is consulted only for an unknown outcome.
Parents are posted before thread replies so that, during a burst, L1 sees every window first.

:class:`SlackSink` holds a :class:`connector.slack.api.SlackChannel`: the Slack calls, and the one
classification of every Slack answer (rate limits; permanent, transient and poison errors), are there.
A message Slack refuses (``POISON``) is set aside here and listed as a problem of its ticket
(``windows --problems``) until the ticket changes; it never blocks the queue. So is a message that
cannot be rendered (any exception while rendering it: a date the display timezone cannot show, in a
state saved before dates were checked, or a bug): each message is rendered inside its own guard.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.domain.events import Event, EventKind
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Problem
from connector.errors import StateError, StateInterrupted
from connector.slack.api import GONE, Answer, Interrupted, SlackChannel
from connector.slack.render import RenderContext, Rendered, render_event, render_parent
from connector.store.api import Delivery, StateStore

log = logging.getLogger(__name__)

#: chat.update calls per pass for parents found stale outside the pass's own windows (after a
#: restart every parent is checked; after an upgrade that renders differently, many may differ):
#: a sweep never holds back new events, and stays well inside chat.update's ~50/min.
SWEEP_UPDATES = 20

PARENT_TYPE = "itsm_window"
EVENT_TYPE = "itsm_event"


@dataclass
class DeliveryReport:
    posted: int = 0  # digests included
    digests: int = 0
    updated: int = 0
    failed: int = 0
    recovered: int = 0
    error: str | None = None
    poisoned: list[str] = field(default_factory=list)
    folded: set[int] = field(default_factory=set)  # announcements told by their new parent message


def _fingerprint(r: Rendered) -> str:
    """What the reader sees, less the "updated at" context line (it changes on every render)."""
    blocks = [b for b in r.blocks if b.get("type") != "context"]
    return hashlib.sha256(json.dumps([r.text, blocks], sort_keys=True).encode()).hexdigest()[:16]


class SlackSink:
    """Delivers one channel's outbox. Its Slack calls go through ``api`` (a
    :class:`~connector.slack.api.SlackChannel`, held, not inherited), which classifies every answer."""

    def __init__(
        self,
        client: WebClient,
        store: StateStore,
        channel: str,
        context: Callable[[MaintenanceWindow], RenderContext],
        *,
        pace: Callable[[str], None] = lambda method: None,
        wait: Callable[[float], bool] = lambda seconds: False,
        max_rate_limit_waits: int = 5,
        announce_in_thread: bool = False,
        observe: Callable[[str, float], None] = lambda method, seconds: None,
        on_shown: Callable[[Event], None] = lambda event: None,
    ) -> None:
        """``observe``: see :class:`SlackChannel`. ``on_shown(event)``: Slack just accepted the message
        that tells ``event`` (its reply, or the new parent that carries an announcement); not called
        for a message found again after an unknown outcome (when it was accepted is not known)."""
        self.api = SlackChannel(
            client, channel, pace=pace, wait=wait, max_rate_limit_waits=max_rate_limit_waits, observe=observe
        )
        self.channel = channel
        self.dry_run = self.api.dry_run  # a client that prints instead of sending: logs say "printed"
        self._wait = wait
        self._on_shown = on_shown
        self.store = store
        self.target = Target.slack(channel)
        self._context = context
        self._announce_in_thread = announce_in_thread
        # Parents that may show an old state: their refresh failed or was never reached (a pass that
        # stopped early). None: not known yet, so the first pass checks every parent (after a crash).
        self._stale: set[tuple[str, str]] | None = None
        self._unrenderable: set[tuple[tuple[str, str], str]] = set()  # said once per process

    def forget(self) -> None:
        """Drop what this sink remembers between passes (this replica just became the leader: another
        one may have posted meanwhile); the next pass reads it again from the store."""
        self._stale = None

    # -- the delivery pass --------------------------------------------------------------------------
    def deliver(
        self, now: datetime, limit: int = 1000, also_refresh: Iterable[tuple[str, str]] = ()
    ) -> DeliveryReport:
        """Deliver what the outbox holds for this channel, then bring changed parents up to date
        (``also_refresh``: windows changed by another sink, e.g. a new silence id). Raises
        SinkPermanentError / SinkRetryableError to stop the pass (everything undelivered stays queued).
        On shutdown the pass ends after the request in progress; the rest stays queued.

        Only windows routed to this channel (``Store.targets``) get a parent message or a refresh
        here, whatever asked for them; the one reply a window gets in a channel it left is the
        reroute notice, in the thread of the parent it already had there."""
        report = DeliveryReport()
        open_ = self.store.open_deliveries(self.target, limit)
        if self._stale is None:
            self._stale = set(self.store.messages(self.target))
        wanted = list(dict.fromkeys([*(d.key for d in open_), *also_refresh]))
        routed = self.store.routed_among(self.target, [*wanted, *self._stale])
        keys = [k for k in wanted if k in routed]
        self._stale &= routed  # a parent in a channel the window left is no longer kept current
        self._stale.update(keys)  # until refreshed below: a failed update is not forgotten
        try:
            for key in keys:  # first every window's parent message, so L1 sees the whole burst early
                self._check_stop()
                if not self._has_parent(key):
                    self._post_parent(key, now, report, announces=self._told_by_parent(key, open_))
            for d in open_:
                self._check_stop()
                if d.event_id not in report.folded:
                    self._post_reply(d, now, report)
            for key in keys:
                self._check_stop()
                self._refresh_parent(key, now, report)
                self._stale.discard(key)
            budget = report.updated + SWEEP_UPDATES
            for key in sorted(self._stale):
                if report.updated >= budget:
                    break  # the rest in the next passes
                self._check_stop()
                self._refresh_parent(key, now, report)
                self._stale.discard(key)
        except Interrupted:
            log.info("%s: shutting down mid-pass; what is left stays queued", self.target)
        return report

    def refresh(self, key: tuple[str, str], now: datetime) -> DeliveryReport:
        report = DeliveryReport()
        self._refresh_parent(key, now, report)
        return report

    def _check_stop(self) -> None:
        if self._wait(0):  # a zero wait answers "was shutdown requested?"
            raise Interrupted("shutdown requested")

    # -- parents ------------------------------------------------------------------------------------
    def _has_parent(self, key: tuple[str, str]) -> bool:
        msg = self.store.message(key, self.target)
        return msg is not None and msg.state == "posted" and msg.ts is not None

    def _render_parent(self, key: tuple[str, str], now: datetime) -> Rendered | None:
        tracked = self.store.get_tracked(key)
        if tracked is None:
            return None
        return render_parent(tracked.window, tracked.phase, now, self._context(tracked.window))

    def _told_by_parent(self, key: tuple[str, str], open_: list[Delivery]) -> list[Delivery]:
        """The deliveries a new parent message tells by itself: its window's pending announcement,
        unless that announcement mentions someone (a reply notifies; a parent update would not)."""
        if self._announce_in_thread:
            return []
        return [
            d
            for d in open_
            if d.key == key
            and d.state == "pending"
            and d.event.kind is EventKind.ANNOUNCED
            and not self._mentions(d)
        ]

    def _mentions(self, d: Delivery) -> bool:
        ctx = self._context(d.event.window)
        return bool(ctx.mention) and d.event.kind in ctx.mention_on

    def _parent_posted(
        self,
        key: tuple[str, str],
        ts: str,
        rendered: str | None,
        announces: Sequence[Delivery],
        now: datetime,
        report: DeliveryReport,
    ) -> None:
        """Store the parent's ``ts`` and, in the same transaction, the announcement it carries."""
        with self.store.transaction():
            self.store.set_message(key, self.target, ts=ts, state="posted", rendered=rendered)
            for d in announces:
                self.store.mark_delivery(d.event_id, self.target, "done", now, ts=ts)
        report.folded.update(d.event_id for d in announces)

    def _post_parent(
        self, key: tuple[str, str], now: datetime, report: DeliveryReport, announces: Sequence[Delivery] = ()
    ) -> None:
        try:
            rendered = self._render_parent(key, now)
        except (StateError, StateInterrupted):
            raise  # the state database, not this message
        except Exception as e:  # this message only: its window's replies wait for it
            self._cannot_render(key, "parent message", e, now, report)
            return
        if rendered is None:
            return
        msg = self.store.message(key, self.target)
        if msg is not None and msg.state == "refused" and msg.rendered == _fingerprint(rendered):
            return  # Slack refused exactly this message; its replies wait until the ticket changes
        ident = f"{self.store.store_id}:{key[0]}:{key[1]}"
        if msg is not None and msg.state == "inflight":
            found = self.api.find(ident, None)
            if found:
                log.warning(
                    "recovered the parent message of %s in %s from Slack (ts %s): not posting it again",
                    rendered_number(self.store, key),
                    self.channel,
                    found,
                )
                self._parent_posted(key, found, None, announces, now, report)
                report.recovered += 1
                return
        try:
            ts = self.api.post(
                rendered,
                ident,
                PARENT_TYPE,
                None,
                before_send=lambda: self._set_parent_state(key, "inflight"),
                on_definite_failure=lambda: self._forget_parent(key),
            )
        except SlackApiError as e:  # only POISON reaches here: this message, not the channel
            with self.store.transaction():
                self.store.set_message(
                    key, self.target, ts=None, state="refused", rendered=_fingerprint(rendered)
                )
            self._set_aside(key, "parent message", Answer.of(e).error, now, report)
            return
        self._parent_posted(key, ts, _fingerprint(rendered), announces, now, report)
        report.posted += 1
        for d in announces:
            self._on_shown(d.event)

    def _forget_parent(self, key: tuple[str, str]) -> None:
        self._set_parent_state(key, "pending")

    def _set_parent_state(self, key: tuple[str, str], state: str) -> None:
        with self.store.transaction():
            self.store.set_message(key, self.target, ts=None, state=state)

    def _refresh_parent(self, key: tuple[str, str], now: datetime, report: DeliveryReport) -> None:
        msg = self.store.message(key, self.target)
        if msg is None or msg.state != "posted" or msg.ts is None:
            return
        try:
            rendered = self._render_parent(key, now)
        except (StateError, StateInterrupted):
            raise  # the state database, not this message
        except Exception as e:  # this message only
            self._cannot_render(key, "update of the parent message", e, now, report)
            return
        if rendered is None or _fingerprint(rendered) == msg.rendered:
            return
        try:
            self.api.call(
                "chat.update", channel=self.channel, ts=msg.ts, text=rendered.text, blocks=rendered.blocks
            )
        except SlackApiError as e:
            err = Answer.of(e).error
            if err in GONE:
                log.warning(
                    "the parent message of %s is gone from %s (%s): posting a new one",
                    rendered_number(self.store, key),
                    self.channel,
                    err,
                )
                self._forget_parent(key)
                return
            self._set_aside(key, "update of the parent message", err, now, report)
            return
        with self.store.transaction():
            self.store.set_message(
                key, self.target, ts=msg.ts, state="posted", rendered=_fingerprint(rendered)
            )
        report.updated += 1

    # -- replies ------------------------------------------------------------------------------------
    def _post_reply(self, d: Delivery, now: datetime, report: DeliveryReport) -> None:
        msg = self.store.message(d.key, self.target)
        if msg is None or msg.ts is None or msg.state != "posted":
            if not self.store.routed(d.key, self.target):  # it left before it was ever shown here
                self._mark(d, "skipped", now, error="not routed here; no parent message to reply to")
            return  # its parent could not be posted yet; the delivery stays queued
        ident = f"{self.store.store_id}:e{d.event_id}"
        if d.state == "inflight":
            found = self.api.find(ident, msg.ts)
            if found:
                log.warning(
                    "recovered the %s reply of %s in %s from Slack (ts %s): not posting it again",
                    d.event.kind,
                    d.event.window.number,
                    self.channel,
                    found,
                )
                with self.store.transaction():
                    self.store.mark_delivery(d.event_id, self.target, "done", now, ts=found)
                report.recovered += 1
                return
        try:
            rendered = render_event(d.event, self._context(d.event.window))
        except (StateError, StateInterrupted):
            raise  # the state database, not this message
        except Exception as e:  # this message only
            self._mark(d, "failed", now, error=f"cannot be rendered: {type(e).__name__}")
            self._cannot_render(d.key, f"{d.event.kind} reply", e, now, report)
            return
        try:
            ts = self.api.post(
                rendered,
                ident,
                EVENT_TYPE,
                msg.ts,
                before_send=lambda: self._mark(d, "inflight", now),
                on_definite_failure=lambda: self._mark(d, "pending", now),
            )
        except SlackApiError as e:  # only POISON reaches here
            err = Answer.of(e).error
            self._mark(d, "failed", now, error=err)
            self._set_aside(d.key, f"{d.event.kind} reply", err, now, report)
            return
        with self.store.transaction():
            self.store.mark_delivery(d.event_id, self.target, "done", now, ts=ts)
        report.posted += 1
        self._on_shown(d.event)

    def _mark(self, d: Delivery, state: str, now: datetime, error: str | None = None) -> None:
        with self.store.transaction():
            self.store.mark_delivery(d.event_id, self.target, state, now, error=error)

    def _set_aside(
        self, key: tuple[str, str], what: str, err: str, now: datetime, report: DeliveryReport
    ) -> None:
        """Slack refused this one message: log it once, list it as a problem of the ticket (cleared
        when the ticket next changes; a refused parent is tried again once its rendering changes, and
        the window's replies wait for it), and let every other message flow."""
        number = rendered_number(self.store, key)
        with self.store.transaction():
            self.store.set_problems(
                key[0],
                key[1],
                number,
                [Problem(number, "slack", f"Slack refused the {what} in {self.channel}: {err}")],
                now,
            )
        log.error(
            "%s: Slack refused the %s in %s (%s): set aside, listed by `windows --problems`; "
            "tried again when the ticket changes",
            number,
            what,
            self.channel,
            err,
        )
        report.poisoned.append(err)

    def _cannot_render(
        self, key: tuple[str, str], what: str, e: Exception, now: datetime, report: DeliveryReport
    ) -> None:
        """Like a refused message: set aside and listed as a problem of the ticket; logged (with the
        traceback) and counted once per message per process, however many passes meet it again."""
        number = rendered_number(self.store, key)
        reason = f"{type(e).__name__}: {e}"
        with self.store.transaction():
            self.store.set_problems(
                key[0],
                key[1],
                number,
                [Problem(number, "slack", f"the {what} for {self.channel} cannot be rendered: {reason}")],
                now,
            )
        if (key, what) not in self._unrenderable:
            self._unrenderable.add((key, what))
            log.error(
                "%s: the %s for %s cannot be rendered (%s): set aside, listed by `windows --problems`; "
                "the other messages flow",
                number,
                what,
                self.channel,
                reason,
                exc_info=e,
            )
            report.poisoned.append("cannot_render")  # counted once too: no summary line every pass


def rendered_number(store: StateStore, key: tuple[str, str]) -> str:
    t = store.get_tracked(key)
    return t.window.number if t else key[1]
