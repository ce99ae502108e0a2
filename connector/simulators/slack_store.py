"""The Slack simulator's channel state and what each Web API method does to it.

No I/O here: ``SlackStore.call(method, params)`` takes decoded request parameters (JSON values or
form strings) and returns the response body, or raises ``SlackCallError`` carrying Slack's error code.
Auth, rate limits, injected faults and HTTP live in ``connector.simulators.slack``, which also holds
the lock: this module is not thread-safe on its own.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Params = dict[str, Any]
Body = dict[str, Any]

BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0SIM"
TEAM_ID = "T0SIM"
PERMALINK_BASE = "https://sim.slack.com/archives"

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3000
MAX_FIELDS = 10
MAX_FIELD_CHARS = 2000
MAX_BLOCK_ID_CHARS = 255
MAX_UPDATE_TEXT_CHARS = 4000
MAX_POST_TEXT_CHARS = 40000  # Slack truncates longer chat.postMessage text rather than failing
BLOCK_TYPES = frozenset({"header", "section", "context", "divider", "actions", "rich_text"})
DEFAULT_LIMIT = 100
MAX_LIMIT = 999


class SlackCallError(Exception):
    """A Web API call answered with ``{"ok": false, "error": <error>}``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class SimMessage:
    """One message as stored. ``replies`` is filled for parents only, oldest first."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    metadata: dict[str, Any] | None
    user: str
    edited: int = 0  # number of chat.update calls applied
    replies: list[SimMessage] = field(default_factory=list)


@dataclass
class SimChannel:
    id: str
    name: str
    member: bool
    archived: bool
    messages: list[SimMessage] = field(default_factory=list)  # top-level only, oldest first


# --- parameters -------------------------------------------------------------------------------


def _opt_str(params: Params, key: str) -> str | None:
    value = params.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise SlackCallError("invalid_arguments")


def _flag(params: Params, key: str) -> bool:
    return params.get(key) in (True, 1, "1", "true", "True")


def _limit(params: Params) -> int:
    raw = params.get("limit")
    if raw in (None, "", 0, "0"):
        return DEFAULT_LIMIT
    try:
        return max(1, min(MAX_LIMIT, int(raw)))
    except (TypeError, ValueError):
        raise SlackCallError("invalid_limit") from None


def _json_arg(params: Params, key: str) -> Any:
    """Blocks and metadata arrive as JSON values in JSON bodies and as JSON strings in form bodies."""
    value = params.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise SlackCallError(f"invalid_{key}_format") from None
    return value


def parse_ts(ts: str) -> tuple[int, int]:
    """``"1700000000.000042"`` → ``(1700000000, 42)``; raises ValueError when it is not a ts."""
    seconds, _, fraction = ts.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise ValueError(ts)
    return int(seconds), int(fraction.ljust(6, "0") or "0")


def _ts_bound(params: Params, key: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = _opt_str(params, key)
    if not raw:
        return default
    try:
        return parse_ts(raw)
    except ValueError:
        raise SlackCallError(f"invalid_ts_{key}") from None


def encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SlackCallError("invalid_cursor") from None
    if not decoded.startswith("next_ts:"):
        raise SlackCallError("invalid_cursor")
    return decoded.removeprefix("next_ts:")


# --- validation -------------------------------------------------------------------------------


def _text_len(obj: Any) -> int | None:
    """Length of a text object's text, or None when it is not a text object."""
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return len(obj["text"])
    return None


def block_problem(block: Any) -> str | None:
    """Why Slack would reject this block, or None. Covers the limits our renderer can hit."""
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        return "unknown block type"
    if len(str(block.get("block_id", ""))) > MAX_BLOCK_ID_CHARS:
        return "block_id too long"
    kind = block["type"]
    if kind == "header":
        text = block.get("text")
        length = _text_len(text)
        if length is None or not isinstance(text, dict) or text.get("type") != "plain_text":
            return "header text must be plain_text"
        if not 1 <= length <= MAX_HEADER_CHARS:
            return f"header text must be 1..{MAX_HEADER_CHARS} chars"
    elif kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            return "section needs text or fields"
        if text is not None and not 1 <= (_text_len(text) or 0) <= MAX_SECTION_CHARS:
            return f"section text must be 1..{MAX_SECTION_CHARS} chars"
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                return f"section fields must be a list of at most {MAX_FIELDS}"
            if any(not 1 <= (_text_len(f) or 0) <= MAX_FIELD_CHARS for f in fields):
                return f"section field must be 1..{MAX_FIELD_CHARS} chars"
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return "context needs 1..10 elements"
    return None


def check_blocks(blocks: Any) -> list[dict[str, Any]]:
    if not isinstance(blocks, list):
        raise SlackCallError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS or any(block_problem(b) for b in blocks):
        raise SlackCallError("invalid_blocks")
    return copy.deepcopy(blocks)


def check_metadata(metadata: Any) -> dict[str, Any]:
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackCallError("invalid_metadata_format")
    return copy.deepcopy(metadata)


# --- rendering --------------------------------------------------------------------------------


def _rich_text(obj: Any) -> str:
    if isinstance(obj, dict):
        if isinstance(obj.get("text"), str):
            return str(obj["text"])
        return _rich_text(obj.get("elements", []))
    if isinstance(obj, list):
        return "".join(_rich_text(e) for e in obj)
    return ""


