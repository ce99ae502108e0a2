"""The Slack Web API edge: one channel's calls, and every Slack answer classified once.

:class:`SlackChannel` makes the calls the sink needs (``chat.postMessage`` with the message's identity
in its metadata, ``chat.update``, the lookups of an unknown outcome in ``conversations.history`` /
``conversations.replies``), with pacing and ``Retry-After``. ``itsm-connector check`` is in
:mod:`connector.slack.checks`.
:class:`connector.slack.delivery.SlackSink` is such a channel with an outbox to deliver.

Every Slack answer is classified once, in :meth:`SlackChannel.call`:

* 429 / ``ratelimited``: wait ``Retry-After`` (interruptible by shutdown), then try again;
* :data:`PERMANENT` (channel, token, scope): :class:`SinkPermanentError` saying what to fix;
* 5xx, :data:`TRANSIENT`, not JSON, transport errors: :class:`SinkRetryableError` (with the server's
  ``Retry-After``), or for a post an unknown outcome;
* :data:`POISON` (this one message is refused): the message is set aside and listed as a problem of
  its ticket (``windows --problems``) until the ticket changes; it never blocks the queue;
* any other error code: Slack said no, nothing was stored: :class:`SinkRetryableError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.errors import SinkError, SinkPermanentError, SinkRetryableError
from connector.retry_after import retry_after_seconds
from connector.slack.render import Rendered

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
#: Slack could not finish the call ("it's possible some aspect of the operation succeeded"): retry;
#: for a post, the outcome is unknown. Slack sends these with HTTP 200 as well as with 5xx.
TRANSIENT = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
RATE_LIMITED = {"ratelimited", "rate_limited"}
NOT_JSON = "not_json"  # slack_sdk: "Received a response in a non-JSON format" (a proxy's HTML page)


class Interrupted(SinkRetryableError):
    """Shutdown was requested while waiting (pacing, ``Retry-After``): the request was not sent."""


class _Unknown(Exception):
    """The post may or may not have reached Slack."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Answer:
    """A Slack error answer, read once: HTTP status, error code, ``Retry-After`` seconds."""

    status: int
    error: str
    retry_after: float | None

    @classmethod
    def of(cls, e: SlackApiError) -> Answer:
        resp = e.response
        status = int(getattr(resp, "status_code", 0) or 0)
        data = getattr(resp, "data", None)
        error = str(data.get("error") or "") if isinstance(data, Mapping) else ""
        if not isinstance(data, Mapping) or error.startswith("Received a response in a non-JSON format"):
            error = NOT_JSON
        headers = getattr(resp, "headers", None) or {}
        value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
        return cls(status, error, retry_after_seconds(value))

    def describe(self) -> str:
        if self.error and self.error != NOT_JSON:
            return self.error
        what = "an answer that is not JSON" if self.error == NOT_JSON else "no error code"
        return f"HTTP {self.status}, {what}" if self.status else what


def sdk_logger() -> logging.Logger:
    """The logger to give ``WebClient``: slack_sdk logs an ERROR line for every failed request, which
    :meth:`SlackChannel.call` classifies and the sink reports once; its DEBUG and WARNING lines stay."""
    logger = logging.getLogger(f"{__name__}.sdk")
    if not any(isinstance(f, _DropErrors) for f in logger.filters):
        logger.addFilter(_DropErrors())
    return logger


class _DropErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


