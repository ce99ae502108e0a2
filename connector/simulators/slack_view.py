"""What a person sees of a message in Slack, for a terminal (the demo and ``simulate``). Pure.

The simulator's transcript (:func:`connector.simulators.slack_message.render_transcript`) shows the
mrkdwn as it was sent: ``<!date^…>`` tokens, ``&amp;`` entities, ``<url|label>`` links. Slack shows
none of that. Here:

* a ``<!date^epoch^format|fallback>`` token becomes the time in the reader's timezone;
* a link ``<url|label>`` becomes its label (``<url>`` the URL); ``<#C123|name>`` becomes ``#name``;
* a real mention (``<!channel>``, ``<!subteam^S1|@l1>``, ``<@U1>``) becomes ``@channel`` / ``@l1`` /
  ``@U1`` 🔔 (it notifies);
* text that only looks like one, escaped by the connector (``&lt;!channel&gt;``), or a ``<!channel>``
  in plain text such as a header, notifies nobody: it becomes ``@channel (inert)``; a link written
  in ticket text stays text: ``<https://…|click> (inert text, not a link)``;
* entities are unescaped (``&amp;`` → ``&``); ``*bold*`` stays as it is.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from connector.simulators.slack_message import SimChannel

_TOKEN = re.compile(r"<([^<>]*)>")
_INERT = re.compile(r"&lt;(!(?:channel|here|everyone)|!subteam\^[^&|]*|@[UW][A-Z0-9]+)(?:\|[^&]*)?&gt;")
_INERT_LINK = re.compile(r"&lt;(https?://[^&|]*(?:\|[^&]*)?)&gt;")
_PLAIN_INERT = re.compile(r"<(!(?:channel|here|everyone)|!subteam\^[^>|]*|@[UW][A-Z0-9]+)(?:\|[^>]*)?>")

#: Slack's <!date> format tokens (api.slack.com/reference/surfaces/formatting#date-formatting)
_DATE_FORMATS = {
    "date_num": "%Y-%m-%d",
    "date": "%B {ord}, %Y",
    "date_short": "%b {day}, %Y",
    "date_long": "%A, %B {ord}, %Y",
    "date_pretty": "%B {ord}, %Y",
    "date_short_pretty": "%b {day}, %Y",
    "date_long_pretty": "%A, %B {ord}, %Y",
    "time": "%H:%M",
    "time_secs": "%H:%M:%S",
}


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _date(epoch: str, fmt: str, fallback: str, tz: ZoneInfo) -> str:
    try:
        moment = datetime.fromtimestamp(int(epoch), timezone.utc).astimezone(tz)
    except (ValueError, OverflowError, OSError):
        return fallback

    def token(m: re.Match[str]) -> str:
        pattern = _DATE_FORMATS.get(m.group(1))
        if pattern is None:
            return m.group(0)
        pattern = pattern.replace("{ord}", _ordinal(moment.day)).replace("{day}", str(moment.day))
        return moment.strftime(pattern)

    return re.sub(r"\{(\w+)\}", token, fmt)


def _mention(body: str) -> str:
    """``!channel`` -> ``channel``; ``!subteam^S1|@l1`` -> ``l1``; ``@U1`` -> ``U1``."""
    name, _, label = body.partition("|")
    if label:
        return label.lstrip("@")
    if name.startswith("!subteam^"):
        return f"group {name.removeprefix('!subteam^')}"
    return name.lstrip("!@")


def _token(m: re.Match[str], tz: ZoneInfo) -> str:
    body: str = m.group(1)
    if body.startswith("!date^"):
        head, _, fallback = body.partition("|")
        parts = [*head.split("^"), "", ""]
        return _date(parts[1], parts[2], fallback, tz)
    if body.startswith(("!", "@")):
        return f"@{_mention(body)} 🔔"
    if body.startswith("#"):
        channel, _, name = body.partition("|")
        return f"#{name or channel[1:]}"
    url, _, label = body.partition("|")
    return label or url


def seen_mrkdwn(text: str, tz: ZoneInfo) -> str:
    """mrkdwn ``text`` as a reader in ``tz`` sees it in Slack."""
    text = _INERT.sub(lambda m: f"@{_mention(m.group(1))} (inert)", text)
    text = _INERT_LINK.sub(lambda m: f"&lt;{m.group(1)}&gt; (inert text, not a link)", text)
    text = _TOKEN.sub(lambda m: _token(m, tz), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def seen_plain(text: str) -> str:
    """plain_text (a header): shown as written; a mention in it notifies nobody."""
    return _PLAIN_INERT.sub(lambda m: f"@{_mention(m.group(1))} (inert)", text)


def _text(obj: Any, tz: ZoneInfo) -> str | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return None
    return seen_plain(obj["text"]) if obj.get("type") == "plain_text" else seen_mrkdwn(obj["text"], tz)


def seen_blocks(blocks: list[dict[str, Any]], fallback: str, tz: ZoneInfo) -> list[str]:
    """The lines a reader sees of a message's blocks (its ``text`` when it has none)."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("header", "section"):
            lines.append(_text(block.get("text"), tz) or "")
            lines.extend(t for f in block.get("fields") or [] if (t := _text(f, tz)))
        elif kind == "context":
            lines.append(" | ".join(t for e in block.get("elements", []) if (t := _text(e, tz))))
    lines = [line for part in lines for line in part.split("\n") if part]
    return lines or seen_mrkdwn(fallback, tz).split("\n")


def seen_transcript(channel: SimChannel, tz: ZoneInfo) -> str:
    """The channel as a reader in ``tz`` sees it: each message with its thread, and how often it was
    edited in place."""
    out = [
        f"#{channel.name} ({channel.id}), times in {tz.key}. [n] is one message; "
        "'edited N×': updated in place N times; ↳ a reply in its thread.",
    ]
    for number, parent in enumerate(channel.messages, start=1):
        edited = f" (edited {parent.edited}×)" if parent.edited else ""
        out += ["", f"[{number}]{edited}", *seen_blocks(parent.blocks, parent.text, tz)]
        for reply in parent.replies:
            first, *rest = seen_blocks(reply.blocks, reply.text, tz)
            out.append(f"    ↳ {first}" + (f" (edited {reply.edited}×)" if reply.edited else ""))
            out.extend(f"      {line}" for line in rest)
    return "\n".join(out) + "\n"
