"""Slack Block Kit for maintenance windows: the parent message, thread replies and digests. Pure.

No I/O and no clock: everything that depends on time takes ``now`` (or the event's ``at``).
Trust boundary: every string that came from the ticket (number, title, description, CIs, group,
assignee, type/risk/priority, close code) and the silence id goes through :func:`escape_mrkdwn` before it
reaches mrkdwn, so ``<!channel>`` or ``<https://evil|click>`` in a ticket shows as text. Only our own
tokens (links built here, ``<!date^…>``, the configured ``ctx.mention``) carry a literal ``<``.
Limits (Slack docs and slack_sdk validators): 50 blocks, header 150, section text 3000, and the
undocumented ~13k total of block text (``msg_blocks_too_long``), for which we keep a lower budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from connector.domain.events import Event, EventKind
from connector.domain.window import SUPPRESSING_PHASES, MaintenanceWindow, Phase, phase_at
from connector.slack.locale import CATALOGS, message
from connector.slack.mrkdwn import cut, escape_mrkdwn, link, one_line

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
TEXT_LIMIT = 3000  # chat.update rejects text over 4000 (msg_too_long); keep a margin
MAX_BLOCKS = 50
BLOCKS_BUDGET = 10_000  # JSON size of all blocks; Slack fails at about 13k
DESCRIPTION_CHARS = 500
SENTENCE_CIS = 3  # CIs named in the L1 sentence, replies and digest lines
DETAIL_CIS = 20  # CIs listed in the parent's details
DIFF_CIS = 10  # added / removed CIs named in a reschedule reply
ITEM_CHARS = 150  # one CI, group, assignee or digest title
DIGEST_MAX_ITEMS = 40
#: Events whose thread reply starts with ``ctx.mention``.
MENTION_EVENTS = frozenset({EventKind.OVERRAN})
_DIGEST_RANK = {Phase.OVERRUN: 0, Phase.IN_PROGRESS: 1, Phase.SCHEDULED: 2}
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class RenderContext:
    locale: str  # "ko" or "en"
    tz: ZoneInfo  # display timezone
    silence_id: str | None = None  # Alertmanager silence for this window, if any
    silence_url: str | None = None  # link to it in the Alertmanager UI, if configured
    mention: str | None = None  # trusted, from config (e.g. "<!subteam^S123>"); never from ticket text
    mention_on: frozenset[EventKind] = MENTION_EVENTS  # the events whose reply carries the mention

    def __post_init__(self) -> None:
        if self.locale not in CATALOGS:
            raise ValueError(f"locale {self.locale!r} is not one of {sorted(CATALOGS)}")


@dataclass(frozen=True)
class Rendered:
    text: str  # notification / fallback text, mrkdwn, escaped, ≤ TEXT_LIMIT
    blocks: list[dict[str, Any]]
    skipped: tuple[str, ...] = ()  # a digest: the windows that could not be rendered, "number: why"


def _esc(s: str, limit: int = ITEM_CHARS) -> str:
    """A ticket field on one line, escaped and cut."""
    return cut(escape_mrkdwn(one_line(s)), limit)


def _local(dt: datetime, ctx: RenderContext) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()}: times must be timezone-aware")
    return dt.astimezone(ctx.tz)


def _tz_label(local: datetime) -> str:
    """The zone's abbreviation ("KST", "EDT"), or "UTC+07" / "UTC+05:45" where tzdata has only numbers."""
    name = local.tzname() or ""
    if name and not name.startswith(("+", "-")) and not name[0].isdigit():
        return name
    minutes = int((local.utcoffset() or timedelta(0)).total_seconds() // 60)
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    return f"UTC{sign}{minutes // 60:02d}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def format_time(dt: datetime, ctx: RenderContext) -> str:
    """``2026-11-27 02:00 KST`` in the display timezone."""
    local = _local(dt, ctx)
    return f"{local:%Y-%m-%d %H:%M} {_tz_label(local)}"


def slack_date(dt: datetime, ctx: RenderContext) -> str:
    """A ``<!date>`` token: each reader sees their own local time; the fallback is :func:`format_time`."""
    epoch = int(_local(dt, ctx).timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{format_time(dt, ctx)}>"


def _compact(start: datetime, end: datetime, ctx: RenderContext) -> bool:
    a, b = _local(start, ctx), _local(end, ctx)
    return a.date() == b.date() and _tz_label(a) == _tz_label(b)


def _range_parts(start: datetime, end: datetime, ctx: RenderContext) -> tuple[str, str]:
    """("2026-11-27 02:00", "04:00 KST") on one day in one offset; both in full otherwise."""
    if _compact(start, end, ctx):
        b = _local(end, ctx)
        return f"{_local(start, ctx):%Y-%m-%d %H:%M}", f"{b:%H:%M} {_tz_label(b)}"
    return format_time(start, ctx), format_time(end, ctx)


def format_range(start: datetime, end: datetime, ctx: RenderContext) -> str:
    """``2026-11-27 02:00–04:00 KST``; ``… KST – 2026-11-28 01:00 KST`` across days or a DST change."""
    a, b = _range_parts(start, end, ctx)
    return f"{a}–{b}" if _compact(start, end, ctx) else f"{a} – {b}"


def _window_range(w: MaintenanceWindow, ctx: RenderContext) -> str:
    if w.planned_start is None or w.planned_end is None:
        return message(ctx.locale, "time.unknown")
    return format_range(w.planned_start, w.planned_end, ctx)


def _cis(cis: Sequence[str], shown: int, ctx: RenderContext) -> str:
    if not cis:
        return message(ctx.locale, "cis.none")
    names = ", ".join(_esc(c) for c in cis[:shown])
    rest = len(cis) - min(shown, len(cis))
    return f"{names} {message(ctx.locale, 'cis.more', n=rest)}" if rest else names


def _values(w: MaintenanceWindow, ctx: RenderContext) -> dict[str, str]:
    """Placeholders for the catalog's sentences, all escaped."""
    unknown = message(ctx.locale, "time.unknown")
    start = end = unknown
    if w.planned_start and w.planned_end:
        start, end = _range_parts(w.planned_start, w.planned_end, ctx)
    group = one_line(w.assignment_group) or one_line(w.assigned_to)
    code = _esc(w.close_code)
    return {
        "cis": _cis(w.cis, SENTENCE_CIS, ctx),
        "start": start,
        "end": end,
        "until": format_time(w.planned_end, ctx) if w.planned_end else unknown,
        "group": _esc(group) if group else message(ctx.locale, "group.none"),
        "close": message(ctx.locale, "close_code", code=code) if code else "",
        "range": _window_range(w, ctx),
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}}


def _header(text: str) -> dict[str, Any]:
    plain = cut(one_line(text), HEADER_LIMIT, mrkdwn=False)
    return {"type": "header", "text": {"type": "plain_text", "text": plain, "emoji": True}}


def _context(parts: Iterable[str]) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": p} for p in list(parts)[:10]]}


def _joined(parts: Iterable[str], sep: str) -> str:
    return sep.join(_esc(p) for p in parts if p.strip())


def render_parent(w: MaintenanceWindow, phase: Phase, now: datetime, ctx: RenderContext) -> Rendered:
    """The one message per window, edited in place as the window moves through its phases."""
    m = partial(message, ctx.locale)
    badge = m(f"badge.{phase.value}")
    ticket = link(w.url, _esc(w.number))
    more = f" ({m('label.full_text')}: {ticket})"
    sentence = m(f"say.{phase.value}", **_values(w, ctx))

    planned = m("time.unknown")
    if w.planned_start and w.planned_end:
        mine = f"{slack_date(w.planned_start, ctx)} – {slack_date(w.planned_end, ctx)}"
        planned = f"{format_range(w.planned_start, w.planned_end, ctx)} ({m('label.your_time')}: {mine})"
    lines = [f"*{m('label.planned')}:* {planned}"]
    if w.actual_start and w.actual_end:
        lines.append(f"*{m('label.actual')}:* {format_range(w.actual_start, w.actual_end, ctx)}")
    elif at := w.actual_start or w.actual_end:
        stamp = format_time(at, ctx)
        key = "label.actual_start" if w.actual_start else "label.actual_end"
        lines.append(f"*{m('label.actual')}:* {m(key, start=stamp, end=stamp)}")
    lines.append(f"*{m('label.ticket')}:* {ticket}")
    if ctx.silence_id:
        lines.append(f"*{m('label.silence')}:* {link(ctx.silence_url, _esc(ctx.silence_id))}")
    if owner := _joined((w.assignment_group, w.assigned_to), " · "):
        lines.append(f"*{m('label.owner')}:* {owner}")
    if kind := _joined((w.type, w.risk, w.priority), " / "):
        lines.append(f"*{m('label.kind')}:* {kind}")
    lines.append(f"*{m('label.cis')}:* {_cis(w.cis, DETAIL_CIS, ctx)}")  # last: the part that may be cut

    blocks = [
        _header(f"{badge} · {w.number} · {w.title}"),
        _section(sentence),
        _section(cut("\n".join(lines), SECTION_LIMIT, more)),
    ]
    if description := w.description.strip():
        blocks.append(_section(cut(escape_mrkdwn(description), DESCRIPTION_CHARS, more)))
    updated = m("label.updated", time=format_time(now, ctx))
    blocks.append(_context([updated, m("label.source", source=escape_mrkdwn(w.source))]))
    return Rendered(cut(f"{badge} · {ticket} · {_esc(w.title)}\n{sentence}", TEXT_LIMIT), blocks)


def render_event(e: Event, ctx: RenderContext) -> Rendered:
    """The thread reply for one event: one or two lines."""
    w, kind = e.window, e.kind
    values = _values(w, ctx)
    key = f"event.{kind.value}"
    if (kind is EventKind.CANCELLED and _had_started(w, e.at)) or (
        kind is EventKind.WITHDRAWN and phase_at(w, e.at) in SUPPRESSING_PHASES
    ):
        key += ".live"
    changes = _changes(e, ctx) if kind is EventKind.RESCHEDULED else ""
    extra: dict[str, Any] = {"minutes": "?"}
    if kind is EventKind.REMINDER and w.planned_start is not None:
        minutes = max(0, round((w.planned_start - e.at).total_seconds() / 60))
        extra = {"minutes": minutes, "start": format_time(w.planned_start, ctx)}
    body = message(ctx.locale, key, changes=changes, **{**values, **extra})
    mention = f"{ctx.mention} " if ctx.mention and kind in ctx.mention_on else ""
    number = _esc(w.number)
    return Rendered(cut(f"{mention}{number} · {body}", TEXT_LIMIT), [_section(f"{mention}{body}")])


def _had_started(w: MaintenanceWindow, at: datetime) -> bool:
    started = w.actual_start or w.planned_start
    return started is not None and started <= at


def _changes(e: Event, ctx: RenderContext) -> str:
    """What a reschedule changed: "old range → new range" and/or "CIs +added −removed"."""
    w, prev, parts = e.window, e.previous, []
    if prev is None or (prev.planned_start, prev.planned_end) != (w.planned_start, w.planned_end):
        new = _window_range(w, ctx)
        if prev is not None and prev.planned_start and w.planned_start and w.planned_end:
            same_day = _local(prev.planned_start, ctx).date() == _local(w.planned_start, ctx).date()
            if same_day and _compact(w.planned_start, w.planned_end, ctx):
                new = new.split(" ", 1)[1]  # "03:00–05:00 KST": the date is the old one's
        parts.append(f"{_window_range(prev, ctx)} → {new}" if prev is not None else new)
    if prev is not None:
        added, removed = sorted(set(w.cis) - set(prev.cis)), sorted(set(prev.cis) - set(w.cis))
        if added or removed:
            marks = [f"+{c}" for c in added[:DIFF_CIS]] + [f"−{c}" for c in removed[:DIFF_CIS]]
            diff = " ".join(_esc(c) for c in marks)
            rest = len(added) + len(removed) - len(marks)
            if rest:
                diff += " " + message(ctx.locale, "cis.more", n=rest)
            parts.append(message(ctx.locale, "event.rescheduled.cis", diff=diff))
    return "; ".join(parts) or _window_range(w, ctx)


def render_digest(
    items: Sequence[tuple[MaintenanceWindow, Phase]],
    now: datetime,
    ctx: RenderContext,
    *,
    title: str | None = None,
) -> Rendered:
    """One message listing windows: overrunning, then in progress, then upcoming by start, then the rest.
    Lists as many as fit the block limits and says "… and N more". A window whose line cannot be
    rendered (a date the display timezone cannot show, from a state older than the date checks) is
    left out and named, with why, in ``skipped``: one bad window does not stop the digest."""
    m = partial(message, ctx.locale)
    ordered, skipped = [], []
    for w, phase in sorted(
        items, key=lambda it: (_DIGEST_RANK.get(it[1], 3), it[0].planned_start or _LATEST, it[0].number)
    ):
        try:
            ordered.append((w, phase, _digest_line(w, phase, ctx)))
        except Exception as e:  # any failure of one window's line: that window only
            skipped.append(f"{w.number}: {type(e).__name__}: {e}")
    running = sum(p in SUPPRESSING_PHASES for _, p, _ in ordered)
    upcoming = sum(p is Phase.SCHEDULED for _, p, _ in ordered)
    heading = title or m("digest.title")
    as_of = m("digest.as_of", time=format_time(now, ctx), running=running, upcoming=upcoming)
    blocks = [_header(heading), _context([as_of])]
    lines: list[str] = []
    used = _json_size(blocks)
    for _, _, line in ordered:  # one block each, while within the block count and the size budget
        block = _section(line)
        if len(blocks) >= MAX_BLOCKS - 1 or len(lines) >= DIGEST_MAX_ITEMS:
            break
        if (used := used + _json_size(block)) > BLOCKS_BUDGET:
            break
        blocks.append(block)
        lines.append(line.split("\n", 1)[0])
    if not ordered:
        blocks.append(_section(m("digest.empty")))
    if rest := len(ordered) - len(lines):
        blocks.append(_context([m("digest.more", n=rest)]))
    head = f"*{_esc(heading)}* — {as_of}"
    return Rendered(cut("\n".join([head, *lines]), TEXT_LIMIT), blocks, tuple(skipped))


def _digest_line(w: MaintenanceWindow, phase: Phase, ctx: RenderContext) -> str:
    m = partial(message, ctx.locale)
    ticket = link(w.url, _esc(w.number))
    where = f"{_window_range(w, ctx)} · {m('label.cis')}: {_cis(w.cis, SENTENCE_CIS, ctx)}"
    return f"{m(f'badge.{phase.value}')} {ticket} {_esc(w.title)}\n{where}"


def _json_size(obj: Any) -> int:
    return len(json.dumps(obj, ensure_ascii=False))