class SlackChannel:
    """One Slack channel through the Web API: ``pace`` may raise :class:`Interrupted`; ``wait`` is an
    interruptible sleep that returns True when shutdown was requested; ``observe(method, seconds)`` is
    told how long each request took (answered or failed), measured with ``timer``."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        *,
        pace: Callable[[str], None] = lambda method: None,
        wait: Callable[[float], bool] = lambda seconds: False,
        max_rate_limit_waits: int = 5,
        observe: Callable[[str, float], None] = lambda method, seconds: None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.client = client
        self.channel = channel
        #: a stand-in client that prints instead of sending (``--dry-run``): logs say "printed"
        self.dry_run = bool(getattr(client, "dry_run", False))
        self._pace = pace  # may raise Interrupted
        self._wait = wait  # interruptible sleep: returns True when shutdown was requested
        self._max_waits = max_rate_limit_waits
        self._observe = observe  # e.g. the request-duration histogram
        self._timer = timer

    def post(
        self,
        r: Rendered,
        ident: str,
        event_type: str,
        thread_ts: str | None,
        *,
        on_definite_failure: Callable[[], None],
        before_send: Callable[[], None] = lambda: None,
    ) -> str:
        """One ``chat.postMessage`` with ``ident`` in its metadata. ``before_send`` (mark the post
        ``inflight`` and commit) runs after the pacing wait, right before the request, so a crash while
        waiting leaves nothing to look up. Slack refused it (any error it answered, or a shutdown before
        it was sent): ``on_definite_failure()`` then the error. Outcome unknown:
        :class:`SinkRetryableError`, and the ``inflight`` mark stays."""
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
            self._pace("chat.postMessage")
            before_send()
            resp = self.call("chat.postMessage", paced=True, **kwargs)
        except _Unknown as e:
            raise SinkRetryableError(
                f"outcome of a Slack post unknown ({e}); will check before re-posting",
                retry_after=e.retry_after,
            ) from None
        except (SlackApiError, SinkError):
            on_definite_failure()  # Slack answered (or was never asked): nothing was stored
            raise
        return str(resp["ts"])

    def call(
        self, method: str, *, query: dict[str, Any] | None = None, paced: bool = False, **kwargs: Any
    ) -> Any:
        """One Slack call (JSON body, or GET ``query``) with pacing (unless the caller just ``paced``)
        and ``Retry-After``; every error classified once, here (see the module doc). Only POISON and
        GONE errors leave as SlackApiError, for the caller to handle."""
        unknown = method == "chat.postMessage"  # the one call that is not idempotent
        for attempt in range(self._max_waits + 1):
            if attempt or not paced:
                self._pace(method)
            try:
                return self._request(method, query, kwargs)
            except SlackApiError as e:
                a = Answer.of(e)
                if a.status == 429 or a.error in RATE_LIMITED:
                    wait = a.retry_after if a.retry_after is not None else 1.0
                    if attempt == self._max_waits:  # no point waiting for an attempt never made
                        raise SinkRetryableError(
                            f"Slack {method}: still rate limited after {attempt} waits", retry_after=wait
                        ) from None
                    log.info(
                        "Slack rate limit on %s in %s: waiting %.0fs as Retry-After asks",
                        method,
                        self.channel,
                        wait,
                    )
                    if self._wait(wait):
                        raise Interrupted("shutdown during a Slack rate-limit wait") from None
                    continue
                if a.error in PERMANENT:
                    raise SinkPermanentError(f"Slack {method}: {a.error}: {PERMANENT[a.error]}") from None
                if a.status >= 500 or a.error in TRANSIENT or a.error == NOT_JSON:
                    if unknown:
                        raise _Unknown(a.describe(), a.retry_after) from None
                    raise SinkRetryableError(
                        f"Slack {method}: {a.describe()}", retry_after=a.retry_after
                    ) from None
                if a.error in POISON or a.error in GONE:
                    raise
                raise SinkRetryableError(f"Slack {method} refused: {a.describe()}") from None
            except (OSError, ValueError) as e:  # timeouts, resets, half-read bodies (URLError is an OSError)
                if unknown:
                    raise _Unknown(type(e).__name__) from None
                raise SinkRetryableError(f"Slack {method}: {type(e).__name__}") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request(self, method: str, query: dict[str, Any] | None, body: dict[str, Any]) -> Any:
        """One request, timed whatever its outcome."""
        started = self._timer()
        try:
            if query is not None:
                return self.client.api_call(method, http_verb="GET", params=query)
            return self.client.api_call(method, json=body)
        finally:
            self._observe(method, self._timer() - started)

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
            try:
                resp = self.call(method, query=args)
            except SlackApiError as e:
                raise SinkRetryableError(f"Slack {method}: {Answer.of(e).describe()}") from None
            messages: list[dict[str, Any]] = resp.get("messages", [])
            for m in messages:
                payload = (m.get("metadata") or {}).get("event_payload") or {}
                if payload.get("id") == ident:
                    return str(m["ts"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                return None
        return None
