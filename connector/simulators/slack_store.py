"""The Slack simulator's channel state and what each Web API method does to it.

No I/O here: ``SlackStore.call(method, params)`` takes decoded request parameters (JSON values or
form strings) and returns the response body, or raises ``SlackCallError`` carrying Slack's error code.
Reading parameters is in ``slack_call``, Block Kit checks in ``slack_blocks``, the stored message
records and their JSON and transcript forms in ``slack_message``.
Auth, rate limits, injected faults and HTTP live in ``connector.simulators.slack``, which also holds
the lock: this module is not thread-safe on its own.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.simulators.slack_blocks import check_blocks, check_metadata
from connector.simulators.slack_call import (
    Body,
    Params,
    SlackCallError,
    decode_cursor,
    encode_cursor,
    flag,
    json_arg,
    opt_str,
    page_limit,
    parse_ts,
    ts_bound,
)
from connector.simulators.slack_message import BOT_ID, BOT_USER, TEAM_ID, SimChannel, SimMessage, message_json

PERMALINK_BASE = "https://sim.slack.com/archives"

MAX_UPDATE_TEXT_CHARS = 4000
MAX_POST_TEXT_CHARS = 40000  # Slack truncates longer chat.postMessage text rather than failing


class TsSource:
    """Strictly increasing ``"%d.%06d"`` timestamps: clock seconds plus a global sequence number."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = (0, 0)

    def next(self) -> str:
        last_seconds, last_seq = self._last
        seq = (last_seq + 1) % 1_000_000
        seconds = max(int(self._clock()), last_seconds)
        if (seconds, seq) <= self._last:
            seconds = last_seconds + 1
        self._last = (seconds, seq)
        return f"{self._last[0]}.{self._last[1]:06d}"


