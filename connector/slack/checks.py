"""``itsm-connector check`` for Slack: the token, and each channel the configuration names.

A channel must be given by its ID (``C0123ABCD``): ``chat.postMessage`` takes a ``#name`` too, but
``chat.update`` and ``conversations.history`` do not, so a name would post every message and never
keep one current. A name is reported with its ID when ``conversations.list`` can tell it.

Scopes are read from ``X-OAuth-Scopes``, which Slack sends on every answer; without it they are not
judged. Membership is read from ``conversations.info`` (``channels:read``), else from
``conversations.history`` (``channels:history``, which delivery needs anyway): ``not_in_channel``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.slack.api import PERMANENT, Answer
from connector.unreachable import why_unreachable

CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{4,}")  # Slack channel names are lower case
POST_SCOPE = "chat:write"


@dataclass(frozen=True)
class Result:
    ok: bool
    text: str


def check_slack(client: WebClient, channels: dict[str, list[str]]) -> list[Result]:
    """The token, then every channel (ID or name -> the config keys naming it), one result each."""
    try:
        auth = client.auth_test()
    except SlackApiError as e:
        err = Answer.of(e).describe()
        return [Result(False, f"slack token: {err}: {PERMANENT.get(err, 'see the Slack API docs')}")]
    except OSError as e:
        why = why_unreachable(e, client.base_url, client.timeout)
        return [Result(False, f"slack: cannot reach {client.base_url}: {why}")]
    scopes = _scopes(auth)
    results = [Result(True, f"slack token: valid, bot {auth.get('user')} in workspace {auth.get('team')}")]
    if scopes is not None and POST_SCOPE not in scopes:
        results.append(Result(False, f"slack token: lacks the {POST_SCOPE} scope: add it and reinstall"))
    directory = _Directory(client)
    for channel, keys in channels.items():
        label = f"slack channel {channel} ({', '.join(keys)})"
        if CHANNEL_ID.fullmatch(channel):
            results.append(_channel(client, channel, label, scopes))
        else:
            results.append(Result(False, f"{label}: a channel name, not an ID: {directory.advice(channel)}"))
    return results


def _scopes(resp: Any) -> frozenset[str] | None:
    headers = getattr(resp, "headers", None) or {}
    value = next((v for k, v in headers.items() if str(k).lower() == "x-oauth-scopes"), None)
    if value is None:
        return None
    text = value if isinstance(value, str) else ",".join(value)
    return frozenset(s.strip() for s in text.split(",") if s.strip())


def _channel(client: WebClient, channel: str, label: str, scopes: frozenset[str] | None) -> Result:
    try:
        info: dict[str, Any] = client.conversations_info(channel=channel).get("channel") or {}
    except SlackApiError as e:
        err = Answer.of(e).describe()
        if err != "missing_scope":
            return Result(False, f"{label}: {_why(err)}")
        info = {}  # no channels:read: membership from the history instead
    except OSError as e:
        why = why_unreachable(e, client.base_url, client.timeout)
        return Result(False, f"{label}: cannot reach Slack: {why}")
    problems = []
    if not info:
        try:
            client.conversations_history(channel=channel, limit=1)
            info = {"is_member": True}
        except SlackApiError as e:
            return Result(False, f"{label}: {_why(Answer.of(e).describe())}")
        except OSError as e:
            why = why_unreachable(e, client.base_url, client.timeout)
            return Result(False, f"{label}: cannot reach Slack: {why}")
    if info.get("is_archived"):
        problems.append("the channel is archived: unarchive it or route elsewhere")
    if not info.get("is_member", False):
        problems.append(PERMANENT["not_in_channel"])
    history = "groups:history" if info.get("is_private") else "channels:history"
    if scopes is not None and history not in scopes:
        problems.append(f"the token lacks the {history} scope (to recover a post whose outcome was lost)")
    if problems:
        return Result(False, f"{label}: " + "; ".join(problems))
    name = f"#{info['name']}: " if info.get("name") else ""
    return Result(True, f"{label}: {name}the bot is a member and can post")


def _why(err: str) -> str:
    if err == "channel_not_found":
        return "no such channel, or the bot cannot see it (a private channel must invite it first)"
    return f"{err}: {PERMANENT.get(err, 'see the Slack API docs')}"


class _Directory:
    """Channel names to IDs, read once from ``conversations.list`` when a name needs one."""

    def __init__(self, client: WebClient, max_pages: int = 50) -> None:
        self._client = client
        self._max_pages = max_pages
        self._ids: dict[str, str] | None = None
        self._error: str | None = None

    def advice(self, name: str) -> str:
        ids = self._load()
        found = ids.get(name.removeprefix("#").lower())
        if found:
            return f"use its ID {found}"
        how = "use the channel's ID (in Slack: the channel's details, at the bottom of About)"
        if self._error:
            return f"{how}; it could not be looked up: {self._error}"
        return f"{how}; no channel the bot can see is called {name.removeprefix('#')!r}"

    def _load(self) -> dict[str, str]:
        if self._ids is not None:
            return self._ids
        self._ids = {}
        cursor = ""
        try:
            for _ in range(self._max_pages):
                resp = self._client.conversations_list(
                    types="public_channel,private_channel", limit=1000, cursor=cursor or None
                )
                self._ids.update(_names(resp.get("channels") or []))
                cursor = (resp.get("response_metadata") or {}).get("next_cursor") or ""
                if not cursor:
                    break
        except SlackApiError as e:
            err = Answer.of(e).describe()
            self._error = "the token lacks channels:read" if err == "missing_scope" else err
        except OSError as e:
            self._error = why_unreachable(e, self._client.base_url, self._client.timeout)
        return self._ids


def _names(channels: Iterable[Any]) -> dict[str, str]:
    return {
        str(c["name"]).lower(): str(c["id"])
        for c in channels
        if isinstance(c, dict) and c.get("name") and c.get("id")
    }
