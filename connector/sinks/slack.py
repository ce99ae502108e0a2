"""The Slack sink: one living parent message per window, one thread reply per event.

Delivery is exactly-once in effect. ``chat.update`` is idempotent; ``chat.postMessage`` is not and
Slack has no idempotency key, so every post carries its identity in message metadata and follows:

1. mark the post ``inflight`` and commit (before the request);
2. post; on success store the ``ts`` and mark it done;
3. if the outcome is unknown (timeout, dropped connection, 5xx, or a crash before step 2 committed),
   the row stays ``inflight``; before posting it again, look for it in the channel
   (``conversations.history`` / ``conversations.replies`` with ``include_all_metadata``).

Local state stays the source of truth: Slack is consulted only for an unknown outcome.
Parents are posted before thread replies so that, during a burst, L1 sees every window first.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.domain.window import MaintenanceWindow
from connector.errors import SinkPermanentError, SinkRetryableError
from connector.sinks.slack_render import RenderContext, Rendered, render_event, render_parent
from connector.store.sqlite import Delivery, Store

log = logging.getLogger(__name__)

#: Errors that no retry fixes: an operator must act. Deliveries stay queued until then.
PERMANENT = {
    "channel_not_found": "the channel does not exist or the bot cannot see it: check slack.channel",
    "not_in_channel": "the bot is not a member of the channel: invite it (/invite @bot)",
    "is_archived": "the channel is archived: unarchive it or change slack.channel",
    "invalid_auth": "the Slack token is invalid: check slack.token",
    "not_authed": "no Slack token was sent: check slack.token",
    "token_revoked": "the Slack token was revoked: reinstall the app and update slack.token",
    "token_expired": "the Slack token expired: update slack.token",
    "account_inactive": "the bot user is deactivated: reinstall the app",
    "missing_scope": "the token lacks a scope (chat:write, channels:history): add it and reinstall",
    "restricted_action": "the workspace forbids this bot from posting in the channel",
}
#: Errors about one message only: that message is set aside so it cannot block the queue.
POISON = {
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_too_long",
    "msg_blocks_too_long",
    "no_text",
    "invalid_metadata_format",
    "invalid_metadata_schema",
    "metadata_too_large",
    "too_many_attachments",
}
GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}

PARENT_TYPE = "itsm_window"
EVENT_TYPE = "itsm_event"


@dataclass
class DeliveryReport:
    posted: int = 0
    updated: int = 0
    failed: int = 0
    recovered: int = 0
    error: str | None = None
    poisoned: list[str] = field(default_factory=list)


class _Unknown(Exception):
    """The post may or may not have reached Slack."""


def _fingerprint(r: Rendered) -> str:
    """What the reader sees, less the "updated at" context line (it changes on every render)."""
    blocks = [b for b in r.blocks if b.get("type") != "context"]
    return hashlib.sha256(json.dumps([r.text, blocks], sort_keys=True).encode()).hexdigest()[:16]


class SlackSink:
    def __init__(
        self,
        client: WebClient,
        store: Store,
        channel: str,
        context: Callable[[MaintenanceWindow], RenderContext],
        *,
        pace: Callable[[str], None] = lambda method: None,
        wait: Callable[[float], bool] = lambda seconds: False,
        max_rate_limit_waits: int = 5,
    ) -> None:
        self.client = client
        self.store = store
        self.channel = channel
        self.target = f"slack:{channel}"
        self._context = context
        self._pace = pace
        self._wait = wait  # interruptible sleep: returns True when shutdown was requested
        self._max_waits = max_rate_limit_waits

    # -- the delivery pass --------------------------------------------------------------------------
    def deliver(
        self, now: datetime, limit: int = 1000, also_refresh: Iterable[tuple[str, str]] = ()
    ) -> DeliveryReport:
        """Deliver what the outbox holds for this channel, then bring changed parents up to date
        (``also_refresh``: windows changed by another sink, e.g. a new silence id). Raises
        SinkPermanentError / SinkRetryableError to stop the pass (everything undelivered stays queued)."""
        report = DeliveryReport()
        open_ = self.store.open_deliveries(self.target, limit)
        keys = list(dict.fromkeys([*(d.key for d in open_), *also_refresh]))
        for key in keys:  # first every window's parent message, so L1 sees the whole burst early
            if not self._has_parent(key):
                self._post_parent(key, now, report)
        for d in open_:
            self._post_reply(d, now, report)
        for key in keys:
            self._refresh_parent(key, now, report)
        return report

    def refresh(self, key: tuple[str, str], now: datetime) -> DeliveryReport:
        report = DeliveryReport()
        self._refresh_parent(key, now, report)
        return report

    # -- parents ------------------------------------------------------------------------------------
    def _has_parent(self, key: tuple[str, str]) -> bool:
        msg = self.store.message(key, self.target)
        return msg is not None and msg.state == "posted" and msg.ts is not None

    def _render_parent(self, key: tuple[str, str], now: datetime) -> Rendered | None:
        tracked = self.store.get_tracked(key)
        if tracked is None:
            return None
        return render_parent(tracked.window, tracked.phase, now, self._context(tracked.window))

    def _post_parent(self, key: tuple[str, str], now: datetime, report: DeliveryReport) -> None:
        rendered = self._render_parent(key, now)
        if rendered is None:
            return
        msg = self.store.message(key, self.target)
        ident = f"{self.store.store_id}:{key[0]}:{key[1]}"
        if msg is not None and msg.state == "inflight":
            found = self.find(ident, None)
            if found:
                log.warning(
                    "recovered the parent message of %s from Slack (ts %s): not posting it again",
                    rendered_number(self.store, key),
                    found,
                )
                self.store.set_message(key, self.target, ts=found, state="posted", rendered=None)
                report.recovered += 1
                return
        with self.store.transaction():
            self.store.set_message(key, self.target, ts=None, state="inflight")
        ts = self.post(
            rendered, ident, PARENT_TYPE, None, on_definite_failure=lambda: self._forget_parent(key)
        )
        with self.store.transaction():
            self.store.set_message(key, self.target, ts=ts, state="posted", rendered=_fingerprint(rendered))
        report.posted += 1

    def _forget_parent(self, key: tuple[str, str]) -> None:
        with self.store.transaction():
            self.store.set_message(key, self.target, ts=None, state="pending")

    def _refresh_parent(self, key: tuple[str, str], now: datetime, report: DeliveryReport) -> None:
        msg = self.store.message(key, self.target)
        if msg is None or msg.state != "posted" or msg.ts is None:
            return
        rendered = self._render_parent(key, now)
        if rendered is None or _fingerprint(rendered) == msg.rendered:
            return
        try:
            self._call(
                "chat.update", channel=self.channel, ts=msg.ts, text=rendered.text, blocks=rendered.blocks
            )
        except SlackApiError as e:
            err = e.response.get("error", "")
            if err in GONE:
                log.warning(
                    "the parent message of %s is gone from Slack (%s): posting a new one",
                    rendered_number(self.store, key),
                    err,
                )
                self._forget_parent(key)
                return
            if err in POISON:
                log.error("Slack refused the update of %s: %s", rendered_number(self.store, key), err)
                report.poisoned.append(err)
                return
            raise
        with self.store.transaction():
            self.store.set_message(
                key, self.target, ts=msg.ts, state="posted", rendered=_fingerprint(rendered)
            )
        report.updated += 1

    # -- replies ------------------------------------------------------------------------------------
    def _post_reply(self, d: Delivery, now: datetime, report: DeliveryReport) -> None:
        msg = self.store.message(d.key, self.target)
        if msg is None or msg.ts is None or msg.state != "posted":
            return  # its parent could not be posted; the delivery stays queued
        ident = f"{self.store.store_id}:e{d.event_id}"
        if d.state == "inflight":
            found = self.find(ident, msg.ts)
            if found:
                log.warning(
                    "recovered the %s reply of %s from Slack (ts %s): not posting it again",
                    d.event.kind,
                    d.event.window.number,
                    found,
                )
                with self.store.transaction():
                    self.store.mark_delivery(d.event_id, self.target, "done", now, ts=found)
                report.recovered += 1
                return
        with self.store.transaction():
            self.store.mark_delivery(d.event_id, self.target, "inflight", now)
        rendered = render_event(d.event, self._context(d.event.window))
        try:
            ts = self.post(
                rendered,
                ident,
                EVENT_TYPE,
                msg.ts,
                on_definite_failure=lambda: self._mark(d, "pending", now),
            )
        except SlackApiError as e:
            err = e.response.get("error", "")
            if err not in POISON:
                raise
            log.error(
                "Slack refused the %s reply of %s (%s): set aside, see `windows --problems`",
                d.event.kind,
                d.event.window.number,
                err,
            )
            self._mark(d, "failed", now, error=err)
            report.poisoned.append(err)
            return
        with self.store.transaction():
            self.store.mark_delivery(d.event_id, self.target, "done", now, ts=ts)
        report.posted += 1

    def _mark(self, d: Delivery, state: str, now: datetime, error: str | None = None) -> None:
        with self.store.transaction():
            self.store.mark_delivery(d.event_id, self.target, state, now, error=error)

    # -- Slack calls --------------------------------------------------------------------------------
    def post(
        self,
        r: Rendered,
        ident: str,
        event_type: str,
        thread_ts: str | None,
        *,
        on_definite_failure: Callable[[], None],
    ) -> str:
        kwargs: dict[str, Any] = {
            "channel": self.channel,
            "text": r.text,
            "blocks": r.blocks,
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": {"event_type": event_type, "event_payload": {"id": ident}},
        }
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        try:
            resp = self._call("chat.postMessage", **kwargs)
        except _Unknown as e:
            raise SinkRetryableError(
                f"outcome of a Slack post unknown ({e}); will check before re-posting"
            ) from None
        except (SlackApiError, SinkPermanentError, SinkRetryableError):
            on_definite_failure()  # Slack answered: nothing was stored
            raise
        return str(resp["ts"])

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One Slack call with pacing and Retry-After; errors classified once, here."""
        for _ in range(self._max_waits + 1):
            self._pace(method)
            try:
                return self.client.api_call(method, json=kwargs)
            except SlackApiError as e:
                status = e.response.status_code
                err = str(e.response.get("error", "")) if isinstance(e.response.data, dict) else ""
                if status == 429 or err in ("ratelimited", "rate_limited"):
                    retry_after = float(e.response.headers.get("Retry-After", 1) or 1)
                    log.info("Slack rate limit on %s: waiting %.0fs as Retry-After asks", method, retry_after)
                    if self._wait(retry_after):
                        raise SinkRetryableError("shutdown during a Slack rate-limit wait") from None
                    continue
                if err in PERMANENT:
                    raise SinkPermanentError(f"Slack {method}: {err}: {PERMANENT[err]}") from None
                if status >= 500:
                    if method == "chat.postMessage":
                        raise _Unknown(f"HTTP {status}") from None
                    raise SinkRetryableError(f"Slack {method}: HTTP {status}") from None
                raise
            except (OSError, ValueError) as e:  # timeouts, resets, half-read bodies (URLError is an OSError)
                if method == "chat.postMessage":
                    raise _Unknown(type(e).__name__) from None
                raise SinkRetryableError(f"Slack {method}: {type(e).__name__}") from None
        raise SinkRetryableError(f"Slack {method}: still rate limited after {self._max_waits} waits")

    def find(self, ident: str, thread_ts: str | None, max_pages: int = 10) -> str | None:
        """Look for a message we may have posted (its metadata carries ``ident``)."""
        method = "conversations.replies" if thread_ts else "conversations.history"
        cursor: str | None = None
        for _ in range(max_pages):
            args: dict[str, Any] = {"channel": self.channel, "include_all_metadata": True, "limit": 200}
            if thread_ts:
                args["ts"] = thread_ts
            if cursor:
                args["cursor"] = cursor
            self._pace(method)
            try:
                resp = self.client.api_call(method, http_verb="GET", params=args)
            except SlackApiError as e:
                err = str(e.response.get("error", ""))
                if err in PERMANENT:
                    raise SinkPermanentError(f"Slack {method}: {err}: {PERMANENT[err]}") from None
                raise SinkRetryableError(f"Slack {method}: {err or e.response.status_code}") from None
            except (OSError, ValueError) as e:
                raise SinkRetryableError(f"Slack {method}: {type(e).__name__}") from None
            messages: list[dict[str, Any]] = resp.get("messages", [])
            for m in messages:
                payload = (m.get("metadata") or {}).get("event_payload") or {}
                if payload.get("id") == ident:
                    return str(m["ts"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                return None
        return None

    def check(self) -> list[str]:
        """Problems that stop delivery (for ``check``): auth, channel, membership."""
        problems = []
        try:
            auth = self.client.auth_test()
            info = self.client.conversations_info(channel=self.channel)
        except SlackApiError as e:
            err = str(e.response.get("error", ""))
            return [f"slack: {err}: {PERMANENT.get(err, 'see the Slack API docs')}"]
        except OSError as e:
            return [f"slack: cannot reach {self.client.base_url}: {type(e).__name__}"]
        ch: dict[str, Any] = info.get("channel", {})
        if ch.get("is_archived"):
            problems.append(f"slack.channel {self.channel}: {PERMANENT['is_archived']}")
        if not ch.get("is_member", False):
            problems.append(f"slack.channel {self.channel}: {PERMANENT['not_in_channel']}")
        if not problems:
            log.info("Slack ok: bot %s in #%s", auth.get("user"), ch.get("name"))
        return problems


def rendered_number(store: Store, key: tuple[str, str]) -> str:
    t = store.get_tracked(key)
    return t.window.number if t else key[1]
