"""Slack mrkdwn text: escaping, links, and cutting to a limit. Pure.

:func:`cut` never cuts inside a ``<…>`` token, an ``&amp;`` entity or a character sequence (emoji
ZWJ, flags, combining marks, jamo), and counts UTF-16 code units, as Slack's limits do.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"
_REGIONAL = "".join(chr(c) for c in range(0x1F1E6, 0x1F200))


def escape_mrkdwn(s: str) -> str:
    """Escape Slack's three control characters, and nothing else."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _size(s: str) -> int:
    """Length in UTF-16 code units: never less than ``len(s)``, and what JavaScript-side limits count."""
    return len(s.encode("utf-16-le")) // 2


def _splits(s: str, n: int) -> bool:
    """Whether a cut before ``s[n]`` would break a character sequence (emoji ZWJ, flags, marks, jamo)."""
    if n <= 0 or n >= len(s):
        return False
    nxt, prev = ord(s[n]), s[n - 1]
    if prev == "\u200d" or nxt in (0x200D, 0xFE0E, 0xFE0F) or unicodedata.combining(s[n]):
        return True
    if 0x1F3FB <= nxt <= 0x1F3FF or 0xE0020 <= nxt <= 0xE007F or 0x1160 <= nxt <= 0x11FF:
        return True
    if 0x1F1E6 <= nxt <= 0x1F1FF:  # a flag is a pair of regional indicators
        run = n - len(s[:n].rstrip(_REGIONAL))
        return run % 2 == 1
    return False


def cut(s: str, limit: int, tail: str = "", *, mrkdwn: bool = True) -> str:
    """``s`` if it fits in ``limit``; else a prefix + "…" + ``tail``. In mrkdwn, never cuts inside a
    ``<…>`` token or an ``&amp;`` entity (all other ``<`` and ``&`` are escaped)."""
    if _size(s) <= limit:
        return s
    room, n, used = limit - _size(ELLIPSIS + tail), 0, 0
    for ch in s:
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > room:
            break
        n += 1
    if mrkdwn:
        if s.rfind("<", 0, n) > s.rfind(">", 0, n):
            n = s.rfind("<", 0, n)
        amp = s.rfind("&", 0, n)
        if amp >= 0 and ";" not in s[amp:n]:
            n = amp
    while _splits(s, n):
        n -= 1
    return s[:n].rstrip() + ELLIPSIS + tail


def one_line(s: str) -> str:
    return " ".join(s.split())


def link(url: str | None, label: str) -> str:
    """``<url|label>`` when ``url`` is a plain http(s) URL, else just ``label`` (already escaped)."""
    url = url or ""
    if not url.startswith(("https://", "http://")) or any(c.isspace() or c in "<>|" for c in url):
        return label
    return f"<{escape_mrkdwn(url)}|{label}>"
