"""The Slack simulator's stored messages and channels (``SimMessage``, ``SimChannel``), as the Web API
returns them (``message_json``) and as a person reads them (``render_transcript``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from connector.simulators.slack_blocks import render_blocks
from connector.simulators.slack_call import Body

BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0SIM"
TEAM_ID = "T0SIM"


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