class SlackStore:
    """Channels and messages, and one handler per Web API method (``call``)."""

    def __init__(self, ts_clock: Callable[[], float]) -> None:
        self.channels: dict[str, SimChannel] = {}
        self._ts = TsSource(ts_clock)
        self._handlers: dict[str, Callable[[Params], Body]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.getPermalink": self._permalink,
            "conversations.info": self._info,
            "conversations.list": self._list,
            "conversations.join": self._join,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
        }

    def call(self, method: str, params: Params) -> Body:
        handler = self._handlers.get(method)
        if handler is None:
            raise SlackCallError("unknown_method")
        return handler(params)

    def channel_id(self, id_or_name: str) -> str | None:
        """Slack accepts a channel id, or for posting a ``#name``/``name``."""
        if id_or_name in self.channels:
            return id_or_name
        name = id_or_name.removeprefix("#")
        return next((c.id for c in self.channels.values() if c.name == name), None)

    def _channel(self, params: Params, *, write: bool = False, member: bool = False) -> SimChannel:
        channel_id = self.channel_id(opt_str(params, "channel") or "")
        if channel_id is None:
            raise SlackCallError("channel_not_found")
        channel = self.channels[channel_id]
        if write and channel.archived:
            raise SlackCallError("is_archived")
        if member and not channel.member:
            raise SlackCallError("not_in_channel")
        return channel

    @staticmethod
    def _find(channel: SimChannel, ts: str | None) -> tuple[SimMessage, SimMessage | None]:
        """The message with this ts and its parent (None for a top-level message)."""
        for parent in channel.messages:
            if parent.ts == ts:
                return parent, None
            for reply in parent.replies:
                if reply.ts == ts:
                    return reply, parent
        raise SlackCallError("message_not_found")

    @staticmethod
    def _channel_json(channel: SimChannel) -> Body:
        return {
            "id": channel.id,
            "name": channel.name,
            "is_member": channel.member,
            "is_archived": channel.archived,
            "is_channel": True,
        }

    def _auth_test(self, params: Params) -> Body:
        return {
            "ok": True,
            "url": "https://sim.slack.com/",
            "team": "Sim",
            "user": "itsm-bot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
        }

    def _post(self, params: Params) -> Body:
        channel = self._channel(params, write=True, member=True)
        text = opt_str(params, "text") or ""
        raw_blocks = json_arg(params, "blocks")
        blocks = check_blocks(raw_blocks) if raw_blocks is not None else []
        if not text and not blocks:
            raise SlackCallError("no_text")
        raw_metadata = json_arg(params, "metadata")
        metadata = check_metadata(raw_metadata) if raw_metadata is not None else None
        thread_ts = opt_str(params, "thread_ts") or None
        parent = next((m for m in channel.messages if m.ts == thread_ts), None)
        if thread_ts is not None and parent is None:
            raise SlackCallError("thread_not_found")
        message = SimMessage(
            channel=channel.id,
            ts=self._ts.next(),
            text=text[:MAX_POST_TEXT_CHARS],
            blocks=blocks,
            thread_ts=thread_ts,
            metadata=metadata,
            user=BOT_USER,
        )
        (parent.replies if parent is not None else channel.messages).append(message)
        return {
            "ok": True,
            "channel": channel.id,
            "ts": message.ts,
            "message": message_json(message, with_metadata=True),
        }

    def _update(self, params: Params) -> Body:
        channel = self._channel(params, write=True)
        message, _ = self._find(channel, opt_str(params, "ts"))
        text = opt_str(params, "text")
        raw_blocks = json_arg(params, "blocks")
        if text is None and raw_blocks is None:
            raise SlackCallError("no_text")
        if text is not None and len(text) > MAX_UPDATE_TEXT_CHARS:
            raise SlackCallError("msg_too_long")
        blocks = check_blocks(raw_blocks) if raw_blocks is not None else message.blocks
        metadata = message.metadata
        if "metadata" in params:  # omitted keeps the old metadata, {} removes it
            raw_metadata = json_arg(params, "metadata")
            metadata = None if raw_metadata in ({}, None) else check_metadata(raw_metadata)
        message.text = text if text is not None else message.text
        message.blocks, message.metadata = blocks, metadata
        message.edited += 1
        return {
            "ok": True,
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": message_json(message, with_metadata=True),
        }

    def _delete(self, params: Params) -> Body:
        channel = self._channel(params, write=True)
        message, parent = self._find(channel, opt_str(params, "ts"))
        (parent.replies if parent is not None else channel.messages).remove(message)
        return {"ok": True, "channel": channel.id, "ts": message.ts}

    def _permalink(self, params: Params) -> Body:
        channel = self._channel(params)
        message, parent = self._find(channel, opt_str(params, "message_ts"))
        link = f"{PERMALINK_BASE}/{channel.id}/p{message.ts.replace('.', '')}"
        if parent is not None:
            link += f"?thread_ts={parent.ts}&cid={channel.id}"
        return {"ok": True, "channel": channel.id, "permalink": link}

    def _info(self, params: Params) -> Body:
        channel = self.channels.get(opt_str(params, "channel") or "")
        if channel is None:  # unlike chat.postMessage, Slack takes no #name here
            raise SlackCallError("channel_not_found")
        return {"ok": True, "channel": self._channel_json(channel)}

    def _list(self, params: Params) -> Body:
        """The channels, in pages of ``limit`` (``cursor`` names the first id of the next page)."""
        skip_archived = flag(params, "exclude_archived")
        channels = [c for c in self.channels.values() if not (skip_archived and c.archived)]
        start = 0
        cursor = opt_str(params, "cursor")
        if cursor:
            first = decode_cursor(cursor)
            start = next((i for i, c in enumerate(channels) if c.id == first), -1)
            if start < 0:
                raise SlackCallError("invalid_cursor")
        limit = page_limit(params)
        page, rest = channels[start : start + limit], channels[start + limit :]
        return {
            "ok": True,
            "channels": [self._channel_json(c) for c in page],
            "response_metadata": {"next_cursor": encode_cursor(rest[0].id) if rest else ""},
        }

    def _join(self, params: Params) -> Body:
        channel = self._channel(params, write=True)
        body: Body = {"ok": True}
        if channel.member:
            body["warning"] = "already_in_channel"
        channel.member = True
        body["channel"] = self._channel_json(channel)
        return body

    def _history(self, params: Params) -> Body:
        channel = self._channel(params, member=True)
        newest_first = list(reversed(channel.messages))
        return self._page(params, newest_first)

    def _replies(self, params: Params) -> Body:
        channel = self._channel(params, member=True)
        ts = opt_str(params, "ts")
        parent = next((m for m in channel.messages if m.ts == ts), None)
        if parent is None:
            raise SlackCallError("thread_not_found")
        return self._page(params, [parent, *parent.replies])

    @staticmethod
    def _page(params: Params, messages: list[SimMessage]) -> Body:
        """One page of ``messages`` (already in answer order) within oldest/latest, cursor and limit."""
        inclusive = flag(params, "inclusive")
        oldest = ts_bound(params, "oldest", (0, 0))
        latest = ts_bound(params, "latest", (10**12, 0))

        def in_range(ts: tuple[int, int]) -> bool:
            return oldest <= ts <= latest if inclusive else oldest < ts < latest

        selected = [m for m in messages if in_range(parse_ts(m.ts))]
        start = 0
        cursor = opt_str(params, "cursor")
        if cursor:
            first_ts = decode_cursor(cursor)
            start = next((i for i, m in enumerate(selected) if m.ts == first_ts), -1)
            if start < 0:
                raise SlackCallError("invalid_cursor")
        limit = page_limit(params)
        page, rest = selected[start : start + limit], selected[start + limit :]
        with_metadata = flag(params, "include_all_metadata")
        return {
            "ok": True,
            "messages": [message_json(m, with_metadata=with_metadata) for m in page],
            "has_more": bool(rest),
            "pin_count": 0,
            "response_metadata": {"next_cursor": encode_cursor(rest[0].ts) if rest else ""},
        }
