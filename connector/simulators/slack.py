"""A Slack Web API simulator on loopback, for the demo, integration tests and benchmarks.

Serves ``POST /api/<method>`` (and GET with query parameters) to a real ``slack_sdk.WebClient``
pointed at ``base_url``. The shell here does what Slack does before a method runs, in this order:

1. injected faults (FIFO per method): ``429``, ``500``, ``503``, ``slow``, ``drop``,
   ``lost_response`` (apply the call, then close the socket unanswered), ``error``, ``html``;
2. auth: ``not_authed`` / ``token_revoked`` / ``invalid_auth``;
3. the per-channel chat.postMessage rate limit (HTTP 429 + ``Retry-After``);
4. the method itself, in ``slack_store.SlackStore``.

The HTTP server and request decoding are in ``slack_http``. Every call lands in ``calls``. All state
sits behind one lock, so handler threads and the test thread can read and write it concurrently.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from zoneinfo import ZoneInfo

from connector.simulators.slack_call import Params, SlackCallError
from connector.simulators.slack_http import Reply, Server, decode_params, json_reply
from connector.simulators.slack_message import SimChannel, SimMessage, render_transcript
from connector.simulators.slack_store import SlackStore
from connector.simulators.slack_view import seen_transcript

__all__ = ["FAULTS", "CallLogEntry", "SimChannel", "SimMessage", "SlackSimulator"]

FAULTS = frozenset({"429", "500", "503", "slow", "drop", "lost_response", "error", "html"})
DEFAULT_CHANNEL = ("C0MAINT01", "maintenance")
# A post may arrive this fraction of the interval early and still pass: loopback jitter between a
# client pacing itself at exactly 1/rate and the server's clock must not turn into a 429.
RATE_TOLERANCE = 0.01


@dataclass(frozen=True)
class CallLogEntry:
    """One API call as the simulator saw it. ``status`` is 0 when the socket was closed unanswered."""

    method: str
    channel: str | None
    status: int
    ok: bool
    error: str | None
    fault: str | None = None  # the injected fault that shaped this call, if any
    ts: str | None = None  # ts of the message posted or updated
    #: the token the call came with (tests tell two replicas apart by it)
    token: str | None = field(default=None, compare=False)
    at: float = field(default=0.0, compare=False)  # time.monotonic() when the call was answered


@dataclass(frozen=True)
class _Fault:
    kind: str
    retry_after: int
    delay: float
    error: str


#: The bot token the simulator accepts by default: a fake, valid only against this simulator.
DEFAULT_TOKEN = "xoxb-simulator"
#: The scope each method needs (public channels; docs.slack.dev method pages).
METHOD_SCOPES = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "conversations.info": "channels:read",
    "conversations.list": "channels:read",
    "conversations.join": "channels:join",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
}


class SlackSimulator:
    """Loopback Slack: ``with SlackSimulator() as sim: WebClient(token=..., base_url=sim.base_url)``.

    ``clock`` drives the rate limit (default ``time.monotonic``) and, when given, the seconds part of
    every ts (default ``time.time``). ``post_rate_per_channel`` limits chat.postMessage, thread replies
    included: a post sooner than 1/rate s after the last accepted one in that channel gets a 429.
    ``scopes``: the token's OAuth scopes; when given, every answer carries them in ``X-OAuth-Scopes``
    (as Slack's do) and a method needing another one answers ``missing_scope``. Default: all allowed.
    """

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        clock: Callable[[], float] | None = None,
        post_rate_per_channel: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        scopes: Iterable[str] | None = None,
    ) -> None:
        if post_rate_per_channel is not None and post_rate_per_channel <= 0:
            raise ValueError("post_rate_per_channel must be positive")
        self._lock = threading.Lock()
        self._clock = clock or time.monotonic
        # ts looks like Slack's (epoch seconds) unless a clock is injected, which then drives both.
        self._store = SlackStore(ts_clock=clock or time.time)
        self._tokens = set(tokens)
        self._scopes = None if scopes is None else frozenset(scopes)
        self._revoked: set[str] = set()
        self._interval = None if post_rate_per_channel is None else 1.0 / post_rate_per_channel
        self._last_post: dict[str, float] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._calls: list[CallLogEntry] = []
        self._address = (host, port)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.add_channel(*DEFAULT_CHANNEL)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SlackSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = Server(self._address, self._handle)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="slack-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> SlackSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    # --- arranging the world -----------------------------------------------------------------

    def add_channel(self, channel_id: str, name: str, *, member: bool = True, archived: bool = False) -> None:
        with self._lock:
            self._store.channels[channel_id] = SimChannel(channel_id, name, member, archived)

    def set_channel(
        self, channel_id: str, *, member: bool | None = None, archived: bool | None = None
    ) -> None:
        with self._lock:
            channel = self._store.channels[channel_id]
            channel.member = channel.member if member is None else member
            channel.archived = channel.archived if archived is None else archived

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    def inject(
        self,
        method: str,
        fault: str,
        *,
        count: int = 1,
        retry_after: int = 1,
        delay: float = 0.0,
        error: str = "",
    ) -> None:
        """Queue ``count`` faults for the next calls of ``method``; empty ``error`` means internal_error."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        if count < 1 or retry_after < 1 or delay < 0:
            raise ValueError("count and retry_after must be >= 1, delay >= 0")
        with self._lock:
            queue = self._faults.setdefault(method, deque())
            queue.extend([_Fault(fault, retry_after, delay, error or "internal_error")] * count)

    # --- reading the world -------------------------------------------------------------------

    def parents(self, channel: str) -> list[SimMessage]:
        """Top-level messages, oldest first, each with its replies (copies: safe to keep)."""
        with self._lock:
            return copy.deepcopy(self._store.channels[channel].messages)

    def transcript(self, channel: str) -> str:
        """The channel as sent: mrkdwn, tokens and entities (for exact comparisons in tests)."""
        with self._lock:
            return render_transcript(self._store.channels[channel])

    def seen(self, channel: str, tz: ZoneInfo) -> str:
        """The channel as a reader in ``tz`` sees it in Slack (:mod:`connector.simulators.slack_view`)."""
        with self._lock:
            return seen_transcript(self._store.channels[channel], tz)

    @property
    def calls(self) -> list[CallLogEntry]:
        """Every API call so far, oldest first (a copy), including faults and 429s."""
        with self._lock:
            return list(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # --- serving -----------------------------------------------------------------------------

    def _handle(
        self, method: str, query: str, body: bytes, content_type: str, authorization: str
    ) -> Reply | None:
        """The reply to one HTTP request, or None to close the socket without answering."""
        try:
            params = decode_params(query, body, content_type)
        except (ValueError, UnicodeDecodeError):
            self._log(CallLogEntry(method, None, 200, False, "invalid_json"))
            return json_reply(200, {"ok": False, "error": "invalid_json"})
        channel = params.get("channel") if isinstance(params.get("channel"), str) else None
        with self._lock:
            queue = self._faults.get(method)
            fault = queue.popleft() if queue else None
        kind = fault.kind if fault is not None else None
        if fault is not None and kind == "slow":
            time.sleep(fault.delay)
        token = authorization.removeprefix("Bearer ").strip() or params.get("token")
        if fault is None or kind in ("slow", "lost_response"):
            reply, error, ts = self._answer(method, params, token if isinstance(token, str) else None)
        else:
            reply, error, ts = *self._fault_reply(fault), None
        if self._scopes is not None:
            reply = dataclasses.replace(reply, headers=(("X-OAuth-Scopes", ",".join(sorted(self._scopes))),))
        unanswered = kind in ("drop", "lost_response")
        ok = error is None and kind != "drop"
        status = 0 if unanswered else reply.status
        who = token if isinstance(token, str) else None
        self._log(CallLogEntry(method, channel, status, ok, error, kind, ts, who, time.monotonic()))
        return None if unanswered else reply

    def _log(self, entry: CallLogEntry) -> None:
        with self._lock:
            self._calls.append(entry)

    @staticmethod
    def _fault_reply(fault: _Fault) -> tuple[Reply, str | None]:
        """The canned answer for a fault and the error code it carries (None: nothing is sent)."""
        if fault.kind == "429":
            error = "ratelimited"
            return json_reply(429, {"ok": False, "error": error}, retry_after=fault.retry_after), error
        if fault.kind in ("500", "503"):
            error = "internal_error" if fault.kind == "500" else "service_unavailable"
            return json_reply(int(fault.kind), {"ok": False, "error": error}), error
        if fault.kind == "html":
            html = b"<html><body><h1>Slack is having trouble</h1></body></html>"
            return Reply(200, html, "text/html; charset=utf-8"), "html"
        if fault.kind == "error":
            return json_reply(200, {"ok": False, "error": fault.error}), fault.error
        return Reply(0, b""), None  # drop: never sent

    def _answer(self, method: str, params: Params, token: str | None) -> tuple[Reply, str | None, str | None]:
        """Auth, rate limit and the method itself: (reply, error code or None, ts posted/updated)."""
        with self._lock:
            try:
                if not token:
                    raise SlackCallError("not_authed")
                if token in self._revoked:
                    raise SlackCallError("token_revoked")
                if token not in self._tokens:
                    raise SlackCallError("invalid_auth")
                needed = METHOD_SCOPES.get(method)
                if self._scopes is not None and needed is not None and needed not in self._scopes:
                    raise SlackCallError("missing_scope")
                now = self._clock()
                posting_to = self._store.channel_id(str(params.get("channel", "")))
                posting_to = posting_to if method == "chat.postMessage" else None
                wait = self._rate_wait(posting_to, now) if posting_to is not None else None
                if wait is not None:
                    return json_reply(429, {"ok": False, "error": "ratelimited"}, wait), "ratelimited", None
                body = self._store.call(method, params)
            except SlackCallError as err:
                return json_reply(200, {"ok": False, "error": err.error}), err.error, None
            if posting_to is not None:
                self._last_post[posting_to] = now
            ts = body.get("ts") if method in ("chat.postMessage", "chat.update") else None
            return json_reply(200, body), None, ts

    def _rate_wait(self, channel_id: str, now: float) -> int | None:
        """Seconds to tell the client to wait, or None when this post may go through."""
        last = self._last_post.get(channel_id)
        if self._interval is None or last is None:
            return None
        remaining = self._interval - (now - last)
        if remaining <= self._interval * RATE_TOLERANCE:
            return None
        return max(1, math.ceil(remaining))