def render_blocks(blocks: list[dict[str, Any]]) -> list[str]:
    """What a reader sees of header, section, context and rich_text blocks, one entry per line group."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header" or kind == "section":
            if _text_len(block.get("text")) is not None:
                lines.append(block["text"]["text"])
            lines.extend(f["text"] for f in block.get("fields") or [] if _text_len(f) is not None)
        elif kind == "context":
            parts = [e["text"] for e in block.get("elements", []) if _text_len(e) is not None]
            lines.append(" | ".join(parts))
        elif kind == "rich_text":
            lines.append(_rich_text(block.get("elements", [])))
    return [line for line in lines if line]


def render_message(message: SimMessage) -> str:
    return "\n".join(render_blocks(message.blocks)) or message.text or "(empty)"


def render_transcript(channel: SimChannel) -> str:
    out = [f"#{channel.name} ({channel.id})"]
    for number, parent in enumerate(channel.messages, start=1):
        out += ["", f"[{number}] edits: {parent.edited}", render_message(parent)]
        for reply in parent.replies:
            first, *rest = render_message(reply).split("\n")
            suffix = f" (edits: {reply.edited})" if reply.edited else ""
            out.append(f"    ↳ {first}{suffix}")
            out.extend(f"      {line}" for line in rest)
    return "\n".join(out) + "\n"


def message_json(message: SimMessage, *, with_metadata: bool) -> Body:
    out: Body = {
        "type": "message",
        "user": message.user,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "text": message.text,
        "ts": message.ts,
    }
    if message.blocks:
        out["blocks"] = copy.deepcopy(message.blocks)
    if message.thread_ts is not None:
        out.update(thread_ts=message.thread_ts, parent_user_id=BOT_USER)
    elif message.replies:
        out.update(
            thread_ts=message.ts,
            reply_count=len(message.replies),
            reply_users=[BOT_USER],
            reply_users_count=1,
            latest_reply=message.replies[-1].ts,
        )
    if with_metadata and message.metadata is not None:
        out["metadata"] = copy.deepcopy(message.metadata)
    return out


# --- the store --------------------------------------------------------------------------------


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
        channel_id = self.channel_id(_opt_str(params, "channel") or "")
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
        text = _opt_str(params, "text") or ""
        raw_blocks = _json_arg(params, "blocks")
        blocks = check_blocks(raw_blocks) if raw_blocks is not None else []
        if not text and not blocks:
            raise SlackCallError("no_text")
        raw_metadata = _json_arg(params, "metadata")
        metadata = check_metadata(raw_metadata) if raw_metadata is not None else None
        thread_ts = _opt_str(params, "thread_ts") or None
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
        message, _ = self._find(channel, _opt_str(params, "ts"))
        text = _opt_str(params, "text")
        raw_blocks = _json_arg(params, "blocks")
        if text is None and raw_blocks is None:
            raise SlackCallError("no_text")
        if text is not None and len(text) > MAX_UPDATE_TEXT_CHARS:
            raise SlackCallError("msg_too_long")
        blocks = check_blocks(raw_blocks) if raw_blocks is not None else message.blocks
        metadata = message.metadata
        if "metadata" in params:  # omitted keeps the old metadata, {} removes it
            raw_metadata = _json_arg(params, "metadata")
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
        message, parent = self._find(channel, _opt_str(params, "ts"))
        (parent.replies if parent is not None else channel.messages).remove(message)
        return {"ok": True, "channel": channel.id, "ts": message.ts}

    def _permalink(self, params: Params) -> Body:
        channel = self._channel(params)
        message, parent = self._find(channel, _opt_str(params, "message_ts"))
        link = f"{PERMALINK_BASE}/{channel.id}/p{message.ts.replace('.', '')}"
        if parent is not None:
            link += f"?thread_ts={parent.ts}&cid={channel.id}"
        return {"ok": True, "channel": channel.id, "permalink": link}

    def _info(self, params: Params) -> Body:
        return {"ok": True, "channel": self._channel_json(self._channel(params))}

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
        ts = _opt_str(params, "ts")
        parent = next((m for m in channel.messages if m.ts == ts), None)
        if parent is None:
            raise SlackCallError("thread_not_found")
        return self._page(params, [parent, *parent.replies])

    @staticmethod
    def _page(params: Params, messages: list[SimMessage]) -> Body:
        """One page of ``messages`` (already in answer order) within oldest/latest, cursor and limit."""
        inclusive = _flag(params, "inclusive")
        oldest = _ts_bound(params, "oldest", (0, 0))
        latest = _ts_bound(params, "latest", (10**12, 0))

        def in_range(ts: tuple[int, int]) -> bool:
            return oldest <= ts <= latest if inclusive else oldest < ts < latest

        selected = [m for m in messages if in_range(parse_ts(m.ts))]
        start = 0
        cursor = _opt_str(params, "cursor")
        if cursor:
            first_ts = _decode_cursor(cursor)
            start = next((i for i, m in enumerate(selected) if m.ts == first_ts), -1)
            if start < 0:
                raise SlackCallError("invalid_cursor")
        limit = _limit(params)
        page, rest = selected[start : start + limit], selected[start + limit :]
        with_metadata = _flag(params, "include_all_metadata")
        return {
            "ok": True,
            "messages": [message_json(m, with_metadata=with_metadata) for m in page],
            "has_more": bool(rest),
            "pin_count": 0,
            "response_metadata": {"next_cursor": encode_cursor(rest[0].ts) if rest else ""},
        }
